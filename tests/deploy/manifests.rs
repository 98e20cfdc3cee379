//! The kustomization renders, every object parses into its `k8s-openapi` type without
//! losing a field (so a misspelt or misplaced key fails), and the Deployment follows the
//! hardening and configuration the operator guide promises.

use std::collections::BTreeSet;

use clap::Parser;
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use slurm_pod_scheduler::run::args::RunArgs;

use super::render::{base, find, kubectl, kustomize, repo};

/// Parses `obj` as `T` and checks that serializing it back keeps every field of `obj`:
/// `k8s-openapi` ignores unknown fields, so a dropped one is how an unknown field shows.
fn typed<T: DeserializeOwned + Serialize>(obj: &Value) -> T {
    let what = format!("{} {}", obj["kind"], obj["metadata"]["name"]);
    let parsed: T = serde_json::from_value(obj.clone())
        .unwrap_or_else(|e| panic!("{what} does not parse: {e}"));
    let back = serde_json::to_value(&parsed).expect("serialize");
    assert_kept(obj, &back, &what);
    parsed
}

fn assert_kept(original: &Value, back: &Value, path: &str) {
    match (original, back) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let here = format!("{path}.{key}");
                let other = b.get(key).unwrap_or_else(|| panic!("unknown field {here}"));
                assert_kept(value, other, &here);
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{path}: list length changed");
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert_kept(x, y, &format!("{path}[{i}]"));
            }
        }
        (a, b) => assert_eq!(a, b, "{path}: value changed in a round trip"),
    }
}

