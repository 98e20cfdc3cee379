//! The configuration schema: the YAML file given with `--config` holds the same keys as
//! the flags (spelt like the flags without `--`) plus what only a file
//! can say: per-namespace policy, the device-to-GRES map and the UID-to-user-name map.
//! Everything is checked on load, so invalid configuration stops start-up with a message
//! naming the key. Flags and `SPS_*` environment variables win over the file.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::translate::annotations::{self, AnnotationKey};
use crate::translate::{
    IdRanges, NamespacePolicy, Policies, TranslateContext, DEFAULT_KILL_WAIT, DEFAULT_PREFIX,
    DEFAULT_SCHEDULER_NAME, DEFAULT_TERMINATION_OFFSET,
};

/// Why the configuration cannot be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not YAML of the expected shape (unknown key, wrong type); serde_yaml's
    /// text names the key and the line.
    #[error("configuration file {path}: {message}")]
    Syntax { path: String, message: String },
    /// A key has a value that cannot work.
    #[error("configuration key {key}: {message}")]
    Invalid { key: String, message: String },
    /// A key of a configuration file has a value that cannot work.
    #[error("configuration file {path}: key {key}: {message}")]
    InvalidInFile {
        path: String,
        key: String,
        message: String,
    },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// Parses `30s`, `500ms`, `1m30s`, `1.5s`, `2h`, and bare seconds (`30`); for flags and
/// the file alike.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let err = || {
        format!(
            "{text:?} is not a duration: write a number and a unit, such as 30s, 500ms or 1m30s"
        )
    };
    // A bare number is seconds, as KillWait is written in slurm.conf.
    if !text.is_empty() && text.len() <= 12 && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map(Duration::from_secs).map_err(|_| err());
    }
    let mut rest = text;
    let mut total: u128 = 0;
    if rest.is_empty() {
        return Err(err());
    }
    while !rest.is_empty() {
        let number_len = rest
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'.')
            .count();
        let (number, tail) = rest.split_at(number_len);
        let unit_len = tail
            .bytes()
            .take_while(|b| !b.is_ascii_digit() && *b != b'.')
            .count();
        let (unit, tail) = tail.split_at(unit_len);
        let nanos_per_unit: u128 = match unit {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(err()),
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') || whole.len() > 12 {
            return Err(err());
        }
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| err())?
        };
        total += whole * nanos_per_unit;
        let mut scale = nanos_per_unit;
        for digit in fraction.bytes().take(18) {
            scale /= 10;
            total += u128::from(digit - b'0') * scale;
        }
        rest = tail;
    }
    let nanos = u64::try_from(total).map_err(|_| err())?;
    Ok(Duration::from_nanos(nanos))
}

/// A duration as written in the file: a number of seconds or a string such as `500ms`.
/// Anything else is kept as text, so that the check names the key in its error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurationText {
    Seconds(u64),
    Text(String),
}

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_yaml::Value::deserialize(deserializer)?;
        Ok(match value {
            serde_yaml::Value::Number(n) if n.as_u64().is_some() => {
                DurationText::Seconds(n.as_u64().unwrap_or_default())
            }
            serde_yaml::Value::String(s) => DurationText::Text(s),
            other => DurationText::Text(
                serde_yaml::to_string(&other)
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
            ),
        })
    }
}

impl DurationText {
    fn parse(&self) -> Result<Duration, String> {
        match self {
            DurationText::Seconds(s) => Ok(Duration::from_secs(*s)),
            DurationText::Text(t) => parse_duration(t),
        }
    }
}

/// One entry of `allowed-uids` / `allowed-gids`: a number or a range such as `7000-7999`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum IdEntry {
    Number(u64),
    Text(String),
}

impl IdEntry {
    fn as_text(&self) -> String {
        match self {
            IdEntry::Number(n) => n.to_string(),
            IdEntry::Text(t) => t.clone(),
        }
    }
}

/// The policy of one namespace as written in the file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NamespacePolicyConfig {
    /// Annotation values (names without the prefix) every pod of the namespace gets.
    #[serde(default)]
    pub pinned_annotations: BTreeMap<String, String>,
    /// UIDs pods may run as; absent allows any but root.
    pub allowed_uids: Option<Vec<IdEntry>>,
    /// GIDs pods may run as; absent allows any but root.
    pub allowed_gids: Option<Vec<IdEntry>>,
    /// Whether UID and GID 0 are allowed.
    #[serde(default)]
    pub allow_root: bool,
}

