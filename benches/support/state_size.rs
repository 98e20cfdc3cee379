//! Scale of state: the heap bytes the scheduler keeps per tracked pod, measured with a
//! counting global allocator around the scheduler's real scheduling loop
//! (`run::state_probe::LoopState`: the loop itself, fed pods and a job list as the watchers
//! and the poller feed it, with an executor that discards its requests).

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicIsize, Ordering};

use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use slurm_client::{BaseState, JobMarker, JobState, JobStatus};
use slurm_pod_scheduler::run::project::project;
use slurm_pod_scheduler::run::state_probe::LoopState;
use slurm_pod_scheduler::translate::TranslateContext;

/// Bytes currently allocated through the global allocator (requested sizes: malloc's own
/// rounding and headers are not included).
static LIVE: AtomicIsize = AtomicIsize::new(0);

pub struct Counting;

// SAFETY: every call is forwarded unchanged to the system allocator; only a counter is kept.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        System.realloc(ptr, layout, new_size)
    }
}

pub fn live_bytes() -> isize {
    LIVE.load(Ordering::Relaxed)
}

#[derive(Debug, Clone)]
pub struct StateSize {
    pub pods: usize,
    /// Pods whose job waits in Slurm (pending, reason `Priority`): the loop's whole state
    /// per pod, job bookkeeping included.
    pub waiting_bytes_per_pod: f64,
    /// Pods rejected before any job (a malformed annotation).
    pub rejected_bytes_per_pod: f64,
    /// Where part of it goes, per waiting pod.
    pub breakdown: Vec<(&'static str, f64)>,
}

const SCHEDULER: &str = "sps-bench";

fn synthetic_pod(i: usize, annotations: serde_json::Value) -> Pod {
    let uid = format!("{:08x}-0000-4000-8000-{:012x}", i as u32, i as u64 * 7919);
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": format!("worker-{i:06}"), "namespace": "team-a", "uid": uid,
            "resourceVersion": (1_000 + i).to_string(),
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {"app": "notebook", "tier": "cpu"},
            "annotations": annotations,
        },
        "spec": {
            "schedulerName": SCHEDULER,
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": "busybox:1.36",
                "command": ["sleep", "3600"],
                "resources": {"requests": {"cpu": "2", "memory": "512Mi"}}}],
        },
        "status": {"phase": "Pending"},
    }))
    .expect("a valid synthetic pod")
}

/// The pending job Slurm would list for pod `i`.
fn pending_job(i: usize, pod: &Pod) -> JobStatus {
    let meta = &pod.metadata;
    let uid = meta.uid.clone().unwrap_or_default();
    JobStatus {
        job_id: 1_000 + i as u32,
        name: format!(
            "{}/{}",
            meta.namespace.as_deref().unwrap_or_default(),
            meta.name.as_deref().unwrap_or_default()
        ),
        marker: Some(JobMarker::new(SCHEDULER, uid)),
        state: JobState {
            base: BaseState::Pending,
            flags: BTreeSet::new(),
        },
        reason: Some("Priority".into()),
        nodes: Vec::new(),
    }
}

fn context() -> TranslateContext {
    TranslateContext {
        scheduler_name: SCHEDULER.into(),
        ..Default::default()
    }
}

/// Heap bytes behind each of the items (their inline size excluded), averaged over `n`.
fn heap_per_item<T>(items: impl Iterator<Item = T>, n: usize) -> f64 {
    let before = live_bytes();
    let kept: Vec<T> = items.collect();
    let inline = kept.capacity() * std::mem::size_of::<T>();
    let bytes = live_bytes() - before - inline as isize;
    drop(kept);
    bytes as f64 / n as f64
}

/// Bytes a loop holds after being fed the pods and jobs `inputs` makes, counted from
/// before they were made: the loop consumes (and frees) them as it goes, as the running
/// scheduler does. `expect` is a stage every pod must be in, with the pods' number.
fn loop_bytes(
    inputs: impl FnOnce() -> (Vec<Pod>, Vec<JobStatus>),
    expect: Option<(&str, usize)>,
) -> isize {
    let before = live_bytes();
    let (pods, jobs) = inputs();
    let state = LoopState::build(context(), pods, jobs);
    let bytes = live_bytes() - before;
    if let Some((stage, n)) = expect {
        let stages = state.stages();
        assert_eq!(stages.get(stage), Some(&n), "every pod {stage}: {stages:?}");
    }
    bytes
}

/// Feed `n` synthetic pods to the real loop twice: each waiting for its pending job, and
/// each rejected; bytes per pod from the allocator's count, less what an empty loop holds.
pub fn measure(n: usize) -> StateSize {
    let waiting_pod = |i| synthetic_pod(i, json!({"sunk.coreweave.com/partition": "batch"}));
    let rejected_pod = |i| synthetic_pod(i, json!({"sunk.coreweave.com/exclusive": "maybe"}));

    let empty = loop_bytes(|| (Vec::new(), Vec::new()), None);
    let waiting = loop_bytes(
        || {
            let pods: Vec<Pod> = (0..n).map(waiting_pod).collect();
            let jobs = pods
                .iter()
                .enumerate()
                .map(|(i, p)| pending_job(i, p))
                .collect();
            (pods, jobs)
        },
        Some(("pending", n)),
    ) - empty;
    let rejected = loop_bytes(
        || ((0..n).map(rejected_pod).collect(), Vec::new()),
        Some(("rejected", n)),
    ) - empty;

    // Parts of a waiting pod's record, measured by projecting and cloning them.
    let ctx = context();
    let records: Vec<_> = (0..n.min(5_000))
        .map(|i| project(&waiting_pod(i), &ctx, None))
        .collect();
    let m = records.len();
    let breakdown = vec![
        (
            "PodRecord.job: boxed PlaceholderJob and its strings",
            heap_per_item(records.iter().map(|r| r.job.clone()), m),
        ),
        (
            "PodRecord.pod: namespace, name, uid strings",
            heap_per_item(records.iter().map(|r| r.pod.clone()), m),
        ),
        (
            "PodRecord.view heap",
            heap_per_item(records.iter().map(|r| r.view.clone()), m),
        ),
    ];
    StateSize {
        pods: n,
        waiting_bytes_per_pod: waiting as f64 / n as f64,
        rejected_bytes_per_pod: rejected as f64 / n as f64,
        breakdown,
    }
}
