//! The kubelet simulator against kubesim, observed through `kube::Client` the way the
//! scheduler sees it: nodes and their Lease, pod phases, deletions, a dead node, and a
//! flaky API server (kubesim's fault injection).
//!
//! Every test name contains `kubelet_sim`, so `cargo test -- kubelet_sim` runs exactly
//! these. Waits poll with generous deadlines; nothing asserts speed.

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use kube::Client;
use kubelet_sim::{KubeletConfig, KubeletHandle, NodeSpec};
use kubesim::{Matcher, Server, ServerHandle};
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(60);

struct Env {
    server: ServerHandle,
    client: Client,
    pods: Api<Pod>,
    kubelet: KubeletHandle,
}

async fn start() -> Env {
    let server = Server::start(kubesim::Config::default()).await.unwrap();
    let mut config = server.kube_config().await.unwrap();
    config.default_retry = false;
    let client = Client::try_from(config).unwrap();
    let nodes = vec![
        NodeSpec::new("sim-a"),
        NodeSpec {
            cpus: 4,
            memory_mib: 2048,
            gpus: 2,
            labels: vec![("pool".into(), "gpu".into())],
            ..NodeSpec::new("sim-gpu")
        },
    ];
    let mut kc = KubeletConfig::new(nodes);
    kc.heartbeat = Duration::from_secs(1);
    let kubelet = KubeletHandle::start(client.clone(), kc).await.unwrap();
    let pods = Api::namespaced(client.clone(), "default");
    Env {
        server,
        client,
        pods,
        kubelet,
    }
}

/// Poll `check` until it yields a value, or panic after the deadline.
async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn create_bound(env: &Env, name: &str, node: &str, annotations: serde_json::Value) -> Pod {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"containers": [{"name": "main", "image": "pause"}]}
    }))
    .unwrap();
    env.pods.create(&PostParams::default(), &pod).await.unwrap();
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                         "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
    let _: serde_json::Value = env
        .pods
        .create_subresource("binding", name, &PostParams::default(), &binding)
        .await
        .unwrap();
    env.pods.get(name).await.unwrap()
}

fn phase(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default()
}

async fn wait_phase(env: &Env, name: &str, want: &str) -> Pod {
    wait_for(&format!("{name} {want}"), || async {
        let pod = env.pods.get(name).await.ok()?;
        (phase(&pod) == want).then_some(pod)
    })
    .await
}

async fn wait_gone(env: &Env, name: &str) {
    wait_for(&format!("{name} gone"), || async {
        matches!(env.pods.get_opt(name).await, Ok(None)).then_some(())
    })
    .await
}

fn ready(node: &Node) -> String {
    let conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone())
        .unwrap_or_default()
}

async fn renew_time(client: &Client, node: &str) -> Option<k8s_openapi::jiff::Timestamp> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease = leases.get_opt(node).await.ok()??;
    lease.spec?.renew_time.map(|t| t.0)
}

#[tokio::test]
async fn kubelet_sim_registers_nodes_and_keeps_ready_and_lease_fresh() {
    let env = start().await;
    let nodes: Api<Node> = Api::all(env.client.clone());
    let gpu = nodes.get("sim-gpu").await.unwrap();
    let status = gpu.status.clone().unwrap();
    for map in [status.capacity.unwrap(), status.allocatable.unwrap()] {
        assert_eq!(map["cpu"].0, "4");
        assert_eq!(map["memory"].0, "2048Mi");
        assert_eq!(map["nvidia.com/gpu"].0, "2");
    }
    let labels = gpu.metadata.labels.clone().unwrap();
    assert_eq!(labels["pool"], "gpu");
    assert_eq!(labels["kubernetes.io/hostname"], "sim-gpu");
    assert_eq!(ready(&gpu), "True");
    let plain = nodes.get("sim-a").await.unwrap();
    let capacity = plain.status.unwrap().capacity.unwrap();
    assert_eq!(capacity["cpu"].0, "8");
    assert!(!capacity.contains_key("nvidia.com/gpu"));

    // The Lease appears and is renewed; the Ready heartbeat moves, its transition does not.
    let first = wait_for("a node lease", || renew_time(&env.client, "sim-a")).await;
    wait_for("a renewed lease", || async {
        renew_time(&env.client, "sim-a")
            .await
            .filter(|t| *t > first)
    })
    .await;
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), "kube-node-lease");
    let lease = leases.get("sim-a").await.unwrap().spec.unwrap();
    assert_eq!(lease.holder_identity.as_deref(), Some("sim-a"));
    assert!(lease.lease_duration_seconds.unwrap() >= 40);
    let condition = |n: &Node| {
        let c = n.status.as_ref().unwrap().conditions.as_ref().unwrap();
        let r = c.iter().find(|c| c.type_ == "Ready").unwrap();
        (
            r.last_heartbeat_time.clone().unwrap().0,
            r.last_transition_time.clone().unwrap().0,
        )
    };
    let (beat, transition) = condition(&nodes.get("sim-a").await.unwrap());
    let (later_beat, later_transition) = wait_for("a newer node heartbeat", || async {
        let c = condition(&nodes.get("sim-a").await.ok()?);
        (c.0 > beat).then_some(c)
    })
    .await;
    assert!(later_beat > beat);
    assert_eq!(later_transition, transition);
    env.server.shutdown().await;
}

