//! Fault injection: the failures a real API server shows now and then, on demand.
//!
//! Owns the fault rules (fail the next N requests of a kind with a chosen status, delay
//! answers, answer the next watch with `410 Expired`), the "refuse connections for a
//! while" switch, the axum layer that applies them (`layer`), and the admin endpoint `/kubesim/faults` (outside the Kubernetes paths)
//! that drives the same rules as JSON. Tests use the Rust handle on
//! [`crate::ServerHandle`] (`inject`, `fail_next`, `expire_next_watch`, ...).
//!
//! Rules are checked in the order they were added; the first that matches a request and is
//! still live acts on it. A request matched by a delay rule keeps looking for a failure
//! rule, so "slow and then failing" can be arranged with two rules.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::request::RequestInfo;

mod net;
pub(crate) use net::FaultListener;

/// Which requests a fault applies to; every field that is set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Matcher {
    /// Kubernetes verb: get, list, watch, create, update, patch, delete, deletecollection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verb: Option<String>,
    /// Plural resource name (`pods`, `nodes`, `leases`, `events`, `namespaces`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// Subresource (`status`, `binding`, `eviction`); the empty string matches only
    /// requests to the main resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subresource: Option<String>,
    /// Namespace of the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Object name of the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Matcher {
    /// Matches every API request.
    pub fn any() -> Self {
        Self::default()
    }

    /// Only this verb.
    pub fn verb(mut self, verb: &str) -> Self {
        self.verb = Some(verb.into());
        self
    }

    /// Only this resource (plural).
    pub fn resource(mut self, resource: &str) -> Self {
        self.resource = Some(resource.into());
        self
    }

    /// Only this subresource (`""`: only the main resource).
    pub fn subresource(mut self, subresource: &str) -> Self {
        self.subresource = Some(subresource.into());
        self
    }

    /// Only this namespace.
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Only this object name.
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.into());
        self
    }

    fn matches(&self, info: &RequestInfo) -> bool {
        // Discovery and other non-resource paths never match: faults are about the API.
        if info.resource.is_empty() {
            return false;
        }
        let same = |want: &Option<String>, got: Option<&str>| {
            want.as_deref().is_none_or(|w| Some(w) == got)
        };
        same(&self.verb, Some(&info.verb))
            && same(&self.resource, Some(&info.resource))
            && same(&self.namespace, info.namespace.as_deref())
            && same(&self.name, info.name.as_deref())
            && match self.subresource.as_deref() {
                None => true,
                Some("") => info.subresource.is_none(),
                Some(s) => info.subresource.as_deref() == Some(s),
            }
    }
}

/// One fault, as the admin endpoint takes it (`{"fault": "fail", ...}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "fault", rename_all = "camelCase", deny_unknown_fields)]
pub enum Fault {
    /// Answer matching requests with `status` and a `Status` body instead of serving them.
    /// Lasts `count` requests (default 1), or `seconds` when given without a count.
    #[serde(rename_all = "camelCase")]
    Fail {
        /// Which requests.
        #[serde(rename = "match", default)]
        matcher: Matcher,
        /// HTTP status: 4xx or 5xx (500, 429, 409, 503, 504, 410, 403, 404, ...).
        status: u16,
        /// How many requests fail.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        count: Option<u32>,
        /// For how long requests fail.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seconds: Option<f64>,
        /// `Retry-After` (and `details.retryAfterSeconds`); 429 defaults to 1.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_seconds: Option<u64>,
        /// Message of the `Status`; a kube-apiserver-like one by default.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// Hold matching requests `millis` before serving them. Lasts `count` requests, or
    /// `seconds`, or (neither given) until cleared.
    #[serde(rename_all = "camelCase")]
    Delay {
        /// Which requests.
        #[serde(rename = "match", default)]
        matcher: Matcher,
        /// How long each is held.
        millis: u64,
        /// How many requests are delayed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        count: Option<u32>,
        /// For how long requests are delayed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seconds: Option<f64>,
    },
    /// Answer the next `count` (default 1) watches of `resource` as kube-apiserver answers a
    /// watch from a compacted version: a 200 stream with one `ERROR` event carrying a
    /// `410 Expired` Status, then the end of the stream.
    #[serde(rename_all = "camelCase")]
    ExpireWatch {
        /// Plural resource name.
        resource: String,
        /// How many watches.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        count: Option<u32>,
    },
    /// End every open watch now.
    EndWatches,
    /// For `seconds`: close new connections as soon as they are accepted, and drop
    /// established ones when they next read or write. Open watches end too.
    RefuseConnections {
        /// How long.
        seconds: f64,
    },
    /// Remove every rule and stop refusing connections.
    Clear,
}

/// Why a fault was not accepted.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum FaultError {
    /// Failures must use an error status.
    #[error("status {0} is not an error status (400-599)")]
    Status(u16),
    /// A duration that is negative, not finite, or absurdly long.
    #[error("duration {0} s is not a usable duration")]
    Duration(String),
    /// `expireWatch` names no resource kubesim serves.
    #[error("unknown resource {0:?}")]
    Resource(String),
}

