//! The admission policy's CEL, run by a CEL interpreter (`cel` from crates.io) against
//! sample pods the way the API server runs it: match conditions, then the variables in
//! order (as `variables.<name>`), then each validation with `object` (the pod after the API
//! server's defaults) and `params` (the parameters ConfigMap). Its verdicts and messages are
//! compared with the scheduler's own translation of the same pod.
//!
//! What the interpreter does not share with Kubernetes' CEL: no type checking against the
//! OpenAPI schema (the API server reports type errors in the policy's status), no cost
//! limits, and none of Kubernetes' extension libraries (the policy uses none).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cel::objects::{Key, Map};
use cel::{Context, Program, Value as Cel};
use k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicy;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};
use slurm_pod_scheduler::translate::rejection::Cause;
use slurm_pod_scheduler::translate::{self, TranslateContext};

use super::render::{base, find, kubectl};

/// JSON to CEL, with integers as `int` as Kubernetes' int64 fields are.
fn to_cel(v: &Value) -> Cel {
    match v {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Cel::Int(i),
            None => Cel::Float(n.as_f64().unwrap()),
        },
        Value::String(s) => Cel::String(Arc::new(s.clone())),
        Value::Array(a) => Cel::List(Arc::new(a.iter().map(to_cel).collect())),
        Value::Object(o) => Cel::Map(Map {
            map: Arc::new(
                o.iter()
                    .map(|(k, v)| (Key::String(Arc::new(k.clone())), to_cel(v)))
                    .collect(),
            ),
        }),
    }
}

fn eval(source: &str, ctx: &Context) -> Cel {
    let program =
        Program::compile(source).unwrap_or_else(|e| panic!("CEL does not parse: {source}: {e}"));
    program
        .execute(ctx)
        .unwrap_or_else(|e| panic!("CEL fails: {source}: {e}"))
}

/// The policy and its parameters as the kustomization renders them.
struct Policy {
    policy: ValidatingAdmissionPolicy,
    params: Value,
}

impl Policy {
    fn load(test: &str) -> Option<Policy> {
        let kubectl = kubectl(test)?;
        let objects = base(&kubectl);
        let policy = serde_json::from_value(
            find(&objects, "ValidatingAdmissionPolicy", "slurm-pod-scheduler").clone(),
        )
        .expect("a ValidatingAdmissionPolicy");
        let params = find(&objects, "ConfigMap", "slurm-pod-scheduler-slurm-params").clone();
        Some(Policy { policy, params })
    }

    fn with_params(&self, kill_wait: u64, offset: u64) -> Policy {
        let mut params = self.params.clone();
        params["data"]["kill-wait-seconds"] = json!(kill_wait.to_string());
        params["data"]["termination-offset-seconds"] = json!(offset.to_string());
        Policy {
            policy: self.policy.clone(),
            params,
        }
    }

    fn kill_wait(&self) -> (u64, u64) {
        let get = |k: &str| self.params["data"][k].as_str().unwrap().parse().unwrap();
        (get("kill-wait-seconds"), get("termination-offset-seconds"))
    }

    /// The denial messages for `pod`, or `None` when the policy does not match it.
    fn admit(&self, pod: &Value) -> Option<Vec<String>> {
        let spec = self.policy.spec.as_ref().unwrap();
        let mut ctx = Context::default();
        ctx.add_variable_from_value("object", to_cel(pod));
        ctx.add_variable_from_value("oldObject", Cel::Null);
        ctx.add_variable_from_value("params", to_cel(&self.params));

        for condition in spec.match_conditions.iter().flatten() {
            if eval(&condition.expression, &ctx) != Cel::Bool(true) {
                return None;
            }
        }
        let mut variables: HashMap<Key, Cel> = HashMap::new();
        for variable in spec.variables.iter().flatten() {
            ctx.add_variable_from_value(
                "variables",
                Cel::Map(Map {
                    map: Arc::new(variables.clone()),
                }),
            );
            let value = eval(&variable.expression, &ctx);
            variables.insert(Key::String(Arc::new(variable.name.clone())), value);
        }
        ctx.add_variable_from_value(
            "variables",
            Cel::Map(Map {
                map: Arc::new(variables),
            }),
        );

        let mut denials = Vec::new();
        for validation in spec.validations.iter().flatten() {
            match eval(&validation.expression, &ctx) {
                Cel::Bool(true) => {}
                Cel::Bool(false) => {
                    let message = match &validation.message_expression {
                        Some(expr) => match eval(expr, &ctx) {
                            Cel::String(s) => s.to_string(),
                            other => panic!("messageExpression gave {other:?}"),
                        },
                        None => validation.message.clone().expect("a message"),
                    };
                    denials.push(message);
                }
                other => panic!("{} gave {other:?}", validation.expression),
            }
        }
        Some(denials)
    }
}

