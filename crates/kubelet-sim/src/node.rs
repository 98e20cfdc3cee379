//! Nodes: registration with capacity, the `Ready` condition and the node Lease.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Namespace, Node};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;
use tracing::warn;

use crate::{KubeletConfig, NodeSpec, State};

const LEASE_NAMESPACE: &str = "kube-node-lease";

/// Create the node if it does not exist, then set its status.
pub async fn register(client: &Client, spec: &NodeSpec, ready: bool) -> Result<(), kube::Error> {
    let api: Api<Node> = Api::all(client.clone());
    let mut labels: BTreeMap<String, String> = spec.labels.iter().cloned().collect();
    labels.insert("kubernetes.io/hostname".into(), spec.name.clone());
    labels.insert("kubernetes.io/os".into(), "linux".into());
    let node = Node {
        metadata: ObjectMeta {
            name: Some(spec.name.clone()),
            labels: Some(labels),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(e),
    }
    let mut resources = BTreeMap::from([
        ("cpu".to_string(), Quantity(spec.cpus.to_string())),
        (
            "memory".to_string(),
            Quantity(format!("{}Mi", spec.memory_mib)),
        ),
        ("pods".to_string(), Quantity("110".into())),
    ]);
    if spec.gpus > 0 {
        resources.insert("nvidia.com/gpu".into(), Quantity(spec.gpus.to_string()));
    }
    let patch = json!({
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                          {"type": "Hostname", "address": spec.name}],
            "nodeInfo": {"kubeletVersion": "v1.28.7-sim", "operatingSystem": "linux",
                         "architecture": "amd64", "containerRuntimeVersion": "sim://1",
                         "kernelVersion": "", "kubeProxyVersion": "", "machineID": "",
                         "osImage": "kubelet-sim", "systemUUID": "", "bootID": ""},
        }
    });
    api.patch_status(&spec.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    set_ready(client, &spec.name, ready, true).await
}

/// Set the `Ready` condition (strategic merge keeps other conditions). `transition`:
/// the status changes now, so `lastTransitionTime` moves; a plain heartbeat keeps it, as a
/// kubelet's does.
pub async fn set_ready(
    client: &Client,
    node: &str,
    ready: bool,
    transition: bool,
) -> Result<(), kube::Error> {
    let api: Api<Node> = Api::all(client.clone());
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let (status, reason, message) = if ready {
        (
            "True",
            "KubeletReady",
            "kubelet-sim is posting ready status",
        )
    } else {
        (
            "Unknown",
            "NodeStatusUnknown",
            "Kubelet stopped posting node status.",
        )
    };
    let mut condition = json!({
        "type": "Ready", "status": status, "reason": reason, "message": message,
        "lastHeartbeatTime": now,
    });
    if transition {
        condition["lastTransitionTime"] = json!(now);
    }
    let patch = json!({"status": {"conditions": [condition]}});
    api.patch_status(node, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .map(drop)
}

/// Renew every live node's Ready condition and Lease until the task is aborted.
pub async fn heartbeats(client: Client, config: KubeletConfig, state: Arc<State>) {
    ensure_lease_namespace(&client).await;
    let mut ticker = tokio::time::interval(config.heartbeat);
    loop {
        ticker.tick().await;
        for spec in &config.nodes {
            {
                let _writing = state.node_writes.lock().await;
                if state.is_dead(&spec.name) {
                    continue;
                }
                if let Err(e) = set_ready(&client, &spec.name, true, false).await {
                    warn!(node = %spec.name, error = %e, "node heartbeat failed");
                }
            }
            if let Err(e) = renew_lease(&client, &spec.name, config.heartbeat).await {
                warn!(node = %spec.name, error = %e, "node lease renewal failed");
            }
        }
    }
}

async fn ensure_lease_namespace(client: &Client) {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(LEASE_NAMESPACE.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    // Exists on real clusters; kubesim may need it. Any failure shows up in the renewals.
    let _ = api.create(&PostParams::default(), &ns).await;
}

async fn renew_lease(
    client: &Client,
    node: &str,
    every: std::time::Duration,
) -> Result<(), kube::Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let spec = LeaseSpec {
        holder_identity: Some(node.to_string()),
        lease_duration_seconds: Some((every.as_secs() * 4).max(40) as i32),
        renew_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
        ..Default::default()
    };
    match api.get_opt(node).await? {
        Some(mut lease) => {
            lease.spec = Some(spec);
            api.replace(node, &PostParams::default(), &lease)
                .await
                .map(drop)
        }
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(node.to_string()),
                    ..Default::default()
                },
                spec: Some(spec),
            };
            api.create(&PostParams::default(), &lease).await.map(drop)
        }
    }
}
