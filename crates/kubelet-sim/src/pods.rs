//! Pods on the simulated nodes: start them, finish them after their lifetime, refuse them
//! when annotated so, and complete their deletions. One watch over every bound pod feeds
//! the loop; each pod's work runs in a task of its own.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Client;
use serde_json::json;
use tracing::{debug, warn};

use crate::{parse_duration, retry, KubeletConfig, State, EXIT, IGNORE_SIGTERM, LIFETIME, REFUSE};

/// What the simulator has already set in motion for a pod, by UID.
#[derive(Default)]
struct Seen {
    started: HashSet<String>,
    deleting: HashSet<String>,
}

impl Seen {
    fn forget(&mut self, uid: &str) {
        self.started.remove(uid);
        self.deleting.remove(uid);
    }
}

/// Watch the pods bound to any node and act on those bound to ours, until aborted.
pub async fn run(client: Client, config: KubeletConfig, state: Arc<State>) {
    let ours: HashSet<String> = config.nodes.iter().map(|n| n.name.clone()).collect();
    let api: Api<Pod> = Api::all(client.clone());
    let events = watcher::watcher(api, watcher::Config::default().fields("spec.nodeName!="))
        .default_backoff();
    futures::pin_mut!(events);
    let mut seen = Seen::default();
    // UIDs listed by the current re-list; at its end, pods deleted while the watch was
    // down are forgotten (the watcher reports no Delete for them).
    let mut listed: Option<HashSet<String>> = None;
    while let Some(event) = events.next().await {
        let pod = match event {
            Ok(Event::Apply(pod)) => pod,
            Ok(Event::InitApply(pod)) => {
                if let (Some(set), Some(uid)) = (listed.as_mut(), pod.metadata.uid.as_ref()) {
                    set.insert(uid.clone());
                }
                pod
            }
            Ok(Event::Delete(pod)) => {
                if let Some(uid) = pod.metadata.uid {
                    seen.forget(&uid);
                }
                continue;
            }
            Ok(Event::Init) => {
                listed = Some(HashSet::new());
                continue;
            }
            Ok(Event::InitDone) => {
                if let Some(set) = listed.take() {
                    seen.started.retain(|uid| set.contains(uid));
                    seen.deleting.retain(|uid| set.contains(uid));
                }
                continue;
            }
            Err(e) => {
                warn!(error = %e, "pod watch failed; retrying");
                continue;
            }
        };
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            continue;
        };
        if !ours.contains(&node) {
            continue;
        }
        let Some(uid) = pod.metadata.uid.clone() else {
            continue;
        };
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        let finished = phase == "Succeeded" || phase == "Failed";

        if pod.metadata.deletion_timestamp.is_some() {
            if seen.deleting.insert(uid) {
                tokio::spawn(complete_deletion(client.clone(), pod, node, state.clone()));
            }
            continue;
        }
        // A pod on a dead node is started too: its task waits for the node to come back.
        if !finished && seen.started.insert(uid) {
            tokio::spawn(start(client.clone(), pod, state.clone(), node));
        }
    }
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

fn api_for(client: &Client, pod: &Pod) -> (Api<Pod>, String) {
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    (
        Api::namespaced(client.clone(), &ns),
        pod.metadata.name.clone().unwrap_or_default(),
    )
}

/// Wait until `node` is alive; false when the simulator stopped meanwhile.
async fn wait_alive(state: &State, node: &str) -> bool {
    loop {
        if state.stopped() {
            return false;
        }
        let revived = state.revived.notified();
        if !state.is_dead(node) {
            return true;
        }
        // The timeout covers a revival between the check and the wait.
        let _ = tokio::time::timeout(Duration::from_secs(1), revived).await;
    }
}

/// Milliseconds from now until `t` (negative when past).
fn millis_until(t: &k8s_openapi::jiff::Timestamp) -> i64 {
    t.as_millisecond() - k8s_openapi::jiff::Timestamp::now().as_millisecond()
}