/// What the scheduler itself says for the same pod about the rules the policy repeats.
fn scheduler_says(pod: &Value, kill_wait: u64, offset: u64) -> Vec<String> {
    let pod: Pod = serde_json::from_value(pod.clone()).expect("a Pod");
    let ctx = TranslateContext {
        kill_wait: Duration::from_secs(kill_wait),
        termination_offset: Duration::from_secs(offset),
        ..TranslateContext::default()
    };
    let mut said: Vec<String> = translate::translate(&pod, &ctx)
        .rejections
        .into_iter()
        .filter(|r| matches!(r.cause, Cause::GracePeriodTooLong | Cause::MissingRequest))
        .map(|r| r.message)
        .collect();
    said.sort();
    said
}

/// The pod as the API server stores it: requests from limits, the 30 s grace period.
fn defaulted(raw: Value) -> Value {
    let mut pod: Pod = serde_json::from_value(raw).expect("a Pod");
    slurm_pod_scheduler::explain::defaults::apply(&mut pod);
    serde_json::to_value(pod).unwrap()
}

fn pod(spec: Value) -> Value {
    let mut spec = spec;
    spec.as_object_mut()
        .unwrap()
        .entry("schedulerName")
        .or_insert(json!("slurm-pod-scheduler"));
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "p", "namespace": "research"}, "spec": spec})
}

fn container(name: &str, requests: Value) -> Value {
    json!({"name": name, "image": "busybox", "resources": {"requests": requests}})
}

/// Each sample: (name, raw pod, whether the policy admits it after the API server's
/// defaults, under KillWait 30 s and offset 5 s).
fn samples() -> Vec<(&'static str, Value, bool)> {
    let both = json!({"cpu": "500m", "memory": "512Mi"});
    vec![
        (
            "good",
            pod(json!({"terminationGracePeriodSeconds": 10,
            "containers": [container("app", both.clone())]})),
            true,
        ),
        (
            "default grace period",
            pod(json!({"containers": [container("app", both.clone())]})),
            false,
        ),
        (
            "grace equal to the limit",
            pod(json!({"terminationGracePeriodSeconds": 25,
            "containers": [container("app", both.clone())]})),
            false,
        ),
        (
            "grace just below the limit",
            pod(json!({"terminationGracePeriodSeconds": 24,
            "containers": [container("app", both.clone())]})),
            true,
        ),
        (
            "no memory request",
            pod(json!({"terminationGracePeriodSeconds": 10,
            "containers": [container("app", json!({"cpu": "1"}))]})),
            false,
        ),
        (
            "no requests at all",
            pod(json!({"terminationGracePeriodSeconds": 10,
            "containers": [{"name": "app", "image": "busybox"}]})),
            false,
        ),
        (
            "no requests and default grace",
            pod(json!({
            "containers": [{"name": "app", "image": "busybox"}]})),
            false,
        ),
        (
            "limits only (requests defaulted from them)",
            pod(json!({"terminationGracePeriodSeconds": 10,
            "containers": [{"name": "app", "image": "busybox",
                            "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]})),
            true,
        ),
        (
            "pod-level resources",
            pod(json!({"terminationGracePeriodSeconds": 10,
            "resources": {"requests": {"cpu": "2", "memory": "2Gi"}},
            "containers": [{"name": "app", "image": "busybox"}]})),
            true,
        ),
        (
            "pod-level CPU, container memory",
            pod(json!({"terminationGracePeriodSeconds": 10,
            "resources": {"requests": {"cpu": "2"}},
            "containers": [container("app", json!({"memory": "1Gi"}))]})),
            true,
        ),
        (
            "sidecar requests CPU, app memory",
            pod(json!({"terminationGracePeriodSeconds": 10,
            "initContainers": [{"name": "proxy", "image": "envoy", "restartPolicy": "Always",
                                "resources": {"requests": {"cpu": "250m"}}}],
            "containers": [container("app", json!({"memory": "256Mi"}))]})),
            true,
        ),
        (
            "sidecar without memory, app without requests",
            pod(json!({"terminationGracePeriodSeconds": 10,
            "initContainers": [{"name": "proxy", "image": "envoy", "restartPolicy": "Always",
                                "resources": {"requests": {"cpu": "250m"}}}],
            "containers": [{"name": "app", "image": "busybox"}]})),
            false,
        ),
        (
            "another scheduler's pod",
            pod(json!({"schedulerName": "default-scheduler",
            "containers": [{"name": "app", "image": "busybox"}]})),
            true,
        ),
        (
            "no scheduler name (default scheduler)",
            json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "app", "image": "busybox"}]}}),
            true,
        ),
    ]
}

