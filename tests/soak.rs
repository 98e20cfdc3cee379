//! Soak: pods created, run and deleted in waves while the scheduler's leader is killed and
//! restarted, slurmrestd and slurmctld are restarted, and the leader is replaced. Then:
//! every pod bound exactly once with exactly one job, no job left in Slurm, no pod stuck,
//! no pod deleted by us (its job was never ended under it), and no job cancelled while its
//! pod was still running.
//!
//! `SPS_SOAK_PODS` sets the number of pods (default 60, the CI size; the full soak is 500).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::DeleteParams;
use kube::runtime::watcher::{self, Event};
use serde_json::json;
use slurm_pod_scheduler::leader::LeaseConfig;
use slurm_pod_scheduler::run::Running;
use support::{node_of, phase, wait_for, wait_ready, Harness, DEADLINE};

const WAVES: usize = 5;

fn lease(h: &Harness, id: &str) -> Option<LeaseConfig> {
    let mut l = LeaseConfig::new(h.ns.clone(), h.scheduler.clone(), id.into());
    l.duration = Duration::from_secs(4);
    l.renew_deadline = Duration::from_secs(3);
    l.retry_period = Duration::from_millis(500);
    Some(l)
}

/// What the observers saw, by pod name.
#[derive(Default)]
struct Seen {
    /// Every job id Slurm listed under the pod's job name.
    jobs: BTreeMap<String, BTreeSet<u32>>,
    /// When each job was first seen no longer holding its allocation.
    job_ended: BTreeMap<u32, Instant>,
    /// When each pod was first seen stopped (Succeeded, Failed, terminating or gone).
    pod_ended: BTreeMap<String, Instant>,
    /// Nodes each pod was seen bound to.
    nodes: BTreeMap<String, BTreeSet<String>>,
}

