//! Least privilege, both ways: every request the scheduler makes in a scenario that walks
//! its code paths is granted by the shipped ClusterRole or Role, and every verb those roles
//! grant was used. The scenario runs the real scheduler in-process against `kubesim` (with
//! its request log) and a real Slurm cluster, with the kubelet simulator playing the nodes.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use clap::Parser;
use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod};
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams};
use kube::client::{Body, ClientBuilder};
use kube::Client;
use kubelet_sim::{KubeletConfig, KubeletHandle, NodeSpec};
use serde_json::json;
use slurm_pod_scheduler::run::args::RunArgs;
use slurm_pod_scheduler::run::project::JOB_ID_ANNOTATION;

use super::render::{base, find, kubectl, repo};

/// One permission: verb, API group, resource (with `/subresource`), and the namespace of a
/// Role (`None` for the ClusterRole, which applies everywhere).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Grant {
    verb: String,
    group: String,
    resource: String,
    namespace: Option<String>,
}

fn grants(rules: &[PolicyRule], namespace: Option<&str>) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for rule in rules {
        assert!(
            rule.resource_names.is_none() && rule.non_resource_urls.is_none(),
            "{rule:?}"
        );
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    assert!(
                        verb != "*" && resource != "*" && group != "*",
                        "no wildcards: {rule:?}"
                    );
                    out.insert(Grant {
                        verb: verb.clone(),
                        group: group.clone(),
                        resource: resource.clone(),
                        namespace: namespace.map(String::from),
                    });
                }
            }
        }
    }
    out
}

/// The shipped roles' grants, and the namespace of the Role.
fn shipped(test: &str) -> Option<(BTreeSet<Grant>, String)> {
    let kubectl = kubectl(test)?;
    let objects = base(&kubectl);
    let cluster: ClusterRole =
        serde_json::from_value(find(&objects, "ClusterRole", "slurm-pod-scheduler").clone())
            .unwrap();
    let role: Role = serde_json::from_value(
        find(&objects, "Role", "slurm-pod-scheduler-leader-election").clone(),
    )
    .unwrap();
    let ns = role.metadata.namespace.clone().unwrap();
    let mut all = grants(&cluster.rules.unwrap_or_default(), None);
    all.extend(grants(&role.rules.unwrap_or_default(), Some(&ns)));
    Some((all, ns))
}

fn grant(verb: &str, group: &str, resource: &str, namespace: Option<&str>) -> Grant {
    Grant {
        verb: verb.into(),
        group: group.into(),
        resource: resource.into(),
        namespace: namespace.map(String::from),
    }
}

/// What the code calls (src/run/watch.rs, src/kube_io/, src/leader.rs), written out.
#[test]
fn roles_grant_exactly_the_calls_in_the_code() {
    let Some((granted, ns)) = shipped("roles_grant_exactly_the_calls_in_the_code") else {
        return;
    };
    let ns = Some(ns.as_str());
    let expected: BTreeSet<Grant> = [
        grant("get", "", "pods", None),
        grant("list", "", "pods", None),
        grant("watch", "", "pods", None),
        grant("delete", "", "pods", None),
        grant("create", "", "pods/binding", None),
        grant("patch", "", "pods/status", None),
        grant("list", "", "nodes", None),
        grant("watch", "", "nodes", None),
        grant("create", "events.k8s.io", "events", None),
        grant("get", "coordination.k8s.io", "leases", ns),
        grant("create", "coordination.k8s.io", "leases", ns),
        grant("update", "coordination.k8s.io", "leases", ns),
    ]
    .into();
    assert_eq!(granted, expected);
}

/// The scheduler's own requests carry this User-Agent, so the log tells them from the test's
/// and the kubelet simulator's.
const AGENT: &str = "slurm-pod-scheduler-under-test";

/// Plays "another client binds the pod just before we do": when the scheduler posts the
/// binding of `RACED`, the test binds it first (to the first node), so the scheduler's
/// binding meets a 409 and takes its look-up path.
const RACED: &str = "raced";

