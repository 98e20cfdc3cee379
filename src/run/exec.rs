//! Carries out the loop's decisions: each effect runs as its own task, and the answers the
//! pod's life needs (submit and bind outcomes) go back to the loop as inputs. Writes to
//! Kubernetes pass through a client-side rate limiter (`--kube-api-qps`/`--kube-api-burst`);
//! the kube client retries 429s after their `Retry-After`.

use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use slurm_client::{CancelSignal, ErrorKind, PlaceholderJob, SlurmClient, SubmitOptions};
use tokio::sync::{mpsc, RwLock};
use tracing::{debug, info, warn, Instrument};

use super::core::Input;
use super::limiter::RateLimiter;
use crate::kube_io::events::EventPublisher;
use crate::kube_io::writer::{self, PodRef, WriteError};
use crate::lifecycle::{BindOutcome, JobId, SubmitOutcome};
use crate::metrics::{Metrics, ReasonLabel};

/// One piece of I/O the loop decided on.
#[derive(Debug)]
pub enum Effect {
    Submit {
        uid: String,
        job: Box<PlaceholderJob>,
        opts: SubmitOptions,
    },
    Cancel {
        job: JobId,
        label: &'static str,
    },
    Bind {
        pod: PodRef,
        node: String,
        job: JobId,
    },
    Condition {
        pod: PodRef,
        reason: &'static str,
        message: String,
    },
    Evict {
        pod: PodRef,
        grace: Duration,
        message: String,
    },
    ForceDelete {
        pod: PodRef,
    },
    Event {
        pod: PodRef,
        warning: bool,
        reason: &'static str,
        message: String,
    },
}

impl Effect {
    pub fn event(pod: &PodRef, warning: bool, reason: &'static str, message: String) -> Self {
        Self::Event {
            pod: pod.clone(),
            warning,
            reason,
            message,
        }
    }
}

/// The slurmrestd client, once connected (the first connection may wait for slurmrestd).
pub type SharedSlurm = Arc<RwLock<Option<Arc<SlurmClient>>>>;

#[derive(Clone)]
pub struct Executor {
    /// `None` for an executor that drops every effect (see [`Executor::discarding`]).
    live: Option<Live>,
}

#[derive(Clone)]
struct Live {
    inner: Arc<Inner>,
    conditions: Arc<Vec<EffectQueue>>,
    slurm: EffectQueue,
    events: EffectQueue,
}

struct Inner {
    kube: Client,
    slurm: SharedSlurm,
    events: EventPublisher,
    metrics: Arc<Metrics>,
    inputs: mpsc::Sender<Input>,
    limiter: RateLimiter,
    job_annotation: String,
}

impl Executor {
    pub fn new(
        kube: Client,
        slurm: SharedSlurm,
        metrics: Arc<Metrics>,
        inputs: mpsc::Sender<Input>,
        limiter: RateLimiter,
        job_annotation: String,
        instance: String,
    ) -> Self {
        let events = EventPublisher::new(kube.clone(), instance);
        let inner = Arc::new(Inner {
            kube,
            slurm,
            events,
            metrics,
            inputs,
            limiter,
            job_annotation,
        });
        let conditions = Arc::new(condition_writers(&inner));
        let slurm = queue(&inner, SLURM_WORKERS);
        let events = queue(&inner, EVENT_WORKERS);
        Self {
            live: Some(Live {
                inner,
                conditions,
                slurm,
                events,
            }),
        }
    }

    /// An executor that carries out nothing: the loop's state can then be built and
    /// measured without any I/O or runtime (`run::state_probe`). Submit and bind outcomes
    /// never come back, so lives wait where they are.
    pub fn discarding() -> Self {
        Self { live: None }
    }

    pub fn run(&self, effect: Effect) {
        let Some(live) = &self.live else {
            return;
        };
        if let Effect::Condition { pod, .. } = &effect {
            // Condition writes of one pod must land in the order they were decided (a
            // later "pending" must not be overtaken by an earlier "unreachable"): each pod
            // always goes to the same sequential writer.
            let shard = shard_of(&pod.uid, live.conditions.len());
            let _ = live.conditions[shard].send((effect, tracing::Span::current()));
            return;
        }
        match effect {
            Effect::Submit { .. } | Effect::Cancel { .. } => {
                let _ = live.slurm.send((effect, tracing::Span::current()));
                return;
            }
            Effect::Event { .. } => {
                let _ = live.events.send((effect, tracing::Span::current()));
                return;
            }
            _ => {}
        }
        let inner = live.inner.clone();
        let span = tracing::Span::current();
        tokio::spawn(async move { inner.perform(effect).await }.instrument(span));
    }
}

/// Sequential writers of `PodScheduled` conditions.
const CONDITION_WRITERS: usize = 8;

fn shard_of(uid: &str, shards: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    uid.hash(&mut h);
    (h.finish() % shards as u64) as usize
}

type EffectQueue = mpsc::UnboundedSender<(Effect, tracing::Span)>;

/// Requests to slurmrestd in flight at once, so a burst of pods does not flood it.
const SLURM_WORKERS: usize = 16;

/// Events being published at once. Few, because each one waiting holds a place in the
/// write rate limiter's queue: 10 000 rejected pods' events spawned at once would have
/// reserved 100 s of tokens at 100 QPS ahead of any eviction decided after them, which must
/// land within KillWait.
const EVENT_WORKERS: usize = 2;

fn condition_writers(inner: &Arc<Inner>) -> Vec<EffectQueue> {
    (0..CONDITION_WRITERS)
        .map(|_| {
            let (tx, rx) = mpsc::unbounded_channel();
            spawn_workers(inner, rx, 1);
            tx
        })
        .collect()
}