#[tokio::test]
async fn soak_with_restarts_of_everything() {
    let pods: usize = std::env::var("SPS_SOAK_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let Some(mut h) = Harness::start("soak", |_| {}).await else {
        return;
    };
    if h.kubelet.is_none() {
        eprintln!("SKIPPED: the soak needs the kubelet simulator");
        return;
    }
    // Two replicas under leader election replace the harness's single scheduler.
    h.running.stop();
    let mut a: Running = h.replica(|s| s.lease = lease(&h, "replica-a")).await;
    wait_for("replica-a to lead", || async {
        a.metrics.leader.get() == 1
    })
    .await;
    let mut b: Running = h.replica(|s| s.lease = lease(&h, "replica-b")).await;
    wait_ready(&b).await;

    let seen = Arc::new(Mutex::new(Seen::default()));
    let observers = [
        observe_jobs(&h, seen.clone()),
        observe_pods(&h, seen.clone()),
    ];

    let per_wave = pods.div_ceil(WAVES);
    let mut names = Vec::new();
    for wave in 0..WAVES {
        for i in 0..per_wave {
            if names.len() == pods {
                break;
            }
            let name = format!("w{wave}-p{i}");
            let pod = h.pod(
                &name,
                json!({"metadata": {"annotations": {"kubelet-sim/lifetime": "3s"}}}),
            );
            h.create(&pod).await;
            names.push(name);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Delete every third pod of the wave once it runs, the rest finish by themselves.
        let doomed: Vec<String> = names
            .iter()
            .rev()
            .take(per_wave)
            .step_by(3)
            .cloned()
            .collect();
        for name in doomed {
            h.wait_pod(&name, "running", |p| {
                ["Running", "Succeeded"].contains(&phase(p).as_str())
            })
            .await;
            let _ = h.pods().delete(&name, &DeleteParams::default()).await;
        }
        match wave {
            0 => {
                // Kill the leader: the standby takes over; the killed one comes back.
                a.stop();
                a = h.replica(|s| s.lease = lease(&h, "replica-a2")).await;
            }
            1 => restart(&h, "restart-slurmrestd"),
            2 => {
                b.stop();
                b = h.replica(|s| s.lease = lease(&h, "replica-b2")).await;
            }
            3 => restart(&h, "restart-slurmctld"),
            _ => {
                // Replace whichever replica leads now.
                if a.metrics.leader.get() == 1 {
                    a.stop();
                    a = h.replica(|s| s.lease = lease(&h, "replica-a3")).await;
                } else {
                    b.stop();
                    b = h.replica(|s| s.lease = lease(&h, "replica-b3")).await;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    // Every pod ends: finished, or deleted and gone.
    let deadline = Instant::now() + DEADLINE * 2;
    loop {
        let mut open = Vec::new();
        for name in &names {
            if let Some(p) = h.pods().get_opt(name).await.unwrap() {
                let ph = phase(&p);
                if ph != "Succeeded" && ph != "Failed" {
                    open.push(format!("{name} ({ph}, node {:?})", node_of(&p)));
                }
            }
        }
        if open.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "pods stuck: {open:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let deadline = Instant::now() + DEADLINE;
    loop {
        let live = h.live_jobs().await;
        if live.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "jobs left in Slurm: {live:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    for o in &observers {
        o.abort();
    }

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    for name in &names {
        let jobs = seen
            .jobs
            .get(&format!("{}/{name}", h.ns))
            .cloned()
            .unwrap_or_default();
        assert_eq!(jobs.len(), 1, "{name}: jobs {jobs:?}, exactly one expected");
        let nodes = seen.nodes.get(name).cloned().unwrap_or_default();
        assert_eq!(
            nodes.len(),
            1,
            "{name}: bound to {nodes:?}, exactly once expected"
        );
        let job = *jobs.iter().next().unwrap();
        if let (Some(job_end), Some(pod_end)) = (seen.job_ended.get(&job), seen.pod_ended.get(name))
        {
            assert!(
                *job_end + Duration::from_secs(2) >= *pod_end,
                "{name}: job {job} ended {:?} before its pod stopped",
                pod_end.duration_since(*job_end)
            );
        }
    }
    for name in &names {
        let events = h.events(name).await;
        assert!(
            !events
                .iter()
                .any(|(r, _)| r == "SlurmJobEnded" || r == "KillWaitOverrun"),
            "{name} was deleted by the scheduler: {events:?}"
        );
    }
    drop(a);
    drop(b);
    h.running = h.replica(|_| {}).await;
    h.finish().await;
}

fn restart(h: &Harness, what: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/slurm-cluster");
    let status = std::process::Command::new("bash")
        .args([script, what, "--state-dir", &h.slurm.state_dir])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("running scripts/slurm-cluster");
    assert!(status.success(), "{what} failed");
}

/// Poll Slurm's list of our jobs directly (not through the scheduler) every 300 ms.
fn observe_jobs(h: &Harness, seen: Arc<Mutex<Seen>>) -> tokio::task::JoinHandle<()> {
    let scheduler = h.scheduler.clone();
    let slurm = h.slurm.clone();
    tokio::spawn(async move {
        let client = slurm.client(&scheduler).await;
        loop {
            if let Ok(snapshot) = client.list_our_jobs().await {
                let now = Instant::now();
                let mut seen = seen.lock().unwrap();
                for job in snapshot.jobs {
                    seen.jobs
                        .entry(job.name.clone())
                        .or_default()
                        .insert(job.job_id);
                    if !job.state.holds_allocation() && !job.state.is_pending() {
                        seen.job_ended.entry(job.job_id).or_insert(now);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
}

/// Watch the test's pods for bindings and for the moment each stops.
fn observe_pods(h: &Harness, seen: Arc<Mutex<Seen>>) -> tokio::task::JoinHandle<()> {
    let pods = h.pods();
    tokio::spawn(async move {
        let events = watcher::watcher(pods, watcher::Config::default());
        futures::pin_mut!(events);
        while let Some(event) = events.next().await {
            let (pod, gone) = match event {
                Ok(Event::Apply(p) | Event::InitApply(p)) => (p, false),
                Ok(Event::Delete(p)) => (p, true),
                _ => continue,
            };
            let name = pod.metadata.name.clone().unwrap_or_default();
            let now = Instant::now();
            let mut seen = seen.lock().unwrap();
            if let Some(node) = node_of(&pod) {
                seen.nodes.entry(name.clone()).or_default().insert(node);
            }
            let ph = phase(&pod);
            let stopped = gone
                || ph == "Succeeded"
                || ph == "Failed"
                || pod.metadata.deletion_timestamp.is_some();
            if stopped {
                seen.pod_ended.entry(name).or_insert(now);
            }
        }
    })
}
