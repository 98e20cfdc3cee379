//! The slurmrestd REST API versions this client speaks, ordered oldest to newest.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// A slurmrestd API version with an adapter in this crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ApiVersion {
    /// Slurm 22.05.
    V0038,
    /// Slurm 23.11 to 24.11.
    V0040,
    /// Slurm 24.05 to 25.05.
    V0041,
    /// Slurm 24.11 to 25.11.
    V0042,
}

impl ApiVersion {
    /// Every supported version, newest first: the order in which detection tries them.
    pub const NEWEST_FIRST: [ApiVersion; 4] = [
        ApiVersion::V0042,
        ApiVersion::V0041,
        ApiVersion::V0040,
        ApiVersion::V0038,
    ];

    /// The path segment, e.g. `v0.0.42`.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiVersion::V0038 => "v0.0.38",
            ApiVersion::V0040 => "v0.0.40",
            ApiVersion::V0041 => "v0.0.41",
            ApiVersion::V0042 => "v0.0.42",
        }
    }

    /// Whether jobs can be kept off nodes (`excluded_nodes`, v0.0.40 and later).
    pub fn can_exclude_nodes(self) -> bool {
        self >= ApiVersion::V0040
    }

    /// Whether the job body can carry `user_id`/`group_id` (v0.0.40 and later).
    pub fn can_set_user_id(self) -> bool {
        self >= ApiVersion::V0040
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A version string this client has no adapter for.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("unsupported slurmrestd API version `{0}`: this client speaks v0.0.38, v0.0.40, v0.0.41 and v0.0.42")]
pub struct UnknownVersion(pub String);

impl FromStr for ApiVersion {
    type Err = UnknownVersion;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        let bare = trimmed.strip_prefix('v').unwrap_or(trimmed);
        ApiVersion::NEWEST_FIRST
            .into_iter()
            .find(|v| &v.as_str()[1..] == bare)
            .ok_or_else(|| UnknownVersion(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_or_without_v() {
        assert_eq!("v0.0.42".parse(), Ok(ApiVersion::V0042));
        assert_eq!("0.0.38".parse(), Ok(ApiVersion::V0038));
        assert!("v0.0.39".parse::<ApiVersion>().is_err());
        assert!("v0.0.43".parse::<ApiVersion>().is_err());
        assert!(ApiVersion::V0038 < ApiVersion::V0040);
    }
}