/// A queue served by `workers` tasks: submits and cancels, and events. A waiting effect is
/// its few hundred bytes; a spawned task waiting for a slot held a whole request future
/// (several KiB), which for 10 000 pods submitted or deleted at once came to tens of MiB
/// that the allocator then kept.
fn queue(inner: &Arc<Inner>, workers: usize) -> EffectQueue {
    let (tx, rx) = mpsc::unbounded_channel();
    spawn_workers(inner, rx, workers);
    tx
}

/// `n` tasks carrying out the effects of one queue, each in the span it was decided in.
/// They hold only a weak reference: they end when the executor is dropped.
fn spawn_workers(
    inner: &Arc<Inner>,
    rx: mpsc::UnboundedReceiver<(Effect, tracing::Span)>,
    n: usize,
) {
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    for _ in 0..n {
        let inner = Arc::downgrade(inner);
        let rx = rx.clone();
        tokio::spawn(async move {
            loop {
                let next = rx.lock().await.recv().await;
                let Some((effect, span)) = next else { return };
                let Some(inner) = inner.upgrade() else { return };
                inner.perform(effect).instrument(span).await;
            }
        });
    }
}

impl Inner {
    async fn slurm(&self) -> Option<Arc<SlurmClient>> {
        self.slurm.read().await.clone()
    }

    async fn perform(&self, effect: Effect) {
        match effect {
            Effect::Submit { uid, job, opts } => {
                let outcome = self.submit(&job, &opts).await;
                let _ = self.inputs.send(Input::Submitted { uid, outcome }).await;
            }
            Effect::Cancel { job, label } => self.cancel(job, label).await,
            Effect::Bind { pod, node, job } => {
                self.limiter.acquire().await;
                let outcome = writer::bind(
                    &self.kube,
                    &pod,
                    &node,
                    (&self.job_annotation, job.to_string()),
                )
                .await;
                match &outcome {
                    BindOutcome::Bound => info!(node = %node, job_id = job, "bound"),
                    other => debug!(?other, "bind did not happen"),
                }
                let uid = pod.uid.clone();
                let _ = self.inputs.send(Input::BindResult { uid, outcome }).await;
            }
            Effect::Condition {
                pod,
                reason,
                message,
            } => {
                self.limiter.acquire().await;
                if let Err(e) = writer::set_unschedulable(&self.kube, &pod, reason, &message).await
                {
                    log_write_error(&e, "condition");
                }
            }
            Effect::Evict {
                pod,
                grace,
                message,
            } => {
                self.delete_with_retries(&pod, Some((grace, message)), "slurm_job_ended")
                    .await
            }
            Effect::ForceDelete { pod } => {
                self.delete_with_retries(&pod, None, "killwait_overrun")
                    .await
            }
            Effect::Event {
                pod,
                warning,
                reason,
                message,
            } => {
                self.limiter.acquire().await;
                let action = if reason == "Scheduled" {
                    "Binding"
                } else {
                    "Scheduling"
                };
                if let Err(e) = self
                    .events
                    .publish(&pod, warning, reason, action, &message)
                    .await
                {
                    warn!(error = %e, reason, "could not publish an event");
                }
            }
        }
    }

    async fn submit(&self, job: &PlaceholderJob, opts: &SubmitOptions) -> SubmitOutcome {
        let Some(slurm) = self.slurm().await else {
            return SubmitOutcome::Unknown("slurmrestd has not answered yet".into());
        };
        match slurm.submit(job, opts).await {
            Ok(id) => {
                info!(job_id = id, name = %job.name, "submitted");
                SubmitOutcome::Accepted(id)
            }
            Err(e) if e.kind() == ErrorKind::Rejected => SubmitOutcome::Refused(e.to_string()),
            Err(e) if e.kind() == ErrorKind::Unsupported => SubmitOutcome::Refused(e.to_string()),
            Err(e) => SubmitOutcome::Unknown(e.to_string()),
        }
    }

    async fn cancel(&self, job: JobId, label: &'static str) {
        let Some(slurm) = self.slurm().await else {
            return; // retried when the life sees the job still running
        };
        match slurm.cancel(job, CancelSignal::Kill).await {
            Ok(_) => {
                self.metrics
                    .jobs_cancelled
                    .get_or_create(&ReasonLabel {
                        reason: label.into(),
                    })
                    .inc();
            }
            Err(e) => {
                warn!(job_id = job, error = %e, "cancel failed; it is repeated while the job lives")
            }
        }
    }

    /// Deletes (after marking the pod disrupted when `evict` is given), retrying transient
    /// failures: the KillWait window is short and nobody else will do it.
    async fn delete_with_retries(
        &self,
        pod: &PodRef,
        evict: Option<(Duration, String)>,
        reason: &'static str,
    ) {
        let mut delay = Duration::from_millis(200);
        for attempt in 0..6 {
            self.limiter.acquire().await;
            let result = match &evict {
                Some((grace, message)) => writer::evict(&self.kube, pod, *grace, message).await,
                None => writer::delete(&self.kube, pod, Duration::ZERO).await,
            };
            match result {
                Ok(()) => {
                    info!(reason, "pod deleted");
                    self.metrics
                        .pods_deleted
                        .get_or_create(&ReasonLabel {
                            reason: reason.into(),
                        })
                        .inc();
                    return;
                }
                Err(WriteError::PodGone(_)) => return,
                Err(e) => {
                    warn!(error = %e, attempt, "delete failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(3));
                }
            }
        }
    }
}

fn log_write_error(e: &WriteError, what: &str) {
    match e {
        WriteError::PodGone(_) => debug!(what, "pod gone before the write"),
        WriteError::Api { .. } => warn!(error = %e, what, "write to the API server failed"),
    }
}
