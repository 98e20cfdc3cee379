//! The catalogue of rejection reasons and messages: every sentence a user reads when the
//! scheduler refuses a pod, or warns about one, is built here. Messages name the field, the
//! value, the limit and the fix. Two of them are also repeated word for word by the
//! deployment's admission policy, so their fixed part is a public constant.

use std::fmt;

use serde::Serialize;

/// First sentence of every "missing CPU or memory request" rejection. The admission policy
/// in `deploy/` repeats it word for word: change both together.
pub const CPU_AND_MEMORY_REQUIRED: &str = "A pod scheduled by Slurm must request both CPU and \
memory above zero (resources.requests.cpu and resources.requests.memory of its containers, or \
spec.resources.requests), because Slurm reserves exactly what the pod requests.";

/// First sentence of every "grace period too long" rejection. The admission policy in
/// `deploy/` repeats it word for word: change both together.
pub const GRACE_PERIOD_TOO_LONG: &str = "A pod scheduled by Slurm must have \
spec.terminationGracePeriodSeconds (30 when unset) strictly less than Slurm's KillWait minus \
the scheduler's termination offset, so that it is gone before Slurm kills its placeholder job.";

/// The `reason` of the pod's `PodScheduled` condition when it is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Reason {
    /// The pod itself cannot become a Slurm job (requests, grace period, annotation values).
    InvalidPod,
    /// The pod contradicts the operator's per-namespace policy.
    AnnotationConflict,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidPod => "InvalidPod",
            Reason::AnnotationConflict => "AnnotationConflict",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The finer cause of a rejection, for tests, logs and metrics labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cause {
    /// No CPU or no memory request, or a zero one.
    MissingRequest,
    /// A request, limit or overhead that is not a quantity, or is negative.
    InvalidQuantity,
    /// More CPUs, memory or devices than a Slurm job can hold.
    RequestTooLarge,
    /// A device (GPU) request that is not a whole number.
    FractionalDevices,
    /// `terminationGracePeriodSeconds` not below `KillWait - offset`.
    GracePeriodTooLong,
    /// An annotation value Slurm cannot take (control characters, length, syntax).
    InvalidAnnotation,
    /// A user name where a numeric UID or GID belongs.
    NameAsId,
    /// A UID or GID outside 1..=2147483647.
    IdOutOfRange,
    /// An annotation that differs from the value the operator pinned.
    PinnedAnnotation,
    /// A UID or GID the namespace policy does not allow.
    IdNotAllowed,
}

/// One reason a pod cannot be scheduled.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rejection {
    pub reason: Reason,
    pub cause: Cause,
    pub message: String,
}

/// What a warning is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WarningKind {
    /// A key under our prefix that we do not know (probably a typo).
    UnknownAnnotation,
}

/// Something the user should fix that does not stop scheduling.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Warning {
    pub kind: WarningKind,
    pub message: String,
}

/// A value as it appears in messages: quoted, escaped (a newline shows as `\n`), and cut
/// short when long, so a hostile value cannot break or flood an event.
pub fn shown(value: &str) -> String {
    const MAX_SHOWN: usize = 64;
    let count = value.chars().count();
    if count <= MAX_SHOWN {
        return format!("\"{}\"", value.escape_debug());
    }
    let head: String = value.chars().take(MAX_SHOWN).collect();
    format!("\"{}\"... ({count} characters)", head.escape_debug())
}

fn invalid(cause: Cause, message: String) -> Rejection {
    Rejection {
        reason: Reason::InvalidPod,
        cause,
        message,
    }
}

fn conflict(cause: Cause, message: String) -> Rejection {
    Rejection {
        reason: Reason::AnnotationConflict,
        cause,
        message,
    }
}

// === requests ===

/// `resource` is `CPU` or `memory`; `present` tells a zero request from an absent one.
pub fn missing_request(resource: &str, present: bool, example: &str) -> Rejection {
    let key = resource.to_lowercase();
    let what = if present {
        format!("This pod's {resource} request adds up to zero")
    } else {
        format!("This pod requests no {resource}")
    };
    invalid(
        Cause::MissingRequest,
        format!(
            "{CPU_AND_MEMORY_REQUIRED} {what}: set resources.requests.{key} (for example \
             {key}: {example}) on its containers."
        ),
    )
}

pub fn invalid_quantity(field: &str, problem: &str) -> Rejection {
    invalid(
        Cause::InvalidQuantity,
        format!("{field}: {problem}. Write a valid Kubernetes quantity there."),
    )
}

pub fn negative_quantity(field: &str, value: &str) -> Rejection {
    invalid(
        Cause::InvalidQuantity,
        format!(
            "{field} is {}, a negative amount; requests must be zero or more.",
            shown(value)
        ),
    )
}

pub fn request_too_large(what: &str, value: u128, limit: u128) -> Rejection {
    invalid(
        Cause::RequestTooLarge,
        format!(
            "The pod requests {value} {what}, more than the {limit} a Slurm job can hold; \
             lower the request."
        ),
    )
}

pub fn fractional_devices(resource: &str, value: &str) -> Rejection {
    invalid(
        Cause::FractionalDevices,
        format!(
            "The pod requests {value} of {resource}, which is not a whole number; request \
             whole devices (for example {resource}: 1)."
        ),
    )
}

// === grace period ===

