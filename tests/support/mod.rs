//! The scheduler's integration-test harness: a Kubernetes API (the `kubesim` double with the
//! kubelet simulator, or a real cluster named by `SPS_TEST_KUBECONFIG`), a real Slurm from
//! the environment that `scripts/slurm-cluster start` prints, and the scheduler itself
//! running in-process under a scheduler name of its own, so tests can share one cluster.

#![allow(dead_code)]

/// Start a [`Harness`], or return from the test (skipped) when no Slurm is configured.
#[macro_export]
macro_rules! harness {
    ($name:expr) => {
        harness!($name, |_| {})
    };
    ($name:expr, $tweak:expr) => {
        match support::Harness::start($name, $tweak).await {
            Some(h) => h,
            None => return,
        }
    };
}

pub mod proxy;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::Client;
use kubelet_sim::{KubeletConfig, KubeletHandle, NodeSpec};
use serde_json::{json, Value};
use slurm_client::{ClientConfig, JobDetails, SlurmClient, TokenSource};
use slurm_pod_scheduler::run::{self, Running, Settings};

/// Outcomes are awaited for this long: generous, since the machine is shared and slow.
pub const DEADLINE: Duration = Duration::from_secs(90);

/// The Slurm cluster under test, from `scripts/slurm-cluster env`.
#[derive(Debug, Clone)]
pub struct SlurmEnv {
    pub url: String,
    pub token: String,
    pub user: String,
    pub state_dir: String,
    pub version: String,
    pub kill_wait: Duration,
    pub nodes: Vec<String>,
    pub gpu_nodes: Vec<String>,
}

impl SlurmEnv {
    /// `None` (the test is skipped, saying so) when no cluster is configured, unless
    /// `SPS_REQUIRE_SLURM=1`, which makes a missing cluster a failure.
    pub fn from_env() -> Option<Self> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let Some(url) = var("SLURMRESTD_URL") else {
            assert!(
                var("SPS_REQUIRE_SLURM").as_deref() != Some("1"),
                "SPS_REQUIRE_SLURM=1 but SLURMRESTD_URL is unset: start a cluster with \
                 scripts/slurm-cluster start and export what it prints"
            );
            eprintln!("SKIPPED: no Slurm cluster (SLURMRESTD_URL unset)");
            return None;
        };
        let list = |k: &str| -> Vec<String> {
            var(k)
                .map(|v| v.split(',').map(str::to_string).collect())
                .unwrap_or_default()
        };
        Some(Self {
            url,
            token: var("SLURM_JWT").expect("SLURM_JWT"),
            user: var("SLURM_USER").unwrap_or_else(|| "root".into()),
            state_dir: var("SLURM_CLUSTER_STATE_DIR").expect("SLURM_CLUSTER_STATE_DIR"),
            version: var("SLURM_VERSION").unwrap_or_default(),
            kill_wait: Duration::from_secs(
                var("SLURM_KILL_WAIT")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(30),
            ),
            nodes: list("SLURM_NODES"),
            gpu_nodes: list("SLURM_GPU_NODES"),
        })
    }

    /// Run a Slurm command against this cluster (`scontrol`, `scancel`, `sbatch`...).
    pub fn exec(&self, args: &[&str]) -> String {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/slurm-cluster");
        let out = Command::new("bash")
            .arg(script)
            .args(["exec", "--state-dir", &self.state_dir, "--"])
            .args(args)
            .output()
            .expect("running scripts/slurm-cluster exec");
        assert!(
            out.status.success(),
            "{args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub async fn client(&self, scheduler: &str) -> SlurmClient {
        let mut cfg = ClientConfig::new(
            &self.url,
            TokenSource::Static(self.token.clone()),
            scheduler,
        );
        cfg.user = self.user.clone();
        SlurmClient::connect(cfg)
            .await
            .expect("connecting to slurmrestd")
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique DNS-1123 name for this test process and call.
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id() % 100_000)
}

pub struct Harness {
    pub client: Client,
    pub ns: String,
    pub scheduler: String,
    pub slurm: SlurmEnv,
    pub slurm_client: SlurmClient,
    pub running: Running,
    /// The settings the scheduler was started with, for starting more replicas.
    pub settings: Settings,
    pub kube_config: kube::Config,
    pub kubesim: Option<kubesim::ServerHandle>,
    pub kubelet: Option<KubeletHandle>,
}