#[test]
fn policy_refuses_what_the_scheduler_refuses_with_its_words() {
    let Some(policy) = Policy::load("policy_refuses_what_the_scheduler_refuses_with_its_words")
    else {
        return;
    };
    let (kill_wait, offset) = policy.kill_wait();
    assert_eq!(
        (kill_wait, offset),
        (30, 5),
        "the samples assume the shipped parameters"
    );
    for (name, raw, admitted) in samples() {
        let object = defaulted(raw);
        let ours = object["spec"]["schedulerName"] == "slurm-pod-scheduler";
        let denials = match policy.admit(&object) {
            None => {
                assert!(!ours, "{name}: the policy does not match our pod");
                assert!(admitted, "{name}: not matched, so admitted");
                continue;
            }
            Some(d) => d,
        };
        assert!(ours, "{name}: the policy matched another scheduler's pod");
        assert_eq!(denials.is_empty(), admitted, "{name}: {denials:#?}");
        let mut denials = denials;
        denials.sort();
        assert_eq!(
            denials,
            scheduler_says(&object, kill_wait, offset),
            "{name}"
        );
    }
}

#[test]
fn messages_match_for_other_kill_waits() {
    let Some(shipped) = Policy::load("messages_match_for_other_kill_waits") else {
        return;
    };
    for (kill_wait, offset, grace) in [
        (10, 5, 5),
        (10, 5, 4),
        (5, 5, 0),
        (3, 5, 1),
        (60, 5, 30),
        (60, 0, 59),
    ] {
        let policy = shipped.with_params(kill_wait, offset);
        let object = defaulted(pod(json!({"terminationGracePeriodSeconds": grace,
            "containers": [container("app", json!({"cpu": "1", "memory": "1Gi"}))]})));
        let mut denials = policy.admit(&object).expect("our pod");
        denials.sort();
        let said = scheduler_says(&object, kill_wait, offset);
        assert_eq!(
            denials, said,
            "KillWait {kill_wait} s, offset {offset} s, grace {grace} s"
        );
        assert_eq!(
            said.is_empty(),
            grace + offset < kill_wait,
            "KillWait {kill_wait}, grace {grace}"
        );
    }
}

#[test]
fn unset_grace_period_reads_like_the_scheduler() {
    // The API server always sets the grace period; the policy still words an unset one
    // as the scheduler does.
    let Some(policy) = Policy::load("unset_grace_period_reads_like_the_scheduler") else {
        return;
    };
    let raw = pod(json!({"containers": [container("app", json!({"cpu": "1", "memory": "1Gi"}))]}));
    let denials = policy.admit(&raw).expect("our pod");
    assert_eq!(denials, scheduler_says(&raw, 30, 5));
    assert!(
        denials[0].contains("is 30 s (the Kubernetes default, as it is unset)"),
        "{denials:?}"
    );
    assert!(denials[0].contains("to 24 or less"), "{denials:?}");
}

#[test]
fn policy_is_create_only_and_denies() {
    let Some(policy) = Policy::load("policy_is_create_only_and_denies") else {
        return;
    };
    let spec = policy.policy.spec.unwrap();
    let rules = spec.match_constraints.unwrap().resource_rules.unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].operations, Some(vec!["CREATE".to_string()]));
    assert_eq!(rules[0].resources, Some(vec!["pods".to_string()]));
    assert_eq!(spec.param_kind.unwrap().kind.as_deref(), Some("ConfigMap"));
    // The match condition names the scheduler the parameters name (one place).
    let name = policy.params["data"]["scheduler-name"].as_str().unwrap();
    let condition = &spec.match_conditions.unwrap()[0].expression;
    assert!(condition.contains(&format!("'{name}'")), "{condition}");
}

/// The example manifests shipped in `deploy/examples/` (their Pods and the pod templates of
/// their workloads) get the same verdict from the policy as from the scheduler.
#[test]
fn examples_get_the_same_verdict() {
    let Some(policy) = Policy::load("examples_get_the_same_verdict") else {
        return;
    };
    let (kill_wait, offset) = policy.kill_wait();
    let dir = super::render::repo().join("deploy/examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let doc = <Value as serde::Deserialize>::deserialize(doc).unwrap();
            let raw = match doc["kind"].as_str() {
                Some("Pod") => doc.clone(),
                // Workloads: the pod their controller would create.
                _ => match doc
                    .pointer("/spec/template")
                    .or(doc.pointer("/spec/jobTemplate/spec/template"))
                {
                    Some(t) => json!({"apiVersion": "v1", "kind": "Pod",
                                      "metadata": t["metadata"], "spec": t["spec"]}),
                    None => continue,
                },
            };
            let object = defaulted(raw);
            let mut denials = policy.admit(&object).unwrap_or_default();
            denials.sort();
            let said = scheduler_says(&object, kill_wait, offset);
            assert_eq!(denials, said, "{}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} pods in the examples");
}
