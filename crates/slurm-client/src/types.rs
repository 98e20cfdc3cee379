//! Version-neutral views of what slurmrestd reports: job states, jobs, nodes, ping.

use std::collections::BTreeSet;
use std::fmt;

use crate::job::{Exclusivity, TimeLimit};
use crate::marker::JobMarker;

/// Slurm's numeric job id.
pub type JobId = u32;

/// A job's base state (Slurm's `JOB_STATE_BASE`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BaseState {
    Pending,
    Running,
    Suspended,
    Completed,
    Cancelled,
    Failed,
    Timeout,
    NodeFail,
    Preempted,
    BootFail,
    Deadline,
    OutOfMemory,
    /// The job has ended but Slurm did not say how: v0.0.38 reports a single `COMPLETING`
    /// in place of the base state while the job's processes are being killed.
    EndedUnknown,
    /// A state this client does not know; kept verbatim.
    Other(String),
}

impl BaseState {
    fn parse(s: &str) -> Self {
        match s {
            "PENDING" => Self::Pending,
            "RUNNING" => Self::Running,
            "SUSPENDED" => Self::Suspended,
            "COMPLETED" => Self::Completed,
            "CANCELLED" => Self::Cancelled,
            "FAILED" => Self::Failed,
            "TIMEOUT" => Self::Timeout,
            "NODE_FAIL" => Self::NodeFail,
            "PREEMPTED" => Self::Preempted,
            "BOOT_FAIL" => Self::BootFail,
            "DEADLINE" => Self::Deadline,
            "OUT_OF_MEMORY" => Self::OutOfMemory,
            other => Self::Other(other.to_string()),
        }
    }

    fn is_base(s: &str) -> bool {
        !matches!(Self::parse(s), Self::Other(_))
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Pending => "PENDING",
            Self::Running => "RUNNING",
            Self::Suspended => "SUSPENDED",
            Self::Completed => "COMPLETED",
            Self::Cancelled => "CANCELLED",
            Self::Failed => "FAILED",
            Self::Timeout => "TIMEOUT",
            Self::NodeFail => "NODE_FAIL",
            Self::Preempted => "PREEMPTED",
            Self::BootFail => "BOOT_FAIL",
            Self::Deadline => "DEADLINE",
            Self::OutOfMemory => "OUT_OF_MEMORY",
            Self::EndedUnknown => "ENDED",
            Self::Other(s) => s,
        }
    }
}

/// A job's state as base state plus flags (`COMPLETING`, `CONFIGURING`, `REQUEUED`...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobState {
    pub base: BaseState,
    pub flags: BTreeSet<String>,
}

impl JobState {
    /// From v0.0.40+'s list form, e.g. `["CANCELLED", "COMPLETING"]`.
    pub fn from_list<S: AsRef<str>>(items: &[S]) -> Self {
        let base = items
            .iter()
            .map(AsRef::as_ref)
            .find(|s| BaseState::is_base(s))
            .map(BaseState::parse)
            .unwrap_or_else(|| BaseState::Other(String::new()));
        let flags = items
            .iter()
            .map(AsRef::as_ref)
            .filter(|s| !BaseState::is_base(s))
            .map(str::to_string)
            .collect();
        Self { base, flags }
    }

    /// From v0.0.38's single string, where a flag replaces the base state when set.
    pub fn from_single(s: &str) -> Self {
        match s {
            "COMPLETING" => Self {
                base: BaseState::EndedUnknown,
                flags: BTreeSet::from(["COMPLETING".to_string()]),
            },
            // 22.05 prints these flags in place of a still-valid base state.
            "CONFIGURING" | "RESIZING" | "SIGNALING" | "STAGE_OUT" => Self {
                base: BaseState::Running,
                flags: BTreeSet::from([s.to_string()]),
            },
            "REQUEUED" | "REQUEUE_FED" | "REQUEUE_HOLD" | "RESV_DEL_HOLD" => Self {
                base: BaseState::Pending,
                flags: BTreeSet::from([s.to_string()]),
            },
            other => Self {
                base: BaseState::parse(other),
                flags: BTreeSet::new(),
            },
        }
    }

    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.contains(flag)
    }

    /// Running and not being torn down: the only state in which a bound pod keeps its
    /// allocation. `CONFIGURING` does not count against it.
    pub fn holds_allocation(&self) -> bool {
        self.base == BaseState::Running && !self.has_flag("COMPLETING")
    }

    /// Pending in the queue, not yet allocated.
    pub fn is_pending(&self) -> bool {
        self.base == BaseState::Pending && !self.has_flag("COMPLETING")
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.base.as_str())?;
        for flag in &self.flags {
            write!(f, "+{flag}")?;
        }
        Ok(())
    }
}

