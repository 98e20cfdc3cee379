//! The vocabulary of a pod's life: what is observed, what is decided, and the stages.

use std::sync::Arc;
use std::time::{Duration, Instant};

pub type JobId = u32;

/// Why a job is being cancelled (the `reason` label of `jobs_cancelled_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelReason {
    /// The pod finished (Succeeded/Failed) or is gone.
    PodEnded,
    /// The pod was deleted before Slurm allocated it a node.
    PodDeletedWhilePending,
    /// The pod's placement inputs changed while the job was pending.
    PodChanged,
    /// Slurm allocated a node that maps to no usable Kubernetes node.
    UnmappableNode,
    /// Someone else bound the pod to another node.
    BoundElsewhere,
    /// The pod is stuck terminating on a node that is not Ready.
    StuckOnDeadNode,
}

impl CancelReason {
    pub fn label(self) -> &'static str {
        match self {
            Self::PodEnded => "pod_ended",
            Self::PodDeletedWhilePending => "pod_deleted_pending",
            Self::PodChanged => "pod_changed",
            Self::UnmappableNode => "unmappable_node",
            Self::BoundElsewhere => "bound_elsewhere",
            Self::StuckOnDeadNode => "stuck_on_dead_node",
        }
    }
}

/// The pod as the watcher last saw it, reduced to what the decisions need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    /// `spec.nodeName`.
    pub node: Option<String>,
    pub phase: PodPhase,
    /// Deletion has started (`deletionTimestamp` set): the containers may still run.
    pub terminating: bool,
    /// `spec.schedulingGates` is not empty.
    pub gated: bool,
    /// `terminationGracePeriodSeconds` after defaulting.
    pub grace: Duration,
    /// A fingerprint of everything that decides the placeholder job (requests, placement
    /// annotations): when it changes, a rejected pod is reconsidered and a pending job is
    /// replaced.
    pub fingerprint: u64,
    /// The translation said no: reason and message of the first rejection (all of them go
    /// into the event, which the runtime composes).
    /// Shared, since the pod's life keeps the newest one too.
    pub rejection: Option<Arc<(String, String)>>,
    /// The job id the pod carries from an earlier binding (`<prefix>job-id`).
    pub bound_job: Option<JobId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodPhase {
    Pending,
    Running,
    Succeeded,
    Failed,
    Unknown,
}

impl PodPhase {
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

/// The job as the last successful look at Slurm showed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobView {
    /// Waiting for resources; Slurm's reason (`Resources`, `Priority`, `PartitionConfig`).
    Pending { reason: String },
    /// Base state RUNNING without the COMPLETING flag, on this Slurm node.
    Running { slurm_node: String },
    /// Anything else: the job has ended or is ending (COMPLETED, CANCELLED, FAILED,
    /// TIMEOUT, PREEMPTED, NODE_FAIL, SUSPENDED, or the COMPLETING flag).
    Ended { state: String, reason: String },
    /// Proved absent: a lookup by id answered "invalid job id", or a complete list taken
    /// after the submit lacks it. Never inferred from an error.
    Gone,
}

/// Pending reasons that will not resolve by waiting: the pod owner must change something
/// (or an administrator must), so the pod is told the job is refused, not merely queued.
pub(crate) const HOPELESS_REASONS: &[&str] = &[
    "PartitionConfig",
    "BadConstraints",
    "PartitionNodeLimit",
    "PartitionTimeLimit",
    "InvalidAccount",
    "InvalidQOS",
    "QOSJobLimit",
    "AccountNotAllowed",
    "PartitionDown",
    "PartitionInactive",
    "ReqNodeNotAvail",
];

/// How a Kubernetes node that Slurm's allocation maps to can be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeFit {
    /// The node exists, is Ready and schedulable for this pod.
    Usable(String),
    /// The Slurm node maps to no Kubernetes node, or to one this pod cannot run on.
    Unusable { why: String },
}

/// The state of a Kubernetes node a bound pod is on, for stuck-termination handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeHealth {
    Ready,
    /// NotReady, unreachable, tainted out-of-service, or deleted.
    Dead,
}

