//! get, list, create, update, patch, delete and delete-collection for every served
//! resource, with kube-apiserver's preconditions, conflicts and list options.

use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use base64::Engine;
use serde_json::{json, Value};

use super::{json_response, object_response, render, table, ApiRequest};
use crate::deletion::{self, DeleteOptions};
use crate::error::{details, ApiError, ApiResult};
use crate::patch::{self, PatchType};
use crate::resource::Resource;
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{self, key, Outcome, Written};
use crate::{admit, meta};

/// Continue tokens: unpadded URL-safe base64 that, like Go's decoder, tolerates
/// non-zero trailing bits.
const TOKEN_ENGINE: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    base64::engine::GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// Selectors of a list, watch or delete-collection.
pub(crate) struct Filter {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    pub fn from_request(req: &ApiRequest<'_>) -> ApiResult<Filter> {
        let labels = LabelSelector::parse(req.query.get("labelSelector").unwrap_or_default())?;
        let fields = FieldSelector::parse(
            req.query.get("fieldSelector").unwrap_or_default(),
            req.target.resource,
        )?;
        Ok(Filter { labels, fields })
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.labels.matches(obj) && self.fields.matches(obj)
    }
}

/// The storage key prefix of a collection request.
pub(crate) fn prefix(req: &ApiRequest<'_>) -> String {
    match &req.target.namespace {
        Some(ns) => format!("{ns}/"),
        None => String::new(),
    }
}

fn object_key(req: &ApiRequest<'_>) -> String {
    let name = req.target.name.as_deref().unwrap_or_default();
    key(req.target.namespace.as_deref(), name)
}

fn not_found(req: &ApiRequest<'_>) -> ApiError {
    let r = req.target.resource;
    ApiError::not_found(
        r.plural(),
        r.group(),
        req.target.name.as_deref().unwrap_or_default(),
    )
}

pub(crate) fn get(req: ApiRequest<'_>) -> ApiResult<Response> {
    let obj = req
        .state
        .store
        .get(req.target.resource.table(), &object_key(&req));
    let obj = obj.ok_or_else(|| not_found(&req))?;
    if req.wants_table() {
        let t = table::table(
            req.target.resource,
            &[obj],
            store::resource_version(&Value::Null),
            true,
        );
        return Ok(json_response(
            StatusCode::OK,
            serde_json::to_vec(&t).unwrap_or_default(),
        ));
    }
    Ok(object_response(StatusCode::OK, req.target.resource, &obj))
}

/// Parse `resourceVersion`, answering like kube-apiserver to a malformed one.
pub(crate) fn parse_rv(raw: Option<&str>) -> ApiResult<Option<u64>> {
    match raw {
        None | Some("") => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            ApiError::internal(format!(
                "resourceVersion: Invalid value: \"{v}\": strconv.ParseUint: parsing \"{v}\": \
                 invalid syntax"
            ))
        }),
    }
}

fn decode_continue(token: &str) -> ApiResult<(Option<u64>, String)> {
    let invalid = |why: String| {
        ApiError::bad_request(format!(
            "invalid continue token: continue key is not valid: {why}"
        ))
    };
    let bytes = TOKEN_ENGINE
        .decode(token.trim_end_matches('='))
        .map_err(|e| invalid(format!("illegal base64 data: {e}")))?;
    let parsed: Value =
        serde_json::from_slice(&bytes).map_err(|_| invalid(go_json_error(&bytes)))?;
    // A token without a positive version (the one a 410 hands out) continues at the
    // current state instead of a snapshot.
    let rv = parsed["rv"]
        .as_i64()
        .filter(|rv| *rv > 0)
        .map(|rv| rv as u64);
    let start = parsed["start"].as_str().unwrap_or_default();
    Ok((rv, start.trim_end_matches('\u{0}').to_string()))
}

/// The first complaint Go's JSON decoder has about a byte string, which is what
/// kube-apiserver reports for a continue token that does not decode.
fn go_json_error(bytes: &[u8]) -> String {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => "unexpected end of JSON input".into(),
        Some(&b) if b.is_ascii_graphic() => {
            format!(
                "invalid character '{}' looking for beginning of value",
                b as char
            )
        }
        Some(&b) => format!("invalid character '\\u{b:04x}' looking for beginning of value"),
    }
}

fn encode_continue(rv: i64, start: &str) -> String {
    let token = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": format!("{start}\u{0}")});
    TOKEN_ENGINE.encode(token.to_string())
}