impl Harness {
    /// Start everything; `tweak` adjusts the scheduler's settings. `None`: skipped.
    pub async fn start(name: &str, tweak: impl FnOnce(&mut Settings)) -> Option<Self> {
        // The scheduler's logs, for a failing test: RUST_LOG=slurm_pod_scheduler=debug.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let slurm = SlurmEnv::from_env()?;
        let (client, kube_config, kubesim, kubelet) = match std::env::var("SPS_TEST_KUBECONFIG") {
            Ok(path) if !path.is_empty() => {
                let kc =
                    kube::config::Kubeconfig::read_from(path).expect("reading SPS_TEST_KUBECONFIG");
                let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
                    .await
                    .expect("kubeconfig");
                (
                    Client::try_from(cfg.clone()).expect("client"),
                    cfg,
                    None,
                    None,
                )
            }
            _ => {
                let server = kubesim::Server::start(kubesim::Config::default())
                    .await
                    .expect("starting kubesim");
                let client = server.client().await.expect("kubesim client");
                let kube_config = server.kube_config().await.expect("kubesim config");
                let nodes = slurm
                    .nodes
                    .iter()
                    .map(|n| NodeSpec {
                        gpus: if slurm.gpu_nodes.contains(n) { 2 } else { 0 },
                        ..NodeSpec::new(n.clone())
                    })
                    .collect();
                let mut kc = KubeletConfig::new(nodes);
                kc.heartbeat = Duration::from_secs(2);
                let kubelet = KubeletHandle::start(client.clone(), kc)
                    .await
                    .expect("kubelet-sim");
                (client, kube_config, Some(server), Some(kubelet))
            }
        };
        let ns = unique(&format!("t-{name}"));
        let scheduler = unique(&format!("sps-{name}"));
        let namespaces: Api<Namespace> = Api::all(client.clone());
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
            )
            .await
            .expect("creating the test namespace");

        let mut settings = test_settings(&slurm, &scheduler, &ns);
        tweak(&mut settings);
        let running = run::start(settings.clone(), kube_config.clone())
            .await
            .expect("starting the scheduler");
        let slurm_client = slurm.client(&scheduler).await;
        let harness = Self {
            client,
            ns,
            scheduler,
            slurm,
            slurm_client,
            running,
            settings,
            kube_config,
            kubesim,
            kubelet,
        };
        wait_ready(&harness.running).await;
        Some(harness)
    }

    /// Start another replica of the same scheduler (same name, namespaces, Slurm).
    pub async fn replica(&self, tweak: impl FnOnce(&mut Settings)) -> Running {
        let mut settings = self.settings.clone();
        tweak(&mut settings);
        run::start(settings, self.kube_config.clone())
            .await
            .expect("starting a replica")
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// A pod of ours: 1 CPU, 100Mi, grace 1 s (inside any test KillWait), plus `extra`
    /// merged in (annotations, spec fields).
    pub fn pod(&self, name: &str, extra: Value) -> Pod {
        let mut pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": self.ns, "annotations": {}},
            "spec": {
                "schedulerName": self.scheduler,
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "main", "image": "busybox",
                    "resources": {"requests": {"cpu": "1", "memory": "100Mi"}}}],
            },
        });
        merge(&mut pod, extra);
        serde_json::from_value(pod).expect("a valid pod")
    }

    pub async fn create(&self, pod: &Pod) -> Pod {
        self.pods()
            .create(&PostParams::default(), pod)
            .await
            .expect("creating a pod")
    }

    /// Wait until the pod satisfies `what`; panics with the last state after the deadline.
    pub async fn wait_pod(&self, name: &str, why: &str, what: impl Fn(&Pod) -> bool) -> Pod {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let pod = self.pods().get_opt(name).await.expect("reading a pod");
            if let Some(pod) = pod.as_ref().filter(|p| what(p)) {
                return pod.clone();
            }
            assert!(
                Instant::now() < deadline,
                "pod {name}: {why} did not happen; last: {pod:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn wait_gone(&self, name: &str) {
        let deadline = Instant::now() + DEADLINE;
        while self
            .pods()
            .get_opt(name)
            .await
            .expect("reading a pod")
            .is_some()
        {
            assert!(Instant::now() < deadline, "pod {name} was not deleted");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn wait_bound(&self, name: &str) -> (Pod, u32) {
        let pod = self
            .wait_pod(name, "binding", |p| node_of(p).is_some())
            .await;
        let job = job_of(&pod).expect("a bound pod carries its job id");
        (pod, job)
    }

    /// Wait until Slurm reports the job in a state satisfying `what`.
    pub async fn wait_job(&self, id: u32, why: &str, what: impl Fn(Option<&JobDetails>) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let job = self.slurm_client.get_job(id).await.ok();
            if what(job.as_ref()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "job {id}: {why} did not happen; last: {job:#?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Reasons and notes of the events about a pod.
    pub async fn events(&self, pod: &str) -> Vec<(String, String)> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), &self.ns);
        let list = api
            .list(&ListParams::default())
            .await
            .expect("listing events");
        list.items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(pod))
            .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
            .collect()
    }

    pub async fn wait_event(&self, pod: &str, reason: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let events = self.events(pod).await;
            if let Some((_, note)) = events.iter().find(|(r, _)| r == reason) {
                return note.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no {reason} event for {pod}; events: {events:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn delete(&self, name: &str) {
        let _ = self.pods().delete(name, &DeleteParams::default()).await;
    }

    /// Our scheduler's live jobs in Slurm.
    pub async fn live_jobs(&self) -> Vec<u32> {
        let snapshot = self
            .slurm_client
            .list_our_jobs()
            .await
            .expect("listing jobs");
        snapshot
            .jobs
            .iter()
            .filter(|j| j.state.holds_allocation() || j.state.is_pending())
            .map(|j| j.job_id)
            .collect()
    }

    /// Delete every pod and wait until no job of ours is left in Slurm.
    pub async fn finish(self) {
        let _ = self
            .pods()
            .delete_collection(&DeleteParams::default(), &ListParams::default())
            .await;
        let deadline = Instant::now() + DEADLINE;
        loop {
            let live = self.live_jobs().await;
            if live.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "jobs left in Slurm after the test: {live:?}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

pub fn node_of(pod: &Pod) -> Option<String> {
    pod.spec.as_ref()?.node_name.clone()
}

pub fn job_of(pod: &Pod) -> Option<u32> {
    pod.metadata
        .annotations
        .as_ref()?
        .get("sunk.coreweave.com/job-id")?
        .parse()
        .ok()
}

pub fn condition<'a>(
    pod: &'a Pod,
    kind: &str,
) -> Option<&'a k8s_openapi::api::core::v1::PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
}

pub fn phase(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default()
}

/// Deep-merge `extra` into `base` (objects merge, anything else replaces).
pub fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, e) => *b = e,
    }
}

/// Wait until a scheduler reports ready (caches synced, slurmrestd answering).
pub async fn wait_ready(running: &Running) {
    let mut ready = running.ready.clone();
    let deadline = Instant::now() + DEADLINE;
    while !*ready.borrow() {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "the scheduler did not become ready");
        let _ = tokio::time::timeout(left, ready.changed()).await;
    }
}