#[derive(Clone)]
struct RaceLayer {
    rival: Client,
    node: String,
    done: Arc<AtomicBool>,
}

impl<S> tower::Layer<S> for RaceLayer {
    type Service = Race<S>;
    fn layer(&self, inner: S) -> Race<S> {
        Race {
            inner,
            layer: self.clone(),
        }
    }
}

struct Race<S> {
    inner: S,
    layer: RaceLayer,
}

impl<S> tower::Service<http::Request<Body>> for Race<S>
where
    S: tower::Service<http::Request<Body>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let path = req.uri().path().to_string();
        let raced = req.method() == http::Method::POST
            && path.ends_with(&format!("/pods/{RACED}/binding"))
            && !self.layer.done.swap(true, Ordering::SeqCst);
        // The request goes out when the future is first polled, after the rival's binding.
        let forward = self.inner.call(req);
        if !raced {
            return Box::pin(forward);
        }
        let (rival, node) = (self.layer.rival.clone(), self.layer.node.clone());
        let namespace = path.split('/').nth(4).unwrap_or("default").to_string();
        Box::pin(async move {
            let binding = Binding {
                metadata: ObjectMeta {
                    name: Some(RACED.into()),
                    ..Default::default()
                },
                target: ObjectReference {
                    kind: Some("Node".into()),
                    name: Some(node),
                    ..Default::default()
                },
            };
            let api: Api<Pod> = Api::namespaced(rival, &namespace);
            let bound: Result<serde_json::Value, _> = api
                .create_subresource("binding", RACED, &PostParams::default(), &binding)
                .await;
            bound.expect("the rival's binding");
            forward.await
        })
    }
}

fn pod(name: &str, cpu: &str, memory: Option<&str>, lifetime: Option<&str>) -> Pod {
    let mut requests = json!({"cpu": cpu});
    if let Some(m) = memory {
        requests["memory"] = json!(m);
    }
    let mut annotations = json!({});
    if let Some(l) = lifetime {
        annotations[kubelet_sim::LIFETIME] = json!(l);
    }
    serde_json::from_value(json!({
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "schedulerName": SCHEDULER,
            "terminationGracePeriodSeconds": 2,
            "containers": [{"name": "app", "image": "busybox", "resources": {"requests": requests}}]
        }
    }))
    .unwrap()
}

const SCHEDULER: &str = "sps-rbac-test";
const NS: &str = "research";

