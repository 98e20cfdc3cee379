//! The pod annotations the scheduler reads: every key is defined once here, with what it
//! means, and every value is checked here before it can reach Slurm. Keys are
//! `<prefix><name>`; the prefix is configurable (default `sunk.coreweave.com/`).

use std::collections::BTreeMap;

use slurm_client::{Exclusivity, TimeLimit};

use super::rejection::{self, Rejection, Warning};

/// The default annotation prefix, that of the SUNK Pod Scheduler, so its pods work unchanged.
pub const DEFAULT_PREFIX: &str = "sunk.coreweave.com/";

/// Longest annotation value passed to Slurm.
pub const MAX_VALUE_CHARS: usize = 256;

/// Largest UID or GID: Slurm reads 4294967294 and 4294967295 as "unset" and "infinite", and
/// Kubernetes and POSIX tools treat ids as signed 32-bit numbers.
pub const MAX_ID: u32 = 2_147_483_647;

/// Every annotation key of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AnnotationKey {
    /// `partition`: Slurm partition(s) of the job, comma-separated.
    Partition,
    /// `constraint`: Slurm feature expression, e.g. `intel`, `a100|h100`, `intel&ib`.
    Constraint,
    /// `account`: Slurm account charged for the job.
    Account,
    /// `qos`: Slurm quality of service.
    Qos,
    /// `user-id`: numeric UID the job runs as.
    UserId,
    /// `group-id`: numeric GID the job runs as; defaults to `user-id`.
    GroupId,
    /// `exclusive`: node sharing, `none`, `user` or `ok`.
    Exclusive,
    /// `time-limit`: Slurm time format, `90`, `1:30:00`, `2-00:00:00`, `infinite`.
    TimeLimit,
    /// `reservation`: Slurm reservation(s) to run in.
    Reservation,
    /// `job-id`: written by the scheduler when it binds the pod; never read as input.
    JobId,
}

impl AnnotationKey {
    /// Every key, in the order messages list them.
    pub const ALL: [AnnotationKey; 10] = [
        AnnotationKey::Partition,
        AnnotationKey::Constraint,
        AnnotationKey::Account,
        AnnotationKey::Qos,
        AnnotationKey::UserId,
        AnnotationKey::GroupId,
        AnnotationKey::Exclusive,
        AnnotationKey::TimeLimit,
        AnnotationKey::Reservation,
        AnnotationKey::JobId,
    ];

    /// The keys users set to place a pod (all but `job-id`).
    pub const PLACEMENT: [AnnotationKey; 9] = [
        AnnotationKey::Partition,
        AnnotationKey::Constraint,
        AnnotationKey::Account,
        AnnotationKey::Qos,
        AnnotationKey::UserId,
        AnnotationKey::GroupId,
        AnnotationKey::Exclusive,
        AnnotationKey::TimeLimit,
        AnnotationKey::Reservation,
    ];

    /// The name after the prefix.
    pub fn name(self) -> &'static str {
        match self {
            AnnotationKey::Partition => "partition",
            AnnotationKey::Constraint => "constraint",
            AnnotationKey::Account => "account",
            AnnotationKey::Qos => "qos",
            AnnotationKey::UserId => "user-id",
            AnnotationKey::GroupId => "group-id",
            AnnotationKey::Exclusive => "exclusive",
            AnnotationKey::TimeLimit => "time-limit",
            AnnotationKey::Reservation => "reservation",
            AnnotationKey::JobId => "job-id",
        }
    }

    pub fn from_name(name: &str) -> Option<AnnotationKey> {
        AnnotationKey::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The full annotation key, `<prefix><name>`.
    pub fn key(self, prefix: &str) -> String {
        format!("{prefix}{}", self.name())
    }
}

/// A checked annotation value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Text(String),
    Id(u32),
    Exclusive(Exclusivity),
    TimeLimit(TimeLimit),
}

/// What a Slurm name may contain: Slurm itself accepts more, but nothing more is needed,
/// and quotes, spaces or `$` in a name are far likelier an attack or a mistake.
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// Feature expressions add Slurm's operators: and, or, counts, brackets, not.
fn is_constraint_char(c: char) -> bool {
    is_name_char(c) || matches!(c, '&' | '|' | ',' | '*' | '[' | ']' | '(' | ')' | ':' | '!')
}

const NAME_SYNTAX: &str = "a Slurm name: letters, digits, '-', '_' and '.'";
const NAME_LIST_SYNTAX: &str =
    "one or more Slurm names separated by commas: letters, digits, '-', '_' and '.'";
