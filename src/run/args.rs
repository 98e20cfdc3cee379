//! The flags of `run` (each with an `SPS_*` environment variable) and how they combine with
//! the configuration file into [`Settings`]: flag or environment first, then the file, then
//! the default. Anything invalid stops start-up with a message naming the key.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use slurm_client::{ApiVersion, ClientConfig, TokenSource};

use super::Settings;
use crate::config::{self, parse_duration, ConfigError, FileConfig, TranslateOverrides};
use crate::leader::LeaseConfig;
use crate::lifecycle::Timing;
use crate::nodes::map::Mapping;

/// Flags of `slurm-pod-scheduler run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// YAML configuration file: the same keys as the flags, plus per-namespace policy.
    #[arg(long, env = "SPS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub translate: TranslateOverrides,

    /// Namespaces to watch, comma-separated [default: all]
    #[arg(
        long,
        env = "SPS_NAMESPACES",
        value_delimiter = ',',
        value_name = "NS,..."
    )]
    pub namespaces: Vec<String>,

    /// slurmrestd base URL, e.g. http://127.0.0.1:6820 (required here or in the file)
    #[arg(long, env = "SPS_SLURM_URL", value_name = "URL")]
    pub slurm_url: Option<String>,

    /// File holding the slurmrestd JWT, re-read when it changes [default: the SLURM_JWT
    /// environment variable]
    #[arg(long, env = "SPS_SLURM_TOKEN_FILE", value_name = "FILE")]
    pub slurm_token_file: Option<PathBuf>,

    /// X-SLURM-USER-NAME sent with every request [default: root]
    #[arg(long, env = "SPS_SLURM_USER", value_name = "USER")]
    pub slurm_user: Option<String>,

    /// Force a REST API version, e.g. v0.0.42 [default: detected]
    #[arg(long, env = "SPS_SLURM_API_VERSION", value_name = "VERSION")]
    pub slurm_api_version: Option<String>,

    /// How often Slurm's job states are polled [default: 500ms]
    #[arg(long, env = "SPS_POLL_INTERVAL", value_name = "DURATION", value_parser = parse_duration)]
    pub poll_interval: Option<Duration>,

    /// identity, label=KEY or slurmd-pods=SELECTOR [default: identity]
    #[arg(long, env = "SPS_NODE_MAPPING", value_name = "MAPPING")]
    pub node_mapping: Option<String>,

    /// Namespace of the slurmd pods for --node-mapping slurmd-pods=... [default: slurm]
    #[arg(long, env = "SPS_SLURMD_NAMESPACE", value_name = "NS")]
    pub slurmd_namespace: Option<String>,

    /// Placeholder job kind: script (external needs REST API v0.0.43+, not yet supported)
    #[arg(long, env = "SPS_PLACEHOLDER", value_name = "KIND")]
    pub placeholder: Option<String>,

    /// Elect a leader among replicas through a Lease named after the scheduler
    #[arg(long, env = "SPS_LEADER_ELECT")]
    pub leader_elect: Option<bool>,

    /// Namespace of the Lease [default: the pod's own namespace, else default]
    #[arg(long, env = "SPS_LEASE_NAMESPACE", value_name = "NS")]
    pub lease_namespace: Option<String>,

    /// Client-side limit of writes to the API server per second [default: 100]
    #[arg(long, env = "SPS_KUBE_API_QPS", value_name = "QPS")]
    pub kube_api_qps: Option<f32>,

    /// Burst above --kube-api-qps [default: 200]
    #[arg(long, env = "SPS_KUBE_API_BURST", value_name = "N")]
    pub kube_api_burst: Option<u32>,

    /// Address of /metrics, /healthz and /readyz [default: 0.0.0.0:10259]
    #[arg(long, env = "SPS_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,

    /// text or json [default: text]
    #[arg(long, env = "SPS_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,
}

impl RunArgs {
    /// Start-up check of the token file, so a wrong path or an empty file stops the
    /// scheduler with the key named instead of looking like an unreachable slurmrestd.
    /// (Not part of [`RunArgs::settings`], which also validates configuration offline.)
    pub fn check_token_file(settings: &Settings) -> Result<(), ConfigError> {
        let TokenSource::File(path) = &settings.slurm.token else {
            return Ok(());
        };
        match std::fs::read_to_string(path) {
            Ok(text) if text.trim().is_empty() => Err(invalid(
                "slurm-token-file",
                format!(
                    "{} is empty: it must hold the slurmrestd JWT",
                    path.display()
                ),
            )),
            Ok(_) => Ok(()),
            Err(e) => Err(invalid(
                "slurm-token-file",
                format!("cannot read {}: {e}", path.display()),
            )),
        }
    }

    /// The log format, before anything else is resolved (logging starts first).
    pub fn log_format(&self) -> Result<LogFormat, ConfigError> {
        let file = self.file()?;
        match self.log_format.clone().or(file.log_format).as_deref() {
            None | Some("text") => Ok(LogFormat::Text),
            Some("json") => Ok(LogFormat::Json),
            Some(other) => Err(invalid(
                "log-format",
                format!("`{other}` is not `text` or `json`"),
            )),
        }
    }

