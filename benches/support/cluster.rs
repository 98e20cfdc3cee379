//! The benchmark's real Slurm cluster: started (or found running) through
//! `scripts/slurm-cluster start` with its own state directory and ports, read back from the
//! `export` lines it prints, and stopped again unless asked to keep it.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

/// Ports and state directory of one benchmark cluster, per Slurm version, chosen away from
/// the defaults, the demo's and the test clusters' (slurmd ports count up from the base, one
/// per node: room for 40 nodes on 22.05, 10 on 24.11, 10 in the smoke runs).
pub struct Layout {
    pub state_dir: String,
    pub rest: u16,
    pub ctld: u16,
    pub slurmd_base: u16,
    pub dbd: u16,
    pub db: u16,
}

impl Layout {
    /// `smoke` gives the smoke run a cluster of its own, so it never disturbs a benchmark.
    pub fn for_version(version: &str, smoke: bool) -> Self {
        let newer = version.starts_with("24");
        let (rest, ctld, slurmd_base, dbd, db) = match (smoke, newer) {
            (false, false) => (5720, 5717, 5730, 5719, 5706),
            (false, true) => (5721, 5727, 5770, 5729, 5707),
            (true, false) => (5722, 5723, 5780, 5724, 5708),
            (true, true) => (5725, 5726, 5790, 5728, 5709),
        };
        let kind = if smoke { "smoke" } else { "bench" };
        Self {
            state_dir: format!("/var/tmp/sps-{kind}-{version}"),
            rest,
            ctld,
            slurmd_base,
            dbd,
            db,
        }
    }
}

/// What the benchmark needs of a running cluster.
#[derive(Debug, Clone)]
pub struct SlurmEnv {
    pub url: String,
    pub token: String,
    pub user: String,
    pub state_dir: String,
    pub version: String,
    pub kill_wait: Duration,
    pub min_job_age: u64,
    pub nodes: Vec<String>,
}

/// The cluster's parameters as the benchmark chooses them.
pub struct ClusterSpec<'a> {
    pub version: Option<&'a str>,
    pub nodes: u32,
    pub cpus: u32,
    pub min_job_age: u64,
    pub max_job_count: u64,
    pub kill_wait: u64,
    pub smoke: bool,
}

fn script() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/slurm-cluster").to_string()
}

/// The host Debian's Slurm: 22.05 on Debian 12, 24.11 on Debian 13.
pub fn host_version() -> String {
    let debian = std::fs::read_to_string("/etc/debian_version").unwrap_or_default();
    if debian.trim_start().starts_with("12") {
        "22.05".into()
    } else {
        "24.11".into()
    }
}

pub fn start(spec: &ClusterSpec) -> Result<SlurmEnv, String> {
    let version = spec
        .version
        .map(str::to_string)
        .unwrap_or_else(host_version);
    let layout = Layout::for_version(&version, spec.smoke);
    let args: Vec<String> = vec![
        "start".into(),
        "--slurm".into(),
        version.clone(),
        "--state-dir".into(),
        layout.state_dir.clone(),
        "--nodes".into(),
        spec.nodes.to_string(),
        "--cpus".into(),
        spec.cpus.to_string(),
        "--min-job-age".into(),
        spec.min_job_age.to_string(),
        "--max-job-count".into(),
        spec.max_job_count.to_string(),
        "--kill-wait".into(),
        spec.kill_wait.to_string(),
        "--rest-port".into(),
        layout.rest.to_string(),
        "--ctld-port".into(),
        layout.ctld.to_string(),
        "--slurmd-port-base".into(),
        layout.slurmd_base.to_string(),
        "--dbd-port".into(),
        layout.dbd.to_string(),
        "--db-port".into(),
        layout.db.to_string(),
    ];
    let out = Command::new("bash")
        .arg(script())
        .args(&args)
        .output()
        .map_err(|e| format!("running scripts/slurm-cluster: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "scripts/slurm-cluster start failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let vars = parse_exports(&String::from_utf8_lossy(&out.stdout));
    let get = |k: &str| {
        vars.get(k)
            .cloned()
            .ok_or_else(|| format!("`start` printed no {k}"))
    };
    let env = SlurmEnv {
        url: get("SLURMRESTD_URL")?,
        token: get("SLURM_JWT")?,
        user: get("SLURM_USER").unwrap_or_else(|_| "root".into()),
        state_dir: get("SLURM_CLUSTER_STATE_DIR")?,
        version: get("SLURM_VERSION").unwrap_or(version),
        kill_wait: Duration::from_secs(get("SLURM_KILL_WAIT")?.parse().unwrap_or(30)),
        min_job_age: get("SLURM_MIN_JOB_AGE")?.parse().unwrap_or(300),
        nodes: get("SLURM_NODES")?.split(',').map(str::to_string).collect(),
    };
    // A cluster found running keeps the settings it was started with: say so rather than
    // measure something other than what was asked.
    if env.min_job_age != spec.min_job_age || env.nodes.len() != spec.nodes as usize {
        return Err(format!(
            "the cluster in {} runs with MinJobAge {} and {} nodes, not {} and {}: stop it \
             (scripts/slurm-cluster stop --state-dir {}) and run again",
            env.state_dir,
            env.min_job_age,
            env.nodes.len(),
            spec.min_job_age,
            spec.nodes,
            env.state_dir
        ));
    }
    Ok(env)
}

pub fn stop(env: &SlurmEnv) {
    let _ = Command::new("bash")
        .arg(script())
        .args(["stop", "--state-dir", &env.state_dir])
        .output();
}

/// `export K=V` lines; values may be single-quoted, commas backslash-escaped.
fn parse_exports(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let v = v
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .unwrap_or(v);
            (k.to_string(), v.replace('\\', ""))
        })
        .collect()
}