const CONSTRAINT_SYNTAX: &str = "a Slurm feature expression: feature names (letters, digits, \
'-', '_', '.') joined by '&', '|' or ',', with optional '*count', '[...]', '(...)' or '!'";
const EXCLUSIVE_SYNTAX: &str = "one of none (no other job on the node), user (only your \
own jobs) or ok (sharing allowed)";
const TIME_SYNTAX: &str = "a Slurm time limit: minutes (90), minutes:seconds, \
hours:minutes:seconds (1:30:00), days-hours, days-hours:minutes, days-hours:minutes:seconds \
(2-00:00:00), or infinite; at least one minute";

/// Checks one value. Root (0) passes here as an id; the namespace policy decides on it.
pub fn check_value(key: AnnotationKey, full_key: &str, value: &str) -> Result<Value, Rejection> {
    if value.is_empty() {
        return Err(rejection::annotation_empty(full_key));
    }
    if value.chars().any(char::is_control) {
        return Err(rejection::annotation_control_characters(full_key, value));
    }
    if value.chars().count() > MAX_VALUE_CHARS {
        return Err(rejection::annotation_too_long(
            full_key,
            value,
            MAX_VALUE_CHARS,
        ));
    }

    let syntax = |ok: bool, expected: &str| {
        if ok {
            Ok(Value::Text(value.to_string()))
        } else {
            Err(rejection::annotation_syntax(full_key, value, expected))
        }
    };
    let list_of_names = value
        .split(',')
        .all(|n| !n.is_empty() && n.chars().all(is_name_char));
    match key {
        AnnotationKey::Account | AnnotationKey::Qos => {
            syntax(value.chars().all(is_name_char), NAME_SYNTAX)
        }
        AnnotationKey::Partition | AnnotationKey::Reservation => {
            syntax(list_of_names, NAME_LIST_SYNTAX)
        }
        AnnotationKey::Constraint => {
            syntax(value.chars().all(is_constraint_char), CONSTRAINT_SYNTAX)
        }
        AnnotationKey::UserId => parse_id(full_key, value, "UID", "id -u"),
        AnnotationKey::GroupId => parse_id(full_key, value, "GID", "getent group"),
        AnnotationKey::Exclusive => match value {
            "none" => Ok(Value::Exclusive(Exclusivity::None)),
            "user" => Ok(Value::Exclusive(Exclusivity::User)),
            "ok" => Ok(Value::Exclusive(Exclusivity::Ok)),
            _ => Err(rejection::annotation_syntax(
                full_key,
                value,
                EXCLUSIVE_SYNTAX,
            )),
        },
        AnnotationKey::TimeLimit => parse_time_limit(value)
            .map(Value::TimeLimit)
            .ok_or_else(|| rejection::annotation_syntax(full_key, value, TIME_SYNTAX)),
        AnnotationKey::JobId => Ok(Value::Text(value.to_string())),
    }
}

fn parse_id(full_key: &str, value: &str, what: &str, command: &str) -> Result<Value, Rejection> {
    if !value.bytes().all(|b| b.is_ascii_digit()) {
        // A leading letter is almost surely a user or group name: say how to get the number.
        let looks_like_name = value.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
        return Err(if looks_like_name {
            rejection::name_as_id(full_key, value, what, command)
        } else {
            rejection::id_out_of_range(full_key, value, what, false)
        });
    }
    match value.parse::<u64>() {
        Ok(id) if id <= u64::from(MAX_ID) => Ok(Value::Id(id as u32)),
        _ => Err(rejection::id_out_of_range(full_key, value, what, false)),
    }
}

/// Slurm's time formats, seconds rounded up to the minute as Slurm does. `None` when the
/// text is none of them, is zero (which Slurm would read as "no limit": say `infinite`),
/// or is too large for Slurm.
pub fn parse_time_limit(value: &str) -> Option<TimeLimit> {
    if value.eq_ignore_ascii_case("infinite") || value.eq_ignore_ascii_case("unlimited") {
        return Some(TimeLimit::Infinite);
    }
    let number = |s: &str| -> Option<u64> {
        if s.is_empty() || s.len() > 9 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };

    let (days, clock) = match value.split_once('-') {
        Some((days, clock)) => (Some(number(days)?), clock),
        None => (None, value),
    };
    let parts: Vec<u64> = clock.split(':').map(number).collect::<Option<_>>()?;
    let seconds = match (days, parts.as_slice()) {
        (None, [m]) => m * 60,
        (None, [m, s]) => m * 60 + s,
        (None, [h, m, s]) => h * 3600 + m * 60 + s,
        (Some(d), [h]) => d * 86400 + h * 3600,
        (Some(d), [h, m]) => d * 86400 + h * 3600 + m * 60,
        (Some(d), [h, m, s]) => d * 86400 + h * 3600 + m * 60 + s,
        _ => return None,
    };
    let minutes = seconds.div_ceil(60);
    // Slurm reserves the top two 32-bit values for "unset" and "infinite".
    if minutes == 0 || minutes >= u64::from(u32::MAX - 1) {
        return None;
    }
    Some(TimeLimit::Minutes(minutes as u32))
}