pub(crate) fn list(req: ApiRequest<'_>) -> ApiResult<Response> {
    let resource = req.target.resource;
    let table = resource.table();
    let store = &req.state.store;
    let rv = parse_rv(req.query.get("resourceVersion"))?;
    let rv_match = req
        .query
        .get("resourceVersionMatch")
        .filter(|m| !m.is_empty());
    if rv_match.is_some() && rv.is_none() {
        return Err(ApiError::list_options_invalid(
            "resourceVersionMatch",
            "Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided",
        ));
    }
    let filter = Filter::from_request(&req)?;
    let limit = req
        .query
        .int("limit")?
        .filter(|l| *l > 0)
        .map(|l| l as usize);
    let current = store.current_rv();
    let oldest = store.oldest_servable(table);
    if let Some(asked) = rv.filter(|v| *v > current) {
        if rv_match == Some("Exact") {
            return Err(ApiError::internal(
                "etcdserver: mvcc: required revision is a future revision",
            ));
        }
        return Err(ApiError::too_large_resource_version(asked, current));
    }
    // Requests served from "etcd" rather than the cache (an exact version, or a version
    // with a limit) fail once that version's history is gone.
    let from_storage = rv.is_some_and(|v| v > 0) && (rv_match == Some("Exact") || limit.is_some());
    if from_storage && rv.is_some_and(|v| v < oldest) {
        return Err(ApiError::expired(
            "The resourceVersion for the provided list is too old.",
        ));
    }
    // resourceVersion=0 is served from the watch cache, which ignores limit.
    let limit = if rv == Some(0) { None } else { limit };

    let prefix = prefix(&req);
    let (start, token_rv) = match req.query.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => {
            let (token_rv, start) = decode_continue(token)?;
            if token_rv.is_some_and(|rv| rv < oldest) {
                let mut e = ApiError::expired(
                    "The provided continue parameter is too old to display a consistent list \
                     result. You can start a new list without the continue parameter, or use the \
                     continue token in this response to retrieve the remainder of the results. \
                     Continuing with the provided token results in an inconsistent list - objects \
                     that were created, modified, or deleted between the time the first chunk \
                     was returned and now may show up in the list.",
                );
                e.continue_token = Some(encode_continue(-1, &start));
                return Err(e);
            }
            (Some(format!("{prefix}{start}")), token_rv)
        }
        None => (None, None),
    };
    // kube-apiserver reports remainingItemCount only for unfiltered lists.
    let page = store.list(
        table,
        &prefix,
        start.as_deref(),
        limit,
        filter.is_empty(),
        |o| filter.matches(o),
    );
    // A continued list reports the version of its first page. A list served from the
    // watch cache (a version given, not read from storage) reports the cache's version:
    // the newest event of this resource, not the global counter.
    let cache_rv = rv
        .filter(|_| !from_storage)
        .map(|asked| page.table_rv.max(asked));
    let list_rv = token_rv.or(cache_rv).unwrap_or(page.rv);
    let mut metadata = serde_json::Map::new();
    metadata.insert("resourceVersion".into(), json!(list_rv.to_string()));
    if let Some(next) = &page.next_key {
        let relative = next.strip_prefix(&prefix).unwrap_or(next);
        metadata.insert(
            "continue".into(),
            json!(encode_continue(list_rv as i64, relative)),
        );
        if filter.is_empty() {
            metadata.insert("remainingItemCount".into(), json!(page.remaining));
        }
    }
    if req.wants_table() {
        let mut t = table::table(resource, &page.items, list_rv, true);
        t["metadata"] = Value::Object(metadata);
        return Ok(json_response(
            StatusCode::OK,
            serde_json::to_vec(&t).unwrap_or_default(),
        ));
    }
    Ok(json_response(
        StatusCode::OK,
        list_body(resource, &Value::Object(metadata), &page.items),
    ))
}

/// Serialize a list without cloning its items.
pub(crate) fn list_body(resource: Resource, metadata: &Value, items: &[Arc<Value>]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(256 + items.len() * 1024);
    buf.extend_from_slice(
        format!(
            "{{\"kind\":\"{}List\",\"apiVersion\":\"{}\",\"metadata\":",
            resource.kind(),
            resource.api_version()
        )
        .as_bytes(),
    );
    serde_json::to_writer(&mut buf, metadata).expect("JSON values serialize");
    buf.extend_from_slice(b",\"items\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        write_item(&mut buf, &render(resource, item));
    }
    buf.extend_from_slice(b"]}");
    buf
}

/// Write a list item: the object without `kind` and `apiVersion`, as in real lists.
fn write_item(buf: &mut Vec<u8>, item: &Value) {
    let Some(map) = item.as_object() else {
        serde_json::to_writer(&mut *buf, item).expect("JSON values serialize");
        return;
    };
    buf.push(b'{');
    let mut first = true;
    for (k, v) in map
        .iter()
        .filter(|(k, _)| *k != "kind" && *k != "apiVersion")
    {
        if !first {
            buf.push(b',');
        }
        first = false;
        serde_json::to_writer(&mut *buf, k).expect("strings serialize");
        buf.push(b':');
        serde_json::to_writer(&mut *buf, v).expect("JSON values serialize");
    }
    buf.push(b'}');
}