/// Admit and run a pod, then finish it after its lifetime.
async fn start(client: Client, pod: Pod, state: Arc<State>, node: String) {
    if !wait_alive(&state, &node).await {
        return;
    }
    let (api, name) = api_for(&client, &pod);
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let containers: Vec<String> = pod
        .spec
        .as_ref()
        .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default();

    if let Some(reason) = annotation(&pod, REFUSE) {
        let message = format!("Pod was rejected: Node didn't have enough resource: {reason}");
        let patch = json!({"metadata": {"uid": uid}, "status": {
            "phase": "Failed", "reason": reason, "message": message, "startTime": now,
        }});
        patch_status(&state, &api, &name, &patch).await;
        debug!(pod = %name, %node, reason, "pod refused");
        return;
    }

    // Already running (the simulator restarted): keep its start time, so the lifetime
    // counts from when it really started.
    let status = pod.status.as_ref();
    let started_at = status
        .filter(|s| s.phase.as_deref() == Some("Running"))
        .and_then(|s| s.start_time.as_ref())
        .map(|t| t.0);
    if started_at.is_none() {
        let statuses: Vec<_> = containers
            .iter()
            .map(|c| {
                json!({"name": c, "ready": true, "restartCount": 0, "image": "sim", "imageID": "",
                            "started": true, "state": {"running": {"startedAt": now}}})
            })
            .collect();
        let running = json!({"metadata": {"uid": uid}, "status": {
            "phase": "Running", "startTime": now, "hostIP": "127.0.0.1", "podIP": "127.0.0.1",
            "conditions": [
                {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
                {"type": "Ready", "status": "True", "lastTransitionTime": now},
            ],
            "containerStatuses": statuses,
        }});
        if !patch_status(&state, &api, &name, &running).await {
            return;
        }
        debug!(pod = %name, %node, "pod running");
    }

    let Some(lifetime) = annotation(&pod, LIFETIME).and_then(parse_duration) else {
        return;
    };
    let ran_ms = started_at.map_or(0, |t| -millis_until(&t)).max(0) as u64;
    tokio::time::sleep(lifetime.saturating_sub(Duration::from_millis(ran_ms))).await;
    // A dead node's containers may end, but nobody reports it until the node is back.
    if !wait_alive(&state, &node).await {
        return;
    }
    // Finish only a pod that is still this one and still running.
    let current = retry::until_done(&state, "read pod", || api.get_opt(&name)).await;
    match current {
        Ok(Some(current))
            if current.metadata.uid.as_deref() == Some(uid.as_str())
                && current.metadata.deletion_timestamp.is_none() => {}
        _ => return,
    }
    let failed = annotation(&pod, EXIT) == Some("failed");
    let (phase, code) = if failed {
        ("Failed", 1)
    } else {
        ("Succeeded", 0)
    };
    let end = k8s_openapi::jiff::Timestamp::now().to_string();
    let statuses: Vec<_> = containers
        .iter()
        .map(|c| {
            json!({"name": c, "ready": false, "restartCount": 0, "image": "sim", "imageID": "",
                        "started": false, "state": {"terminated": {"exitCode": code,
                        "reason": if failed { "Error" } else { "Completed" }, "finishedAt": end}}})
        })
        .collect();
    let done = json!({"metadata": {"uid": uid}, "status": {
        "phase": phase,
        "conditions": [
            {"type": "ContainersReady", "status": "False", "lastTransitionTime": end},
            {"type": "Ready", "status": "False", "lastTransitionTime": end},
        ],
        "containerStatuses": statuses,
    }});
    if patch_status(&state, &api, &name, &done).await {
        debug!(pod = %name, %node, phase, "pod finished");
    }
}

/// A deletion completes after the containers stop: at once, or when the deletion's grace
/// period has run out for pods annotated to ignore SIGTERM (a later, shorter grace counts);
/// never while the node is dead. Then the pod object is removed with a grace-0 delete
/// carrying its UID, as a kubelet does.
async fn complete_deletion(client: Client, pod: Pod, node: String, state: Arc<State>) {
    let (api, name) = api_for(&client, &pod);
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    let running = phase != "Succeeded" && phase != "Failed";
    if running && annotation(&pod, IGNORE_SIGTERM) == Some("true") {
        // The API server sets deletionTimestamp to the moment the grace runs out, and moves
        // it earlier when a shorter grace comes; read it again while waiting.
        loop {
            if state.stopped() {
                return;
            }
            let current = match retry::until_done(&state, "read pod", || api.get_opt(&name)).await {
                Ok(Some(p)) if p.metadata.uid.as_deref() == Some(uid.as_str()) => p,
                Ok(_) => return,
                Err(e) => {
                    warn!(pod = %name, error = %e, "reading a terminating pod failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let Some(deadline) = current.metadata.deletion_timestamp else {
                return;
            };
            let left = millis_until(&deadline.0);
            if left <= 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(left.min(1000) as u64)).await;
        }
    }
    // A dead node's kubelet never confirms; should the node come back, it does then.
    if !wait_alive(&state, &node).await {
        return;
    }
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(uid.clone()),
            resource_version: None,
        }),
        ..Default::default()
    };
    match retry::until_done(&state, "complete deletion", || api.delete(&name, &params)).await {
        Ok(_) => debug!(pod = %name, %node, "deletion completed"),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
        Err(e) => warn!(pod = %name, error = %e, "completing a deletion failed"),
    }
}

/// Write a pod's status (the UID in the patch makes it a precondition); false when it
/// failed for good (the pod is gone or was replaced) or after retries.
async fn patch_status(
    state: &State,
    api: &Api<Pod>,
    name: &str,
    patch: &serde_json::Value,
) -> bool {
    let params = PatchParams::default();
    let patch = Patch::Strategic(patch);
    let result = retry::until_done(state, "pod status", || {
        api.patch_status(name, &params, &patch)
    })
    .await;
    match result {
        Ok(_) => true,
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {
            debug!(pod = %name, code = s.code, "status update refused (the pod is gone or replaced)");
            false
        }
        Err(e) => {
            warn!(pod = %name, error = %e, "status update failed");
            false
        }
    }
}
