//! The watchers: our pods (by `spec.schedulerName`, all namespaces or a list), nodes, and
//! slurmd pods when the node mapping uses them. They only translate watch events into loop
//! inputs; a dropped or expired watch is resumed or relisted by kube's watcher with backoff.

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::utils::Backoff;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use tokio::sync::mpsc;
use tracing::warn;

use super::core::Input;
use crate::nodes::fit::NodeFacts;

/// Watch our pods in one namespace (or all with `None`), as stream number `stream`.
pub async fn pods(
    client: Client,
    namespace: Option<String>,
    scheduler: String,
    stream: usize,
    tx: mpsc::Sender<Input>,
) {
    let api: Api<Pod> = match &namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let config = watcher::Config::default().fields(&format!("spec.schedulerName={scheduler}"));
    let events = watcher::watcher(api, config).backoff(WatchBackoff::default());
    forward(events, "pods", &tx, |event| match event {
        Event::Init => vec![Input::PodsRelist { stream }],
        Event::InitApply(pod) | Event::Apply(pod) => {
            vec![Input::PodApplied {
                stream,
                pod: Box::new(pod),
            }]
        }
        Event::Delete(pod) => pod
            .metadata
            .uid
            .map(|uid| vec![Input::PodDeleted { uid }])
            .unwrap_or_default(),
        Event::InitDone => vec![Input::PodsListed { stream }],
    })
    .await;
}

/// Watch every node (for the mapping and for the filters Kubernetes would apply).
pub async fn nodes(client: Client, tx: mpsc::Sender<Input>) {
    let api: Api<Node> = Api::all(client);
    let events = watcher::watcher(api, watcher::Config::default()).backoff(WatchBackoff::default());
    forward(events, "nodes", &tx, |event| match event {
        Event::Init => vec![],
        Event::InitApply(node) | Event::Apply(node) => {
            vec![Input::NodeApplied(Box::new(NodeFacts::from_node(&node)))]
        }
        Event::Delete(node) => node
            .metadata
            .name
            .map(|n| vec![Input::NodeDeleted(n)])
            .unwrap_or_default(),
        Event::InitDone => vec![Input::NodesListed],
    })
    .await;
}

/// Watch slurmd pods (`--node-mapping slurmd-pods=SELECTOR`): a pod's Slurm node name is its
/// `spec.hostname`, else its name; it runs on `spec.nodeName`.
pub async fn slurmd_pods(
    client: Client,
    namespace: String,
    selector: String,
    tx: mpsc::Sender<Input>,
) {
    let api: Api<Pod> = Api::namespaced(client, &namespace);
    let events = watcher::watcher(api, watcher::Config::default().labels(&selector))
        .backoff(WatchBackoff::default());
    forward(events, "slurmd pods", &tx, |event| match event {
        Event::InitApply(pod) | Event::Apply(pod) => {
            let key = format!(
                "{}/{}",
                pod.metadata.namespace.clone().unwrap_or_default(),
                pod.metadata.name.clone().unwrap_or_default()
            );
            let spec = pod.spec.as_ref();
            let slurm_name = spec
                .and_then(|s| s.hostname.clone())
                .or_else(|| pod.metadata.name.clone())
                .unwrap_or_default();
            let node = spec.and_then(|s| s.node_name.clone());
            vec![Input::SlurmdPod {
                key,
                slurm_name,
                node,
            }]
        }
        Event::Delete(pod) => {
            let key = format!(
                "{}/{}",
                pod.metadata.namespace.unwrap_or_default(),
                pod.metadata.name.unwrap_or_default()
            );
            vec![Input::SlurmdPodDeleted(key)]
        }
        Event::Init | Event::InitDone => vec![],
    })
    .await;
}

async fn forward<K, S, F>(events: S, what: &'static str, tx: &mpsc::Sender<Input>, mut to_inputs: F)
where
    S: Stream<Item = Result<Event<K>, watcher::Error>>,
    F: FnMut(Event<K>) -> Vec<Input>,
{
    futures::pin_mut!(events);
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => {
                for input in to_inputs(event) {
                    if tx.send(input).await.is_err() {
                        return;
                    }
                }
            }
            // The watcher backs off and retries by itself; an expired version relists.
            Err(e) => warn!(what, error = %e, "watch failed; retrying"),
        }
    }
}

/// Retry a failed watch after 250 ms, doubling up to 5 s: an API server back from an outage
/// is noticed within seconds (kube's default waits up to 30 s).
#[derive(Debug)]
struct WatchBackoff {
    next: std::time::Duration,
}

impl Default for WatchBackoff {
    fn default() -> Self {
        Self {
            next: std::time::Duration::from_millis(250),
        }
    }
}

impl Iterator for WatchBackoff {
    type Item = std::time::Duration;

    fn next(&mut self) -> Option<Self::Item> {
        let now = self.next;
        self.next = (self.next * 2).min(std::time::Duration::from_secs(5));
        Some(now)
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        *self = Self::default();
    }
}
