//! The load and what is measured of it, identical for the scheduler and the baseline: pods
//! created at a fixed rate in one namespace, each running for its lifetime (a share of them
//! forever, until the benchmark scancels their job), watched to time create→bound and
//! job end→pod deleted, then checked for leaks (pods stuck, jobs left in Slurm).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use serde_json::json;
use slurm_client::{BaseState, CancelSignal, JobStatus, SlurmClient};

/// The annotation the binding puts on the pod (default prefix).
pub const JOB_ID_ANNOTATION: &str = "sunk.coreweave.com/job-id";

#[derive(Debug, Clone)]
pub struct Load {
    pub pods: usize,
    /// Pods created per second.
    pub rate: f64,
    pub lifetime: Duration,
    /// Every `cancel_every`-th pod runs until its job is scancelled (0: none).
    pub cancel_every: usize,
    /// How long after binding such a job is cancelled.
    pub cancel_after: Duration,
}

impl Load {
    fn is_victim(&self, index: usize) -> bool {
        self.cancel_every > 0 && index % self.cancel_every == self.cancel_every / 2
    }
}

/// What one run of the load showed.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    pub created: usize,
    pub bound: usize,
    pub pods_per_second: f64,
    pub bind_ms: Vec<f64>,
    pub delete_ms: Vec<f64>,
    pub cancelled: usize,
    pub pods_stuck: usize,
    pub stuck_names: Vec<String>,
    pub jobs_left: usize,
    pub left_ids: Vec<u32>,
}

#[derive(Default)]
struct Seen {
    created: HashMap<String, Instant>,
    bound: HashMap<String, Instant>,
    finished: HashSet<String>,
    gone: HashMap<String, Instant>,
    cancel_sent: HashMap<String, Instant>,
    cancel_planned: HashSet<String>,
    victims: HashSet<String>,
}

pub fn pod_manifest(ns: &str, name: &str, scheduler: &str, lifetime: Option<Duration>) -> Pod {
    let mut annotations = serde_json::Map::new();
    if let Some(l) = lifetime {
        annotations.insert(
            kubelet_sim::LIFETIME.into(),
            json!(format!("{}ms", l.as_millis())),
        );
    }
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "annotations": annotations},
        "spec": {
            "schedulerName": scheduler,
            // Below KillWait minus the termination offset, as the scheduler requires.
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": "busybox",
                "resources": {"requests": {"cpu": "1", "memory": "100Mi"}}}],
        },
    }))
    .expect("a valid pod")
}

pub async fn create_namespace(client: &Client, ns: &str) -> Result<(), kube::Error> {
    let api: Api<Namespace> = Api::all(client.clone());
    let body: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
    api.create(&PostParams::default(), &body).await.map(|_| ())
}

