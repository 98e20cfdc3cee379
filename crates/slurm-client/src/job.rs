//! The version-neutral description of a placeholder job: what the scheduler wants Slurm to
//! hold for one pod. The pure translation produces it; each REST API adapter turns it into
//! that version's submit body.

use serde::{Deserialize, Serialize};

/// How the job may share its node with other jobs (`exclusive` annotation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Exclusivity {
    /// No other job on the node (`--exclusive`).
    None,
    /// Only jobs of the same user on the node (`--exclusive=user`).
    User,
    /// Sharing allowed: the partition's default.
    Ok,
}

/// A job's time limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimeLimit {
    /// Whole minutes, as Slurm counts them.
    Minutes(u32),
    /// No limit (`infinite`/`unlimited`).
    Infinite,
}

/// One placeholder job: one node, one task, holding the pod's resources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaceholderJob {
    /// `<namespace>/<pod-name>`.
    pub name: String,
    /// `slurm-pod-scheduler/v1 scheduler=<name> uid=<pod-uid>`: marks the job as ours.
    pub comment: String,
    /// Whole CPUs for the single task, at least 1.
    pub cpus_per_task: u32,
    /// Memory for the node in MiB (Slurm's MB), at least 1.
    pub memory_per_node_mb: u64,
    /// Generic resources per node, e.g. `gpu:2`; `None` when the pod asks for none.
    pub gres: Option<String>,
    pub partition: Option<String>,
    /// Feature expression, e.g. `intel&ib`.
    pub constraint: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    /// Numeric UID the job runs as; `None` runs it as the token's user.
    pub user_id: Option<u32>,
    /// Numeric GID; set whenever `user_id` is (defaults to it).
    pub group_id: Option<u32>,
    /// `None` here means the annotation was absent (partition default); GPU pods get
    /// `Some(Exclusivity::None)` unless the annotation says otherwise.
    pub exclusive: Option<Exclusivity>,
    pub time_limit: Option<TimeLimit>,
    pub reservation: Option<String>,
    /// Slurm nodes the job must not land on (nodes Kubernetes would refuse).
    pub excluded_nodes: Vec<String>,
}