/// What the poll and the job list report per job: the fields the scheduler acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStatus {
    pub job_id: JobId,
    /// `<namespace>/<pod-name>` for our jobs.
    pub name: String,
    /// The parsed comment; `None` for jobs that are not any scheduler's placeholders.
    pub marker: Option<JobMarker>,
    pub state: JobState,
    /// Slurm's reason (`Resources`, `Priority`, `PartitionConfig`...); `None` for `None`.
    pub reason: Option<String>,
    /// Allocated nodes, hostlist expanded; empty while pending.
    pub nodes: Vec<String>,
}

/// One job as Slurm reports it, with the fields the placeholder job asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobDetails {
    pub status: JobStatus,
    pub comment: String,
    pub partition: String,
    /// The feature expression (`constraints` when submitting).
    pub features: String,
    pub account: String,
    /// Empty without accounting: Slurm then ignores the QoS.
    pub qos: String,
    pub reservation: String,
    /// CPUs allocated (or requested, while pending).
    pub cpus: Option<u32>,
    pub memory_per_node_mb: Option<u64>,
    /// GRES per node as Slurm prints it (`gres/gpu:2` on v0.0.40+, `gpu:2` on v0.0.38).
    pub tres_per_node: String,
    /// GRES allocated per node, e.g. `gpu:1(IDX:0)`; the TRES string only lists GRES that
    /// accounting tracks (`AccountingStorageTRES`), this always does.
    pub gres_allocated: Vec<String>,
    /// The allocated TRES (`cpu=2,mem=300M,node=1,billing=2,gres/gpu=1`).
    pub tres_alloc: String,
    pub excluded_nodes: Vec<String>,
    pub time_limit: Option<TimeLimit>,
    /// Node sharing as Slurm reports it; `None` when the partition default applies.
    pub exclusivity: Option<Exclusivity>,
    pub user_id: Option<u32>,
    pub group_id: Option<u32>,
    pub requeue: Option<bool>,
    /// Unix seconds.
    pub submit_time: Option<u64>,
}

/// One Slurm node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    /// Base state and flags, upper case (`IDLE`, `MIXED`, `DRAIN`...).
    pub state: Vec<String>,
    pub features: Vec<String>,
    pub partitions: Vec<String>,
    pub cpus: u32,
    pub real_memory_mb: u64,
    pub gres: String,
}

/// What `ping` says of slurmctld.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PingStatus {
    /// slurmctld answers and the token is accepted.
    Up,
    /// slurmctld is unreachable from slurmrestd, or (24.11) the token was rejected.
    Down,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_states_split_base_and_flags() {
        let s = JobState::from_list(&["CANCELLED", "COMPLETING"]);
        assert_eq!(s.base, BaseState::Cancelled);
        assert!(s.has_flag("COMPLETING"));
        assert!(!s.holds_allocation());
        let s = JobState::from_list(&["RUNNING", "CONFIGURING"]);
        assert!(s.holds_allocation());
        let s = JobState::from_list(&["RUNNING", "COMPLETING"]);
        assert!(!s.holds_allocation());
        assert_eq!(
            JobState::from_list(&["SUSPENDED"]).base,
            BaseState::Suspended
        );
    }

    #[test]
    fn single_completing_is_an_ended_job() {
        let s = JobState::from_single("COMPLETING");
        assert_eq!(s.base, BaseState::EndedUnknown);
        assert!(!s.holds_allocation());
        assert!(JobState::from_single("RUNNING").holds_allocation());
        assert!(JobState::from_single("CONFIGURING").holds_allocation());
        assert!(JobState::from_single("PENDING").is_pending());
        assert_eq!(
            JobState::from_single("WEIRD").base,
            BaseState::Other("WEIRD".into())
        );
    }
}