/// The configuration file. Every key is optional; absent keys take the flag's default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    pub scheduler_name: Option<String>,
    /// Namespaces to watch; absent or empty means all.
    pub namespaces: Option<Vec<String>>,
    pub slurm_url: Option<String>,
    pub slurm_token_file: Option<PathBuf>,
    pub slurm_user: Option<String>,
    /// e.g. `v0.0.42`; absent means detected.
    pub slurm_api_version: Option<String>,
    /// Durations are written as in Kubernetes (`30s`, `500ms`, `1m30s`) or as seconds.
    pub slurm_kill_wait: Option<DurationText>,
    pub termination_offset: Option<DurationText>,
    pub poll_interval: Option<DurationText>,
    /// `identity`, `label=KEY` or `slurmd-pods=SELECTOR`.
    pub node_mapping: Option<String>,
    pub slurmd_namespace: Option<String>,
    pub annotation_prefix: Option<String>,
    /// `script` or `external`.
    pub placeholder: Option<String>,
    pub leader_elect: Option<bool>,
    pub lease_namespace: Option<String>,
    pub kube_api_qps: Option<f32>,
    pub kube_api_burst: Option<u32>,
    pub listen: Option<String>,
    /// `text` or `json`.
    pub log_format: Option<String>,
    /// Kubernetes extended resource to Slurm GRES name; replaces the default map
    /// (`nvidia.com/gpu` and `amd.com/gpu` to `gpu`).
    pub device_resources: Option<BTreeMap<String, String>>,
    /// UID to Slurm user name, for clusters whose REST API cannot carry a UID (v0.0.38).
    pub slurm_user_names: Option<BTreeMap<u32, String>>,
    /// Policy by namespace; the key `*` applies to every namespace without its own.
    #[serde(default)]
    pub namespace_policy: BTreeMap<String, NamespacePolicyConfig>,
}