/// What a live rule does.
#[derive(Debug, Clone)]
enum Action {
    Fail(ApiError),
    Delay(Duration),
    ExpireWatch,
}

#[derive(Debug)]
struct Rule {
    matcher: Matcher,
    action: Action,
    /// Requests left, when counted.
    remaining: Option<u32>,
    /// End of the rule, when timed.
    until: Option<Instant>,
    /// The fault as given, for the admin listing.
    given: Fault,
}

impl Rule {
    fn live(&self, now: Instant) -> bool {
        self.remaining != Some(0) && self.until.is_none_or(|u| now < u)
    }
}

/// The fault state of one server.
pub struct Faults {
    rules: Mutex<Vec<Rule>>,
    /// Fast path: no rule at all, so requests skip the lock.
    any_rules: AtomicBool,
    /// Milliseconds since `origin` until which connections are refused (0: not refusing).
    refuse_until_ms: AtomicU64,
    origin: Instant,
    /// Ends every open watch (the server's watch epoch).
    end_watches: Box<dyn Fn() + Send + Sync>,
}

impl Faults {
    /// Fault state with no rule; `end_watches` ends every open watch.
    pub(crate) fn new(end_watches: Box<dyn Fn() + Send + Sync>) -> Faults {
        Faults {
            rules: Mutex::new(Vec::new()),
            any_rules: AtomicBool::new(false),
            refuse_until_ms: AtomicU64::new(0),
            origin: Instant::now(),
            end_watches,
        }
    }

