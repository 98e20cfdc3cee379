//! The baseline: a bare loop that issues the scheduler's requests for each pod and nothing
//! else: one pod watch, submit the placeholder job, the same delta poll of Slurm's job list
//! at the same interval, bind through `pods/binding` (with the job id annotation) once the
//! job runs, delete the pod when its job ends, cancel the job with SIGKILL when the pod has
//! finished or is gone. No validation, no node checks, no events, no conditions, no retries
//! with backoff: whatever the scheduler costs above this is the price of its logic.
//!
//! It runs as a separate process (the benchmark binary started again with `--baseline`) so
//! its CPU time and memory are measured by the operating system like the scheduler's. It
//! stops when its standard input closes and then prints `COUNTS {json}`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use http::HeaderValue;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use serde_json::json;
use slurm_client::{
    CancelSignal, ClientConfig, JobId, JobSnapshot, PollCursor, PollOutcome, SlurmClient,
    SlurmObserver, SubmitOptions, TokenSource,
};
use slurm_pod_scheduler::translate::{self, TranslateContext};
use tokio::sync::mpsc;

use super::driver::JOB_ID_ANNOTATION;

pub const USER_AGENT: &str = "pod-churn-baseline";

#[derive(Debug, Clone)]
pub struct BaselineArgs {
    pub scheduler_name: String,
    pub namespace: String,
    pub kubeconfig: String,
    pub slurm_url: String,
    pub slurm_user: String,
    pub poll_interval: Duration,
    pub kill_wait: Duration,
}

/// Counts slurmrestd requests, as the scheduler's `slurm_requests_total` does.
#[derive(Default)]
struct Count(AtomicU64);

impl SlurmObserver for Count {
    fn request(&self, _endpoint: &'static str, _code: &str, _duration: Duration) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    fn token_reload(&self) {}
}

/// Answers of the requests the loop started.
enum Done {
    Submitted {
        uid: String,
        job: Option<JobId>,
    },
    Bound {
        uid: String,
        ok: bool,
    },
    /// The cursor travels with the request and comes back with the answer.
    Polled(PollCursor, Option<JobSnapshot>),
}

#[derive(Default)]
struct Entry {
    name: String,
    job: Option<JobId>,
    submitting: bool,
    binding: bool,
    bound: bool,
    finished: bool,
    deleting: bool,
    cancelled: bool,
}

pub async fn run(args: BaselineArgs) -> anyhow::Result<()> {
    let kubeconfig = kube::config::Kubeconfig::read_from(&args.kubeconfig)?;
    let mut cfg = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    cfg.headers.push((
        http::header::USER_AGENT,
        HeaderValue::from_static(USER_AGENT),
    ));
    let client = Client::try_from(cfg)?;
    let pods: Api<Pod> = Api::namespaced(client, &args.namespace);

    let token = std::env::var("SLURM_JWT")?;
    let mut scfg = ClientConfig::new(
        &args.slurm_url,
        TokenSource::Static(token),
        &args.scheduler_name,
    );
    scfg.user = args.slurm_user.clone();
    let count = Arc::new(Count::default());
    let slurm = Arc::new(SlurmClient::connect_with_observer(scfg, count.clone()).await?);
    let ctx = TranslateContext {
        scheduler_name: args.scheduler_name.clone(),
        kill_wait: args.kill_wait,
        ..Default::default()
    };

    let (tx, mut rx) = mpsc::unbounded_channel::<Done>();
    let (stop_tx, mut stop_rx) = mpsc::channel::<()>(1);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        let _ = stop_tx.blocking_send(());
    });

    let selector = format!("spec.schedulerName={}", args.scheduler_name);
    let mut stream = watcher(pods.clone(), watcher::Config::default().fields(&selector))
        .default_backoff()
        .boxed();
    let mut tick = tokio::time::interval(args.poll_interval);
    // A poll that outlasts the interval delays the next one, as the scheduler's poller does,
    // rather than firing the missed ticks back to back.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cursor = PollCursor::default();
    let mut polling = false;
    let mut state: HashMap<String, Entry> = HashMap::new();
    let mut announced = false;
    let mut l = Loop {
        pods,
        slurm: slurm.clone(),
        tx: tx.clone(),
    };

    loop {
        tokio::select! {
            event = stream.next() => match event {
                Some(Ok(watcher::Event::Apply(pod))) | Some(Ok(watcher::Event::InitApply(pod))) => {
                    l.on_pod(&mut state, &pod, &ctx);
                }
                Some(Ok(watcher::Event::Delete(pod))) => {
                    let uid = pod.metadata.uid.clone().unwrap_or_default();
                    if let Some(e) = state.remove(&uid) {
                        if let (Some(job), false) = (e.job, e.cancelled) {
                            l.cancel(job);
                        }
                    }
                }
                Some(Ok(watcher::Event::InitDone)) if !announced => {
                    announced = true;
                    println!("READY");
                }
                Some(_) => {}
                None => break,
            },
            _ = tick.tick(), if !polling => {
                polling = true;
                let (slurm, tx) = (slurm.clone(), tx.clone());
                let mut c = std::mem::take(&mut cursor);
                tokio::spawn(async move {
                    let snap = match slurm.poll(&mut c).await {
                        Ok(PollOutcome::Changed(s)) => Some(s),
                        _ => None,
                    };
                    let _ = tx.send(Done::Polled(c, snap));
                });
            }
            Some(done) = rx.recv() => match done {
                Done::Submitted { uid, job } => match (state.get_mut(&uid), job) {
                    (Some(e), Some(id)) => {
                        e.submitting = false;
                        e.job = Some(id);
                    }
                    (Some(e), None) => e.submitting = false,
                    // The pod went while the submit was in flight.
                    (None, Some(id)) => l.cancel(id),
                    (None, None) => {}
                },
                Done::Bound { uid, ok } => {
                    if let Some(e) = state.get_mut(&uid) {
                        e.binding = false;
                        e.bound |= ok;
                    }
                }
                Done::Polled(c, snap) => {
                    polling = false;
                    cursor = c;
                    if let Some(snap) = snap {
                        l.on_jobs(&mut state, &snap);
                    }
                }
            },
            _ = stop_rx.recv() => break,
        }
    }
    println!(
        "COUNTS {}",
        json!({"slurm_requests": count.0.load(Ordering::Relaxed)})
    );
    Ok(())
}

