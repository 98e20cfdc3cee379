//! The scheduler end to end: real Slurm (from `scripts/slurm-cluster`), the Kubernetes API
//! double with the kubelet simulator (or a real cluster, see `tests/support`), and the
//! scheduler running in-process. Each test has its own scheduler name and namespace.
//!
//! The cluster must have a partition `solo` holding only `node-0` (the test runner starts
//! it so), which lets a test fill a node on purpose.

#[macro_use]
mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use support::{block_solo, condition, job_of, node_of, phase, solo_pod, Harness};

/// Tests that fill `node-0` on purpose must not overlap.
static SOLO: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn our_job_named(h: &Harness, pod: &str) -> Option<u32> {
    let name = format!("{}/{pod}", h.ns);
    let snapshot = h.slurm_client.list_our_jobs().await.ok()?;
    snapshot
        .jobs
        .iter()
        .filter(|j| j.name == name && (j.state.is_pending() || j.state.holds_allocation()))
        .map(|j| j.job_id)
        .max()
}

async fn wait_our_job(h: &Harness, pod: &str) -> u32 {
    let deadline = std::time::Instant::now() + support::DEADLINE;
    loop {
        if let Some(id) = our_job_named(h, pod).await {
            return id;
        }
        assert!(std::time::Instant::now() < deadline, "no job for {pod}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn binds_a_pod_where_slurm_allocated_it_and_releases_the_job_when_it_is_deleted() {
    let h = harness!("happy");
    let pod = h.pod(
        "web",
        json!({"metadata": {"annotations": {"sunk.coreweave.com/partition": "hpc-prod"}},
               "spec": {"containers": [{"name": "main", "image": "busybox",
                   "resources": {"requests": {"cpu": "1500m", "memory": "100Mi"}}}]}}),
    );
    let created = h.create(&pod).await;
    let (bound, job) = h.wait_bound("web").await;
    let node = node_of(&bound).unwrap();
    assert!(
        ["node-2", "node-3"].contains(&node.as_str()),
        "hpc-prod is the upper half: {node}"
    );

    let details = h
        .slurm_client
        .get_job(job)
        .await
        .expect("the job as Slurm reports it");
    assert_eq!(details.status.name, format!("{}/web", h.ns));
    assert_eq!(details.partition, "hpc-prod");
    assert_eq!(
        details.status.nodes,
        vec![node.clone()],
        "the pod is where Slurm put the job"
    );
    let uid = created.metadata.uid.unwrap();
    assert_eq!(
        details.comment,
        format!("slurm-pod-scheduler/v1 scheduler={} uid={uid}", h.scheduler)
    );
    if let Some(cpus) = details.cpus {
        assert_eq!(cpus, 2, "1500m rounds up to 2 CPUs");
    }
    assert_eq!(details.memory_per_node_mb, Some(100));

    let scheduled = h.wait_event("web", "Scheduled").await;
    assert!(
        scheduled.contains(&node) && scheduled.contains(&job.to_string()),
        "{scheduled}"
    );
    let running = h
        .wait_pod("web", "running", |p| phase(p) == "Running")
        .await;
    assert_eq!(
        condition(&running, "PodScheduled").map(|c| c.status.as_str()),
        Some("True")
    );
    let reasons: Vec<String> = h.events("web").await.into_iter().map(|(r, _)| r).collect();
    assert!(
        !reasons.iter().any(|r| r == "PlacementChangeIgnored"),
        "{reasons:?}"
    );

    h.delete("web").await;
    h.wait_gone("web").await;
    h.wait_job(job, "release", |j| {
        j.is_none_or(|j| !j.status.state.holds_allocation())
    })
    .await;
    h.finish().await;
}

#[tokio::test]
async fn a_pod_without_a_memory_request_is_rejected_with_a_condition_and_an_event() {
    let h = harness!("invalid");
    let pod = h.pod(
        "nomem",
        json!({"spec": {"containers": [{"name": "main", "image": "busybox",
            "resources": {"requests": {"cpu": "1"}}}]}}),
    );
    h.create(&pod).await;
    let rejected = h
        .wait_pod("nomem", "rejection", |p| {
            condition(p, "PodScheduled").is_some_and(|c| c.status == "False")
        })
        .await;
    let cond = condition(&rejected, "PodScheduled").unwrap();
    assert_eq!(cond.reason.as_deref(), Some("InvalidPod"));
    let message = cond.message.clone().unwrap_or_default();
    assert!(
        message.contains("memory") && message.contains("CPU"),
        "{message}"
    );
    let event = h.wait_event("nomem", "FailedScheduling").await;
    assert_eq!(event, message);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(h.live_jobs().await.is_empty(), "no job for a rejected pod");
    h.finish().await;
}

#[tokio::test]
async fn slurms_refusal_reaches_the_pod_in_slurms_words() {
    let h = harness!("refused");
    let pod = h.pod(
        "nopart",
        json!({"metadata": {"annotations": {"sunk.coreweave.com/partition": "nosuch"}}}),
    );
    h.create(&pod).await;
    let refused = h
        .wait_pod("nopart", "refusal", |p| {
            condition(p, "PodScheduled")
                .is_some_and(|c| c.reason.as_deref() == Some("SlurmRejected"))
        })
        .await;
    let message = condition(&refused, "PodScheduled")
        .unwrap()
        .message
        .clone()
        .unwrap_or_default();
    assert!(message.contains("nosuch"), "names the partition: {message}");
    assert!(h.live_jobs().await.is_empty());
    h.finish().await;
}

#[tokio::test]
async fn a_pod_deleted_while_its_job_waits_gets_the_job_cancelled_and_is_never_bound() {
    let _solo = SOLO.lock().await;
    let h = harness!("waiting");
    let blocker = block_solo(&h);
    h.create(&solo_pod(&h, "queued")).await;
    let job = wait_our_job(&h, "queued").await;
    let waiting = h
        .wait_pod("queued", "a pending condition", |p| {
            condition(p, "PodScheduled")
                .and_then(|c| c.message.clone())
                .is_some_and(|m| m.contains(&format!("Slurm job {job} pending")))
        })
        .await;
    assert!(node_of(&waiting).is_none());

    h.delete("queued").await;
    h.wait_gone("queued").await;
    h.wait_job(job, "cancel", |j| {
        j.is_none_or(|j| !j.status.state.is_pending())
    })
    .await;
    assert!(!h
        .events("queued")
        .await
        .iter()
        .any(|(r, _)| r == "Scheduled"));
    h.slurm.exec(&["scancel", &blocker]);
    h.finish().await;
}

#[tokio::test]
async fn a_terminating_pod_keeps_its_node_until_it_is_gone() {
    let _solo = SOLO.lock().await;
    let h = harness!("terminating");
    let solo = json!({"metadata": {"annotations": {
        "sunk.coreweave.com/partition": "solo", "sunk.coreweave.com/exclusive": "none",
        "kubelet-sim/ignore-sigterm": "true"}},
        "spec": {"terminationGracePeriodSeconds": 4}});
    h.create(&h.pod("first", solo.clone())).await;
    h.wait_bound("first").await;
    h.wait_pod("first", "running", |p| phase(p) == "Running")
        .await;

    h.delete("first").await;
    h.create(&h.pod("second", solo)).await;
    // While the first pod shuts down (it ignores SIGTERM for its 4 s grace), the second
    // must not be bound to the node it still occupies.
    loop {
        let first = h.pods().get_opt("first").await.unwrap();
        let second = h.pods().get("second").await.unwrap();
        if first.is_none() {
            break;
        }
        assert!(
            node_of(&second).is_none(),
            "bound while the first pod still terminates"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    h.wait_bound("second").await;
    h.finish().await;
}

#[tokio::test]
async fn scancel_of_a_running_pods_job_deletes_the_pod_inside_killwait() {
    let h = harness!("scancel");
    h.create(&h.pod("victim", json!({}))).await;
    let (_, job) = h.wait_bound("victim").await;
    h.wait_pod("victim", "running", |p| phase(p) == "Running")
        .await;

    // Watch the pod to see the DisruptionTarget condition before it disappears.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    let watcher = {
        use futures::StreamExt;
        let config = kube::runtime::watcher::Config::default().fields("metadata.name=victim");
        let events = kube::runtime::watcher(h.pods(), config);
        let seen = seen.clone();
        tokio::spawn(async move {
            futures::pin_mut!(events);
            while let Some(event) = events.next().await {
                use kube::runtime::watcher::Event;
                if let Ok(Event::Apply(p) | Event::InitApply(p) | Event::Delete(p)) = event {
                    if let Some(c) = condition(&p, "DisruptionTarget") {
                        *seen.lock().unwrap() = c.reason.clone();
                    }
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ended_at = std::time::Instant::now();
    h.slurm.exec(&["scancel", &job.to_string()]);
    h.wait_gone("victim").await;
    let took = ended_at.elapsed();
    watcher.abort();
    assert!(
        took < h.slurm.kill_wait,
        "deleted after {took:?}, KillWait is {:?}",
        h.slurm.kill_wait
    );
    assert_eq!(seen.lock().unwrap().as_deref(), Some("SlurmJobEnded"));
    let note = h.wait_event("victim", "SlurmJobEnded").await;
    assert!(note.contains(&job.to_string()), "{note}");
    assert!(!h
        .events("victim")
        .await
        .iter()
        .any(|(r, _)| r == "KillWaitOverrun"));
    h.finish().await;
}

async fn bind_by_hand(h: &Harness, pod: &str, node: &str) {
    let binding = json!({"apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": pod}, "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
    let _: serde_json::Value = h
        .pods()
        .create_subresource("binding", pod, &PostParams::default(), &binding)
        .await
        .expect("binding by hand");
}

#[tokio::test]
async fn a_pod_bound_by_someone_else_to_slurms_node_keeps_its_job() {
    let _solo = SOLO.lock().await;
    let h = harness!("samenode");
    let blocker = block_solo(&h);
    h.create(&solo_pod(&h, "taken")).await;
    let job = wait_our_job(&h, "taken").await;
    bind_by_hand(&h, "taken", "node-0").await;
    h.slurm.exec(&["scancel", &blocker]);
    h.wait_job(job, "allocation", |j| {
        j.is_some_and(|j| j.status.state.holds_allocation())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        h.live_jobs().await.contains(&job),
        "the job stays: the pod is on Slurm's node"
    );
    assert!(!h
        .events("taken")
        .await
        .iter()
        .any(|(r, _)| r == "FailedScheduling"));
    h.finish().await;
}

#[tokio::test]
async fn a_pod_bound_by_someone_else_to_another_node_loses_its_job_once() {
    let _solo = SOLO.lock().await;
    let h = harness!("othernode");
    let blocker = block_solo(&h);
    h.create(&solo_pod(&h, "taken")).await;
    let job = wait_our_job(&h, "taken").await;
    bind_by_hand(&h, "taken", "node-1").await;
    h.slurm.exec(&["scancel", &blocker]);
    let note = h.wait_event("taken", "FailedScheduling").await;
    assert!(
        note.contains("node-1") && note.contains(&job.to_string()),
        "{note}"
    );
    h.wait_job(job, "cancel", |j| {
        j.is_none_or(|j| !j.status.state.holds_allocation() && !j.status.state.is_pending())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        our_job_named(&h, "taken").await.is_none(),
        "no new job: no retry loop"
    );
    h.finish().await;
}

#[tokio::test]
async fn a_gpu_pod_gets_its_gres_and_a_whole_gpu_node() {
    let h = harness!("gpu");
    if h.slurm.gpu_nodes.is_empty() {
        eprintln!("SKIPPED: the cluster has no GPU nodes (start it with --gpus)");
        return;
    }
    let pod = h.pod(
        "trainer",
        json!({"spec": {"containers": [{"name": "main", "image": "busybox",
            "resources": {"requests": {"cpu": "1", "memory": "100Mi"},
                          "limits": {"nvidia.com/gpu": "1"}}}]}}),
    );
    h.create(&pod).await;
    let (bound, job) = h.wait_bound("trainer").await;
    let node = node_of(&bound).unwrap();
    assert!(h.slurm.gpu_nodes.contains(&node), "{node} has no GPUs");
    let details = h.slurm_client.get_job(job).await.unwrap();
    assert!(
        details.tres_per_node.contains("gpu:1") || details.tres_alloc.contains("gpu"),
        "{details:?}"
    );
    assert_eq!(details.exclusivity, Some(slurm_client::Exclusivity::None));
    h.finish().await;
}

#[tokio::test]
async fn scheduling_gates_hold_the_submit_until_they_are_removed() {
    let h = harness!("gated");
    h.create(&h.pod(
        "gated",
        json!({"spec": {"schedulingGates": [{"name": "example.com/wait"}]}}),
    ))
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        our_job_named(&h, "gated").await.is_none(),
        "no job while gated"
    );
    h.pods()
        .patch(
            "gated",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"schedulingGates": null}})),
        )
        .await
        .expect("removing the gate");
    h.wait_bound("gated").await;
    h.finish().await;
}

#[tokio::test]
async fn a_pod_the_kubelet_refuses_releases_its_job_with_an_event() {
    let h = harness!("refusal");
    if h.kubelet.is_none() {
        eprintln!("SKIPPED: needs the kubelet simulator");
        return;
    }
    h.create(&h.pod(
        "greedy",
        json!({"metadata": {"annotations": {"kubelet-sim/refuse": "OutOfcpu"}}}),
    ))
    .await;
    let (_, job) = h.wait_bound("greedy").await;
    h.wait_pod("greedy", "failure", |p| phase(p) == "Failed")
        .await;
    let note = h.wait_event("greedy", "KubeletRefused").await;
    assert!(
        note.contains("OutOfcpu") && note.contains("operator guide"),
        "{note}"
    );
    h.wait_job(job, "release", |j| {
        j.is_none_or(|j| !j.status.state.holds_allocation())
    })
    .await;
    h.finish().await;
}

#[tokio::test]
async fn a_pod_that_finishes_releases_its_job() {
    let h = harness!("finishes");
    h.create(&h.pod(
        "short",
        json!({"metadata": {"annotations": {"kubelet-sim/lifetime": "2s"}}}),
    ))
    .await;
    let (_, job) = h.wait_bound("short").await;
    if h.kubelet.is_some() {
        h.wait_pod("short", "success", |p| phase(p) == "Succeeded")
            .await;
        h.wait_job(job, "release", |j| {
            j.is_none_or(|j| !j.status.state.holds_allocation())
        })
        .await;
        let pod: Pod = h.pods().get("short").await.unwrap();
        assert_eq!(
            job_of(&pod),
            Some(job),
            "a finished pod stays, with its job id"
        );
    }
    h.finish().await;
}

#[tokio::test]
async fn a_pod_stuck_terminating_on_a_dead_node_releases_its_job_after_grace_and_margin() {
    let h = harness!("deadnode");
    let Some(kubelet) = h.kubelet.as_ref() else {
        eprintln!("SKIPPED: needs the kubelet simulator");
        return;
    };
    h.create(&h.pod("stuck", json!({}))).await;
    let (bound, job) = h.wait_bound("stuck").await;
    h.wait_pod("stuck", "running", |p| phase(p) == "Running")
        .await;
    let node = node_of(&bound).unwrap();
    kubelet.set_dead(&node, true).await.unwrap();
    h.delete("stuck").await;
    let note = h.wait_event("stuck", "SlurmJobReleased").await;
    assert!(note.contains(&job.to_string()), "{note}");
    h.wait_job(job, "release", |j| {
        j.is_none_or(|j| !j.status.state.holds_allocation())
    })
    .await;
    assert!(
        h.pods().get_opt("stuck").await.unwrap().is_some(),
        "the pod itself stays stuck"
    );
    kubelet.set_dead(&node, false).await.unwrap();
    h.finish().await;
}

#[tokio::test]
async fn a_placement_change_while_pending_replaces_the_job() {
    let _solo = SOLO.lock().await;
    let h = harness!("change");
    let blocker = block_solo(&h);
    h.create(&solo_pod(&h, "mover")).await;
    let first = wait_our_job(&h, "mover").await;
    h.pods()
        .patch(
            "mover",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"sunk.coreweave.com/partition": "batch"}}}),
            ),
        )
        .await
        .unwrap();
    let (_, job) = h.wait_bound("mover").await;
    assert_ne!(job, first, "a new job carries the new partition");
    assert_eq!(
        h.slurm_client.get_job(job).await.unwrap().partition,
        "batch"
    );
    h.wait_job(first, "cancel", |j| {
        j.is_none_or(|j| !j.status.state.is_pending())
    })
    .await;
    h.slurm.exec(&["scancel", &blocker]);
    h.finish().await;
}

async fn set_unschedulable(h: &Harness, node: &str, value: bool) {
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(h.client.clone());
    nodes
        .patch(
            node,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"unschedulable": value}})),
        )
        .await
        .expect("cordoning a node");
}