    /// Add a fault (or act on it at once: end watches, refuse, clear).
    pub fn inject(&self, fault: Fault) -> Result<(), FaultError> {
        let now = Instant::now();
        let (matcher, action, remaining, until) = match &fault {
            Fault::Fail {
                matcher,
                status,
                count,
                seconds,
                retry_after_seconds,
                message,
            } => {
                if !(400..=599).contains(status) {
                    return Err(FaultError::Status(*status));
                }
                let until = seconds.map(|s| duration(s).map(|d| now + d)).transpose()?;
                let remaining = count.or(if until.is_some() { None } else { Some(1) });
                let error = injected_error(*status, *retry_after_seconds, message.clone(), matcher);
                (matcher.clone(), Action::Fail(error), remaining, until)
            }
            Fault::Delay {
                matcher,
                millis,
                count,
                seconds,
            } => {
                let until = seconds.map(|s| duration(s).map(|d| now + d)).transpose()?;
                let action = Action::Delay(Duration::from_millis(*millis));
                (matcher.clone(), action, *count, until)
            }
            Fault::ExpireWatch { resource, count } => {
                if !crate::resource::Resource::ALL
                    .iter()
                    .any(|r| r.plural() == resource)
                {
                    return Err(FaultError::Resource(resource.clone()));
                }
                let matcher = Matcher::any().verb("watch").resource(resource);
                (matcher, Action::ExpireWatch, Some(count.unwrap_or(1)), None)
            }
            Fault::EndWatches => {
                (self.end_watches)();
                return Ok(());
            }
            Fault::RefuseConnections { seconds } => {
                let d = duration(*seconds)?;
                let until = (now + d).duration_since(self.origin).as_millis() as u64;
                self.refuse_until_ms.store(until.max(1), Ordering::SeqCst);
                (self.end_watches)();
                tracing::info!(seconds, "kubesim refusing connections");
                return Ok(());
            }
            Fault::Clear => {
                self.clear();
                return Ok(());
            }
        };
        tracing::info!(?fault, "fault injected");
        let mut rules = self.lock();
        rules.push(Rule {
            matcher,
            action,
            remaining,
            until,
            given: fault,
        });
        self.any_rules.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Remove every rule and stop refusing connections.
    pub fn clear(&self) {
        // The flag changes under the lock, so a rule added meanwhile keeps it set.
        let mut rules = self.lock();
        rules.clear();
        self.any_rules.store(false, Ordering::SeqCst);
        drop(rules);
        self.refuse_until_ms.store(0, Ordering::SeqCst);
    }

    /// The rules still live, as given, with what is left of each.
    pub fn active(&self) -> Vec<Value> {
        let now = Instant::now();
        let mut rules = self.lock();
        rules.retain(|r| r.live(now));
        let mut list: Vec<Value> = rules
            .iter()
            .map(|r| {
                json!({
                    "fault": r.given,
                    "remaining": r.remaining,
                    "secondsLeft": r.until.map(|u| u.saturating_duration_since(now).as_secs_f64()),
                })
            })
            .collect();
        if self.refusing() {
            let until = self.refuse_until_ms.load(Ordering::SeqCst);
            let left = until.saturating_sub(self.origin.elapsed().as_millis() as u64);
            list.push(json!({"fault": {"fault": "refuseConnections"},
                             "secondsLeft": left as f64 / 1000.0}));
        }
        list
    }

    /// Whether connections are being refused now.
    pub fn refusing(&self) -> bool {
        let until = self.refuse_until_ms.load(Ordering::Relaxed);
        until != 0 && (self.origin.elapsed().as_millis() as u64) < until
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Rule>> {
        self.rules.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What to do with one request: an optional delay, then maybe an answer in its place.
    fn decide(&self, info: &RequestInfo) -> (Option<Duration>, Option<Action>) {
        if !self.any_rules.load(Ordering::Relaxed) {
            return (None, None);
        }
        let now = Instant::now();
        let mut rules = self.lock();
        let mut delay = None;
        let mut answer = None;
        for rule in rules.iter_mut() {
            if !rule.live(now) || !rule.matcher.matches(info) {
                continue;
            }
            match &rule.action {
                Action::Delay(d) if delay.is_none() => delay = Some(*d),
                Action::Delay(_) => continue,
                action => {
                    if answer.is_some() {
                        continue;
                    }
                    answer = Some(action.clone());
                }
            }
            if let Some(left) = rule.remaining.as_mut() {
                *left -= 1;
            }
            if delay.is_some() && answer.is_some() {
                break;
            }
        }
        rules.retain(|r| r.live(now));
        self.any_rules.store(!rules.is_empty(), Ordering::Relaxed);
        (delay, answer)
    }
}

fn duration(seconds: f64) -> Result<Duration, FaultError> {
    if seconds.is_finite() && (0.0..=86_400.0).contains(&seconds) {
        Ok(Duration::from_secs_f64(seconds))
    } else {
        Err(FaultError::Duration(seconds.to_string()))
    }
}

/// The `Status` kube-apiserver would send with this code.
fn injected_error(
    status: u16,
    retry_after: Option<u64>,
    message: Option<String>,
    matcher: &Matcher,
) -> ApiError {
    let name = matcher.name.clone().unwrap_or_default();
    let kind = matcher.resource.clone().unwrap_or_default();
    let (reason, default_message, details) = match status {
        429 => (
            "TooManyRequests",
            "Too many requests, please try again later.".to_string(),
            Some(json!({})),
        ),
        409 => (
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {kind} \"{name}\": the object has been \
                 modified; please apply your changes to the latest version and try again"
            ),
            Some(crate::error::details(&name, "", &kind)),
        ),
        500 => (
            "InternalError",
            "Internal error occurred: injected by kubesim".to_string(),
            Some(json!({"causes": [{"message": "injected by kubesim"}]})),
        ),
        503 => (
            "ServiceUnavailable",
            "the server is currently unable to handle the request".to_string(),
            None,
        ),
        504 => (
            "Timeout",
            "Timeout: request did not complete within the allotted timeout".to_string(),
            None,
        ),
        410 => (
            "Expired",
            "the resource version is too old".to_string(),
            None,
        ),
        404 => (
            "NotFound",
            format!("{kind} \"{name}\" not found"),
            Some(crate::error::details(&name, "", &kind)),
        ),
        403 => (
            "Forbidden",
            "forbidden: injected by kubesim".to_string(),
            None,
        ),
        401 => ("Unauthorized", "Unauthorized".to_string(), None),
        _ => ("", format!("injected failure {status}"), None),
    };
    let retry_after = retry_after.or((status == 429).then_some(1));
    let mut details = details;
    if let Some(secs) = retry_after {
        let d = details.get_or_insert_with(|| json!({}));
        d["retryAfterSeconds"] = json!(secs);
    }
    ApiError::injected(
        status,
        reason,
        message.unwrap_or(default_message),
        details,
        retry_after,
    )
}

/// The single line a watch from a compacted version gets.
fn expired_watch(info: &RequestInfo, asked: &str) -> Response {
    let status = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("too old resource version: {asked} (injected by kubesim)"),
        "reason": "Expired", "code": 410
    });
    let mut line =
        serde_json::to_vec(&json!({"type": "ERROR", "object": status})).unwrap_or_default();
    line.push(b'\n');
    tracing::info!(resource = %info.resource, "watch answered with injected 410 Expired");
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        line,
    )
        .into_response()
}

