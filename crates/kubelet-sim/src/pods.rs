//! Pods on the simulated nodes: start them, finish them after their lifetime, refuse them
//! when annotated so, and complete their deletions.

use std::collections::{HashMap, HashSet};
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

use crate::{parse_duration, KubeletConfig, State, EXIT, IGNORE_SIGTERM, LIFETIME, REFUSE};

/// What the simulator has already set in motion for a pod.
#[derive(Default)]
struct Seen {
    started: HashSet<String>,
    deleting: HashSet<String>,
}

pub async fn run(client: Client, config: KubeletConfig, state: Arc<State>) {
    let ours: HashSet<String> = config.nodes.iter().map(|n| n.name.clone()).collect();
    let api: Api<Pod> = Api::all(client.clone());
    let events = watcher::watcher(api, watcher::Config::default().fields("spec.nodeName!="))
        .default_backoff();
    futures::pin_mut!(events);
    let mut seen = Seen::default();
    let mut uids_by_name: HashMap<String, String> = HashMap::new();
    while let Some(event) = events.next().await {
        let pod = match event {
            Ok(Event::Apply(pod) | Event::InitApply(pod)) => pod,
            Ok(Event::Delete(pod)) => {
                if let Some(uid) = pod.metadata.uid {
                    seen.started.remove(&uid);
                    seen.deleting.remove(&uid);
                }
                continue;
            }
            Ok(Event::Init | Event::InitDone) => continue,
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
        let Some(uid) = pod.metadata.uid.clone() else { continue };
        let key = format!(
            "{}/{}",
            pod.metadata.namespace.clone().unwrap_or_default(),
            pod.metadata.name.clone().unwrap_or_default()
        );
        uids_by_name.insert(key, uid.clone());
        let phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
        let finished = phase == "Succeeded" || phase == "Failed";

        if pod.metadata.deletion_timestamp.is_some() {
            if seen.deleting.insert(uid.clone()) {
                tokio::spawn(complete_deletion(client.clone(), pod, node, state.clone()));
            }
            continue;
        }
        if !finished && seen.started.insert(uid) && !state.is_dead(&node) {
            tokio::spawn(start(client.clone(), pod, state.clone(), node));
        }
    }
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata.annotations.as_ref()?.get(key).map(String::as_str)
}

fn api_for(client: &Client, pod: &Pod) -> (Api<Pod>, String) {
    let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    (Api::namespaced(client.clone(), &ns), pod.metadata.name.clone().unwrap_or_default())
}

/// Admit and run a pod, then finish it after its lifetime.
async fn start(client: Client, pod: Pod, state: Arc<State>, node: String) {
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
        patch_status(&api, &name, &patch).await;
        return;
    }

    let statuses: Vec<_> = containers
        .iter()
        .map(|c| json!({"name": c, "ready": true, "restartCount": 0, "image": "sim", "imageID": "",
                        "started": true, "state": {"running": {"startedAt": now}}}))
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
    patch_status(&api, &name, &running).await;

    let Some(lifetime) = annotation(&pod, LIFETIME).and_then(parse_duration) else {
        return;
    };
    tokio::time::sleep(lifetime).await;
    if state.is_dead(&node) {
        return;
    }
    // Finish only a pod that is still this one and still running.
    match api.get_opt(&name).await {
        Ok(Some(current))
            if current.metadata.uid.as_deref() == Some(uid.as_str())
                && current.metadata.deletion_timestamp.is_none() => {}
        _ => return,
    }
    let failed = annotation(&pod, EXIT) == Some("failed");
    let (phase, code) = if failed { ("Failed", 1) } else { ("Succeeded", 0) };
    let end = k8s_openapi::jiff::Timestamp::now().to_string();
    let statuses: Vec<_> = containers
        .iter()
        .map(|c| json!({"name": c, "ready": false, "restartCount": 0, "image": "sim", "imageID": "",
                        "started": false, "state": {"terminated": {"exitCode": code,
                        "reason": if failed { "Error" } else { "Completed" }, "finishedAt": end}}}))
        .collect();
    let done = json!({"metadata": {"uid": uid}, "status": {
        "phase": phase,
        "conditions": [
            {"type": "ContainersReady", "status": "False", "lastTransitionTime": end},
            {"type": "Ready", "status": "False", "lastTransitionTime": end},
        ],
        "containerStatuses": statuses,
    }});
    patch_status(&api, &name, &done).await;
}

/// A deletion completes after the containers stop: at once, or after the grace period
/// when they ignore SIGTERM; never on a dead node. Then the pod object is removed with a
/// grace-0 delete, as a kubelet does.
async fn complete_deletion(client: Client, pod: Pod, node: String, state: Arc<State>) {
    let (api, name) = api_for(&client, &pod);
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
    let running = phase != "Succeeded" && phase != "Failed";
    if running && annotation(&pod, IGNORE_SIGTERM) == Some("true") {
        let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(30).max(0) as u64;
        tokio::time::sleep(Duration::from_secs(grace)).await;
    }
    loop {
        if state.is_dead(&node) {
            // A dead node's kubelet never confirms; check again later in case it revives.
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions { uid: Some(uid.clone()), resource_version: None }),
            ..Default::default()
        };
        match api.delete(&name, &params).await {
            Ok(_) => return,
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => return,
            Err(e) => {
                warn!(pod = %name, error = %e, "completing a deletion failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

async fn patch_status(api: &Api<Pod>, name: &str, patch: &serde_json::Value) {
    if let Err(e) = api
        .patch_status(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
    {
        debug!(pod = %name, error = %e, "status update failed (the pod may be gone)");
    }
}