/// The Prometheus Operator's ServiceMonitor is not in `k8s-openapi`: these are the fields
/// the component uses, with unknown ones refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)] // The fields are there to be parsed; unknown ones are refused.
struct ServiceMonitor {
    api_version: String,
    kind: String,
    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    spec: ServiceMonitorSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct ServiceMonitorSpec {
    selector: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    endpoints: Vec<ServiceMonitorEndpoint>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct ServiceMonitorEndpoint {
    port: String,
    path: String,
    interval: String,
}

fn parse_all(objects: &[Value]) -> BTreeSet<String> {
    let mut kinds = BTreeSet::new();
    for obj in objects {
        let kind = obj["kind"].as_str().expect("every object has a kind");
        match kind {
            "Namespace" => {
                let _: Namespace = typed(obj);
            }
            "ServiceAccount" => {
                let _: ServiceAccount = typed(obj);
            }
            "ClusterRole" => {
                let _: ClusterRole = typed(obj);
            }
            "ClusterRoleBinding" => {
                let _: ClusterRoleBinding = typed(obj);
            }
            "Role" => {
                let _: Role = typed(obj);
            }
            "RoleBinding" => {
                let _: RoleBinding = typed(obj);
            }
            "ConfigMap" => {
                let _: ConfigMap = typed(obj);
            }
            "Deployment" => {
                let _: Deployment = typed(obj);
            }
            "Service" => {
                let _: Service = typed(obj);
            }
            "PodDisruptionBudget" => {
                let _: PodDisruptionBudget = typed(obj);
            }
            "ValidatingAdmissionPolicy" => {
                let _: ValidatingAdmissionPolicy = typed(obj);
            }
            "ValidatingAdmissionPolicyBinding" => {
                let _: ValidatingAdmissionPolicyBinding = typed(obj);
            }
            "ServiceMonitor" => {
                let sm: ServiceMonitor = serde_json::from_value(obj.clone())
                    .unwrap_or_else(|e| panic!("ServiceMonitor does not parse: {e}"));
                assert_eq!(
                    (sm.api_version.as_str(), sm.kind.as_str()),
                    ("monitoring.coreos.com/v1", "ServiceMonitor")
                );
                assert!(sm.metadata.name.is_some());
            }
            other => panic!("unexpected kind {other} in deploy/"),
        }
        kinds.insert(kind.to_string());
    }
    kinds
}

#[test]
fn base_renders_and_every_object_is_typed() {
    let Some(kubectl) = kubectl("base_renders_and_every_object_is_typed") else {
        return;
    };
    let objects = base(&kubectl);
    let kinds = parse_all(&objects);
    let expected: BTreeSet<String> = [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ]
    .map(String::from)
    .into();
    assert_eq!(kinds, expected);

    // No token in the repository: the Secret is created by the operator.
    assert!(
        objects.iter().all(|o| o["kind"] != "Secret"),
        "deploy/ must not carry a Secret"
    );

    // Namespaced objects in the scheduler's namespace; cluster-scoped ones in none.
    let cluster_scoped = [
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ];
    for o in &objects {
        let ns = o["metadata"]["namespace"].as_str();
        if cluster_scoped.contains(&o["kind"].as_str().unwrap()) {
            assert_eq!(ns, None, "{} is cluster-scoped", o["kind"]);
        } else {
            assert_eq!(
                ns,
                Some("slurm-pod-scheduler"),
                "{} {}",
                o["kind"],
                o["metadata"]["name"]
            );
        }
    }
    let binding: ValidatingAdmissionPolicyBinding = typed(find(
        &objects,
        "ValidatingAdmissionPolicyBinding",
        "slurm-pod-scheduler",
    ));
    let param = binding.spec.unwrap().param_ref.unwrap();
    assert_eq!(param.namespace.as_deref(), Some("slurm-pod-scheduler"));
    assert_eq!(
        param.name.as_deref(),
        Some("slurm-pod-scheduler-slurm-params")
    );
}

/// `to` as a path relative to `from` (kustomize refuses absolute paths).
fn relative(from: &std::path::Path, to: &std::path::Path) -> String {
    let up = "../".repeat(from.components().count().saturating_sub(1));
    format!(
        "{up}{}",
        to.strip_prefix("/").expect("an absolute path").display()
    )
}

#[test]
fn service_monitor_component_renders() {
    let Some(kubectl) = kubectl("service_monitor_component_renders") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("sps-deploy-overlay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let deploy = repo().join("deploy");
    std::fs::write(
        dir.join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- {}\n\
             components:\n- {}\n",
            relative(&dir, &deploy),
            relative(&dir, &deploy.join("components/service-monitor"))
        ),
    )
    .unwrap();
    let objects = kustomize(&kubectl, &dir);
    std::fs::remove_dir_all(&dir).ok();
    let kinds = parse_all(&objects);
    assert!(kinds.contains("ServiceMonitor"), "{kinds:?}");
    let sm = find(&objects, "ServiceMonitor", "slurm-pod-scheduler");
    let service = find(&objects, "Service", "slurm-pod-scheduler-metrics");
    assert_eq!(sm["metadata"]["namespace"], "slurm-pod-scheduler");
    // The monitor selects the Service by labels the Service carries, on its port's name.
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&service["metadata"]["labels"][k], v, "Service label {k}");
    }
    assert_eq!(
        sm["spec"]["endpoints"][0]["port"],
        service["spec"]["ports"][0]["name"]
    );
}

#[test]
fn deployment_is_hardened_and_highly_available() {
    let Some(kubectl) = kubectl("deployment_is_hardened_and_highly_available") else {
        return;
    };
    let objects = base(&kubectl);
    let d: Deployment = typed(find(&objects, "Deployment", "slurm-pod-scheduler"));
    let spec = d.spec.unwrap();
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.unwrap();
    assert_eq!(
        pod.service_account_name.as_deref(),
        Some("slurm-pod-scheduler")
    );
    let psc = pod.security_context.unwrap();
    assert_eq!(psc.run_as_non_root, Some(true));
    assert!(psc.run_as_user.unwrap() > 0);
    assert_eq!(psc.seccomp_profile.unwrap().type_, "RuntimeDefault");

    assert_eq!(pod.containers.len(), 1);
    let c = &pod.containers[0];
    let sc = c.security_context.clone().unwrap();
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.capabilities.unwrap().drop, Some(vec!["ALL".to_string()]));
    let resources = c.resources.clone().unwrap();
    for side in [resources.requests.unwrap(), resources.limits.unwrap()] {
        assert!(
            side.contains_key("cpu") && side.contains_key("memory"),
            "{side:?}"
        );
    }
    let probe_path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.clone())
    };
    assert_eq!(probe_path(&c.liveness_probe).as_deref(), Some("/healthz"));
    assert_eq!(probe_path(&c.readiness_probe).as_deref(), Some("/readyz"));

    // The token is a file from the operator's Secret, mounted as a directory so that a
    // rotation reaches it.
    let token_volume = pod
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.secret.is_some())
        .expect("a Secret volume for the slurmrestd token");
    assert_eq!(
        token_volume.secret.unwrap().secret_name.as_deref(),
        Some("slurm-pod-scheduler-slurm-token")
    );
    let mount = c
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == token_volume.name)
        .expect("the token volume is mounted");
    assert!(
        mount.sub_path.is_none(),
        "a subPath mount never sees a rotated token"
    );

    // The PodDisruptionBudget lets one replica go at a time.
    let pdb: PodDisruptionBudget =
        typed(find(&objects, "PodDisruptionBudget", "slurm-pod-scheduler"));
    let pdb = pdb.spec.unwrap();
    assert_eq!(
        pdb.selector.unwrap().match_labels,
        spec.selector.match_labels,
        "the PodDisruptionBudget selects the scheduler's pods"
    );
    assert!(pdb.max_unavailable.is_some() || pdb.min_available.is_some());
}

