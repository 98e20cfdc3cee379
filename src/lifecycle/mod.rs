//! The life of one pod through Slurm, as pure decisions.
//!
//! The runtime feeds a [`PodLife`] what it observed (the pod's slim view, the job's state as
//! Slurm reported it, the answers of the requests it made, the passing of time) and carries
//! out the [`Action`]s it returns. Nothing here performs I/O or reads a clock, so every
//! path of a pod's life is a unit test.

use std::sync::Arc;
use std::time::{Duration, Instant};

mod types;

pub use types::*;

/// One pod's life. Small on purpose: the runtime keeps one per pod of ours.
#[derive(Debug, Clone)]
pub struct PodLife {
    pub stage: Stage,
    /// Slurm nodes that proved unusable for this pod; excluded from later submits.
    pub excluded: Vec<String>,
    /// Fingerprint of the pod's placement inputs when it was last considered.
    fingerprint: u64,
    /// Consecutive refusals by Slurm, for the retry backoff.
    refusals: u32,
    /// The last condition written (its reason and a hash of its message), so it is not
    /// rewritten on every poll. A hash, not the text: this is kept for every waiting pod.
    last_condition: Option<(&'static str, u64)>,
    /// The pod's grace period, for eviction and stuck-termination timing.
    grace: Duration,
    /// The fingerprint of the newest pod view, which may differ while a submit is in flight.
    latest: u64,
    /// The newest pod view's node: set when someone else bound the pod.
    latest_node: Option<String>,
    /// The newest pod view's rejection, kept for the same reason.
    latest_rejection: Option<Arc<(String, String)>>,
    pod_gone: bool,
    /// The pod reached Succeeded or Failed: it will never run again.
    pod_final: bool,
}

impl Default for PodLife {
    fn default() -> Self {
        Self::new()
    }
}

impl PodLife {
    pub fn new() -> Self {
        Self {
            stage: Stage::New,
            excluded: Vec::new(),
            fingerprint: 0,
            refusals: 0,
            last_condition: None,
            grace: Duration::from_secs(30),
            latest: 0,
            latest_node: None,
            latest_rejection: None,
            pod_gone: false,
            pod_final: false,
        }
    }

    /// The job this pod holds or is about to hold, if known.
    pub fn job(&self) -> Option<JobId> {
        match &self.stage {
            Stage::Queued { job }
            | Stage::Placing { job, .. }
            | Stage::Binding { job, .. }
            | Stage::Bound { job, .. }
            | Stage::Evicting { job, .. }
            | Stage::Releasing { job } => Some(*job),
            _ => None,
        }
    }

    /// True once nothing is left to do and the pod will never need anything again (it is
    /// gone or finished), so the runtime may forget it.
    pub fn is_done(&self) -> bool {
        matches!(self.stage, Stage::Finished) && (self.pod_gone || self.pod_final)
    }

    /// A short label for `tracked_pods{state}`.
    pub fn stage_label(&self) -> &'static str {
        match self.stage {
            Stage::New => "new",
            Stage::Rejected => "rejected",
            Stage::Submitting => "submitting",
            Stage::Refused { .. } => "refused",
            Stage::Queued { .. } => "pending",
            Stage::Placing { .. } | Stage::Binding { .. } => "binding",
            Stage::Bound { .. } => "bound",
            Stage::Evicting { .. } => "evicting",
            Stage::Releasing { .. } => "releasing",
            Stage::Finished => "finished",
        }
    }

    /// Feed one observation; returns what to do, in order.
    pub fn observe(&mut self, obs: Observation, now: Instant, t: &Timing) -> Vec<Action> {
        let mut out = Vec::new();
        match obs {
            Observation::Pod(pod) => self.on_pod(pod, &mut out),
            Observation::PodGone => self.on_pod_gone(&mut out),
            Observation::Job(job) => self.on_job(job, now, t, &mut out),
            Observation::Submitted(outcome) => self.on_submitted(outcome, now, t, &mut out),
            Observation::Placed { slurm_node, fit } => {
                self.on_placed(slurm_node, fit, now, t, &mut out)
            }
            Observation::BindResult(result) => self.on_bind(result, &mut out),
            Observation::Node(health) => self.on_node(health, now, t, &mut out),
            Observation::SlurmUnreachable(why) => self.on_slurm_unreachable(why, &mut out),
            Observation::Tick => self.on_tick(now, t, &mut out),
        }
        out
    }