impl FileConfig {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        FileConfig::parse(&text, &path.display().to_string())
    }

    /// Parses and checks configuration text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<FileConfig, ConfigError> {
        // An empty file is an empty configuration, not an error.
        let config: FileConfig = if text.trim().is_empty() {
            FileConfig::default()
        } else {
            serde_yaml::from_str(text).map_err(|e| ConfigError::Syntax {
                path: origin.to_string(),
                message: e.to_string(),
            })?
        };
        config.check().map_err(|e| match e {
            ConfigError::Invalid { key, message } => ConfigError::InvalidInFile {
                path: origin.to_string(),
                key,
                message,
            },
            other => other,
        })?;
        Ok(config)
    }

    /// `slurm-kill-wait`, once checked.
    pub fn slurm_kill_wait(&self) -> Option<Duration> {
        self.slurm_kill_wait.as_ref().and_then(|d| d.parse().ok())
    }

    /// `termination-offset`, once checked.
    pub fn termination_offset(&self) -> Option<Duration> {
        self.termination_offset
            .as_ref()
            .and_then(|d| d.parse().ok())
    }

    /// `poll-interval`, once checked.
    pub fn poll_interval(&self) -> Option<Duration> {
        self.poll_interval.as_ref().and_then(|d| d.parse().ok())
    }

    /// Checks what serde cannot: ranges, enumerations, cross-key rules.
    fn check(&self) -> Result<(), ConfigError> {
        let durations = [
            ("slurm-kill-wait", &self.slurm_kill_wait),
            ("termination-offset", &self.termination_offset),
            ("poll-interval", &self.poll_interval),
        ];
        for (key, value) in durations {
            if let Some(text) = value {
                text.parse().map_err(|m| invalid(key, m))?;
            }
        }
        if let Some(prefix) = &self.annotation_prefix {
            check_prefix(prefix).map_err(|m| invalid("annotation-prefix", m))?;
        }
        if let Some(name) = &self.scheduler_name {
            check_scheduler_name(name).map_err(|m| invalid("scheduler-name", m))?;
        }
        let kill_wait = self.slurm_kill_wait().unwrap_or(DEFAULT_KILL_WAIT);
        let offset = self
            .termination_offset()
            .unwrap_or(DEFAULT_TERMINATION_OFFSET);
        check_kill_wait(kill_wait, offset).map_err(|m| invalid("termination-offset", m))?;
        if self.poll_interval().is_some_and(|d| d.is_zero()) {
            return Err(invalid(
                "poll-interval",
                "must be more than zero, such as 500ms",
            ));
        }
        if let Some(mapping) = &self.node_mapping {
            let ok = mapping == "identity"
                || mapping
                    .strip_prefix("label=")
                    .is_some_and(|k| !k.is_empty())
                || mapping
                    .strip_prefix("slurmd-pods=")
                    .is_some_and(|s| !s.is_empty());
            if !ok {
                return Err(invalid(
                    "node-mapping",
                    format!("{mapping:?} is not identity, label=KEY or slurmd-pods=SELECTOR"),
                ));
            }
        }
        if let Some(p) = &self.placeholder {
            if p != "script" && p != "external" {
                return Err(invalid(
                    "placeholder",
                    format!("{p:?} is not script or external"),
                ));
            }
        }
        if let Some(f) = &self.log_format {
            if f != "text" && f != "json" {
                return Err(invalid("log-format", format!("{f:?} is not text or json")));
            }
        }
        if let Some(listen) = &self.listen {
            listen.parse::<SocketAddr>().map_err(|_| {
                invalid(
                    "listen",
                    format!("{listen:?} is not an address such as 0.0.0.0:10259"),
                )
            })?;
        }
        if let Some(version) = &self.slurm_api_version {
            let ok = version
                .strip_prefix("v0.0.")
                .is_some_and(|n| n.parse::<u8>().is_ok());
            if !ok {
                return Err(invalid(
                    "slurm-api-version",
                    format!("{version:?} is not a REST API version such as v0.0.42"),
                ));
            }
        }
        if self
            .kube_api_qps
            .is_some_and(|q| !q.is_finite() || q <= 0.0)
        {
            return Err(invalid("kube-api-qps", "must be a number above zero"));
        }
        for (resource, gres) in self.device_resources.iter().flatten() {
            let key = format!("device-resources.{resource}");
            if !resource.contains('/') {
                return Err(invalid(
                    key,
                    "must be an extended resource name such as nvidia.com/gpu",
                ));
            }
            if gres.is_empty() || !gres.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(invalid(
                    key,
                    format!("{gres:?} is not a GRES name such as gpu"),
                ));
            }
        }
        for (uid, user) in self.slurm_user_names.iter().flatten() {
            if user.is_empty() || user.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(invalid(
                    format!("slurm-user-names.{uid}"),
                    "must be a user name",
                ));
            }
        }
        self.policies().map(|_| ())
    }

    /// The checked per-namespace policies.
    pub fn policies(&self) -> Result<Policies, ConfigError> {
        let prefix = self.annotation_prefix.as_deref().unwrap_or(DEFAULT_PREFIX);
        let mut policies = Policies::default();
        for (namespace, written) in &self.namespace_policy {
            let base = format!("namespace-policy.{namespace}");
            let mut policy = NamespacePolicy {
                allow_root: written.allow_root,
                ..Default::default()
            };
            for (name, value) in &written.pinned_annotations {
                let key_path = format!("{base}.pinned-annotations.{name}");
                let key = AnnotationKey::from_name(name)
                    .filter(|k| *k != AnnotationKey::JobId)
                    .ok_or_else(|| {
                        let nearest = annotations::nearest_key(name).name();
                        invalid(
                            &key_path,
                            format!("not an annotation name; did you mean {nearest}?"),
                        )
                    })?;
                annotations::check_value(key, &key.key(prefix), value)
                    .map_err(|r| invalid(&key_path, r.message))?;
                policy.pinned.insert(key, value.clone());
            }
            let ranges = |entries: &Option<Vec<IdEntry>>, key: &str| {
                entries
                    .as_ref()
                    .map(|e| {
                        let texts: Vec<String> = e.iter().map(IdEntry::as_text).collect();
                        IdRanges::parse(&texts)
                            .map_err(|err| invalid(format!("{base}.{key}"), err.to_string()))
                    })
                    .transpose()
            };
            policy.allowed_uids = ranges(&written.allowed_uids, "allowed-uids")?;
            policy.allowed_gids = ranges(&written.allowed_gids, "allowed-gids")?;
            policies.namespaces.insert(namespace.clone(), policy);
        }
        Ok(policies)
    }
}