/// The flags `run` would get inside the container: the args, the environment from the
/// parameters ConfigMap, and the configuration file from the config ConfigMap.
#[derive(Debug, Parser)]
struct Run {
    #[command(flatten)]
    args: RunArgs,
}

#[test]
fn scheduler_accepts_the_shipped_configuration() {
    let Some(kubectl) = kubectl("scheduler_accepts_the_shipped_configuration") else {
        return;
    };
    let objects = base(&kubectl);
    let d = find(&objects, "Deployment", "slurm-pod-scheduler");
    let container = &d["spec"]["template"]["spec"]["containers"][0];
    let config = find(&objects, "ConfigMap", "slurm-pod-scheduler-config");
    let params = find(&objects, "ConfigMap", "slurm-pod-scheduler-slurm-params");

    // The configuration file lands where --config points.
    let args: Vec<String> = serde_json::from_value(container["args"].clone()).unwrap();
    assert_eq!(args[0], "run");
    let config_at = args.iter().position(|a| a == "--config").expect("--config") + 1;
    let mount = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "config")
        .unwrap();
    let file_name = args[config_at]
        .strip_prefix(&format!("{}/", mount["mountPath"].as_str().unwrap()))
        .expect("--config is inside the config mount");
    let dir = std::env::temp_dir().join(format!("sps-deploy-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(file_name);
    std::fs::write(
        &path,
        config["data"][file_name].as_str().expect("the file's key"),
    )
    .unwrap();

    // The environment, resolved from the parameters ConfigMap, as flags (the same keys).
    let mut argv = vec![
        "run".to_string(),
        "--config".into(),
        path.display().to_string(),
    ];
    for env in container["env"].as_array().unwrap() {
        let name = env["name"].as_str().unwrap();
        let Some(flag) = name.strip_prefix("SPS_") else {
            continue;
        };
        let key = env["valueFrom"]["configMapKeyRef"]["key"]
            .as_str()
            .expect("from the params");
        assert_eq!(
            env["valueFrom"]["configMapKeyRef"]["name"],
            params["metadata"]["name"]
        );
        argv.push(format!("--{}", flag.to_lowercase().replace('_', "-")));
        argv.push(params["data"][key].as_str().unwrap().to_string());
    }
    let run = Run::try_parse_from(argv).expect("the flags parse");
    let settings = run
        .args
        .settings()
        .unwrap_or_else(|e| panic!("the shipped configuration: {e}"));
    std::fs::remove_dir_all(&dir).ok();

    let kill_wait: u64 = params["data"]["kill-wait-seconds"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(settings.ctx.kill_wait.as_secs(), kill_wait);
    assert_eq!(
        settings.ctx.scheduler_name,
        params["data"]["scheduler-name"]
    );
    assert!(
        settings.lease.is_some(),
        "two replicas need leader election"
    );
    assert_eq!(settings.listen.port(), 10259);
    let port = &container["ports"][0];
    assert_eq!(port["containerPort"], 10259);
    assert_eq!(container["readinessProbe"]["httpGet"]["port"], port["name"]);
}