/// The fault layer: delays, failures and expired watches, keyed by the request's
/// `RequestInfo` (put in the extensions by the logging layer in front).
pub(crate) async fn layer(
    State(faults): State<Arc<Faults>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(info) = request.extensions().get::<RequestInfo>().cloned() else {
        return next.run(request).await;
    };
    let (delay, answer) = faults.decide(&info);
    if let Some(d) = delay {
        tracing::debug!(verb = %info.verb, resource = %info.resource, millis = d.as_millis() as u64, "delaying request");
        tokio::time::sleep(d).await;
    }
    match answer {
        Some(Action::Fail(error)) => {
            tracing::debug!(verb = %info.verb, resource = %info.resource, code = error.code, "failing request");
            error.into_response()
        }
        Some(Action::ExpireWatch) => {
            let query = crate::request::Query::parse(request.uri().query());
            let asked = query.get("resourceVersion").unwrap_or("0").to_string();
            expired_watch(&info, &asked)
        }
        _ => next.run(request).await,
    }
}

/// `/kubesim/faults`: GET lists the live rules, POST adds one (a [`Fault`] as JSON),
/// DELETE clears them all.
pub(crate) async fn admin(
    State(faults): State<Arc<Faults>>,
    method: axum::http::Method,
    body: axum::body::Bytes,
) -> Response {
    use axum::http::Method;
    match method {
        Method::GET => axum::Json(json!({"faults": faults.active()})).into_response(),
        Method::DELETE => {
            faults.clear();
            axum::Json(json!({"faults": []})).into_response()
        }
        Method::POST => match serde_json::from_slice::<Fault>(&body) {
            Ok(fault) => match faults.inject(fault) {
                Ok(()) => (
                    StatusCode::CREATED,
                    axum::Json(json!({"faults": faults.active()})),
                )
                    .into_response(),
                Err(e) => ApiError::bad_request(e.to_string()).into_response(),
            },
            Err(e) => ApiError::bad_request(format!("not a fault: {e}")).into_response(),
        },
        m => ApiError::method_not_allowed(m.as_str()).into_response(),
    }
}
