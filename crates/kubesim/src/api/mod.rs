//! The HTTP API: one dispatcher that resolves the path to a resource and verb and hands
//! the request to the object handlers, the pod subresources, the watch streamer or
//! discovery. Authentication and the request log are the outer layer; fault injection
//! (`crate::faults`) is the layer between it and the dispatcher, so injected answers are
//! logged like any other. The admin endpoints `/kubesim/faults` and `/kubesim/requests`
//! sit outside both: they are neither logged nor faulted.

mod discovery;
mod namespaces;
mod objects;
mod pod_ops;
mod table;
mod watch;

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::recorder::{Recorder, RequestRecord};
use crate::request::{classify, parse_path, Query, Target};
use crate::resource::Resource;
use crate::store::Store;

/// Shared state of all handlers.
#[derive(Clone)]
pub struct AppState {
    /// The object store.
    pub store: Arc<Store>,
    /// Bearer token a request with credentials must carry, when set.
    pub token: Option<String>,
    /// Log of every request.
    pub recorder: Arc<Recorder>,
    /// Flips to true when the server shuts down; watches end then.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Incremented to end every open watch at once.
    pub watch_epoch: tokio::sync::watch::Receiver<u64>,
    /// Address clients reach the server at, for discovery.
    pub address: String,
    /// Feature gates of pod admission.
    pub features: crate::pods::Features,
    /// Fault rules.
    pub faults: Arc<crate::faults::Faults>,
}

/// Build the router.
pub fn router(state: AppState) -> axum::Router {
    let admin = axum::Router::new()
        .route("/kubesim/faults", axum::routing::any(crate::faults::admin))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate_admin,
        ))
        .with_state(state.faults.clone());
    let log = axum::Router::new()
        .route("/kubesim/requests", axum::routing::get(request_log))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate_admin,
        ))
        .with_state(state.clone());
    axum::Router::new()
        .fallback(dispatch)
        .layer(axum::middleware::from_fn_with_state(
            state.faults.clone(),
            crate::faults::layer,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate_and_record,
        ))
        .with_state(state)
        .merge(admin)
        .merge(log)
}

/// `GET /kubesim/requests`: the request log as JSON, for processes other than the one
/// running the server (the binary, scripts).
async fn request_log(State(state): State<AppState>) -> Response {
    let records: Vec<Value> = state
        .recorder
        .snapshot()
        .iter()
        .map(|r| {
            let millis = r
                .time
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            serde_json::json!({
                "verb": r.info.verb, "resource": r.info.resource, "group": r.info.group,
                "subresource": r.info.subresource, "namespace": r.info.namespace,
                "name": r.info.name, "path": r.info.path, "userAgent": r.user_agent,
                "status": r.status, "timeMillis": millis,
            })
        })
        .collect();
    axum::Json(serde_json::json!({"requests": records})).into_response()
}

/// Whether a request may be served: without credentials, or with the right token.
fn authorized(state: &AppState, headers: &HeaderMap) -> bool {
    // kubectl (client-go) does not send bearer tokens over plain HTTP, so a request
    // without credentials is served; one with a wrong token is refused, which keeps
    // misconfigured clients visible.
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).trim().to_string());
    match (&state.token, presented) {
        (Some(token), Some(presented)) => *token == presented,
        _ => true,
    }
}

/// The admin endpoint takes the same credentials as the API.
async fn authenticate_admin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if authorized(&state, request.headers()) {
        next.run(request).await
    } else {
        ApiError::unauthorized().into_response()
    }
}

/// Check the bearer token and log the request with its outcome.
async fn authenticate_and_record(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let started = std::time::SystemTime::now();
    let query = Query::parse(request.uri().query());
    let info = classify(request.method(), request.uri().path(), &query);
    let user_agent = request
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let response = if authorized(&state, request.headers()) {
        // The fault layer behind reads what the request addresses from here.
        let mut request = request;
        request.extensions_mut().insert(info.clone());
        next.run(request).await
    } else {
        ApiError::unauthorized().into_response()
    };
    tracing::debug!(
        verb = %info.verb, resource = %info.resource, subresource = ?info.subresource,
        namespace = ?info.namespace, name = ?info.name, status = response.status().as_u16(),
        "request"
    );
    state.recorder.record(RequestRecord {
        time: started,
        info,
        user_agent,
        status: response.status().as_u16(),
    });
    response
}

