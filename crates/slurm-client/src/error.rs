//! The client's errors. Slurm's error numbers become typed rejections whose messages a
//! pod's owner can act on; transport failures are their own kind, *unknown*, which never
//! proves that a job is gone.

use std::time::Duration;

use thiserror::Error;

use crate::types::JobId;
use crate::version::ApiVersion;

/// One entry of a slurmrestd `errors` array.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SlurmError {
    /// `error_number` (or `error_code` in v0.0.38 submit answers); `None` when absent.
    pub number: Option<i64>,
    /// Slurm's short text, e.g. `Invalid partition name specified`.
    pub error: String,
    pub description: String,
}

impl std::fmt::Display for SlurmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.number {
            Some(n) => write!(f, "{} (error {n})", self.error)?,
            None => write!(f, "{}", self.error)?,
        }
        if !self.description.is_empty() && self.description != self.error {
            write!(f, ": {}", self.description)?;
        }
        Ok(())
    }
}

/// Why Slurm refused a job, in terms of what the pod asked for.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Rejection {
    /// The partition annotation names no partition.
    #[error("partition `{0}` does not exist")]
    UnknownPartition(String),
    /// No node has the requested features.
    #[error("no node has features `{0}`")]
    UnknownFeature(String),
    /// No node in the partition has that many CPUs and that much memory (with the features).
    #[error("no node has {cpus} CPUs and {memory_mb} MB{}", features_suffix(.features))]
    NodeTooSmall {
        cpus: u32,
        memory_mb: u64,
        features: Option<String>,
    },
    /// The partition as a whole is too small or its limits forbid the job.
    #[error("the partition does not allow {cpus} CPUs and {memory_mb} MB per job")]
    PartitionTooSmall { cpus: u32, memory_mb: u64 },
    #[error("account `{0}` does not exist or may not use this partition")]
    InvalidAccount(String),
    #[error("QoS `{0}` does not exist or is not allowed for this account")]
    InvalidQos(String),
    #[error("GRES `{0}` is not configured on any node")]
    InvalidGres(String),
    #[error("reservation `{0}` does not exist or is not usable by this job")]
    InvalidReservation(String),
    #[error("Slurm refused the user or group id: {0}")]
    InvalidUser(String),
    #[error("time limit is not allowed by the partition")]
    InvalidTimeLimit,
    /// Anything else Slurm said, verbatim.
    #[error("{0}")]
    Other(SlurmError),
}

fn features_suffix(features: &Option<String>) -> String {
    match features {
        Some(f) if !f.is_empty() => format!(" with features `{f}`"),
        _ => String::new(),
    }
}

/// Everything that can go wrong talking to slurmrestd.
#[derive(Debug, Error)]
pub enum Error {
    /// The request may or may not have reached Slurm: timeout, refused or reset connection,
    /// slurmrestd died mid-answer. Never a proof that a job is gone.
    #[error("slurmrestd unreachable at {endpoint} (outcome unknown): {reason}")]
    Unknown { endpoint: String, reason: String },
    /// slurmrestd rejected the token, and again after re-reading the token file.
    #[error(
        "slurmrestd rejected the token (HTTP {status}) even after re-reading it; \
         {rejections} rejection(s) so far: renew the token (scontrol token)"
    )]
    AuthRejected { status: u16, rejections: u64 },
    /// Slurm refused the submitted job.
    #[error("Slurm refused job `{name}`: {rejection}")]
    Rejected { name: String, rejection: Rejection },
    /// Slurm answered "invalid job id": the job does not exist (any more).
    #[error("Slurm job {0} does not exist (any more)")]
    JobNotFound(JobId),
    /// The job cannot be expressed in this cluster's API version.
    #[error("{0}")]
    Unsupported(String),
    /// slurmrestd serves none of the versions this client speaks.
    #[error("slurmrestd at {url} serves none of v0.0.38, v0.0.40, v0.0.41, v0.0.42")]
    NoCommonVersion { url: String },
    /// An endpoint that worked answered 404 with no Slurm error: slurmrestd was probably
    /// upgraded; the version is detected again before the next request.
    #[error("slurmrestd no longer serves {path} (API {version}); detecting the version again")]
    VersionGone { version: ApiVersion, path: String },
    /// slurmrestd answered an error this client does not map.
    #[error("slurmrestd {endpoint} answered HTTP {status}: {}", display_errors(.errors, .body))]
    Slurm {
        endpoint: String,
        status: u16,
        errors: Vec<SlurmError>,
        body: String,
    },
    /// The answer did not have the expected shape.
    #[error("cannot decode slurmrestd's answer to {endpoint}: {reason}")]
    Decode { endpoint: String, reason: String },
    /// The token file could not be read.
    #[error("cannot read the Slurm token file {path}: {source}")]
    TokenFile {
        path: String,
        source: std::io::Error,
    },
    /// Invalid client configuration (URL, headers).
    #[error("invalid slurmrestd client configuration: {0}")]
    Config(String),
}

