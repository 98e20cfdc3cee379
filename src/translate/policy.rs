//! The operator's per-namespace policy, in checked form: annotation values pinned per
//! namespace (a pod cannot override them) and the UIDs and GIDs a namespace may run as.
//! The YAML schema that fills it lives in `config.rs`; this module only applies it.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::RangeInclusive;

use thiserror::Error;

use super::annotations::{AnnotationKey, MAX_ID};

/// The namespace key in the configuration whose policy applies to every namespace that has
/// none of its own.
pub const ANY_NAMESPACE: &str = "*";

/// Why an id range in the configuration is not one.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{value:?} is not an id or id range: write a number such as 7001 or a range such as 7000-7999, from 0 to {MAX_ID}")]
pub struct IdRangeError {
    pub value: String,
}

/// A set of numeric ids as inclusive ranges.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IdRanges(Vec<RangeInclusive<u32>>);

impl IdRanges {
    /// Parses entries such as `7001` and `7000-7999`.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<IdRanges, IdRangeError> {
        let id = |s: &str, whole: &str| -> Result<u32, IdRangeError> {
            let err = || IdRangeError {
                value: whole.to_string(),
            };
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err());
            }
            s.parse::<u32>()
                .ok()
                .filter(|n| *n <= MAX_ID)
                .ok_or_else(err)
        };
        let mut ranges = Vec::new();
        for entry in entries {
            let entry = entry.as_ref().trim();
            let range = match entry.split_once('-') {
                Some((low, high)) => id(low.trim(), entry)?..=id(high.trim(), entry)?,
                None => id(entry, entry)?..=id(entry, entry)?,
            };
            if range.is_empty() {
                return Err(IdRangeError {
                    value: entry.to_string(),
                });
            }
            ranges.push(range);
        }
        Ok(IdRanges(ranges))
    }

    pub fn contains(&self, id: u32) -> bool {
        self.0.iter().any(|r| r.contains(&id))
    }
}

impl fmt::Display for IdRanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, range) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            if range.start() == range.end() {
                write!(f, "{}", range.start())?;
            } else {
                write!(f, "{}-{}", range.start(), range.end())?;
            }
        }
        Ok(())
    }
}

/// What the operator decided for one namespace.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NamespacePolicy {
    /// Annotation values every pod of the namespace gets; a pod setting another value is
    /// refused with `AnnotationConflict`.
    pub pinned: BTreeMap<AnnotationKey, String>,
    /// UIDs pods may run as; `None` allows any (but root only with `allow_root`).
    pub allowed_uids: Option<IdRanges>,
    /// GIDs pods may run as; `None` allows any (but root only with `allow_root`).
    pub allowed_gids: Option<IdRanges>,
    /// Whether UID and GID 0 are allowed.
    pub allow_root: bool,
}

/// The policies of all namespaces.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policies {
    /// By namespace name; the key `*` holds the policy of every other namespace.
    pub namespaces: BTreeMap<String, NamespacePolicy>,
}

impl Policies {
    /// The policy that applies in `namespace`, if the operator set one.
    pub fn for_namespace(&self, namespace: &str) -> Option<&NamespacePolicy> {
        self.namespaces
            .get(namespace)
            .or_else(|| self.namespaces.get(ANY_NAMESPACE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_ranges_parse_and_print() {
        let table: [(&[&str], Option<&str>); 7] = [
            (&["7001"], Some("7001")),
            (&["7000-7999", " 8001 "], Some("7000-7999, 8001")),
            (&["0"], Some("0")),
            (&["7999-7000"], None),
            (&["alice"], None),
            (&["-5"], None),
            (&["2147483648"], None),
        ];
        for (entries, want) in table {
            let got = IdRanges::parse(entries).ok().map(|r| r.to_string());
            assert_eq!(got.as_deref(), want, "{entries:?}");
        }
        let ranges = IdRanges::parse(&["7000-7999"]).unwrap();
        assert!(ranges.contains(7000) && ranges.contains(7999) && !ranges.contains(8000));
    }

    #[test]
    fn namespace_policy_falls_back_to_any() {
        let mut policies = Policies::default();
        assert!(policies.for_namespace("a").is_none());
        let any = NamespacePolicy {
            allow_root: true,
            ..Default::default()
        };
        policies
            .namespaces
            .insert(ANY_NAMESPACE.into(), any.clone());
        policies
            .namespaces
            .insert("a".into(), NamespacePolicy::default());
        assert_eq!(
            policies.for_namespace("a"),
            Some(&NamespacePolicy::default())
        );
        assert_eq!(policies.for_namespace("b"), Some(&any));
    }
}
