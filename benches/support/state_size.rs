//! Scale of state: the heap bytes the scheduler keeps per tracked pod, measured with a
//! counting global allocator. Synthetic pods go through the scheduler's real projection
//! (`project()` into a `PodRecord`) and state machine (`PodLife`), and are kept the way the
//! scheduling loop keeps them: a map from pod UID to record, life and the loop's own
//! per-pod fields, plus the map from pod UID to the last Slurm status of its job.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::SystemTime;

use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use slurm_client::{BaseState, JobId, JobMarker, JobState, JobStatus};
use slurm_pod_scheduler::lifecycle::{JobView, PodLife};
use slurm_pod_scheduler::run::project::{project, PodRecord};
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

/// The loop's own per-pod fields next to record and life (last job view, submit time,
/// stream index, relist flag), by type, so their inline size is counted.
type LoopFields = (Option<(JobId, JobView)>, SystemTime, usize, bool);

#[derive(Debug, Clone)]
pub struct StateSize {
    pub pods: usize,
    pub record_bytes_per_pod: f64,
    pub with_job_status_bytes_per_pod: f64,
    /// Where the record bytes go, per pod.
    pub breakdown: Vec<(&'static str, f64)>,
}

fn synthetic_pod(i: usize, scheduler: &str) -> Pod {
    let uid = format!("{:08x}-0000-4000-8000-{:012x}", i as u32, i as u64 * 7919);
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": format!("worker-{i:06}"), "namespace": "team-a", "uid": uid,
            "resourceVersion": (1_000 + i).to_string(),
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {"app": "notebook", "tier": "cpu"},
            "annotations": {"sunk.coreweave.com/partition": "batch"},
        },
        "spec": {
            "schedulerName": scheduler,
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": "busybox:1.36",
                "command": ["sleep", "3600"],
                "resources": {"requests": {"cpu": "2", "memory": "512Mi"}}}],
        },
        "status": {"phase": "Pending"},
    }))
    .expect("a valid synthetic pod")
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

/// Project `n` synthetic pods (each waiting for its job, as in a queue) and keep them as
/// the loop does; bytes per pod from the allocator's count.
pub fn measure(n: usize) -> StateSize {
    let scheduler = "sps-bench";
    let ctx = TranslateContext {
        scheduler_name: scheduler.into(),
        ..Default::default()
    };
    let mut tracked: HashMap<String, (PodRecord, PodLife, LoopFields)> = HashMap::new();
    let mut jobs: HashMap<String, JobStatus> = HashMap::new();

    let before = live_bytes();
    for i in 0..n {
        // The Pod object is dropped at the end of the iteration, as the loop drops it.
        let pod = synthetic_pod(i, scheduler);
        let record = project(&pod, &ctx, None);
        assert!(
            record.job.is_some(),
            "the synthetic pod must translate to a job"
        );
        let uid = record.pod.uid.clone();
        tracked.insert(
            uid,
            (record, PodLife::new(), (None, SystemTime::now(), 0, false)),
        );
    }
    let records = live_bytes() - before;

    for (i, (uid, (record, _, _))) in tracked.iter().enumerate() {
        let name = format!("{}/{}", record.pod.namespace, record.pod.name);
        jobs.insert(
            uid.clone(),
            JobStatus {
                job_id: 1_000 + i as u32,
                name,
                marker: Some(JobMarker::new(scheduler, uid.clone())),
                state: JobState {
                    base: BaseState::Pending,
                    flags: BTreeSet::new(),
                },
                reason: Some("Priority".into()),
                nodes: Vec::new(),
            },
        );
    }
    let all = live_bytes() - before;
    // Both maps stay alive until the end: the counts above are what they hold.

    // Where it goes: the map's slots (inline entries, rounded up to its capacity), and the
    // heap behind each record, measured by cloning the parts.
    type Entry = (String, (PodRecord, PodLife, LoopFields));
    let slots = tracked.capacity() as f64 * (std::mem::size_of::<Entry>() + 1) as f64 / n as f64;
    let job = heap_per_item(tracked.values().map(|(r, _, _)| r.job.clone()), n);
    let pod_ref = heap_per_item(tracked.values().map(|(r, _, _)| r.pod.clone()), n);
    let view = heap_per_item(tracked.values().map(|(r, _, _)| r.view.clone()), n);
    let keys = tracked.keys().map(|k| k.capacity()).sum::<usize>() as f64 / n as f64;
    let breakdown = vec![
        (
            "map slots (inline PodRecord, PodLife, loop fields, key)",
            slots,
        ),
        ("key: pod uid string", keys),
        ("PodRecord.job: boxed PlaceholderJob and its strings", job),
        ("PodRecord.pod: namespace, name, uid strings", pod_ref),
        ("PodRecord.view heap", view),
    ];
    StateSize {
        pods: n,
        record_bytes_per_pod: records as f64 / n as f64,
        with_job_status_bytes_per_pod: all as f64 / n as f64,
        breakdown,
    }
}