/// The pod's raw values of our keys, and warnings for unknown keys under our prefix.
pub fn our_annotations<'a>(
    annotations: Option<&'a BTreeMap<String, String>>,
    prefix: &str,
) -> (BTreeMap<AnnotationKey, &'a str>, Vec<Warning>) {
    let mut found = BTreeMap::new();
    let mut warnings = Vec::new();
    for (key, value) in annotations.into_iter().flatten() {
        let Some(name) = key.strip_prefix(prefix) else {
            continue;
        };
        match AnnotationKey::from_name(name) {
            Some(AnnotationKey::JobId) => {}
            Some(known) => {
                found.insert(known, value.as_str());
            }
            None => {
                let nearest = nearest_key(name);
                warnings.push(rejection::unknown_annotation(key, &nearest.key(prefix)));
            }
        }
    }
    (found, warnings)
}

/// The known key closest to a misspelt name, by edit distance.
pub fn nearest_key(name: &str) -> AnnotationKey {
    AnnotationKey::PLACEMENT
        .into_iter()
        .min_by_key(|k| edit_distance(&name.to_lowercase(), k.name()))
        .expect("PLACEMENT is not empty")
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::rejection::Cause;

    fn check(key: AnnotationKey, value: &str) -> Result<Value, Cause> {
        check_value(key, &key.key(DEFAULT_PREFIX), value).map_err(|r| r.cause)
    }

    #[test]
    fn every_key_is_defined_once() {
        let mut names: Vec<_> = AnnotationKey::ALL.iter().map(|k| k.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), AnnotationKey::ALL.len());
        for key in AnnotationKey::ALL {
            assert_eq!(AnnotationKey::from_name(key.name()), Some(key));
        }
    }

    #[test]
    fn values_accepted_and_refused() {
        use AnnotationKey::*;
        let text = |s: &str| Ok(Value::Text(s.to_string()));
        let table: Vec<(AnnotationKey, &str, Result<Value, Cause>)> = vec![
            (Partition, "batch", text("batch")),
            (Partition, "hpc-prod", text("hpc-prod")),
            (Partition, "batch,gpu", text("batch,gpu")),
            (Partition, "batch,", Err(Cause::InvalidAnnotation)),
            (Partition, "", Err(Cause::InvalidAnnotation)),
            (Partition, "batch gpu", Err(Cause::InvalidAnnotation)),
            (Partition, "batch\n", Err(Cause::InvalidAnnotation)),
            (Partition, "a\u{7f}", Err(Cause::InvalidAnnotation)),
            (Account, "research", text("research")),
            (Account, "re\"search", Err(Cause::InvalidAnnotation)),
            (Account, "$(reboot)", Err(Cause::InvalidAnnotation)),
            (Account, "a,b", Err(Cause::InvalidAnnotation)),
            (Qos, "high", text("high")),
            (Qos, "hi'gh", Err(Cause::InvalidAnnotation)),
            (Reservation, "maint_2024", text("maint_2024")),
            (Constraint, "intel", text("intel")),
            (Constraint, "a100|h100", text("a100|h100")),
            (Constraint, "intel&ib", text("intel&ib")),
            (Constraint, "[rack1*2&rack2*4]", text("[rack1*2&rack2*4]")),
            (Constraint, "intel; reboot", Err(Cause::InvalidAnnotation)),
            (Constraint, "`id`", Err(Cause::InvalidAnnotation)),
            (UserId, "7001", Ok(Value::Id(7001))),
            (UserId, "0", Ok(Value::Id(0))),
            (UserId, "2147483647", Ok(Value::Id(2_147_483_647))),
            (UserId, "2147483648", Err(Cause::IdOutOfRange)),
            (UserId, "4294967294", Err(Cause::IdOutOfRange)),
            (UserId, "99999999999999999999999", Err(Cause::IdOutOfRange)),
            (UserId, "-1", Err(Cause::IdOutOfRange)),
            (UserId, "+7001", Err(Cause::IdOutOfRange)),
            (UserId, " 7001", Err(Cause::IdOutOfRange)),
            (UserId, "alice", Err(Cause::NameAsId)),
            (UserId, "_svc", Err(Cause::NameAsId)),
            (GroupId, "7001", Ok(Value::Id(7001))),
            (GroupId, "research", Err(Cause::NameAsId)),
            (Exclusive, "none", Ok(Value::Exclusive(Exclusivity::None))),
            (Exclusive, "user", Ok(Value::Exclusive(Exclusivity::User))),
            (Exclusive, "ok", Ok(Value::Exclusive(Exclusivity::Ok))),
            (Exclusive, "true", Err(Cause::InvalidAnnotation)),
            (Exclusive, "NONE", Err(Cause::InvalidAnnotation)),
            (
                TimeLimit,
                "90",
                Ok(Value::TimeLimit(slurm_client::TimeLimit::Minutes(90))),
            ),
            (TimeLimit, "0", Err(Cause::InvalidAnnotation)),
            (TimeLimit, "soon", Err(Cause::InvalidAnnotation)),
        ];
        for (key, value, want) in table {
            assert_eq!(check(key, value), want, "{key:?} = {value:?}");
        }
    }

    #[test]
    fn hostile_values_are_refused_with_short_escaped_messages() {
        // Hostile values: newlines, quotes, command substitution, 10 000 characters.
        let long = "a".repeat(10_000);
        let table = [
            "batch\nPartition=evil",
            "batch\"}",
            "$(curl evil)",
            "batch'; scancel -u root",
            long.as_str(),
        ];
        for key in AnnotationKey::PLACEMENT {
            for value in table {
                let full = key.key(DEFAULT_PREFIX);
                let r = check_value(key, &full, value).expect_err(value);
                assert!(r.message.contains(&full), "{}", r.message);
                assert!(!r.message.contains('\n'), "{}", r.message);
                assert!(r.message.len() < 600, "{key:?}: {}", r.message.len());
            }
        }
    }

    #[test]
    fn username_message_says_how_to_find_the_uid() {
        let r =
            check_value(AnnotationKey::UserId, "sunk.coreweave.com/user-id", "alice").unwrap_err();
        assert!(
            r.message.contains("numeric UID is required"),
            "{}",
            r.message
        );
        assert!(r.message.contains("id -u alice"), "{}", r.message);
    }

    #[test]
    fn slurm_time_formats() {
        use slurm_client::TimeLimit::{Infinite, Minutes};
        let table = [
            ("90", Some(Minutes(90))),
            ("1", Some(Minutes(1))),
            ("0:30", Some(Minutes(1))),
            ("1:01", Some(Minutes(2))),
            ("1:30:00", Some(Minutes(90))),
            ("1:30:01", Some(Minutes(91))),
            ("2-00:00:00", Some(Minutes(2880))),
            ("2-0", Some(Minutes(2880))),
            ("1-2", Some(Minutes(1560))),
            ("1-2:30", Some(Minutes(1590))),
            ("infinite", Some(Infinite)),
            ("UNLIMITED", Some(Infinite)),
            ("0", None),
            ("0:00:00", None),
            ("", None),
            ("1:2:3:4", None),
            ("1-", None),
            ("-1", None),
            ("1.5", None),
            ("1-2-3", None),
            ("a:b", None),
            ("9999999999", None),
            ("999999999-0", None),
        ];
        for (input, want) in table {
            assert_eq!(parse_time_limit(input), want, "{input:?}");
        }
    }

    #[test]
    fn unknown_keys_warn_with_the_nearest_key() {
        let annotations: BTreeMap<String, String> = [
            ("sunk.coreweave.com/partiton", "batch"),
            ("sunk.coreweave.com/userid", "7001"),
            ("sunk.coreweave.com/job-id", "12"),
            ("sunk.coreweave.com/qos", "high"),
            ("example.com/partition", "x"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let (found, warnings) = our_annotations(Some(&annotations), DEFAULT_PREFIX);
        assert_eq!(
            found.into_iter().collect::<Vec<_>>(),
            vec![(AnnotationKey::Qos, "high")]
        );
        let messages: Vec<_> = warnings.iter().map(|w| w.message.as_str()).collect();
        assert_eq!(messages.len(), 2);
        assert!(messages[0].contains("partiton") && messages[0].ends_with("partition?"));
        assert!(messages[1].contains("userid") && messages[1].ends_with("user-id?"));
    }
}
