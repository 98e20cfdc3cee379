//! The slurmrestd client: configuration, version detection, and the one place where HTTP
//! requests are sent, with the headers, the token re-read on rejection, retries of
//! idempotent requests and the request counters. The operations are in `ops.rs`.

mod ops;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tracing::{debug, info, warn};

pub use ops::{CancelOutcome, CancelSignal, JobSnapshot, PollCursor, PollOutcome};

use crate::adapter::{decode_errors, Adapter};
use crate::auth::{TokenProvider, TokenSource};
use crate::error::{backoff, is_known_job_error, Error, Result};
use crate::metrics::{RequestCounters, SlurmObserver};
use crate::version::ApiVersion;

/// How to reach slurmrestd and who we are.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Base URL, e.g. `http://127.0.0.1:6820`.
    pub url: String,
    pub token: TokenSource,
    /// `X-SLURM-USER-NAME` (22.05 requires it).
    pub user: String,
    /// Use this version instead of detecting one.
    pub version: Option<ApiVersion>,
    /// Jobs count as ours when their comment marker names this scheduler.
    pub scheduler_name: String,
    /// Per-request deadline; a request past it has an unknown outcome.
    pub request_timeout: Duration,
    /// Extra attempts for idempotent requests after a transport failure.
    pub retries: u32,
    pub retry_base: Duration,
    pub retry_cap: Duration,
}

impl ClientConfig {
    pub fn new(
        url: impl Into<String>,
        token: TokenSource,
        scheduler_name: impl Into<String>,
    ) -> Self {
        Self {
            url: url.into(),
            token,
            user: "root".into(),
            version: None,
            scheduler_name: scheduler_name.into(),
            request_timeout: Duration::from_secs(10),
            retries: 3,
            retry_base: Duration::from_millis(100),
            retry_cap: Duration::from_secs(2),
        }
    }
}

/// One HTTP request as the client sends it.
pub(crate) struct Call<'a> {
    /// Path template for metrics and logs, e.g. `job/{id}`.
    pub endpoint: &'static str,
    pub method: Method,
    pub path: &'a str,
    pub body: Option<&'a Value>,
    /// `X-SLURM-USER-NAME` for this request instead of the configured user.
    pub user: Option<&'a str>,
}

impl<'a> Call<'a> {
    pub fn new(endpoint: &'static str, method: Method, path: &'a str) -> Self {
        Self {
            endpoint,
            method,
            path,
            body: None,
            user: None,
        }
    }
}

/// Reads a body into one buffer sized from `Content-Length`, freeing each network chunk as
/// it is copied. A job list of 10 000 jobs is 33 MB on v0.0.38: collecting its chunks first
/// and then joining them (what `Response::bytes` does) held it twice at once, and left the
/// chunks' memory to the allocator's arenas, where it stayed in the process's RSS.
async fn read_body(res: &mut reqwest::Response) -> std::result::Result<Bytes, reqwest::Error> {
    // The length is the server's word: trust it for the first allocation only up to a bound.
    const PREALLOCATE_MAX: u64 = 256 << 20;
    let expected = res.content_length().unwrap_or(0).min(PREALLOCATE_MAX);
    let mut buf = Vec::with_capacity(expected as usize);
    while let Some(chunk) = res.chunk().await? {
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

/// An HTTP answer that is not a transport failure nor a token rejection.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

/// The client. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct SlurmClient {
    http: reqwest::Client,
    base: String,
    user: String,
    token: TokenProvider,
    forced: Option<ApiVersion>,
    version: RwLock<Option<ApiVersion>>,
    observer: Arc<dyn SlurmObserver>,
    scheduler: String,
    cfg: ClientConfig,
    auth_rejections: AtomicU64,
}

impl std::fmt::Debug for SlurmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlurmClient")
            .field("base", &self.base)
            .field("user", &self.user)
            .field("version", &self.version.read().ok().and_then(|v| *v))
            .finish_non_exhaustive()
    }
}

impl SlurmClient {
    /// Builds a client with its own [`RequestCounters`] and detects the API version
    /// (unless forced). Fails when slurmrestd cannot be reached.
    pub async fn connect(cfg: ClientConfig) -> Result<Self> {
        Self::connect_with_observer(cfg, Arc::new(RequestCounters::default())).await
    }

    pub async fn connect_with_observer(
        cfg: ClientConfig,
        observer: Arc<dyn SlurmObserver>,
    ) -> Result<Self> {
        let client = Self::new(cfg, observer)?;
        client.adapter().await?;
        Ok(client)
    }