/// Route one request.
async fn dispatch(
    State(state): State<AppState>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path();
    let query = Query::parse(uri.query());
    if let Some(resp) = discovery::serve(&state, &method, path, &headers) {
        return resp;
    }
    let Some(target) = parse_path(path) else {
        return ApiError::no_route().into_response();
    };
    let req = ApiRequest {
        state: &state,
        target,
        query,
        headers,
        body,
    };
    match handle(&method, req).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

/// One resolved API request.
pub(crate) struct ApiRequest<'a> {
    pub state: &'a AppState,
    pub target: Target,
    pub query: Query,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl ApiRequest<'_> {
    /// The body as JSON.
    fn json_body(&self) -> ApiResult<Value> {
        serde_json::from_slice(&self.body).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        })
    }

    /// Whether the client asked for a `meta.k8s.io` Table (kubectl get).
    fn wants_table(&self) -> bool {
        self.headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("as=Table"))
    }
}

async fn handle(method: &Method, req: ApiRequest<'_>) -> ApiResult<Response> {
    if req.query.get("dryRun").is_some_and(|d| !d.is_empty()) {
        // Refused rather than ignored: ignoring it would write what the client only
        // meant to try.
        return Err(ApiError::bad_request("dryRun is not supported by kubesim"));
    }
    let sub = req.target.subresource.clone();
    let has_name = req.target.name.is_some();
    match (method.clone(), has_name, sub.as_deref()) {
        (Method::GET, false, None) if req.query.flag("watch") => watch::serve(req),
        (Method::GET, false, None) => objects::list(req),
        (Method::POST, false, None) => objects::create(req),
        (Method::DELETE, false, None) => objects::delete_collection(req),
        (Method::GET, true, None) if req.query.flag("watch") => watch::serve(req),
        (Method::GET, true, None | Some("status")) => objects::get(req),
        (Method::PUT, true, None | Some("status")) => objects::update(req),
        (Method::PATCH, true, None | Some("status")) => objects::patch(req),
        (Method::DELETE, true, None) if req.target.resource == Resource::Namespaces => {
            namespaces::delete(req)
        }
        (Method::DELETE, true, None) => objects::delete(req),
        (Method::POST, _, Some("binding")) if req.target.resource == Resource::Pods => {
            pod_ops::bind(req)
        }
        (Method::POST, true, Some("eviction")) if req.target.resource == Resource::Pods => {
            pod_ops::evict(req)
        }
        (m, _, _) => Err(ApiError::method_not_allowed(m.as_str())),
    }
}

/// A JSON response with a status code.
pub(crate) fn json_response(code: StatusCode, body: Vec<u8>) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(body),
    )
        .into_response()
}

/// A stored object as the addressed API shows it.
pub(crate) fn render(resource: Resource, obj: &Value) -> std::borrow::Cow<'_, Value> {
    if resource == Resource::Events {
        std::borrow::Cow::Owned(crate::events::to_events_v1(obj))
    } else {
        std::borrow::Cow::Borrowed(obj)
    }
}

/// Serialize one object for the addressed API.
pub(crate) fn object_response(code: StatusCode, resource: Resource, obj: &Value) -> Response {
    let body = serde_json::to_vec(&*render(resource, obj)).unwrap_or_default();
    json_response(code, body)
}

/// The `Status` a successful binding or eviction answers with.
pub(crate) fn success_status(code: u16) -> Response {
    let body = serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                                  "status": "Success", "code": code});
    json_response(
        StatusCode::from_u16(code).unwrap_or(StatusCode::OK),
        serde_json::to_vec(&body).unwrap_or_default(),
    )
}