/// What the runtime must do. Each request's answer comes back as an [`Observation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Submit the placeholder job (after looking for one with our name and marker, so a
    /// lost answer never makes a second job), excluding these Slurm nodes.
    Submit { exclude: Vec<String> },
    /// Cancel with SIGKILL: the allocation is freed at once.
    Cancel { job: JobId, reason: CancelReason },
    /// `pods/binding` with the job id as an annotation.
    Bind { job: JobId, node: String },
    /// Add `DisruptionTarget`, then delete with this grace and a UID precondition.
    Evict { job: JobId, grace: Duration },
    /// Delete with grace 0: KillWait has passed and Slurm no longer holds the allocation.
    ForceDelete { job: JobId },
    /// Set `PodScheduled=False` with this reason and message (when it differs).
    Condition {
        reason: &'static str,
        message: String,
    },
    /// Publish an event on the pod.
    Event {
        kind: EventKind,
        reason: &'static str,
        message: String,
    },
    /// Ask to be woken up at this instant (a timer), with no other effect.
    WakeAt(Instant),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Normal,
    Warning,
}

/// The outcome of a submit, as the Slurm client classified it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitOutcome {
    Accepted(JobId),
    /// Slurm refused the job; its words, made readable.
    Refused(String),
    /// No answer (timeout, connection failure, slurmrestd down): the job may exist.
    Unknown(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindOutcome {
    Bound,
    /// 409: the pod already has a node.
    AlreadyOn(String),
    /// 404: the pod is gone.
    PodGone,
    /// Anything else (timeouts, 429, 5xx): try again.
    Failed(String),
}

/// Everything the runtime can tell a pod's life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    Pod(PodView),
    /// The pod object no longer exists (a watch DELETED event or a 404).
    PodGone,
    Job(JobView),
    /// Where Slurm's allocation maps to in Kubernetes (asked by the runtime when a job
    /// starts running, answered from its node cache).
    Submitted(SubmitOutcome),
    Placed {
        slurm_node: String,
        fit: NodeFit,
    },
    BindResult(BindOutcome),
    /// The health of the node a terminating pod is on.
    Node(NodeHealth),
    /// slurmrestd stopped answering: waiting pods are told so, and nothing else changes.
    SlurmUnreachable(String),
    Tick,
}

/// Timing rules, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Slurm's KillWait.
    pub kill_wait: Duration,
    /// `--termination-offset`: the margin kept inside KillWait.
    pub termination_offset: Duration,
    /// First submit retry after Slurm refused a job; doubles up to `submit_backoff_max`.
    pub submit_backoff: Duration,
    pub submit_backoff_max: Duration,
    /// Extra time past a terminating pod's grace period before a dead node's job is freed.
    pub stuck_margin: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            kill_wait: Duration::from_secs(30),
            termination_offset: Duration::from_secs(5),
            submit_backoff: Duration::from_secs(5),
            submit_backoff_max: Duration::from_secs(600),
            stuck_margin: Duration::from_secs(30),
        }
    }
}

/// Where the pod is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    /// Not yet considered, or waiting for scheduling gates.
    New,
    /// Refused by validation; reconsidered only when the fingerprint changes.
    Rejected,
    /// A submit is in flight (or its answer was lost and it is being resolved).
    Submitting,
    /// Slurm refused the job, or could not be reached; the submit is retried at `retry_at`.
    Refused { retry_at: Instant },
    /// The job waits in Slurm's queue.
    Queued { job: JobId },
    /// Slurm allocated `slurm_node`; the runtime maps it to a Kubernetes node.
    Placing { job: JobId, slurm_node: String },
    /// A binding to `node` is in flight.
    Binding { job: JobId, node: String },
    /// The pod runs on `node`, held by `job`.
    Bound {
        job: JobId,
        node: String,
        stuck_since: Option<Instant>,
    },
    /// Slurm ended the job; the pod is being deleted before KillWait runs out.
    Evicting {
        job: JobId,
        deadline: Instant,
        forced: bool,
    },
    /// The pod is done with the job; a cancel was requested.
    Releasing { job: JobId },
    /// Nothing left to do: the runtime drops the entry once the pod is gone too.
    Finished,
}