/// Nodes Kubernetes would refuse (here: cordoned) are excluded from the job where the REST
/// API can say so (v0.0.40+); on v0.0.38 an allocation there is cancelled and replaced.
#[tokio::test]
async fn a_cordoned_node_never_gets_the_pod() {
    let h = harness!("cordon");
    if h.kubelet.is_none() {
        eprintln!("SKIPPED: cordons nodes, which only the API double may suffer");
        return;
    }
    set_unschedulable(&h, "node-2", true).await;
    tokio::time::sleep(Duration::from_millis(500)).await; // let the node watch see it
    let hpc = json!({"metadata": {"annotations": {"sunk.coreweave.com/partition": "hpc-prod"}}});
    h.create(&h.pod("placed", hpc)).await;
    if h.slurm.version == "22.05" {
        // v0.0.38 cannot exclude nodes: the pod must never land on node-2, and an
        // allocation there is replaced with an event.
        never_bound_to(&h, "placed", "node-2").await;
    } else {
        let (bound, job) = h.wait_bound("placed").await;
        assert_eq!(node_of(&bound).as_deref(), Some("node-3"));
        let details = h.slurm_client.get_job(job).await.unwrap();
        assert!(
            details.excluded_nodes.iter().any(|n| n.contains("node-2")),
            "{details:?}"
        );
    }
    set_unschedulable(&h, "node-2", false).await;
    h.finish().await;
}

