//! The comment marker that makes a Slurm job ours:
//! `slurm-pod-scheduler/v1 scheduler=<name> uid=<pod-uid>`.

use std::fmt;

const PREFIX: &str = "slurm-pod-scheduler/v1";

/// Parsed job comment: which scheduler submitted the job, for which pod.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JobMarker {
    /// `--scheduler-name` of the scheduler that owns the job.
    pub scheduler: String,
    /// UID of the pod the job holds resources for.
    pub pod_uid: String,
}

impl JobMarker {
    pub fn new(scheduler: impl Into<String>, pod_uid: impl Into<String>) -> Self {
        Self {
            scheduler: scheduler.into(),
            pod_uid: pod_uid.into(),
        }
    }

    /// Parses a job comment; `None` when it is not one of our markers. Unknown extra
    /// `key=value` words are tolerated so a later marker version can add some.
    pub fn parse(comment: &str) -> Option<Self> {
        let mut words = comment.split_ascii_whitespace();
        if words.next()? != PREFIX {
            return None;
        }
        let (mut scheduler, mut pod_uid) = (None, None);
        for word in words {
            match word.split_once('=') {
                Some(("scheduler", v)) if !v.is_empty() => scheduler = Some(v),
                Some(("uid", v)) if !v.is_empty() => pod_uid = Some(v),
                _ => {}
            }
        }
        Some(Self::new(scheduler?, pod_uid?))
    }

    /// Whether a comment marks a job of the scheduler `name`.
    pub fn is_ours(comment: &str, name: &str) -> bool {
        Self::parse(comment).is_some_and(|m| m.scheduler == name)
    }
}

impl fmt::Display for JobMarker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX} scheduler={} uid={}",
            self.scheduler, self.pod_uid
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_complete_markers() {
        let m = JobMarker::new("sps", "1234-abcd");
        assert_eq!(JobMarker::parse(&m.to_string()), Some(m));
        let cases = [
            ("", None),
            ("slurm-pod-scheduler/v1", None),
            ("slurm-pod-scheduler/v1 scheduler=a", None),
            ("slurm-pod-scheduler/v2 scheduler=a uid=b", None),
            ("hello scheduler=a uid=b", None),
            ("slurm-pod-scheduler/v1 scheduler= uid=b", None),
            (
                "slurm-pod-scheduler/v1 uid=b scheduler=a extra=1",
                Some(("a", "b")),
            ),
        ];
        for (comment, want) in cases {
            let want = want.map(|(s, u)| JobMarker::new(s, u));
            assert_eq!(JobMarker::parse(comment), want, "{comment:?}");
        }
        assert!(JobMarker::is_ours(
            "slurm-pod-scheduler/v1 scheduler=a uid=b",
            "a"
        ));
        assert!(!JobMarker::is_ours(
            "slurm-pod-scheduler/v1 scheduler=a uid=b",
            "ab"
        ));
    }
}
