//! The pod subresources that act rather than store: `binding` (also the legacy
//! `bindings` collection) and `eviction`.

use axum::response::Response;
use serde_json::Value;

use super::objects::delete_one;
use super::{success_status, ApiRequest};
use crate::deletion::DeleteOptions;
use crate::error::{ApiError, ApiResult};
use crate::meta;
use crate::pods::{self, Binding};
use crate::store::{key, Outcome};

pub(crate) fn bind(req: ApiRequest<'_>) -> ApiResult<Response> {
    let body = req.json_body()?;
    let body_name = meta::name(&body).to_string();
    let name = match &req.target.name {
        Some(url_name) if *url_name != body_name => {
            return Err(ApiError::bad_request(
                "name in URL does not match name in Binding object",
            ));
        }
        Some(url_name) => url_name.clone(),
        None => body_name,
    };
    let node = body
        .pointer("/target/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if node.is_empty() {
        return Err(ApiError::internal("target.name: Required value"));
    }
    let binding = Binding {
        node,
        uid: body.pointer("/metadata/uid").and_then(Value::as_str),
        annotations: body
            .pointer("/metadata/annotations")
            .and_then(Value::as_object),
    };
    let key = key(req.target.namespace.as_deref(), &name);
    req.state
        .store
        .write(crate::resource::Table::Pods, &key, |current| {
            let current = current.ok_or_else(|| ApiError::not_found("pods", "", &name))?;
            Ok(Outcome::Update(pods::bind(current, &binding)?))
        })?;
    tracing::debug!(pod = %key, node, "bound");
    Ok(success_status(201))
}

pub(crate) fn evict(req: ApiRequest<'_>) -> ApiResult<Response> {
    let body = req.json_body()?;
    let name = req.target.name.clone().unwrap_or_default();
    if meta::name(&body) != name {
        return Err(ApiError::bad_request(
            "name in URL does not match name in Eviction object",
        ));
    }
    let key = key(req.target.namespace.as_deref(), &name);
    let store = &req.state.store;
    let pod = store
        .get(crate::resource::Table::Pods, &key)
        .ok_or_else(|| ApiError::not_found("pods", "", &name))?;
    if meta::is_terminating(&pod) {
        return Ok(success_status(201));
    }
    let options = &body["deleteOptions"];
    let opts = DeleteOptions {
        grace: options.get("gracePeriodSeconds").and_then(Value::as_i64),
        uid: options
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string),
        resource_version: options
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string),
    };
    if pods::is_bound(&pod) && !pods::is_finished(&pod) {
        // A running pod learns why it is going before it goes.
        store.write(crate::resource::Table::Pods, &key, |current| {
            let current = current.ok_or_else(|| ApiError::not_found("pods", "", &name))?;
            let mut pod = (**current).clone();
            pods::set_condition(&mut pod, pods::eviction_condition());
            Ok(Outcome::Update(pod))
        })?;
    }
    delete_one(&req, &key, &name, &opts)?;
    Ok(success_status(201))
}