/// A Slurm node with no Kubernetes node: the allocation is cancelled and the job submitted
/// again without it, with an event.
#[tokio::test]
async fn an_allocation_on_a_node_kubernetes_does_not_have_is_replaced() {
    let h = harness!("unmapped");
    if h.kubelet.is_none() {
        eprintln!("SKIPPED: deletes a Node, which only the API double may suffer");
        return;
    }
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(h.client.clone());
    // Slurm still has node-2 in hpc-prod; Kubernetes no longer does.
    nodes
        .delete("node-2", &Default::default())
        .await
        .expect("deleting node-2");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hpc = json!({"metadata": {"annotations": {"sunk.coreweave.com/partition": "hpc-prod"}}});
    h.create(&h.pod("mapped", hpc)).await;
    if h.slurm.version == "22.05" {
        never_bound_to(&h, "mapped", "node-2").await;
    } else {
        let (bound, _) = h.wait_bound("mapped").await;
        assert_eq!(node_of(&bound).as_deref(), Some("node-3"));
    }
    let events = h.events("mapped").await;
    if let Some((_, note)) = events.iter().find(|(r, _)| r == "FailedScheduling") {
        assert!(
            note.contains("node-2") && note.contains("does not exist"),
            "{note}"
        );
    }
    h.finish().await;
}

