//! A long queue, end to end: many pods whose jobs wait in Slurm at once, to confirm the
//! state-size figure on the running scheduler and to see what such a queue costs it.
//!
//! The pods ask for a partition set `DOWN` for the run, so Slurm accepts every job and keeps
//! it pending (reason `PartitionDown`); the cluster's MaxJobCount is raised to hold them.
//! Measured from the operating system: the scheduler's resident memory before the pods and
//! once every pod waits and its condition is written, and its CPU per second while nothing
//! changes (the polls of a long job list). Then every pod is deleted and every job must be
//! cancelled: any left is a leak.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use futures::{stream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};
use kube::Client;
use slurm_client::SlurmClient;

use super::driver::{holds_resources, pod_manifest};
use super::procstat::{cpu_ms, http_get, metric_sum, metric_with_label, rss_mib};

/// The partition the run takes down (it exists on every benchmark cluster).
const HELD_PARTITION: &str = "hpc-prod";

#[derive(Debug, Clone, Default)]
pub struct Waiting {
    pub pods: usize,
    /// Seconds from the first create until the scheduler tracked every pod as pending.
    pub all_pending_s: f64,
    pub rss_before_mib: f64,
    pub rss_waiting_mib: f64,
    /// `(rss_waiting - rss_before) / pods`.
    pub rss_bytes_per_pod: f64,
    /// CPU per second while every pod waits and nothing changes.
    pub cpu_ms_per_s_waiting: f64,
    /// Seconds from the first delete until Slurm held no live job of this scheduler (or
    /// until the deadline).
    pub drain_s: f64,
    /// Live jobs of this scheduler left after the deletes: leaks.
    pub jobs_left: usize,
}

fn scontrol(slurm_state_dir: &str, args: &[&str]) -> Result<(), String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/slurm-cluster");
    let out = Command::new("bash")
        .arg(script)
        .args(["exec", "--state-dir", slurm_state_dir, "--", "scontrol"])
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The churn's pod, asking for the held partition.
fn pod(ns: &str, i: usize, scheduler: &str) -> Pod {
    let mut pod = pod_manifest(ns, &format!("wait-{i:05}"), scheduler, None);
    pod.metadata
        .annotations
        .get_or_insert_default()
        .insert("sunk.coreweave.com/partition".into(), HELD_PARTITION.into());
    pod
}

fn metrics(addr: SocketAddr) -> String {
    http_get(addr, "/metrics")
        .map(|(_, b)| b)
        .unwrap_or_default()
}

async fn live_jobs(slurm: &SlurmClient) -> Option<usize> {
    let snapshot = slurm.list_our_jobs().await.ok()?;
    Some(snapshot.jobs.iter().filter(|j| holds_resources(j)).count())
}

/// Run the queue against the scheduler process `pid` (scheduler name and namespace both
/// `name`, its `/metrics` at `metrics_addr`); `slurm` names the same scheduler.
pub async fn run(
    client: &Client,
    slurm: &SlurmClient,
    slurm_state_dir: &str,
    name: &str,
    pid: u32,
    metrics_addr: SocketAddr,
    n: usize,
) -> anyhow::Result<Waiting> {
    scontrol(
        slurm_state_dir,
        &[
            "update",
            &format!("PartitionName={HELD_PARTITION}"),
            "State=DOWN",
        ],
    )
    .map_err(anyhow::Error::msg)?;
    let result = queue(client, slurm, name, pid, metrics_addr, n).await;
    let _ = scontrol(
        slurm_state_dir,
        &[
            "update",
            &format!("PartitionName={HELD_PARTITION}"),
            "State=UP",
        ],
    );
    result
}

async fn queue(
    client: &Client,
    slurm: &SlurmClient,
    name: &str,
    pid: u32,
    metrics_addr: SocketAddr,
    n: usize,
) -> anyhow::Result<Waiting> {
    let mut w = Waiting {
        pods: n,
        rss_before_mib: rss_mib(pid).unwrap_or(f64::NAN),
        ..Default::default()
    };
    let api: Api<Pod> = Api::namespaced(client.clone(), name);
    let started = Instant::now();
    let created = stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            let body = pod(name, i, name);
            async move { api.create(&PostParams::default(), &body).await.is_ok() }
        })
        .buffer_unordered(32)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await;
    anyhow::ensure!(created == n, "created only {created} of {n} pods");
    eprintln!(
        "waiting: {n} pods created in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Every pod pending, then every condition written (the scheduler's Kubernetes
    // requests stop growing for a while).
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let m = metrics(metrics_addr);
        let pending = metric_with_label(&m, "slurm_pod_scheduler_tracked_pods", "state", "pending");
        if pending as usize >= n {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {pending} of {n} pods pending after 30 min"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    w.all_pending_s = started.elapsed().as_secs_f64();
    eprintln!("waiting: all {n} pending after {:.1} s", w.all_pending_s);
    let mut last = -1.0;
    loop {
        let requests = metric_sum(
            &metrics(metrics_addr),
            "slurm_pod_scheduler_kube_requests_total",
        );
        if requests == last || Instant::now() > deadline {
            break;
        }
        last = requests;
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    if let Some(live) = live_jobs(slurm).await {
        anyhow::ensure!(live == n, "Slurm holds {live} live jobs of ours, not {n}");
    }

    let quiet = Duration::from_secs(20);
    let cpu0 = cpu_ms(pid).unwrap_or(f64::NAN);
    tokio::time::sleep(quiet).await;
    w.cpu_ms_per_s_waiting = (cpu_ms(pid).unwrap_or(f64::NAN) - cpu0) / quiet.as_secs_f64();
    w.rss_waiting_mib = rss_mib(pid).unwrap_or(f64::NAN);
    w.rss_bytes_per_pod = (w.rss_waiting_mib - w.rss_before_mib) * 1024.0 * 1024.0 / n as f64;

    // Delete every pod: each job must be cancelled.
    let deleted = Instant::now();
    stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let _ = api
                    .delete(&format!("wait-{i:05}"), &DeleteParams::default())
                    .await;
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    let deadline = Instant::now() + Duration::from_secs(900);
    w.jobs_left = usize::MAX;
    while Instant::now() < deadline {
        if let Some(live) = live_jobs(slurm).await {
            w.jobs_left = live;
            if live == 0 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    w.drain_s = deleted.elapsed().as_secs_f64();
    Ok(w)
}