    /// Builds a client without contacting slurmrestd; the version is detected on first use.
    pub fn new(cfg: ClientConfig, observer: Arc<dyn SlurmObserver>) -> Result<Self> {
        // reqwest is built without a bundled crypto provider; ring is the workspace's.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(cfg.request_timeout)
            .connect_timeout(cfg.request_timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        let base = cfg.url.trim_end_matches('/').to_string();
        url::Url::parse(&base).map_err(|e| Error::Config(format!("--slurm-url `{base}`: {e}")))?;
        Ok(Self {
            http,
            base,
            user: cfg.user.clone(),
            token: TokenProvider::new(cfg.token.clone())?,
            forced: cfg.version,
            version: RwLock::new(cfg.version),
            observer,
            scheduler: cfg.scheduler_name.clone(),
            cfg,
            auth_rejections: AtomicU64::new(0),
        })
    }

    /// The version in use, if known yet.
    pub fn version(&self) -> Option<ApiVersion> {
        *self.version.read().expect("version lock poisoned")
    }

    /// The scheduler name whose jobs this client keeps.
    pub fn scheduler_name(&self) -> &str {
        &self.scheduler
    }

    /// How many times slurmrestd rejected the token even after a re-read.
    pub fn auth_rejections(&self) -> u64 {
        self.auth_rejections.load(Ordering::Relaxed)
    }

    /// The adapter for the version in use, detecting it first when unknown.
    pub(crate) async fn adapter(&self) -> Result<Adapter> {
        if let Some(v) = self.version() {
            return Ok(Adapter::new(v));
        }
        let v = self.detect_version().await?;
        *self.version.write().expect("version lock poisoned") = Some(v);
        Ok(Adapter::new(v))
    }

    /// The newest version both sides speak: the first whose `ping` path is not a 404.
    pub async fn detect_version(&self) -> Result<ApiVersion> {
        for v in ApiVersion::NEWEST_FIRST {
            let path = format!("/slurm/{v}/ping/");
            let a = self
                .send_raw(&Call::new("ping", Method::GET, &path))
                .await?;
            if a.status == StatusCode::NOT_FOUND {
                debug!(version = %v, "slurmrestd does not serve this API version");
                continue;
            }
            info!(version = %v, url = %self.base, "slurmrestd API version detected");
            return Ok(v);
        }
        Err(Error::NoCommonVersion {
            url: self.base.clone(),
        })
    }

    /// Runs `op` with the current adapter; when slurmrestd stops serving the version (an
    /// upgrade), detects it again and runs `op` once more.
    pub(crate) async fn with_adapter<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: Fn(Adapter) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let first = op(self.adapter().await?).await;
        match first {
            Err(Error::VersionGone { version, path }) if self.forced.is_none() => {
                warn!(%version, %path, "slurmrestd stopped serving the API version; detecting again");
                *self.version.write().expect("version lock poisoned") = None;
                op(self.adapter().await?).await
            }
            other => other,
        }
    }

    /// Sends one request: token rejection handling, retries when `idempotent`, counters.
    /// An unexpected 404 (no Slurm error in the body) becomes [`Error::VersionGone`].
    pub(crate) async fn send(
        &self,
        adapter: Adapter,
        endpoint: &'static str,
        method: Method,
        path: &str,
        idempotent: bool,
    ) -> Result<Answer> {
        self.send_call(adapter, &Call::new(endpoint, method, path), idempotent)
            .await
    }

    /// [`SlurmClient::send`] for a request with a body or another user.
    pub(crate) async fn send_call(
        &self,
        adapter: Adapter,
        call: &Call<'_>,
        idempotent: bool,
    ) -> Result<Answer> {
        let (endpoint, path) = (call.endpoint, call.path);
        let mut attempt = 0;
        loop {
            match self.send_raw(call).await {
                Ok(a) if a.status == StatusCode::NOT_FOUND => {
                    let errors = decode_errors(&a.body);
                    if errors.iter().all(|e| e.number.is_none()) {
                        return Err(Error::VersionGone {
                            version: adapter.version,
                            path: path.to_string(),
                        });
                    }
                    return Ok(a);
                }
                Ok(a)
                    if idempotent && is_gateway_failure(a.status) && attempt < self.cfg.retries =>
                {
                    debug!(endpoint, status = a.status.as_u16(), attempt, "retrying");
                }
                Ok(a) => return Ok(a),
                Err(e @ Error::Unknown { .. }) if idempotent && attempt < self.cfg.retries => {
                    debug!(endpoint, attempt, error = %e, "retrying after transport failure");
                }
                Err(e) => return Err(e),
            }
            tokio::time::sleep(backoff(attempt, self.cfg.retry_base, self.cfg.retry_cap)).await;
            attempt += 1;
        }
    }