fn display_errors(errors: &[SlurmError], body: &str) -> String {
    if errors.is_empty() {
        let mut b: String = body.chars().take(200).collect();
        if b.is_empty() {
            b.push_str("(empty body)");
        }
        return b;
    }
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Coarse classes of [`Error`], for policy and metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Outcome unknown: retry later, assume nothing.
    Unknown,
    Auth,
    Rejected,
    NotFound,
    Unsupported,
    Protocol,
    Config,
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Unknown { .. } => ErrorKind::Unknown,
            Error::AuthRejected { .. } => ErrorKind::Auth,
            Error::Rejected { .. } => ErrorKind::Rejected,
            Error::JobNotFound(_) => ErrorKind::NotFound,
            Error::Unsupported(_) | Error::NoCommonVersion { .. } => ErrorKind::Unsupported,
            Error::VersionGone { .. } | Error::Slurm { .. } | Error::Decode { .. } => {
                ErrorKind::Protocol
            }
            Error::TokenFile { .. } | Error::Config(_) => ErrorKind::Config,
        }
    }

    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self.kind() {
            ErrorKind::Unknown => "unknown",
            ErrorKind::Auth => "auth",
            ErrorKind::Rejected => "rejected",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Config => "config",
        }
    }

    /// Whether retrying the same idempotent request later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Unknown { .. } | Error::VersionGone { .. } => true,
            Error::Slurm { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    pub(crate) fn unknown(endpoint: &str, reason: impl ToString) -> Self {
        Error::Unknown {
            endpoint: endpoint.to_string(),
            reason: reason.to_string(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the submitted job asked for, to phrase a [`Rejection`].
pub(crate) struct Asked<'a> {
    pub partition: Option<&'a str>,
    pub constraint: Option<&'a str>,
    pub account: Option<&'a str>,
    pub qos: Option<&'a str>,
    pub gres: Option<&'a str>,
    pub reservation: Option<&'a str>,
    pub cpus: u32,
    pub memory_mb: u64,
}

/// Turns Slurm's answer to a failed submit into a rejection a pod's owner can act on.
/// Numbers are Slurm's `slurm_errno.h`; the text is matched as well because numbers were
/// renumbered between releases for some of the rarer errors.
pub(crate) fn classify_rejection(err: &SlurmError, asked: &Asked<'_>) -> Rejection {
    let text = err.error.to_ascii_lowercase();
    let own = |o: Option<&str>| o.unwrap_or_default().to_string();
    match err.number {
        Some(2000) => return Rejection::UnknownPartition(own(asked.partition)),
        Some(2029) => return Rejection::UnknownFeature(own(asked.constraint)),
        Some(2014) => {
            return Rejection::NodeTooSmall {
                cpus: asked.cpus,
                memory_mb: asked.memory_mb,
                features: asked.constraint.map(str::to_string),
            }
        }
        Some(2005) | Some(2015) => {
            return Rejection::PartitionTooSmall {
                cpus: asked.cpus,
                memory_mb: asked.memory_mb,
            }
        }
        Some(2010) => return Rejection::InvalidUser(err.error.clone()),
        Some(2045) => return Rejection::InvalidAccount(own(asked.account)),
        Some(2066) => return Rejection::InvalidQos(own(asked.qos)),
        _ => {}
    }
    if text.contains("invalid account") {
        Rejection::InvalidAccount(own(asked.account))
    } else if text.contains("invalid qos") {
        Rejection::InvalidQos(own(asked.qos))
    } else if text.contains("generic resource") || text.contains("gres") {
        Rejection::InvalidGres(own(asked.gres))
    } else if text.contains("reservation") {
        Rejection::InvalidReservation(own(asked.reservation))
    } else if text.contains("time limit") {
        Rejection::InvalidTimeLimit
    } else if text.contains("user id") || text.contains("group id") {
        Rejection::InvalidUser(err.error.clone())
    } else {
        Rejection::Other(err.clone())
    }
}

/// Slurm error numbers that a failed submit or job lookup may carry on its own; on
/// v0.0.38 a 500 with none of them may be a rejected token (22.05 does not say).
pub(crate) fn is_known_job_error(number: i64) -> bool {
    (2000..3000).contains(&number) || (9000..9300).contains(&number)
}

/// Backoff for retries of idempotent requests: exponential with full jitter.
pub(crate) fn backoff(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.min(16)).min(cap);
    let jitter: f64 = rand::random::<f64>();
    exp.mul_f64(0.5 + jitter / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked() -> Asked<'static> {
        Asked {
            partition: Some("gpu"),
            constraint: Some("arm"),
            account: Some("proj"),
            qos: Some("high"),
            gres: None,
            reservation: None,
            cpus: 64,
            memory_mb: 512000,
        }
    }

    #[test]
    fn messages_name_what_the_pod_asked_for() {
        let e = |number, text: &str| SlurmError {
            number: Some(number),
            error: text.to_string(),
            description: String::new(),
        };
        let cases = [
            (
                e(2000, "Invalid partition name specified"),
                "partition `gpu` does not exist",
            ),
            (
                e(2029, "Invalid feature specification"),
                "no node has features `arm`",
            ),
            (
                e(2014, "Requested node configuration is not available"),
                "no node has 64 CPUs and 512000 MB with features `arm`",
            ),
            (
                e(2005, "More processors requested than permitted"),
                "the partition does not allow 64 CPUs and 512000 MB per job",
            ),
            (
                e(
                    2045,
                    "Invalid account or account/partition combination specified",
                ),
                "account `proj` does not exist or may not use this partition",
            ),
            (
                e(9999, "Invalid qos specification"),
                "QoS `high` does not exist or is not allowed for this account",
            ),
        ];
        for (err, want) in cases {
            assert_eq!(classify_rejection(&err, &asked()).to_string(), want);
        }
    }

    #[test]
    fn backoff_grows_and_stays_capped() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(2);
        for attempt in 0..20 {
            let d = backoff(attempt, base, cap);
            assert!(d <= cap, "{d:?}");
            assert!(d >= base / 2, "{d:?}");
        }
        assert!(backoff(5, base, cap) >= Duration::from_secs(1));
    }
}