/// `grace` is the pod's value in seconds, `None` when unset (Kubernetes then uses 30).
pub fn grace_period_too_long(grace: i64, unset: bool, kill_wait: u64, offset: u64) -> Rejection {
    let limit = kill_wait.saturating_sub(offset);
    let origin = if unset {
        " (the Kubernetes default, as it is unset)"
    } else {
        ""
    };
    let fix = if limit == 0 {
        "ask the operator to raise KillWait or lower the termination offset".to_string()
    } else {
        format!(
            "set spec.terminationGracePeriodSeconds to {} or less, or ask the operator to \
             raise Slurm's KillWait",
            limit - 1
        )
    };
    invalid(
        Cause::GracePeriodTooLong,
        format!(
            "{GRACE_PERIOD_TOO_LONG} This pod's grace period is {grace} s{origin}; it must be \
             below {limit} s (KillWait {kill_wait} s minus offset {offset} s): {fix}."
        ),
    )
}

// === annotations ===

pub fn annotation_empty(key: &str) -> Rejection {
    invalid(
        Cause::InvalidAnnotation,
        format!("Annotation {key} is empty; set a value or remove the annotation."),
    )
}

pub fn annotation_control_characters(key: &str, value: &str) -> Rejection {
    invalid(
        Cause::InvalidAnnotation,
        format!(
            "Annotation {key} is {}, which contains control characters (such as a newline) \
             that Slurm cannot take; write the value on one line without them.",
            shown(value)
        ),
    )
}

pub fn annotation_too_long(key: &str, value: &str, max: usize) -> Rejection {
    invalid(
        Cause::InvalidAnnotation,
        format!(
            "Annotation {key} is {}, longer than the {max} characters Slurm takes; shorten it.",
            shown(value)
        ),
    )
}

/// `allowed` describes the accepted syntax, e.g. "letters, digits, '-', '_' and '.'".
pub fn annotation_syntax(key: &str, value: &str, expected: &str) -> Rejection {
    invalid(
        Cause::InvalidAnnotation,
        format!(
            "Annotation {key} is {}, but it must be {expected}.",
            shown(value)
        ),
    )
}

/// `what` is "UID" or "GID"; `command` the shell command that finds the number.
pub fn name_as_id(key: &str, value: &str, what: &str, command: &str) -> Rejection {
    invalid(
        Cause::NameAsId,
        format!(
            "Annotation {key} is {}, but a numeric {what} is required, not a name; find it \
             with `{command} {}` on a login node and write the number.",
            shown(value),
            value.escape_debug()
        ),
    )
}

pub fn id_out_of_range(key: &str, value: &str, what: &str, allow_zero: bool) -> Rejection {
    let low = if allow_zero { 0 } else { 1 };
    let root = if allow_zero {
        ""
    } else {
        " (0, root, only where the operator allows it)"
    };
    invalid(
        Cause::IdOutOfRange,
        format!(
            "Annotation {key} is {}, but a {what} must be a number from {low} to 2147483647\
             {root}; set the {what} of the user the job should run as.",
            shown(value)
        ),
    )
}

// === namespace policy ===

pub fn pinned_annotation(key: &str, value: &str, pinned: &str, namespace: &str) -> Rejection {
    conflict(
        Cause::PinnedAnnotation,
        format!(
            "Annotation {key} is {}, but the operator pinned it to {} in namespace \
             {namespace}; remove the annotation (the pinned value applies) or set it to {}.",
            shown(value),
            shown(pinned),
            shown(pinned)
        ),
    )
}

/// `allowed` is the policy's ranges as text, e.g. `7000-7999, 8001`.
pub fn id_not_allowed(key: &str, id: u32, what: &str, namespace: &str, allowed: &str) -> Rejection {
    let allowed = if allowed.is_empty() {
        "none".to_string()
    } else {
        allowed.to_string()
    };
    conflict(
        Cause::IdNotAllowed,
        format!(
            "Annotation {key} is {id}, a {what} that namespace {namespace} may not use \
             (allowed: {allowed}); use an allowed {what} or ask the operator to allow this one."
        ),
    )
}

pub fn root_not_allowed(key: &str, what: &str, namespace: &str) -> Rejection {
    conflict(
        Cause::IdNotAllowed,
        format!(
            "Annotation {key} is 0 (root), which namespace {namespace} may not use; run as \
             an ordinary user's {what} or ask the operator to allow root there."
        ),
    )
}

// === warnings ===

pub fn unknown_annotation(key: &str, nearest: &str) -> Warning {
    Warning {
        kind: WarningKind::UnknownAnnotation,
        message: format!(
            "Annotation {} is not one this scheduler knows, so it is ignored; did you mean \
             {nearest}?",
            key.escape_debug()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_escapes_and_shortens() {
        let table = [
            ("batch", "\"batch\""),
            ("a\nb", "\"a\\nb\""),
            ("say \"hi\"", "\"say \\\"hi\\\"\""),
            ("$(rm -rf /)", "\"$(rm -rf /)\""),
        ];
        for (input, want) in table {
            assert_eq!(shown(input), want);
        }
        let long = shown(&"y".repeat(10_000));
        assert!(long.ends_with("... (10000 characters)"), "{long}");
        assert!(long.len() < 100);
    }

    #[test]
    fn grace_message_gives_value_limit_and_fix() {
        let r = grace_period_too_long(30, true, 30, 5);
        assert!(r.message.starts_with(GRACE_PERIOD_TOO_LONG));
        for part in [
            "is 30 s",
            "default",
            "below 25 s",
            "KillWait 30 s",
            "to 24 or less",
        ] {
            assert!(
                r.message.contains(part),
                "{part} missing from {}",
                r.message
            );
        }
        let r = grace_period_too_long(3, false, 5, 5);
        assert!(r.message.contains("raise KillWait"), "{}", r.message);
    }
}