struct Loop {
    pods: Api<Pod>,
    slurm: Arc<SlurmClient>,
    tx: mpsc::UnboundedSender<Done>,
}

impl Loop {
    fn on_pod(&mut self, state: &mut HashMap<String, Entry>, pod: &Pod, ctx: &TranslateContext) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let e = state.entry(uid.clone()).or_insert_with(|| Entry {
            name: pod.metadata.name.clone().unwrap_or_default(),
            ..Default::default()
        });
        if pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
        {
            e.bound = true;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded") | Some("Failed")) {
            e.finished = true;
            if let (Some(job), false) = (e.job, e.cancelled) {
                e.cancelled = true;
                self.cancel(job);
            }
            return;
        }
        if e.job.is_none() && !e.submitting && !e.bound && pod.metadata.deletion_timestamp.is_none()
        {
            let Some(job) = translate::translate(pod, ctx).job else {
                return;
            };
            e.submitting = true;
            let (slurm, tx) = (self.slurm.clone(), self.tx.clone());
            tokio::spawn(async move {
                let id = slurm.submit(&job, &SubmitOptions::default()).await.ok();
                let _ = tx.send(Done::Submitted { uid, job: id });
            });
        }
    }

    fn on_jobs(&mut self, state: &mut HashMap<String, Entry>, snap: &JobSnapshot) {
        for job in &snap.jobs {
            let Some(uid) = job.marker.as_ref().map(|m| &m.pod_uid) else {
                continue;
            };
            let Some(e) = state.get_mut(uid) else {
                continue;
            };
            let node = job.nodes.first();
            if job.state.holds_allocation() && !e.bound && !e.binding {
                let Some(node) = node else { continue };
                e.binding = true;
                let body = json!({
                    "apiVersion": "v1", "kind": "Binding",
                    "metadata": {"name": e.name,
                        "annotations": {JOB_ID_ANNOTATION: job.job_id.to_string()}},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": node},
                });
                let (pods, tx, name, uid) = (
                    self.pods.clone(),
                    self.tx.clone(),
                    e.name.clone(),
                    uid.clone(),
                );
                tokio::spawn(async move {
                    let ok = pods
                        .create_subresource::<_, serde_json::Value>(
                            "binding",
                            &name,
                            &PostParams::default(),
                            &body,
                        )
                        .await
                        .is_ok();
                    let _ = tx.send(Done::Bound { uid, ok });
                });
            } else if e.bound
                && !job.state.holds_allocation()
                && !job.state.is_pending()
                && !e.deleting
                && !e.finished
            {
                // The job ended under a running pod: the pod goes (its own grace period).
                e.deleting = true;
                let (pods, name) = (self.pods.clone(), e.name.clone());
                tokio::spawn(async move {
                    let _ = pods.delete(&name, &DeleteParams::default()).await;
                });
            }
        }
    }

    fn cancel(&self, job: JobId) {
        let slurm = self.slurm.clone();
        tokio::spawn(async move {
            let _ = slurm.cancel(job, CancelSignal::Kill).await;
        });
    }
}