    // === the pod side ===

    fn on_pod(&mut self, pod: PodView, out: &mut Vec<Action>) {
        self.grace = pod.grace;
        self.latest = pod.fingerprint;
        self.latest_rejection = pod.rejection.clone();
        self.latest_node = pod.node.clone();
        let stopped = pod.phase.is_final();
        self.pod_final |= stopped;
        match self.stage.clone() {
            Stage::New | Stage::Rejected | Stage::Refused { .. } => {
                if let (Some(job), Some(node)) = (pod.bound_job, pod.node.clone()) {
                    // Bound by us before a restart: hold that job again.
                    self.fingerprint = pod.fingerprint;
                    self.stage = Stage::Bound {
                        job,
                        node,
                        stuck_since: None,
                    };
                    return self.on_pod(pod, out);
                }
                if pod.node.is_some() || stopped || pod.terminating || pod.gated {
                    // Bound by someone else, finished, going away, or gated: nothing to
                    // place. A gated pod is considered again when its gates are removed.
                    if !pod.gated {
                        self.stage = Stage::Finished;
                    }
                    return;
                }
                let unchanged = pod.fingerprint == self.fingerprint;
                if unchanged && !matches!(self.stage, Stage::New) {
                    return; // rejected: wait for a change; refused: the timer retries
                }
                self.consider(out);
            }
            Stage::Submitting => {}
            Stage::Queued { job } => {
                if stopped || pod.terminating {
                    self.release(job, CancelReason::PodDeletedWhilePending, out);
                } else if pod.node.is_some() {
                    // Bound by someone else while the job waits: keep the job until Slurm
                    // allocates, then keep it only if Slurm chose the same node.
                } else if pod.fingerprint != self.fingerprint {
                    // Placement inputs changed before allocation: replace the job so the
                    // new ones take effect.
                    // TODO: update the pending job in place where the API allows, which
                    // keeps its queue age; replacing it costs the pod its place in line.
                    out.push(Action::Cancel {
                        job,
                        reason: CancelReason::PodChanged,
                    });
                    self.consider(out);
                }
            }
            Stage::Placing { job, .. } | Stage::Binding { job, .. } => {
                if stopped || pod.terminating {
                    self.release(job, CancelReason::PodDeletedWhilePending, out);
                }
            }
            Stage::Bound {
                job,
                node,
                stuck_since,
            } => {
                if stopped {
                    self.release(job, CancelReason::PodEnded, out);
                } else if pod.node.as_deref().is_some_and(|n| n != node) {
                    self.release(job, CancelReason::BoundElsewhere, out);
                } else if !pod.terminating && stuck_since.is_some() {
                    self.stage = Stage::Bound {
                        job,
                        node,
                        stuck_since: None,
                    };
                } else if pod.fingerprint != self.fingerprint && !pod.terminating {
                    // Slurm cannot move a running job: say so once per change.
                    self.fingerprint = pod.fingerprint;
                    out.push(Action::Event {
                        kind: EventKind::Warning,
                        reason: "PlacementChangeIgnored",
                        message: format!(
                            "The pod's placement annotations or requests changed after it was \
                             bound through Slurm job {job}; they take effect only for a new pod"
                        ),
                    });
                }
                // A terminating pod on a Ready node keeps its job until the kubelet is done.
            }
            Stage::Evicting { job, .. } => {
                if stopped {
                    // The pod has stopped: nothing of it runs on the node any more.
                    self.release(job, CancelReason::PodEnded, out);
                }
            }
            Stage::Releasing { .. } | Stage::Finished => {}
        }
    }

    /// Decide whether a pod that holds nothing yet gets a job.
    fn consider(&mut self, out: &mut Vec<Action>) {
        self.fingerprint = self.latest;
        self.refusals = 0;
        if let Some(rejection) = self.latest_rejection.clone() {
            let (reason, message) = &*rejection;
            self.stage = Stage::Rejected;
            self.condition(static_reason(reason), message.clone(), out);
            out.push(Action::Event {
                kind: EventKind::Warning,
                reason: "FailedScheduling",
                message: message.clone(),
            });
            return;
        }
        self.submit(out);
    }

    fn submit(&mut self, out: &mut Vec<Action>) {
        self.stage = Stage::Submitting;
        out.push(Action::Submit {
            exclude: self.excluded.clone(),
        });
    }

