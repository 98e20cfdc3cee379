//! Namespace deletion. kube-apiserver marks the namespace Terminating and the namespace
//! controller then removes what it holds and finalizes it; the double has no controllers,
//! so it does both steps at once: the answer shows the Terminating namespace, and watchers
//! see its objects and then the namespace itself deleted.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::objects::delete_options;
use super::{object_response, ApiRequest};
use crate::deletion;
use crate::error::{ApiError, ApiResult};
use crate::meta;
use crate::resource::{Resource, Table};
use crate::store::{key, Outcome};

pub(crate) fn delete(req: ApiRequest<'_>) -> ApiResult<Response> {
    let name = req.target.name.clone().unwrap_or_default();
    let opts = delete_options(&req)?;
    let store = &req.state.store;
    let marked = store.write(Table::Namespaces, &name, |current| {
        let current = current.ok_or_else(|| ApiError::not_found("namespaces", "", &name))?;
        deletion::check_preconditions(current, "namespaces", "", &opts)?;
        if meta::is_terminating(current) {
            return Ok(Outcome::Unchanged);
        }
        let mut ns = (**current).clone();
        let m = meta::metadata_mut(&mut ns);
        m.insert("deletionTimestamp".into(), json!(meta::now_rfc3339()));
        m.insert("deletionGracePeriodSeconds".into(), json!(0));
        ns["status"] = json!({"phase": "Terminating"});
        Ok(Outcome::Update(ns))
    })?;

    // What the namespace controller would do next: remove the contents (finalizers
    // included, as if their owners were done), then the namespace.
    let prefix = format!("{name}/");
    for table in [Table::Pods, Table::Leases, Table::Events] {
        let page = store.list(table, &prefix, None, None, false, |_| true);
        for item in page.items {
            let key = key(Some(&name), meta::name(&item));
            // Something else may have removed it meanwhile: nothing left to do then.
            let _ = store.write(table, &key, |current| match current {
                Some(_) => Ok(Outcome::Delete),
                None => Err(ApiError::not_found("objects", "", &key)),
            });
        }
    }
    let _ = store.write(Table::Namespaces, &name, |current| match current {
        Some(_) => Ok(Outcome::Delete),
        None => Err(ApiError::not_found("namespaces", "", &name)),
    });
    tracing::info!(namespace = %name, "namespace deleted with its contents");
    Ok(object_response(
        StatusCode::OK,
        Resource::Namespaces,
        &marked.object,
    ))
}