/// An annotation prefix must make valid annotation keys: a DNS subdomain and a slash.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    let domain = prefix.strip_suffix('/').unwrap_or("");
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if domain.is_empty() || domain.len() > 253 || !domain.split('.').all(label_ok) {
        return Err(format!(
            "{prefix:?} is not an annotation prefix: write a DNS name and a slash, such as {DEFAULT_PREFIX}"
        ));
    }
    Ok(())
}

/// A scheduler name is what pods write in `spec.schedulerName`: a DNS-1123 subdomain.
pub fn check_scheduler_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a scheduler name: use lowercase letters, digits, '-' and '.'"
        ))
    }
}

/// The offset must leave some of KillWait for the pod, or every pod would be refused.
pub fn check_kill_wait(kill_wait: Duration, offset: Duration) -> Result<(), String> {
    if offset >= kill_wait {
        return Err(format!(
            "the termination offset ({offset:?}) must be less than Slurm's KillWait ({kill_wait:?}), \
             or no pod could be scheduled"
        ));
    }
    Ok(())
}

/// Settings given as flags or environment variables; each wins over the file. `run` and
/// `explain` share these flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TranslateOverrides {
    /// Pods whose spec.schedulerName is this are ours [default: slurm-pod-scheduler]
    #[arg(long, env = "SPS_SCHEDULER_NAME", value_name = "NAME")]
    pub scheduler_name: Option<String>,

    /// Prefix of our annotation keys [default: sunk.coreweave.com/]
    #[arg(long, env = "SPS_ANNOTATION_PREFIX", value_name = "PREFIX")]
    pub annotation_prefix: Option<String>,

    /// Slurm's KillWait, e.g. 30s [default: 30s]
    #[arg(long, env = "SPS_SLURM_KILL_WAIT", value_name = "DURATION", value_parser = parse_duration)]
    pub slurm_kill_wait: Option<Duration>,

    /// Margin inside KillWait a pod must finish in [default: 5s]
    #[arg(long, env = "SPS_TERMINATION_OFFSET", value_name = "DURATION", value_parser = parse_duration)]
    pub termination_offset: Option<Duration>,
}

/// The translation settings from overrides, then the file, then the defaults.
pub fn translate_context(
    file: &FileConfig,
    overrides: &TranslateOverrides,
) -> Result<TranslateContext, ConfigError> {
    let scheduler_name = overrides
        .scheduler_name
        .clone()
        .or_else(|| file.scheduler_name.clone())
        .unwrap_or_else(|| DEFAULT_SCHEDULER_NAME.to_string());
    check_scheduler_name(&scheduler_name).map_err(|m| invalid("scheduler-name", m))?;
    let annotation_prefix = overrides
        .annotation_prefix
        .clone()
        .or_else(|| file.annotation_prefix.clone())
        .unwrap_or_else(|| DEFAULT_PREFIX.to_string());
    check_prefix(&annotation_prefix).map_err(|m| invalid("annotation-prefix", m))?;
    let kill_wait = overrides
        .slurm_kill_wait
        .or(file.slurm_kill_wait())
        .unwrap_or(DEFAULT_KILL_WAIT);
    let termination_offset = overrides
        .termination_offset
        .or(file.termination_offset())
        .unwrap_or(DEFAULT_TERMINATION_OFFSET);
    check_kill_wait(kill_wait, termination_offset).map_err(|m| invalid("termination-offset", m))?;

    // Pinned values were checked against the file's prefix; check them against this one.
    let file_for_policy = FileConfig {
        annotation_prefix: Some(annotation_prefix.clone()),
        ..file.clone()
    };
    Ok(TranslateContext {
        scheduler_name,
        annotation_prefix,
        kill_wait,
        termination_offset,
        device_map: file
            .device_resources
            .clone()
            .unwrap_or_else(crate::translate::default_device_map),
        policies: file_for_policy.policies()?,
    })
}

#[cfg(test)]
mod tests;