/// Jobs Slurm lists (any state, for MinJobAge after they end) under a pod's job name.
pub async fn jobs_named(h: &Harness, pod: &str) -> Vec<u32> {
    let name = format!("{}/{pod}", h.ns);
    let snapshot = h.slurm_client.list_our_jobs().await.expect("listing jobs");
    snapshot
        .jobs
        .iter()
        .filter(|j| j.name == name)
        .map(|j| j.job_id)
        .collect()
}

/// Occupy `node-0` (the `solo` partition) with a job outside the scheduler; returns its id.
pub fn block_solo(h: &Harness) -> String {
    let out = h.slurm.exec(&[
        "sbatch",
        "--parsable",
        "-p",
        "solo",
        "--exclusive",
        "-o",
        "/dev/null",
        "-e",
        "/dev/null",
        "--chdir",
        "/tmp",
        "--wrap",
        "sleep 600",
    ]);
    out.trim().split(';').next().unwrap_or_default().to_string()
}

/// Wait until `check` holds; panics naming `what` after the deadline.
pub async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while !check().await {
        assert!(Instant::now() < deadline, "{what} did not happen");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The scheduler's settings in tests: quick polls, short margins, one namespace.
pub fn test_settings(slurm: &SlurmEnv, scheduler: &str, ns: &str) -> Settings {
    let mut cfg = ClientConfig::new(
        &slurm.url,
        TokenSource::Static(slurm.token.clone()),
        scheduler,
    );
    cfg.user = slurm.user.clone();
    Settings {
        ctx: slurm_pod_scheduler::translate::TranslateContext {
            scheduler_name: scheduler.to_string(),
            kill_wait: slurm.kill_wait,
            ..Default::default()
        },
        namespaces: vec![ns.to_string()],
        poll_interval: Duration::from_millis(200),
        node_mapping: slurm_pod_scheduler::nodes::map::Mapping::Identity,
        slurmd_namespace: "slurm".into(),
        timing: slurm_pod_scheduler::lifecycle::Timing {
            kill_wait: slurm.kill_wait,
            stuck_margin: Duration::from_secs(2),
            ..Default::default()
        },
        orphan_grace: Duration::from_secs(3),
        user_names: BTreeMap::new(),
        lease: None,
        kube_qps: 100.0,
        kube_burst: 200,
        listen: "127.0.0.1:0".parse().unwrap(),
        slurm: cfg,
        identity: scheduler.to_string(),
    }
}

/// A pod of ours in the `solo` partition (only `node-0`).
pub fn solo_pod(h: &Harness, name: &str) -> Pod {
    h.pod(
        name,
        json!({"metadata": {"annotations": {"sunk.coreweave.com/partition": "solo"}}}),
    )
}

/// The message of the pod's `PodScheduled` condition, if the pod and condition exist.
pub async fn scheduled_message(h: &Harness, pod: &str) -> Option<String> {
    let pod = h.pods().get(pod).await.ok()?;
    condition(&pod, "PodScheduled")?.message.clone()
}