async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn slurm(args: &[&str]) -> String {
    let mut cmd = match std::env::var("SLURM_CLUSTER_STATE_DIR") {
        Ok(dir) => {
            let mut c = Command::new(repo().join("scripts/slurm-cluster"));
            c.args(["exec", "--state-dir", &dir, "--"]);
            c
        }
        Err(_) => Command::new(args[0]),
    };
    let args = if std::env::var("SLURM_CLUSTER_STATE_DIR").is_ok() {
        args
    } else {
        &args[1..]
    };
    let out = cmd.args(args).output().expect("run a Slurm command");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Cancel what this test's scheduler left in Slurm (jobs whose comment names it).
fn cancel_leftovers() {
    let list = slurm(&["squeue", "-h", "-o", "%i %k"]);
    for line in list.lines() {
        if let Some((id, comment)) = line.split_once(' ') {
            if comment.contains(&format!("scheduler={SCHEDULER} ")) {
                let _ = slurm(&["scancel", id]);
            }
        }
    }
}

#[derive(Debug, Parser)]
struct Run {
    #[command(flatten)]
    args: RunArgs,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scheduler_uses_exactly_what_the_roles_grant() {
    let test = "scheduler_uses_exactly_what_the_roles_grant";
    let Some((granted, role_ns)) = shipped(test) else {
        return;
    };
    let (Ok(url), Ok(jwt)) = (std::env::var("SLURMRESTD_URL"), std::env::var("SLURM_JWT")) else {
        if std::env::var("SPS_REQUIRE_SLURM").as_deref() == Ok("1") {
            panic!("{test}: SPS_REQUIRE_SLURM=1 but SLURMRESTD_URL or SLURM_JWT is unset");
        }
        eprintln!(
            "SKIPPED {test}: SLURMRESTD_URL is unset (start a cluster with scripts/slurm-cluster)"
        );
        return;
    };
    let kill_wait = std::env::var("SLURM_KILL_WAIT").unwrap_or_else(|_| "30".into());
    let nodes: Vec<String> = std::env::var("SLURM_NODES")
        .unwrap_or_else(|_| "node-0,node-1".into())
        .replace('\\', "")
        .split(',')
        .map(String::from)
        .collect();

    let mut config = kubesim::Config::default();
    config
        .namespaces
        .extend([role_ns.clone(), "slurm".into(), NS.into()]);
    let server = kubesim::Server::start(config).await.expect("kubesim");
    let client = server.client().await.unwrap();

    // Kubernetes node names differ from Slurm's: the slurmd pods map them.
    let kube_nodes: Vec<String> = (0..nodes.len()).map(|i| format!("kube-{i}")).collect();
    let _kubelet = KubeletHandle::start(
        client.clone(),
        KubeletConfig::new(kube_nodes.iter().map(NodeSpec::new).collect()),
    )
    .await
    .expect("kubelet simulator");
    let slurmd_pods: Api<Pod> = Api::namespaced(client.clone(), "slurm");
    for (slurm_node, kube_node) in nodes.iter().zip(&kube_nodes) {
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": format!("slurmd-{slurm_node}"), "labels": {"app": "slurmd"}},
            "spec": {"hostname": slurm_node, "nodeName": kube_node,
                     "containers": [{"name": "slurmd", "image": "slurmd"}]}
        }))
        .unwrap();
        slurmd_pods
            .create(&PostParams::default(), &p)
            .await
            .unwrap();
    }

    // The scheduler, as the Deployment runs it: leader election in the role's namespace.
    let dir = std::env::temp_dir().join(format!("sps-deploy-rbac-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, &jwt).unwrap();
    let run = Run::try_parse_from([
        "run",
        "--scheduler-name",
        SCHEDULER,
        "--slurm-url",
        url.as_str(),
        "--slurm-token-file",
        token.to_str().unwrap(),
        "--slurm-kill-wait",
        kill_wait.as_str(),
        "--leader-elect=true",
        "--lease-namespace",
        role_ns.as_str(),
        "--node-mapping",
        "slurmd-pods=app=slurmd",
        "--slurmd-namespace",
        "slurm",
        "--listen",
        "127.0.0.1:0",
        "--poll-interval",
        "200ms",
    ])
    .unwrap();
    let settings = run.args.settings().expect("settings");
    let mut kube_config = server.kube_config().await.unwrap();
    kube_config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(AGENT),
    ));
    let race = RaceLayer {
        rival: client.clone(),
        node: kube_nodes[0].clone(),
        done: Arc::default(),
    };
    let scheduler_client = ClientBuilder::try_from(kube_config)
        .unwrap()
        .with_layer(&race)
        .build();
    let mut running = slurm_pod_scheduler::run::start_with_client(settings, scheduler_client)
        .await
        .expect("start");
    tokio::time::timeout(Duration::from_secs(60), running.ready.wait_for(|r| *r))
        .await
        .expect("ready within 60 s")
        .unwrap();

    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let job_key = format!("sunk.coreweave.com/{JOB_ID_ANNOTATION}");
    let long = Duration::from_secs(60);
    let bound = |name: &'static str| {
        let pods = pods.clone();
        let job_key = job_key.clone();
        move || {
            let pods = pods.clone();
            let job_key = job_key.clone();
            async move {
                let p = pods.get_opt(name).await.ok()??;
                let node = p.spec.as_ref()?.node_name.clone()?;
                let job = p
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(&job_key).cloned());
                Some((node, job))
            }
        }
    };

    // A pod that runs briefly and ends: bound, then its job is cancelled.
    pods.create(
        &PostParams::default(),
        &pod("short", "1", Some("256Mi"), Some("2s")),
    )
    .await
    .unwrap();
    // A pod without a memory request: refused with a condition and an event.
    pods.create(&PostParams::default(), &pod("no-memory", "1", None, None))
        .await
        .unwrap();
    // A pod someone else binds just before the scheduler does.
    pods.create(
        &PostParams::default(),
        &pod(RACED, "1", Some("256Mi"), None),
    )
    .await
    .unwrap();
    // A pod whose job an administrator cancels: deleted by the scheduler.
    pods.create(
        &PostParams::default(),
        &pod("scancelled", "1", Some("256Mi"), None),
    )
    .await
    .unwrap();

    let (node, job) = wait_for("short bound", long, bound("short")).await;
    assert!(
        kube_nodes.contains(&node) && job.is_some(),
        "{node} {job:?}"
    );
    let (node, _) = wait_for("raced bound", long, bound(RACED)).await;
    assert_eq!(node, kube_nodes[0], "the rival's binding stands");
    let (_, job) = wait_for("scancelled bound with its job id", long, || {
        let probe = bound("scancelled");
        async move { probe().await.filter(|(_, j)| j.is_some()) }
    })
    .await;
    slurm(&["scancel", &job.unwrap()]);
    wait_for("the scancelled job's pod deleted", long, || {
        let pods = pods.clone();
        async move { matches!(pods.get_opt("scancelled").await, Ok(None)).then_some(()) }
    })
    .await;
    wait_for("the refusal on the pod", long, || {
        let pods = pods.clone();
        async move {
            let p = pods.get_opt("no-memory").await.ok()??;
            let refused = p.status?.conditions?.iter().any(|c| {
                c.type_ == "PodScheduled"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("InvalidPod")
            });
            refused.then_some(())
        }
    })
    .await;
    assert!(
        race.done.load(Ordering::SeqCst),
        "the scheduler bound the raced pod itself"
    );
    // Leases are renewed every couple of seconds: let a few renewals happen.
    tokio::time::sleep(Duration::from_secs(5)).await;
    pods.delete("raced", &DeleteParams::default()).await.ok();

    let records: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.user_agent == AGENT)
        .collect();
    cancel_leftovers();
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        !records.is_empty(),
        "no request carried the scheduler's User-Agent"
    );

    let raced_409 = records.iter().any(|r| {
        r.info.subresource.as_deref() == Some("binding")
            && r.info.name.as_deref() == Some(RACED)
            && r.status == 409
    });
    assert!(
        raced_409,
        "the scheduler's binding of the raced pod did not meet a 409"
    );

    let mut used = BTreeSet::new();
    for r in &records {
        let info = &r.info;
        assert!(
            !info.resource.is_empty(),
            "a non-resource request: {} {}",
            info.verb,
            info.path
        );
        let resource = match &info.subresource {
            Some(sub) => format!("{}/{sub}", info.resource),
            None => info.resource.clone(),
        };
        let cluster = grant(&info.verb, &info.group, &resource, None);
        let namespaced = grant(
            &info.verb,
            &info.group,
            &resource,
            info.namespace.as_deref(),
        );
        let allowed = granted.contains(&cluster)
            || (namespaced.namespace.is_some() && granted.contains(&namespaced));
        assert!(
            allowed,
            "not granted: {} {} (group {:?}, namespace {:?})",
            info.verb, resource, info.group, info.namespace
        );
        used.insert(if granted.contains(&cluster) {
            cluster
        } else {
            namespaced
        });
    }
    eprintln!(
        "{} requests by the scheduler; permissions used:",
        records.len()
    );
    for g in &used {
        eprintln!(
            "  {} {} {} {}",
            g.verb,
            g.group,
            g.resource,
            g.namespace.as_deref().unwrap_or("(cluster role)")
        );
    }
    let unused: Vec<_> = granted.difference(&used).collect();
    assert!(unused.is_empty(), "granted but never used: {unused:#?}");
}