/// Run the load against whichever scheduler serves `scheduler` in `ns`, and wait for it to
/// drain. `slurm` names the same scheduler, so its job list is that scheduler's jobs.
pub async fn run(
    client: &Client,
    slurm: Arc<SlurmClient>,
    ns: &str,
    scheduler: &str,
    load: &Load,
) -> Outcome {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let watch = tokio::spawn(watch_pods(
        pods.clone(),
        seen.clone(),
        slurm.clone(),
        load.clone(),
    ));
    // The watch must be live before the first pod, or its binding could be missed.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let start = Instant::now();
    let period = Duration::from_secs_f64(1.0 / load.rate.max(0.001));
    let mut creates = Vec::with_capacity(load.pods);
    for i in 0..load.pods {
        // A fixed schedule, not a fixed gap: a slow create does not slow the rate.
        tokio::time::sleep_until((start + period * i as u32).into()).await;
        let name = format!("p-{i}");
        let victim = load.is_victim(i);
        let pod = pod_manifest(ns, &name, scheduler, (!victim).then_some(load.lifetime));
        {
            let mut s = seen.lock().unwrap();
            s.created.insert(name.clone(), Instant::now());
            if victim {
                s.victims.insert(name.clone());
            }
        }
        let api = pods.clone();
        creates.push(tokio::spawn(async move {
            if let Err(e) = api.create(&PostParams::default(), &pod).await {
                eprintln!("creating pod {name}: {e}");
            }
        }));
    }
    for c in creates {
        let _ = c.await;
    }

    // Drain: every pod finished, or gone for the scancelled ones. Generous: the machine is
    // shared, and a stuck pod is reported rather than waited for forever.
    let deadline = Instant::now() + load.lifetime + Duration::from_secs(120);
    loop {
        let left = pending(&seen.lock().unwrap());
        if left.is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    watch.abort();

    let mut out = {
        let s = seen.lock().unwrap();
        let mut out = Outcome {
            created: s.created.len(),
            bound: s.bound.len(),
            ..Default::default()
        };
        for (name, bound) in &s.bound {
            if let Some(created) = s.created.get(name) {
                out.bind_ms
                    .push(bound.saturating_duration_since(*created).as_secs_f64() * 1000.0);
            }
        }
        if let (Some(first), Some(last)) = (s.created.values().min(), s.bound.values().max()) {
            let span = last.saturating_duration_since(*first).as_secs_f64();
            out.pods_per_second = if span > 0.0 {
                s.bound.len() as f64 / span
            } else {
                0.0
            };
        }
        for (name, sent) in &s.cancel_sent {
            if let Some(gone) = s.gone.get(name) {
                out.delete_ms
                    .push(gone.saturating_duration_since(*sent).as_secs_f64() * 1000.0);
            }
        }
        out.cancelled = s.cancel_sent.len();
        let mut stuck = pending(&s);
        stuck.sort();
        out.pods_stuck = stuck.len();
        out.stuck_names = stuck.into_iter().take(10).collect();
        out
    };

    // Jobs left: none may outlive its pod. Ended jobs stay listed for MinJobAge; only jobs
    // that are pending, running or still completing count.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match slurm.list_our_jobs().await {
            Ok(snapshot) => {
                let live: Vec<u32> = snapshot
                    .jobs
                    .iter()
                    .filter(|j| holds_resources(j))
                    .map(|j| j.job_id)
                    .collect();
                out.jobs_left = live.len();
                out.left_ids = live.into_iter().take(10).collect();
                if out.jobs_left == 0 || Instant::now() > deadline {
                    break;
                }
            }
            Err(e) => {
                eprintln!("listing jobs: {e}");
                if Instant::now() > deadline {
                    out.jobs_left = usize::MAX;
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    out
}

/// A job that still waits for, holds or is releasing an allocation: one left after a run
/// is a leak.
pub fn holds_resources(job: &JobStatus) -> bool {
    matches!(
        job.state.base,
        BaseState::Pending | BaseState::Running | BaseState::Suspended
    ) || job.state.has_flag("COMPLETING")
}

/// Pods that have neither finished nor (for scancelled ones) gone.
fn pending(s: &Seen) -> Vec<String> {
    s.created
        .keys()
        .filter(|n| {
            if s.victims.contains(*n) {
                !s.gone.contains_key(*n)
            } else {
                !s.finished.contains(*n) && !s.gone.contains_key(*n)
            }
        })
        .cloned()
        .collect()
}

async fn watch_pods(pods: Api<Pod>, seen: Arc<Mutex<Seen>>, slurm: Arc<SlurmClient>, load: Load) {
    let mut stream = watcher(pods, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = stream.next().await {
        let now = Instant::now();
        let (pod, deleted) = match event {
            Ok(watcher::Event::Apply(p)) | Ok(watcher::Event::InitApply(p)) => (p, false),
            Ok(watcher::Event::Delete(p)) => (p, true),
            Ok(_) => continue,
            Err(e) => {
                eprintln!("pod watch: {e}");
                continue;
            }
        };
        let name = pod.metadata.name.clone().unwrap_or_default();
        let mut s = seen.lock().unwrap();
        if deleted {
            s.gone.entry(name).or_insert(now);
            continue;
        }
        let node = pod
            .spec
            .as_ref()
            .and_then(|sp| sp.node_name.as_deref())
            .is_some_and(|n| !n.is_empty());
        if node {
            s.bound.entry(name.clone()).or_insert(now);
        }
        let phase = pod.status.as_ref().and_then(|st| st.phase.as_deref());
        if matches!(phase, Some("Succeeded") | Some("Failed")) {
            s.finished.insert(name.clone());
        }
        let job = pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(JOB_ID_ANNOTATION))
            .and_then(|v| v.parse::<u32>().ok());
        if let (true, Some(job)) = (node && s.victims.contains(&name), job) {
            if s.cancel_planned.insert(name.clone()) {
                let (seen, slurm, after) = (seen.clone(), slurm.clone(), load.cancel_after);
                tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    // Timed from the request, so the figure includes slurmrestd's answer.
                    seen.lock()
                        .unwrap()
                        .cancel_sent
                        .insert(name.clone(), Instant::now());
                    if let Err(e) = slurm.cancel(job, CancelSignal::Term).await {
                        eprintln!("scancel of job {job} (pod {name}): {e}");
                    }
                });
            }
        }
    }
}

/// The value at quantile `q` (0..1) of unsorted samples, nearest rank.
pub fn quantile(samples: &[f64], q: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut v = samples.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}