#[tokio::test]
async fn kubelet_sim_runs_bound_pods_and_finishes_them_after_their_lifetime() {
    let env = start().await;
    create_bound(&env, "forever", "sim-a", json!({})).await;
    create_bound(&env, "ok", "sim-a", json!({"kubelet-sim/lifetime": "1s"})).await;
    create_bound(
        &env,
        "bad",
        "sim-gpu",
        json!({"kubelet-sim/lifetime": "500ms", "kubelet-sim/exit": "failed"}),
    )
    .await;
    create_bound(
        &env,
        "elsewhere",
        "not-ours",
        json!({"kubelet-sim/lifetime": "1s"}),
    )
    .await;

    let running = wait_phase(&env, "forever", "Running").await;
    let status = running.status.unwrap();
    assert!(status.start_time.is_some());
    let containers = status.container_statuses.unwrap();
    assert_eq!(containers[0].name, "main");
    assert!(containers[0].state.as_ref().unwrap().running.is_some());
    let conditions = status.conditions.unwrap();
    assert!(conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True"));

    let ok = wait_phase(&env, "ok", "Succeeded").await;
    let terminated = ok.status.unwrap().container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(
        (terminated.exit_code, terminated.reason.as_deref()),
        (0, Some("Completed"))
    );
    let bad = wait_phase(&env, "bad", "Failed").await;
    let terminated = bad.status.unwrap().container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(terminated.exit_code, 1);

    // A pod on someone else's node is not touched; the one without a lifetime runs on.
    assert_eq!(phase(&env.pods.get("elsewhere").await.unwrap()), "Pending");
    assert_eq!(phase(&env.pods.get("forever").await.unwrap()), "Running");
    env.server.shutdown().await;
}

#[tokio::test]
async fn kubelet_sim_refuses_a_pod_out_of_cpu() {
    let env = start().await;
    create_bound(
        &env,
        "greedy",
        "sim-a",
        json!({"kubelet-sim/refuse": "OutOfcpu", "kubelet-sim/lifetime": "1s"}),
    )
    .await;
    let pod = wait_phase(&env, "greedy", "Failed").await;
    let status = pod.status.unwrap();
    assert_eq!(status.reason.as_deref(), Some("OutOfcpu"));
    assert!(status.message.unwrap().contains("OutOfcpu"));
    assert!(
        status.container_statuses.is_none(),
        "a refused pod never ran"
    );
    // It never ran: no Running write was ever made for it.
    let writes = env
        .server
        .requests()
        .into_iter()
        .filter(|r| {
            r.info.name.as_deref() == Some("greedy")
                && r.info.subresource.as_deref() == Some("status")
        })
        .count();
    assert_eq!(writes, 1);
    env.server.shutdown().await;
}

#[tokio::test]
async fn kubelet_sim_completes_deletions_at_once_or_after_the_grace() {
    let env = start().await;
    create_bound(&env, "polite", "sim-a", json!({})).await;
    create_bound(
        &env,
        "stubborn",
        "sim-a",
        json!({"kubelet-sim/ignore-sigterm": "true"}),
    )
    .await;
    wait_phase(&env, "polite", "Running").await;
    wait_phase(&env, "stubborn", "Running").await;

    env.pods
        .delete("polite", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&env, "polite").await;

    let grace = DeleteParams {
        grace_period_seconds: Some(3),
        ..Default::default()
    };
    env.pods.delete("stubborn", &grace).await.unwrap();
    let terminating = env.pods.get("stubborn").await.unwrap();
    let deadline = terminating.metadata.deletion_timestamp.unwrap().0;
    wait_gone(&env, "stubborn").await;
    // It went only once its grace had run out: the kubelet's delete (the second) came
    // at or after the deletionTimestamp.
    let deletes: Vec<_> = env
        .server
        .requests()
        .into_iter()
        .filter(|r| r.info.verb == "delete" && r.info.name.as_deref() == Some("stubborn"))
        .map(|r| (r.time, r.status))
        .collect();
    assert_eq!(
        deletes.len(),
        2,
        "the client's delete and the kubelet's: {deletes:?}"
    );
    assert!(
        deletes[1].0 >= std::time::SystemTime::from(deadline),
        "the kubelet's delete came before the grace ran out ({deadline}): {deletes:?}"
    );
    env.server.shutdown().await;
}

#[tokio::test]
async fn kubelet_sim_plays_a_dead_node_on_demand() {
    let env = start().await;
    let nodes: Api<Node> = Api::all(env.client.clone());
    create_bound(&env, "victim", "sim-a", json!({})).await;
    wait_phase(&env, "victim", "Running").await;
    wait_for("a node lease", || renew_time(&env.client, "sim-a")).await;

    env.kubelet.set_dead("sim-a", true).await.unwrap();
    assert_eq!(ready(&nodes.get("sim-a").await.unwrap()), "Unknown");
    let lease_then = renew_time(&env.client, "sim-a").await;
    env.pods
        .delete("victim", &DeleteParams::default())
        .await
        .unwrap();
    create_bound(&env, "newcomer", "sim-a", json!({})).await;
    // Several heartbeats later: still Unknown, the Lease stale, the deletion pending, the
    // newcomer not started.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(ready(&nodes.get("sim-a").await.unwrap()), "Unknown");
    assert_eq!(renew_time(&env.client, "sim-a").await, lease_then);
    let victim = env.pods.get("victim").await.unwrap();
    assert!(victim.metadata.deletion_timestamp.is_some());
    assert_eq!(phase(&env.pods.get("newcomer").await.unwrap()), "Pending");
    // The other node lives on.
    assert_eq!(ready(&nodes.get("sim-gpu").await.unwrap()), "True");

    env.kubelet.set_dead("sim-a", false).await.unwrap();
    assert_eq!(ready(&nodes.get("sim-a").await.unwrap()), "True");
    wait_gone(&env, "victim").await;
    wait_phase(&env, "newcomer", "Running").await;
    wait_for("a renewed lease", || async {
        renew_time(&env.client, "sim-a")
            .await
            .filter(|t| Some(*t) > lease_then)
    })
    .await;
    env.server.shutdown().await;
}

#[tokio::test]
async fn kubelet_sim_rides_out_a_flaky_api_server() {
    let env = start().await;
    // Status writes fail for a while, the watch is cut and its next attempt expires.
    env.server
        .fail_next(
            Matcher::any()
                .verb("patch")
                .resource("pods")
                .subresource("status"),
            3,
            500,
        )
        .unwrap();
    env.server.throttle_next(
        Matcher::any().verb("delete").resource("pods"),
        2,
        Duration::from_secs(1),
    );
    env.server.expire_next_watch(kubesim::Resource::Pods);
    env.server.end_watches();
    create_bound(
        &env,
        "survivor",
        "sim-a",
        json!({"kubelet-sim/lifetime": "1s"}),
    )
    .await;
    wait_phase(&env, "survivor", "Succeeded").await;
    let failed = env
        .server
        .requests()
        .iter()
        .filter(|r| r.status == 500)
        .count();
    assert_eq!(failed, 3, "the injected failures were met");

    create_bound(&env, "doomed", "sim-a", json!({})).await;
    wait_phase(&env, "doomed", "Running").await;
    env.server.refuse_connections(Duration::from_secs(2));
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Our own client retries too: the server refuses for a moment. An eviction, so that
    // the only deletes (and so the throttled ones) are the kubelet's.
    wait_for("the eviction accepted", || async {
        env.pods
            .evict("doomed", &Default::default())
            .await
            .ok()
            .map(drop)
    })
    .await;
    wait_gone(&env, "doomed").await;
    let deletes: Vec<u16> = env
        .server
        .requests()
        .iter()
        .filter(|r| r.info.verb == "delete" && r.info.name.as_deref() == Some("doomed"))
        .map(|r| r.status)
        .collect();
    assert_eq!(deletes, [429, 429, 200]);
    env.server.shutdown().await;
}
