//! Test support for the integration tests against a real Slurm cluster started by
//! `scripts/slurm-cluster`: the cluster's settings from the environment, clients, unique
//! job names, clean-up, and waiting with generous deadlines.

#![allow(dead_code)]

pub mod proxy;

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use slurm_client::{
    ApiVersion, ClientConfig, JobDetails, JobId, JobMarker, PlaceholderJob, RequestCounters,
    SlurmClient, TokenSource,
};

/// The cluster the tests run against, from `scripts/slurm-cluster start`'s exports.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub url: String,
    pub jwt: String,
    pub user: String,
    pub version: ApiVersion,
    pub state_dir: Option<String>,
    /// Slurm release, `22.05` or `24.11`.
    pub slurm: String,
    pub accounting: bool,
    pub gpus: bool,
    pub kill_wait: Duration,
    /// `node-` for `scripts/slurm-cluster`; `SPS_TEST_NODE_PREFIX` for other clusters.
    pub node_prefix: String,
    /// Whether the version is forced rather than detected.
    pub forced: bool,
}

impl Cluster {
    /// `None` (the test then returns early and says why) when `SLURMRESTD_URL` is unset;
    /// a panic instead when `SPS_REQUIRE_SLURM=1`, so CI cannot pass without a cluster.
    pub fn from_env(test: &str) -> Option<Cluster> {
        let Ok(url) = std::env::var("SLURMRESTD_URL") else {
            if std::env::var("SPS_REQUIRE_SLURM").as_deref() == Ok("1") {
                panic!("{test}: SPS_REQUIRE_SLURM=1 but SLURMRESTD_URL is unset: start a cluster");
            }
            eprintln!("SKIPPED {test}: SLURMRESTD_URL is unset (start a cluster with scripts/slurm-cluster)");
            return None;
        };
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        // SPS_TEST_API_VERSION runs the suite through an older adapter than the newest the
        // cluster serves (v0.0.40 and v0.0.41 on 24.11).
        let forced = var("SPS_TEST_API_VERSION");
        let version = forced
            .clone()
            .or_else(|| var("SLURMRESTD_API_VERSION"))
            .expect("SLURMRESTD_API_VERSION")
            .parse()
            .expect("a supported API version");
        Some(Cluster {
            url,
            jwt: var("SLURM_JWT").expect("SLURM_JWT"),
            user: var("SLURM_USER").unwrap_or_else(|| "root".into()),
            version,
            state_dir: var("SLURM_CLUSTER_STATE_DIR"),
            slurm: var("SLURM_VERSION").unwrap_or_default(),
            accounting: var("SLURM_ACCOUNTING").as_deref() == Some("1"),
            gpus: var("SLURM_GPU_NODES").is_some(),
            kill_wait: Duration::from_secs(
                var("SLURM_KILL_WAIT")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(30),
            ),
            node_prefix: var("SPS_TEST_NODE_PREFIX").unwrap_or_else(|| "node-".into()),
            forced: forced.is_some(),
        })
    }

    pub fn config(&self, scheduler: &str) -> ClientConfig {
        let mut cfg = ClientConfig::new(
            self.url.clone(),
            TokenSource::Static(self.jwt.clone()),
            scheduler,
        );
        cfg.user = self.user.clone();
        if self.forced {
            cfg.version = Some(self.version);
        }
        cfg
    }

    pub async fn client(&self, scheduler: &str) -> (SlurmClient, Arc<RequestCounters>) {
        let counters = Arc::new(RequestCounters::default());
        let c = SlurmClient::connect_with_observer(self.config(scheduler), counters.clone())
            .await
            .expect("connect to slurmrestd");
        (c, counters)
    }

    /// Node names as the cluster calls them (`node-0`...).
    pub fn node(&self, i: usize) -> String {
        format!("{}{i}", self.node_prefix)
    }

    /// Runs `scripts/slurm-cluster` with this cluster's state dir.
    pub fn script(&self, args: &[&str]) -> String {
        let dir = self
            .state_dir
            .as_deref()
            .expect("SLURM_CLUSTER_STATE_DIR for this test");
        let script = repo_root().join("scripts/slurm-cluster");
        let mut cmd = Command::new("bash");
        cmd.arg(script)
            .arg(args[0])
            .args(["--state-dir", dir])
            .args(&args[1..]);
        let out = cmd.output().expect("run scripts/slurm-cluster");
        assert!(
            out.status.success(),
            "slurm-cluster {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A fresh token for `user`.
    pub fn mint_token(&self, user: &str) -> String {
        self.script(&["token", "--user", user, "--lifespan", "3600"])
    }
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A name and scheduler unique to this test run, so suites can share a cluster.
pub fn unique(prefix: &str) -> String {
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{nanos:x}-{n}", std::process::id())
}

/// A small placeholder job of `scheduler` for pod `sc-test/<name>`.
pub fn small_job(scheduler: &str, name: &str) -> PlaceholderJob {
    let uid = format!("uid-{name}");
    PlaceholderJob {
        name: format!("sc-test/{name}"),
        comment: JobMarker::new(scheduler, uid).to_string(),
        cpus_per_task: 1,
        memory_per_node_mb: 100,
        gres: None,
        partition: None,
        constraint: None,
        account: None,
        qos: None,
        user_id: None,
        group_id: None,
        exclusive: None,
        time_limit: None,
        reservation: None,
        excluded_nodes: Vec::new(),
    }
}

/// Cancels (SIGKILL) every job it was told about when dropped, even after a failed
/// assertion, through `scancel` so that no async runtime is needed.
pub struct Cleanup {
    cluster: Cluster,
    ids: Mutex<Vec<JobId>>,
}

impl Cleanup {
    pub fn new(cluster: &Cluster) -> Self {
        Self {
            cluster: cluster.clone(),
            ids: Mutex::new(Vec::new()),
        }
    }

    pub fn track(&self, id: JobId) -> JobId {
        self.ids.lock().unwrap().push(id);
        id
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let ids = std::mem::take(&mut *self.ids.lock().unwrap());
        if ids.is_empty() || self.cluster.state_dir.is_none() {
            return;
        }
        let dir = self.cluster.state_dir.clone().unwrap();
        for chunk in ids.chunks(500) {
            let list: Vec<String> = chunk.iter().map(ToString::to_string).collect();
            let joined = list.join(",");
            // SIGKILL frees the nodes at once; the plain scancel then ends the jobs.
            for extra in [&["--signal=KILL", "--full"][..], &[][..]] {
                let _ = Command::new("bash")
                    .arg(repo_root().join("scripts/slurm-cluster"))
                    .args(["exec", "--state-dir", &dir, "--", "scancel"])
                    .args(extra)
                    .arg(&joined)
                    .output();
            }
        }
    }
}

/// Polls `get_job` until `done` holds or `deadline` passes; returns the last details.
pub async fn wait_job(
    client: &SlurmClient,
    id: JobId,
    deadline: Duration,
    what: &str,
    done: impl Fn(&JobDetails) -> bool,
) -> JobDetails {
    let start = Instant::now();
    loop {
        let last = client.get_job(id).await;
        if let Ok(j) = &last {
            if done(j) {
                return j.clone();
            }
        }
        if start.elapsed() > deadline {
            panic!("job {id}: not {what} within {deadline:?}; last answer {last:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