    fn file(&self) -> Result<FileConfig, ConfigError> {
        match &self.config {
            Some(path) => FileConfig::load(path),
            None => Ok(FileConfig::default()),
        }
    }

    /// Everything `run` needs, checked.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let file = self.file()?;
        let ctx = config::translate_context(&file, &self.translate)?;

        let url = self
            .slurm_url
            .clone()
            .or_else(|| file.slurm_url.clone())
            .ok_or_else(|| invalid("slurm-url", "is required: the base URL of slurmrestd"))?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid(
                "slurm-url",
                format!("`{url}` is not an http:// or https:// URL"),
            ));
        }
        let token = match self
            .slurm_token_file
            .clone()
            .or_else(|| file.slurm_token_file.clone())
        {
            Some(path) => TokenSource::File(path),
            None => match std::env::var("SLURM_JWT") {
                Ok(token) if !token.trim().is_empty() => TokenSource::Static(token.trim().into()),
                _ => {
                    return Err(invalid(
                        "slurm-token-file",
                        "no token: give --slurm-token-file or set SLURM_JWT",
                    ))
                }
            },
        };
        let version = match self
            .slurm_api_version
            .clone()
            .or_else(|| file.slurm_api_version.clone())
        {
            Some(v) => Some(
                v.parse::<ApiVersion>()
                    .map_err(|e| invalid("slurm-api-version", e.to_string()))?,
            ),
            None => None,
        };
        let mut slurm = ClientConfig::new(url, token, ctx.scheduler_name.clone());
        slurm.user = self
            .slurm_user
            .clone()
            .or_else(|| file.slurm_user.clone())
            .unwrap_or_else(|| "root".into());
        slurm.version = version;

        let placeholder = self
            .placeholder
            .clone()
            .or_else(|| file.placeholder.clone());
        match placeholder.as_deref() {
            None | Some("script") => {}
            Some("external") => {
                return Err(invalid(
                    "placeholder",
                    "`external` needs REST API v0.0.43 or later, which this version does not support yet; use `script`",
                ))
            }
            Some(other) => return Err(invalid("placeholder", format!("`{other}` is not `script`"))),
        }

        let node_mapping: Mapping = self
            .node_mapping
            .clone()
            .or_else(|| file.node_mapping.clone())
            .unwrap_or_else(|| "identity".into())
            .parse()
            .map_err(|m: String| invalid("node-mapping", m))?;
        let poll_interval = self
            .poll_interval
            .or(file.poll_interval())
            .unwrap_or(Duration::from_millis(500));
        if poll_interval < Duration::from_millis(50) {
            return Err(invalid("poll-interval", "must be at least 50ms"));
        }
        let listen_text = self
            .listen
            .clone()
            .or_else(|| file.listen.clone())
            .unwrap_or_else(|| "0.0.0.0:10259".into());
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            invalid(
                "listen",
                format!("`{listen_text}` is not an address such as 0.0.0.0:10259"),
            )
        })?;
        let kube_qps = self.kube_api_qps.or(file.kube_api_qps).unwrap_or(100.0);
        let kube_burst = self.kube_api_burst.or(file.kube_api_burst).unwrap_or(200);
        if kube_qps <= 0.0 || !kube_qps.is_finite() {
            return Err(invalid("kube-api-qps", "must be a positive number"));
        }

        let identity = std::env::var("POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_else(|_| "slurm-pod-scheduler".into());
        let identity = format!("{identity}_{}", std::process::id());
        let lease = if self.leader_elect.or(file.leader_elect).unwrap_or(false) {
            let namespace = self
                .lease_namespace
                .clone()
                .or_else(|| file.lease_namespace.clone())
                .or_else(own_namespace)
                .unwrap_or_else(|| "default".into());
            Some(LeaseConfig::new(
                namespace,
                ctx.scheduler_name.clone(),
                identity.clone(),
            ))
        } else {
            None
        };

        let timing = Timing {
            kill_wait: ctx.kill_wait,
            termination_offset: ctx.termination_offset,
            ..Timing::default()
        };
        Ok(Settings {
            namespaces: self
                .namespaces
                .iter()
                .chain(
                    file.namespaces
                        .iter()
                        .flatten()
                        .filter(|_| self.namespaces.is_empty()),
                )
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            poll_interval,
            node_mapping,
            slurmd_namespace: self
                .slurmd_namespace
                .clone()
                .or_else(|| file.slurmd_namespace.clone())
                .unwrap_or_else(|| "slurm".into()),
            timing,
            orphan_grace: Duration::from_secs(10),
            user_names: file.slurm_user_names.clone().unwrap_or_default(),
            lease,
            kube_qps,
            kube_burst,
            listen,
            slurm,
            identity,
            ctx,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// The namespace this process runs in, when it runs in a pod.
fn own_namespace() -> Option<String> {
    std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}