    fn on_pod_gone(&mut self, out: &mut Vec<Action>) {
        self.pod_gone = true;
        match self.stage.clone() {
            Stage::Queued { job } | Stage::Placing { job, .. } | Stage::Binding { job, .. } => {
                self.release(job, CancelReason::PodDeletedWhilePending, out)
            }
            Stage::Bound { job, .. } | Stage::Evicting { job, .. } => {
                self.release(job, CancelReason::PodEnded, out)
            }
            // A submit in flight: its answer finds the pod gone and cancels the job.
            Stage::Submitting | Stage::Releasing { .. } => {}
            _ => self.stage = Stage::Finished,
        }
    }

    // === the Slurm side ===

    fn on_submitted(
        &mut self,
        outcome: SubmitOutcome,
        now: Instant,
        t: &Timing,
        out: &mut Vec<Action>,
    ) {
        if self.stage != Stage::Submitting {
            return;
        }
        match outcome {
            SubmitOutcome::Accepted(job) if self.pod_gone => {
                self.release(job, CancelReason::PodDeletedWhilePending, out)
            }
            SubmitOutcome::Accepted(job) if self.latest != self.fingerprint => {
                // The pod changed while the submit was in flight: replace the job.
                out.push(Action::Cancel {
                    job,
                    reason: CancelReason::PodChanged,
                });
                self.consider(out);
            }
            SubmitOutcome::Accepted(job) => self.stage = Stage::Queued { job },
            _ if self.pod_gone => self.stage = Stage::Finished,
            SubmitOutcome::Refused(words) => {
                let retry_at = now + backoff(t, self.refusals);
                self.refusals = self.refusals.saturating_add(1);
                self.stage = Stage::Refused { retry_at };
                let message = format!("Slurm refused the placeholder job: {words}");
                self.condition("SlurmRejected", message.clone(), out);
                out.push(Action::Event {
                    kind: EventKind::Warning,
                    reason: "FailedScheduling",
                    message,
                });
                out.push(Action::WakeAt(retry_at));
            }
            SubmitOutcome::Unknown(why) => {
                // The job may or may not exist: the runtime's submit looks it up by name
                // and marker before submitting again, so retrying is safe.
                let retry_at = now + t.submit_backoff;
                self.stage = Stage::Refused { retry_at };
                self.condition(
                    "Unschedulable",
                    format!("Slurm is unreachable, the submit will be retried: {why}"),
                    out,
                );
                out.push(Action::WakeAt(retry_at));
            }
        }
    }

    fn on_job(&mut self, view: JobView, now: Instant, t: &Timing, out: &mut Vec<Action>) {
        match (self.stage.clone(), view) {
            (Stage::Queued { job }, JobView::Pending { reason }) => {
                let (cond, message) = if HOPELESS_REASONS.contains(&reason.as_str()) {
                    (
                        "SlurmRejected",
                        format!("Slurm job {job} cannot start as requested: {reason}"),
                    )
                } else {
                    (
                        "Unschedulable",
                        format!("Slurm job {job} pending: {reason}"),
                    )
                };
                self.condition(cond, message, out);
            }
            (Stage::Queued { job }, JobView::Running { slurm_node }) => {
                // The runtime maps the node and answers with `Placed`.
                self.stage = Stage::Placing { job, slurm_node };
            }
            (
                Stage::Queued { job } | Stage::Placing { job, .. },
                JobView::Ended { state, reason },
            ) => {
                // Ended before the pod was bound (an administrator's scancel, a time limit):
                // nothing ran, so the pod simply gets a new job.
                out.push(Action::Event {
                    kind: EventKind::Warning,
                    reason: "SlurmJobEnded",
                    message: format!(
                        "Slurm job {job} ended ({state}: {reason}) before the pod was bound; \
                         submitting a new job"
                    ),
                });
                self.submit(out);
            }
            (Stage::Queued { .. } | Stage::Placing { .. }, JobView::Gone) => self.submit(out),
            // While binding, an ended job waits for the bind's answer: once the pod is
            // bound, the next poll evicts it.
            (Stage::Bound { job, .. }, JobView::Ended { state, reason }) => {
                let why = if reason.is_empty() || reason == "None" {
                    format!("Slurm job {job} ended ({state})")
                } else {
                    format!("Slurm job {job} ended ({state}, reason {reason})")
                };
                self.evict(job, why, now, t, out);
            }
            (Stage::Bound { job, .. }, JobView::Gone) => {
                self.evict(
                    job,
                    format!("Slurm job {job} is no longer known to Slurm"),
                    now,
                    t,
                    out,
                );
            }
            (Stage::Releasing { job }, JobView::Pending { .. } | JobView::Running { .. }) => {
                // The cancel has not taken effect yet (or was lost): ask again.
                out.push(Action::Cancel {
                    job,
                    reason: CancelReason::PodEnded,
                });
            }
            (Stage::Releasing { .. }, JobView::Ended { .. } | JobView::Gone) => {
                self.stage = Stage::Finished;
            }
            // Evicting waits for the pod, not for Slurm; other pairs carry no news.
            _ => {}
        }
    }