/// The binary itself, wired from flags and environment as an operator runs it.
#[tokio::test]
async fn the_binary_places_a_pod_when_run_from_flags_and_environment() {
    let h = harness!("binary");
    let Some(server) = h.kubesim.as_ref() else {
        eprintln!("SKIPPED: writes a kubeconfig for kubesim");
        return;
    };
    let dir = std::env::temp_dir().join(support::unique("sps-binary"));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, &h.slurm.token).unwrap();
    // A second scheduler name, so the harness's in-process scheduler leaves the pod alone.
    let name = support::unique("sps-bin");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_slurm-pod-scheduler"))
        .args([
            "run",
            "--slurm-url",
            &h.slurm.url,
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--slurm-token-file", token.to_str().unwrap()])
        .env("KUBECONFIG", &kubeconfig)
        .env("SPS_SCHEDULER_NAME", &name)
        .env(
            "SPS_SLURM_KILL_WAIT",
            format!("{}s", h.slurm.kill_wait.as_secs()),
        )
        .env("SPS_NAMESPACES", &h.ns)
        .env("SPS_SLURM_USER", &h.slurm.user)
        .kill_on_drop(true)
        .spawn()
        .expect("starting the binary");
    let pod = h.pod("from-binary", json!({"spec": {"schedulerName": name}}));
    h.create(&pod).await;
    let (bound, job) = h.wait_bound("from-binary").await;
    assert!(node_of(&bound).is_some());
    let details = h.slurm_client.get_job(job).await.unwrap();
    assert!(
        details.comment.contains(&format!("scheduler={name}")),
        "{}",
        details.comment
    );
    h.delete("from-binary").await;
    h.wait_gone("from-binary").await;
    h.wait_job(job, "release", |j| {
        j.is_none_or(|j| !j.status.state.holds_allocation())
    })
    .await;
    child.kill().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    h.finish().await;
}

/// For 20 s, or until it is bound elsewhere, the pod is never bound to `node`.
async fn never_bound_to(h: &Harness, pod: &str, node: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        let current = h.pods().get(pod).await.unwrap();
        assert_ne!(
            node_of(&current).as_deref(),
            Some(node),
            "{pod} bound to {node}"
        );
        if node_of(&current).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