fn check_namespace(req: &ApiRequest<'_>, obj: &mut Value) -> ApiResult<()> {
    let Some(ns) = req.target.namespace.as_deref() else {
        return Ok(());
    };
    match obj.pointer("/metadata/namespace").and_then(Value::as_str) {
        Some(body_ns) if !body_ns.is_empty() && body_ns != ns => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ => {
            if req
                .state
                .store
                .get(Resource::Namespaces.table(), ns)
                .is_none()
            {
                return Err(ApiError::not_found("namespaces", "", ns));
            }
            Ok(())
        }
    }
}

fn with_warnings(mut resp: Response, warnings: &[String]) -> Response {
    for w in warnings {
        if let Ok(v) = HeaderValue::from_str(w) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

pub(crate) fn create(req: ApiRequest<'_>) -> ApiResult<Response> {
    let resource = req.target.resource;
    let mut obj = req.json_body()?;
    let warnings = admit::field_validation(resource, &mut obj, req.query.get("fieldValidation"))?;
    check_namespace(&req, &mut obj)?;
    if meta::name(&obj).is_empty() {
        let generate = obj
            .pointer("/metadata/generateName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if generate.is_empty() {
            return Err(ApiError::invalid(
                resource.kind(),
                resource.group(),
                "",
                &[(
                    "metadata.name",
                    "FieldValueRequired",
                    "Required value: name or generateName is required".into(),
                )],
            ));
        }
        let name = format!("{generate}{}", meta::name_suffix());
        meta::metadata_mut(&mut obj).insert("name".into(), json!(name));
    }
    let name = meta::name(&obj).to_string();
    let obj = admit::prepare_create(
        resource,
        obj,
        req.target.namespace.as_deref(),
        req.state.features,
    )?;
    let key = key(req.target.namespace.as_deref(), &name);
    let written = req.state.store.write(resource.table(), &key, |current| {
        if current.is_some() {
            return Err(ApiError::already_exists(
                resource.plural(),
                resource.group(),
                &name,
            ));
        }
        Ok(Outcome::Create(obj))
    })?;
    let resp = object_response(StatusCode::CREATED, resource, &written.object);
    Ok(with_warnings(resp, &warnings))
}

/// Shared tail of update and patch: preconditions, merge rules, no-op detection.
fn decide_update(
    req: &ApiRequest<'_>,
    new: Value,
    current: &Value,
    rv_precondition: Option<String>,
) -> ApiResult<Outcome> {
    let resource = req.target.resource;
    let name = meta::name(current).to_string();
    let current_rv = current["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default();
    if rv_precondition
        .as_deref()
        .is_some_and(|rv| !rv.is_empty() && rv != current_rv)
    {
        return Err(ApiError::stale(resource.plural(), resource.group(), &name));
    }
    let uid = new
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !uid.is_empty() && uid != meta::uid(current) {
        return Err(uid_precondition_failed(req, uid, meta::uid(current)));
    }
    let status_only = req.target.subresource.as_deref() == Some("status");
    let new = admit::prepare_update(resource, status_only, new, current, req.state.features)?;
    if admit::unchanged(&new, current) {
        return Ok(Outcome::Unchanged);
    }
    if deletion::finalized(&new) {
        return Ok(Outcome::Finalize(new));
    }
    Ok(Outcome::Update(new))
}

fn uid_precondition_failed(req: &ApiRequest<'_>, asked: &str, actual: &str) -> ApiError {
    let r = req.target.resource;
    let name = req.target.name.as_deref().unwrap_or_default();
    let ns_part = req
        .target
        .namespace
        .as_deref()
        .map(|n| format!("{n}/"))
        .unwrap_or_default();
    ApiError::conflict(
        &crate::error::qualified(r.plural(), r.group()),
        r.group(),
        r.plural(),
        name,
        &format!(
            "StorageError: invalid object, Code: 4, Key: /registry/{}/{ns_part}{name}, \
             ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: UID in precondition: \
             {asked}, UID in object meta: {actual}",
            r.plural()
        ),
    )
}

fn written_response(resource: Resource, w: &Written) -> Response {
    let code = if w.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    object_response(code, resource, &w.object)
}

pub(crate) fn update(req: ApiRequest<'_>) -> ApiResult<Response> {
    let resource = req.target.resource;
    let mut body = req.json_body()?;
    let name = req.target.name.clone().unwrap_or_default();
    if meta::name(&body) != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            meta::name(&body)
        )));
    }
    let warnings = admit::field_validation(resource, &mut body, req.query.get("fieldValidation"))?;
    check_namespace(&req, &mut body)?;
    let rv = body
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .map(str::to_string);
    let written =
        req.state.store.write(
            resource.table(),
            &object_key(&req),
            |current| match current {
                Some(current) => decide_update(&req, body, current, rv),
                None if resource.create_on_update() && req.target.subresource.is_none() => {
                    let uid = body
                        .pointer("/metadata/uid")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    if !uid.is_empty() {
                        return Err(uid_precondition_failed(&req, uid, ""));
                    }
                    let obj = admit::prepare_create(
                        resource,
                        body,
                        req.target.namespace.as_deref(),
                        req.state.features,
                    )?;
                    Ok(Outcome::Create(obj))
                }
                None => Err(not_found(&req)),
            },
        )?;
    Ok(with_warnings(
        written_response(resource, &written),
        &warnings,
    ))
}

