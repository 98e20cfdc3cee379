//! API errors and the `Status` bodies kube-apiserver answers with.
//!
//! Every failure a handler can produce is an [`ApiError`]; it renders as the exact
//! `Status` shape (code, reason, message, details) a real API server sends, so clients
//! that branch on `reason` or `code` behave the same against the double.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

/// A failed API request, rendered as a `Status` object.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    /// HTTP status code, also the `code` field of the body.
    pub code: u16,
    /// `reason` of the Status (`NotFound`, `Conflict`, ...); empty for 500s without one.
    pub reason: &'static str,
    /// Human readable message, worded like kube-apiserver's.
    pub message: String,
    /// `details` of the Status, when the real server sends one.
    pub details: Option<Value>,
    /// `Retry-After` header value in seconds, for 429 and 504.
    pub retry_after: Option<u64>,
    /// `metadata.continue` of the Status (only for expired continue tokens).
    pub continue_token: Option<String>,
}

/// The `details` object naming the object a failure is about.
pub fn details(name: &str, group: &str, kind: &str) -> Value {
    let mut d = Map::new();
    if !name.is_empty() {
        d.insert("name".into(), json!(name));
    }
    if !group.is_empty() {
        d.insert("group".into(), json!(group));
    }
    d.insert("kind".into(), json!(kind));
    Value::Object(d)
}

/// `plural` or `plural.group`, the way error messages name a resource.
pub fn qualified(plural: &str, group: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
            retry_after: None,
            continue_token: None,
        }
    }

    /// A failure injected by a fault rule, with the Status fields the real one has.
    pub(crate) fn injected(
        code: u16,
        reason: &'static str,
        message: String,
        details: Option<Value>,
        retry_after: Option<u64>,
    ) -> Self {
        let mut e = Self::new(code, reason, message);
        e.details = details;
        e.retry_after = retry_after;
        e
    }

    /// Attach a `details` object.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// 404 `<plural> "<name>" not found`.
    pub fn not_found(plural: &str, group: &str, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", qualified(plural, group)),
        )
        .with_details(details(name, group, plural))
    }

    /// 404 for a path the double does not serve.
    pub fn no_route() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_details(json!({}))
    }

    /// 409 `<plural> "<name>" already exists`.
    pub fn already_exists(plural: &str, group: &str, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", qualified(plural, group)),
        )
        .with_details(details(name, group, plural))
    }

    /// 409 `Operation cannot be fulfilled on <what> "<name>": <why>`.
    pub fn conflict(what: &str, group: &str, kind: &str, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {what} \"{name}\": {why}"),
        )
        .with_details(details(name, group, kind))
    }

    /// 409 for an update carrying a stale resourceVersion.
    pub fn stale(plural: &str, group: &str, name: &str) -> Self {
        Self::conflict(
            &qualified(plural, group),
            group,
            plural,
            name,
            "the object has been modified; please apply your changes to the latest version and \
             try again",
        )
    }

    /// 422 Invalid with one cause per `(field, reason, message)`.
    pub fn invalid(kind: &str, group: &str, name: &str, causes: &[(&str, &str, String)]) -> Self {
        let summary: Vec<String> = causes
            .iter()
            .map(|(field, _, msg)| format!("{field}: {msg}"))
            .collect();
        let message = if summary.len() == 1 {
            format!("{kind} \"{name}\" is invalid: {}", summary[0])
        } else {
            format!("{kind} \"{name}\" is invalid: [{}]", summary.join(", "))
        };
        let causes: Vec<Value> = causes
            .iter()
            .map(|(field, reason, msg)| json!({"reason": reason, "message": msg, "field": field}))
            .collect();
        let mut d = details(name, group, kind);
        d["causes"] = Value::Array(causes);
        Self::new(422, "Invalid", message).with_details(d)
    }

    /// 422 Invalid for list options (`ListOptions.meta.k8s.io "" is invalid: ...`).
    pub fn list_options_invalid(field: &str, message: &str) -> Self {
        let mut e = Self::invalid(
            "ListOptions.meta.k8s.io",
            "meta.k8s.io",
            "",
            &[(field, "FieldValueForbidden", message.to_string())],
        );
        if let Some(d) = e.details.as_mut() {
            d["kind"] = json!("ListOptions");
        }
        e
    }

    /// 422 Invalid without causes (a JSON patch `test` that failed, for example).
    pub fn invalid_plain(message: impl Into<String>) -> Self {
        Self::new(422, "Invalid", message).with_details(json!({}))
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 410 Expired (lists reaching storage with a compacted version).
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 500 with no reason, as kube-apiserver sends for internal and some validation errors.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "", message)
    }

    /// 401 for a missing or wrong bearer token.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// 405 for a verb a resource does not support.
    pub fn method_not_allowed(verb: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({verb})"),
        )
        .with_details(json!({}))
    }

    /// 415 for a body type the double does not decode.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/json, application/merge-patch+json, application/strategic-merge-patch+json, application/json-patch+json (got {content_type})"))
            .with_details(json!({}))
    }

    /// 504 for a list asking for a resourceVersion the store has not reached yet.
    pub fn too_large_resource_version(asked: u64, current: u64) -> Self {
        let mut e = Self::new(
            504,
            "Timeout",
            format!("Timeout: Too large resource version: {asked}, current: {current}"),
        )
        .with_details(json!({
            "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
            "retryAfterSeconds": 1
        }));
        e.retry_after = Some(1);
        e
    }

    /// The `Status` object for this error.
    pub fn to_status(&self) -> Value {
        let mut metadata = Map::new();
        if let Some(token) = &self.continue_token {
            metadata.insert("continue".into(), json!(token));
        }
        let mut status = Map::new();
        status.insert("kind".into(), json!("Status"));
        status.insert("apiVersion".into(), json!("v1"));
        status.insert("metadata".into(), Value::Object(metadata));
        status.insert("status".into(), json!("Failure"));
        status.insert("message".into(), json!(self.message));
        if !self.reason.is_empty() {
            status.insert("reason".into(), json!(self.reason));
        }
        if let Some(d) = &self.details {
            status.insert("details".into(), d.clone());
        }
        status.insert("code".into(), json!(self.code));
        Value::Object(status)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self.to_status()).unwrap_or_default();
        let mut resp = (
            code,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        resp
    }
}

/// Result alias for API handlers.
pub type ApiResult<T> = Result<T, ApiError>;

/// Errors of the library outside request handling (start-up, kubeconfig).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address asked for.
        addr: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The listen address is not a loopback address; the double serves loopback only.
    #[error("refusing to listen on {addr}: kubesim serves loopback addresses only")]
    NotLoopback {
        /// Address asked for.
        addr: String,
    },
    /// The kubeconfig file could not be written.
    #[error("cannot write kubeconfig {path}: {source}")]
    Kubeconfig {
        /// File asked for.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A `kube::Config` could not be built for the server.
    #[error("cannot build a client configuration for {url}: {message}")]
    ClientConfig {
        /// Server URL.
        url: String,
        /// What went wrong.
        message: String,
    },
}