    fn on_placed(
        &mut self,
        slurm_node: String,
        fit: NodeFit,
        now: Instant,
        t: &Timing,
        out: &mut Vec<Action>,
    ) {
        let Stage::Placing {
            job,
            slurm_node: expected,
        } = self.stage.clone()
        else {
            return;
        };
        if expected != slurm_node {
            return;
        }
        match fit {
            NodeFit::Usable(node) => match self.latest_node.clone() {
                None => {
                    self.stage = Stage::Binding {
                        job,
                        node: node.clone(),
                    };
                    out.push(Action::Bind { job, node });
                }
                // Someone else bound the pod meanwhile: to Slurm's node is as good as ours.
                Some(other) if other == node => {
                    self.stage = Stage::Bound {
                        job,
                        node,
                        stuck_since: None,
                    };
                }
                Some(other) => self.bound_elsewhere(job, &node, &other, out),
            },
            NodeFit::Unusable { why } => {
                out.push(Action::Cancel {
                    job,
                    reason: CancelReason::UnmappableNode,
                });
                out.push(Action::Event {
                    kind: EventKind::Warning,
                    reason: "FailedScheduling",
                    message: format!(
                        "Slurm placed job {job} on node {slurm_node}, which this pod cannot use \
                         ({why}); submitting again without that node"
                    ),
                });
                if !self.excluded.contains(&slurm_node) {
                    self.excluded.push(slurm_node);
                }
                // The first replacement goes at once (the node is excluded from it); where
                // the API cannot exclude nodes Slurm may pick the same one again, so later
                // ones back off.
                if self.refusals == 0 {
                    self.refusals = 1;
                    self.submit(out);
                } else {
                    let retry_at = now + backoff(t, self.refusals);
                    self.refusals = self.refusals.saturating_add(1);
                    self.stage = Stage::Refused { retry_at };
                    out.push(Action::WakeAt(retry_at));
                }
            }
        }
    }

    fn on_bind(&mut self, result: BindOutcome, out: &mut Vec<Action>) {
        let Stage::Binding { job, node } = self.stage.clone() else {
            return;
        };
        match result {
            BindOutcome::Bound => {
                out.push(Action::Event {
                    kind: EventKind::Normal,
                    reason: "Scheduled",
                    message: format!("Bound to {node} through Slurm job {job}"),
                });
                self.stage = Stage::Bound {
                    job,
                    node,
                    stuck_since: None,
                };
            }
            BindOutcome::AlreadyOn(other) if other == node => {
                self.stage = Stage::Bound {
                    job,
                    node,
                    stuck_since: None,
                };
            }
            BindOutcome::AlreadyOn(other) => self.bound_elsewhere(job, &node, &other, out),
            BindOutcome::PodGone => {
                self.pod_gone = true;
                self.release(job, CancelReason::PodDeletedWhilePending, out);
            }
            // Transient: retry; the runtime paces binds through its client limiter.
            BindOutcome::Failed(_) => out.push(Action::Bind { job, node }),
        }
    }

    fn on_slurm_unreachable(&mut self, why: String, out: &mut Vec<Action>) {
        if matches!(
            self.stage,
            Stage::Submitting
                | Stage::Refused { .. }
                | Stage::Queued { .. }
                | Stage::Placing { .. }
        ) {
            let message = format!("Slurm is unreachable, so the pod waits: {why}");
            self.condition("Unschedulable", message, out);
        }
    }

    // === nodes and time ===