pub(crate) fn patch(req: ApiRequest<'_>) -> ApiResult<Response> {
    let resource = req.target.resource;
    let content_type = req
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let patch_type = PatchType::from_content_type(content_type)
        .ok_or_else(|| ApiError::unsupported_media_type(content_type))?;
    let written = req
        .state
        .store
        .write(resource.table(), &object_key(&req), |current| {
            let current = current.ok_or_else(|| not_found(&req))?;
            let shown = render(resource, current);
            let patched = patch::apply(&shown, patch_type, &req.body)?;
            let before = shown["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or_default();
            let after = patched
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str);
            // A resourceVersion written by the patch itself is a precondition.
            let precondition = after.filter(|rv| *rv != before).map(str::to_string);
            decide_update(&req, patched, current, precondition)
        })?;
    Ok(written_response(resource, &written))
}

/// Delete options from the query string and the `DeleteOptions` body.
pub(crate) fn delete_options(req: &ApiRequest<'_>) -> ApiResult<DeleteOptions> {
    let mut opts = DeleteOptions {
        grace: req.query.int("gracePeriodSeconds")?,
        ..Default::default()
    };
    if !req.body.is_empty() {
        let body = req.json_body()?;
        if let Some(g) = body.get("gracePeriodSeconds").and_then(Value::as_i64) {
            opts.grace = Some(g);
        }
        let pre = &body["preconditions"];
        opts.uid = pre["uid"].as_str().map(str::to_string);
        opts.resource_version = pre["resourceVersion"].as_str().map(str::to_string);
    }
    Ok(opts)
}

/// Delete one stored object, with the resource's rules.
pub(crate) fn delete_one(
    req: &ApiRequest<'_>,
    key: &str,
    name: &str,
    opts: &DeleteOptions,
) -> ApiResult<Written> {
    let resource = req.target.resource;
    req.state.store.write(resource.table(), key, |current| {
        let current = current
            .ok_or_else(|| ApiError::not_found(resource.plural(), resource.group(), name))?;
        let (what, group) = match resource {
            Resource::Pods => ("Pod", ""),
            r => (r.plural(), r.group()),
        };
        deletion::check_preconditions(current, what, group, opts)?;
        Ok(match resource {
            Resource::Pods => deletion::delete_pod(current, opts),
            _ => deletion::delete_plain(current),
        })
    })
}

pub(crate) fn delete(req: ApiRequest<'_>) -> ApiResult<Response> {
    let resource = req.target.resource;
    let opts = delete_options(&req)?;
    let name = req.target.name.clone().unwrap_or_default();
    let written = delete_one(&req, &object_key(&req), &name, &opts)?;
    if resource == Resource::Pods || !written.deleted {
        return Ok(object_response(StatusCode::OK, resource, &written.object));
    }
    let mut d = details(&name, resource.group(), resource.plural());
    d["uid"] = json!(meta::uid(&written.object));
    let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                        "details": d});
    Ok(json_response(
        StatusCode::OK,
        serde_json::to_vec(&status).unwrap_or_default(),
    ))
}

pub(crate) fn delete_collection(req: ApiRequest<'_>) -> ApiResult<Response> {
    let resource = req.target.resource;
    if resource == Resource::Namespaces {
        return Err(ApiError::method_not_allowed("deletecollection"));
    }
    let filter = Filter::from_request(&req)?;
    let opts = delete_options(&req)?;
    let page = req
        .state
        .store
        .list(resource.table(), &prefix(&req), None, None, false, |o| {
            filter.matches(o)
        });
    for item in &page.items {
        let name = meta::name(item);
        let key = key(item["metadata"]["namespace"].as_str(), name);
        match delete_one(&req, &key, name, &opts) {
            Ok(_) => {}
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    // The answer is the list as it was before deleting, like kube-apiserver's.
    let metadata = json!({"resourceVersion": page.rv.to_string()});
    Ok(json_response(
        StatusCode::OK,
        list_body(resource, &metadata, &page.items),
    ))
}
