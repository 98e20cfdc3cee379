//! Talking to slurmrestd: one client ([`SlurmClient`]) over version adapters for REST API
//! v0.0.38 (Slurm 22.05) and v0.0.40, v0.0.41, v0.0.42 (Slurm 24.11), with version-neutral
//! job, state and node types, typed errors, token rotation and request counters.

mod adapter;
pub mod auth;
mod client;
pub mod error;
pub mod hostlist;
pub mod job;
pub mod marker;
pub mod metrics;
pub mod types;
pub mod version;

pub use adapter::{decode_job_list, submit_body, SubmitOptions, PLACEHOLDER_SCRIPT};
pub use auth::TokenSource;
pub use client::{
    CancelOutcome, CancelSignal, ClientConfig, JobSnapshot, PollCursor, PollOutcome, SlurmClient,
};
pub use error::{Error, ErrorKind, Rejection, Result, SlurmError};
pub use job::{Exclusivity, PlaceholderJob, TimeLimit};
pub use marker::JobMarker;
pub use metrics::{RequestCounters, SlurmObserver};
pub use types::{BaseState, JobDetails, JobId, JobState, JobStatus, NodeInfo, PingStatus};
pub use version::ApiVersion;