    fn on_node(&mut self, health: NodeHealth, now: Instant, t: &Timing, out: &mut Vec<Action>) {
        let Stage::Bound {
            job,
            node,
            stuck_since,
        } = self.stage.clone()
        else {
            return;
        };
        match (health, stuck_since) {
            (NodeHealth::Dead, None) => {
                self.stage = Stage::Bound {
                    job,
                    node,
                    stuck_since: Some(now),
                };
                out.push(Action::WakeAt(now + self.grace + t.stuck_margin));
            }
            (NodeHealth::Ready, Some(_)) => {
                self.stage = Stage::Bound {
                    job,
                    node,
                    stuck_since: None,
                };
            }
            _ => {}
        }
    }

    fn on_tick(&mut self, now: Instant, t: &Timing, out: &mut Vec<Action>) {
        match self.stage.clone() {
            Stage::Refused { retry_at } if now >= retry_at => {
                if self.pod_gone {
                    self.stage = Stage::Finished;
                } else {
                    self.submit(out);
                }
            }
            Stage::Evicting {
                job,
                deadline,
                forced: false,
            } if now >= deadline => {
                self.stage = Stage::Evicting {
                    job,
                    deadline,
                    forced: true,
                };
                out.push(Action::ForceDelete { job });
                out.push(Action::Event {
                    kind: EventKind::Warning,
                    reason: "KillWaitOverrun",
                    message: format!(
                        "The pod outlived Slurm job {job}'s KillWait of {}s; Slurm has freed \
                         the allocation, so the pod is force-deleted",
                        t.kill_wait.as_secs()
                    ),
                });
            }
            Stage::Bound {
                job,
                stuck_since: Some(since),
                ..
            } if now >= since + self.grace + t.stuck_margin => {
                out.push(Action::Event {
                    kind: EventKind::Warning,
                    reason: "SlurmJobReleased",
                    message: format!(
                        "The pod has been terminating on a node that is not Ready for longer \
                         than its grace period; Slurm job {job} is cancelled to free the \
                         allocation"
                    ),
                });
                self.release(job, CancelReason::StuckOnDeadNode, out);
            }
            _ => {}
        }
    }

    // === helpers ===

    fn evict(&mut self, job: JobId, why: String, now: Instant, t: &Timing, out: &mut Vec<Action>) {
        // The pod must be gone before Slurm's SIGKILL; pods admitted under the KillWait
        // rule already have a shorter grace, this only guards pods admitted otherwise.
        let window = t.kill_wait.saturating_sub(t.termination_offset);
        let grace = self
            .grace
            .min(window.saturating_sub(Duration::from_secs(1)));
        let deadline = now + t.kill_wait;
        out.push(Action::Event {
            kind: EventKind::Warning,
            reason: "SlurmJobEnded",
            message: format!("{why}; the pod is deleted before Slurm's KillWait runs out"),
        });
        out.push(Action::Evict { job, grace });
        out.push(Action::WakeAt(deadline));
        self.stage = Stage::Evicting {
            job,
            deadline,
            forced: false,
        };
    }

    fn bound_elsewhere(&mut self, job: JobId, node: &str, other: &str, out: &mut Vec<Action>) {
        out.push(Action::Event {
            kind: EventKind::Warning,
            reason: "FailedScheduling",
            message: format!(
                "The pod was bound to {other} by someone else while Slurm job {job} held \
                 {node}; the job is cancelled"
            ),
        });
        self.release(job, CancelReason::BoundElsewhere, out);
    }

    fn release(&mut self, job: JobId, reason: CancelReason, out: &mut Vec<Action>) {
        out.push(Action::Cancel { job, reason });
        self.stage = Stage::Releasing { job };
    }

    fn condition(&mut self, reason: &'static str, message: String, out: &mut Vec<Action>) {
        let next = (reason, message_hash(&message));
        if self.last_condition != Some(next) {
            out.push(Action::Condition { reason, message });
            self.last_condition = Some(next);
        }
    }
}

/// A condition message's hash. Two different messages hashing alike would only skip one
/// condition write, until the next different message.
fn message_hash(message: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    message.hash(&mut h);
    h.finish()
}

fn backoff(t: &Timing, attempt: u32) -> Duration {
    let factor = 1u32 << attempt.min(16);
    t.submit_backoff
        .saturating_mul(factor)
        .min(t.submit_backoff_max)
}

/// Condition reasons are a closed set; any other translation reason is `InvalidPod`.
fn static_reason(reason: &str) -> &'static str {
    match reason {
        "AnnotationConflict" => "AnnotationConflict",
        _ => "InvalidPod",
    }
}

#[cfg(test)]
mod tests;