    /// One request plus at most one token re-read and retry. Transport failures become
    /// [`Error::Unknown`].
    async fn send_raw(&self, call: &Call<'_>) -> Result<Answer> {
        let endpoint = call.endpoint;
        let mut reloaded = false;
        loop {
            let a = self.send_once(call).await?;
            let v = self.version();
            if !is_token_rejection(v, &a) {
                return Ok(a);
            }
            if reloaded {
                let n = self.auth_rejections.fetch_add(1, Ordering::Relaxed) + 1;
                self.observer.auth_failure();
                warn!(
                    endpoint,
                    status = a.status.as_u16(),
                    rejections = n,
                    "token rejected after re-read"
                );
                return Err(Error::AuthRejected {
                    status: a.status.as_u16(),
                    rejections: n,
                });
            }
            let changed = self.token.reload()?;
            self.observer.token_reload();
            info!(
                endpoint,
                status = a.status.as_u16(),
                changed,
                "token rejected; re-read it"
            );
            reloaded = true;
        }
    }

    async fn send_once(&self, call: &Call<'_>) -> Result<Answer> {
        let (endpoint, method) = (call.endpoint, &call.method);
        let token = self.token.current()?;
        let mut req = self
            .http
            .request(method.clone(), format!("{}{}", self.base, call.path))
            .header("X-SLURM-USER-NAME", call.user.unwrap_or(&self.user))
            .header("X-SLURM-USER-TOKEN", token);
        if let Some(b) = call.body {
            req = req
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        let started = Instant::now();
        let res = async {
            let mut res = req.send().await?;
            let status = res.status();
            let body = read_body(&mut res).await?;
            Ok::<_, reqwest::Error>(Answer { status, body })
        }
        .await;
        let took = started.elapsed();
        match res {
            Ok(a) => {
                self.observer.request(endpoint, a.status.as_str(), took);
                debug!(endpoint, %method, status = a.status.as_u16(), ms = took.as_millis() as u64, "slurmrestd answered");
                Ok(a)
            }
            Err(e) => {
                let code = if e.is_timeout() { "timeout" } else { "error" };
                self.observer.request(endpoint, code, took);
                debug!(endpoint, %method, error = %e, "slurmrestd request failed");
                Err(Error::unknown(endpoint, error_chain(&e)))
            }
        }
    }
}

fn is_gateway_failure(s: StatusCode) -> bool {
    matches!(s.as_u16(), 429 | 502 | 503 | 504)
}

/// 401 everywhere; 511 from 24.11 (error 1007); on 22.05 (v0.0.38, or before detection)
/// a 500 whose errors carry no known job error number, since 22.05 does not say.
fn is_token_rejection(version: Option<ApiVersion>, a: &Answer) -> bool {
    match a.status.as_u16() {
        401 | 511 => true,
        500 if version.is_none_or(|v| v == ApiVersion::V0038) => {
            let errors = decode_errors(&a.body);
            !errors.is_empty()
                && errors
                    .iter()
                    .all(|e| !e.number.is_some_and(is_known_job_error_or_comm))
        }
        _ => false,
    }
}

/// Errors that explain a 500 without a token problem: job errors, and slurmrestd failing
/// to reach slurmctld (`SLURM_COMMUNICATIONS_*`, 1000s).
fn is_known_job_error_or_comm(n: i64) -> bool {
    is_known_job_error(n) || (1000..2000).contains(&n)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(version: &str, name: &str) -> Answer {
        let dir = format!("{}/tests/fixtures/{version}", env!("CARGO_MANIFEST_DIR"));
        let status: u16 = std::fs::read_to_string(format!("{dir}/{name}.status"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
            body: std::fs::read(format!("{dir}/{name}.json")).unwrap().into(),
        }
    }

    #[test]
    fn token_rejections_are_told_from_job_errors() {
        let v38 = Some(ApiVersion::V0038);
        // 22.05: a rejected token is a 500 with error -1; job errors are 500s too.
        assert!(is_token_rejection(
            v38,
            &recorded("v0.0.38", "jobs_bad_token")
        ));
        assert!(is_token_rejection(
            None,
            &recorded("v0.0.38", "ping_bad_token")
        ));
        for name in [
            "job_unknown",
            "submit_bad_partition",
            "submit_bad_feature",
            "submit_too_big",
        ] {
            assert!(
                !is_token_rejection(v38, &recorded("v0.0.38", name)),
                "{name}"
            );
        }
        // 24.11: 511 with 1007; its 500s and 404s are never token failures.
        for v in ["v0.0.40", "v0.0.41", "v0.0.42"] {
            let version = Some(v.parse().unwrap());
            assert!(
                is_token_rejection(version, &recorded(v, "jobs_bad_token")),
                "{v}"
            );
            for name in ["job_unknown", "submit_bad_partition", "ping_bad_token"] {
                assert!(
                    !is_token_rejection(version, &recorded(v, name)),
                    "{v} {name}"
                );
            }
        }
    }
}
