//! A kubelet simulator: an ordinary Kubernetes API client (so it works against `kubesim` and a
//! real API server alike) that plays the kubelets of a set of nodes.
//!
//! - registers its nodes with capacity and allocatable, and keeps their `Ready` condition
//!   and node Lease fresh;
//! - marks pods bound to its nodes `Running`, and finishes them after the lifetime in the
//!   [`LIFETIME`] annotation (`Succeeded`, or `Failed` with [`EXIT`] = `failed`), or refuses
//!   them at admission like a kubelet short of capacity ([`REFUSE`] = `OutOfcpu`);
//! - completes deletions after a simulated shutdown: at once, or only when the grace period
//!   has passed for pods annotated [`IGNORE_SIGTERM`];
//! - plays a dead node on demand ([`KubeletHandle::set_dead`]): `Ready` turns `Unknown`,
//!   heartbeats stop and deletions on it never complete; pods bound to it wait until it
//!   comes back.
//!
//! Every write is retried while the failure is the server's (5xx, 429, connection), so a
//! flaky API server delays the simulated kubelet but does not make it forget a pod.
//! Dropping the [`KubeletHandle`] stops every task it started.

mod node;
mod pods;
mod retry;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Client;
use tokio::task::JoinHandle;

/// How long a pod runs before it finishes, e.g. `5s`, `500ms`, `2m` (absent: forever).
pub const LIFETIME: &str = "kubelet-sim/lifetime";
/// How a finished pod ends: `succeeded` (default) or `failed`.
pub const EXIT: &str = "kubelet-sim/exit";
/// Refuse the pod at admission with this reason (`OutOfcpu`, `OutOfmemory`): it fails
/// without running, as a kubelet does when capacity is used outside the scheduler's view.
pub const REFUSE: &str = "kubelet-sim/refuse";
/// `"true"`: the containers ignore SIGTERM, so a deletion completes only after the grace
/// period.
pub const IGNORE_SIGTERM: &str = "kubelet-sim/ignore-sigterm";

/// One simulated node.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Node name (also its `kubernetes.io/hostname` label and Lease name).
    pub name: String,
    /// `cpu` capacity and allocatable.
    pub cpus: u32,
    /// `memory` capacity and allocatable, in MiB.
    pub memory_mib: u64,
    /// `nvidia.com/gpu` capacity and allocatable (0: none advertised).
    pub gpus: u32,
    /// Extra node labels.
    pub labels: Vec<(String, String)>,
}

impl NodeSpec {
    /// A node with 8 CPUs, 16 000 MiB and no GPUs.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            cpus: 8,
            memory_mib: 16_000,
            gpus: 0,
            labels: Vec::new(),
        }
    }
}

/// What the simulator plays.
#[derive(Debug, Clone)]
pub struct KubeletConfig {
    /// The nodes.
    pub nodes: Vec<NodeSpec>,
    /// How often node status and leases are renewed.
    pub heartbeat: Duration,
}

impl KubeletConfig {
    /// These nodes, heartbeat every 10 s (as a kubelet renews its Lease).
    pub fn new(nodes: Vec<NodeSpec>) -> Self {
        Self {
            nodes,
            heartbeat: Duration::from_secs(10),
        }
    }
}

/// Shared between the simulator's tasks.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub dead: Mutex<HashSet<String>>,
    /// Set when the handle is dropped: per-pod tasks check it after every wait.
    pub stopped: AtomicBool,
    /// Wakes per-pod tasks waiting for a node to come back.
    pub revived: tokio::sync::Notify,
    /// Held while a node's Ready condition is written, so a heartbeat that checked "alive"
    /// just before `set_dead` cannot land after it and turn the node Ready again.
    pub node_writes: tokio::sync::Mutex<()>,
}

impl State {
    pub fn is_dead(&self, node: &str) -> bool {
        self.dead
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(node)
    }

    pub fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }
}

/// A running simulator; dropping it stops it.
pub struct KubeletHandle {
    state: Arc<State>,
    client: Client,
    config: KubeletConfig,
    tasks: Vec<JoinHandle<()>>,
}

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A node could not be registered (after retries, for server-side failures).
    #[error("registering node {node}: {source}")]
    Register {
        node: String,
        #[source]
        source: kube::Error,
    },
}

impl KubeletHandle {
    /// Register the nodes (Ready), then run heartbeats and the pod loop in the background.
    pub async fn start(client: Client, config: KubeletConfig) -> Result<Self, Error> {
        let state = Arc::new(State::default());
        for spec in &config.nodes {
            retry::until_done(&state, "register node", || {
                node::register(&client, spec, true)
            })
            .await
            .map_err(|source| Error::Register {
                node: spec.name.clone(),
                source,
            })?;
        }
        let tasks = vec![
            tokio::spawn(node::heartbeats(
                client.clone(),
                config.clone(),
                state.clone(),
            )),
            tokio::spawn(pods::run(client.clone(), config.clone(), state.clone())),
        ];
        Ok(Self {
            state,
            client,
            config,
            tasks,
        })
    }

    /// Play a dead node (`true`: Ready turns Unknown, deletions on it never complete) or
    /// bring it back.
    pub async fn set_dead(&self, node: &str, dead: bool) -> Result<(), kube::Error> {
        let _writing = self.state.node_writes.lock().await;
        {
            let mut set = self.state.dead.lock().unwrap_or_else(|p| p.into_inner());
            if dead {
                set.insert(node.to_string());
            } else {
                set.remove(node);
            }
        }
        if let Some(spec) = self.config.nodes.iter().find(|n| n.name == node) {
            retry::until_done(&self.state, "set node readiness", || {
                node::set_ready(&self.client, &spec.name, !dead, true)
            })
            .await?;
        }
        if !dead {
            self.state.revived.notify_waiters();
        }
        Ok(())
    }

    /// The simulated nodes.
    pub fn nodes(&self) -> &[NodeSpec] {
        &self.config.nodes
    }
}

impl Drop for KubeletHandle {
    fn drop(&mut self) {
        self.state.stopped.store(true, Ordering::Relaxed);
        self.state.revived.notify_waiters();
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Parse `5s`, `500ms`, `2m`, `1h` or bare seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let value: f64 = number.parse().ok()?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return None,
    };
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let cases = [
            ("5", Some(5000)),
            ("5s", Some(5000)),
            ("500ms", Some(500)),
            ("2m", Some(120_000)),
            ("0.5s", Some(500)),
            ("1h", Some(3_600_000)),
            ("5x", None),
            ("", None),
            ("-1s", None),
        ];
        for (text, want) in cases {
            let got = parse_duration(text).map(|d| d.as_millis() as u64);
            assert_eq!(got, want, "{text}");
        }
    }
}
