//! Discovery and version endpoints, and the small OpenAPI v3 documents kubectl reads to
//! learn that the server validates fields itself. Everything is generated from the
//! served resources, so discovery never advertises what the double does not serve.

use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::{json_response, AppState};
use crate::resource::Resource;

/// Groups besides core, with their served resources.
const GROUPS: &[&str] = &["coordination.k8s.io", "events.k8s.io", "policy"];

fn respond(v: Value) -> Option<Response> {
    Some(json_response(
        StatusCode::OK,
        serde_json::to_vec(&v).unwrap_or_default(),
    ))
}

/// Answer a discovery, version or OpenAPI request, or `None` for anything else.
pub(crate) fn serve(
    state: &AppState,
    method: &Method,
    path: &str,
    _headers: &HeaderMap,
) -> Option<Response> {
    if method != Method::GET {
        return None;
    }
    let path = path.trim_end_matches('/');
    match path {
        "/version" => respond(json!({
            "major": "1", "minor": "28", "gitVersion": "v1.28.7-kubesim",
            "gitCommit": "", "gitTreeState": "clean", "buildDate": "",
            "goVersion": "", "compiler": "rustc", "platform": "linux/amd64"})),
        "/healthz" | "/livez" | "/readyz" => Some(json_response(StatusCode::OK, b"ok".to_vec())),
        "/api" => respond(json!({
            "kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": state.address}]})),
        "/api/v1" => respond(resource_list("", "v1")),
        "/apis" => {
            let groups: Vec<Value> = GROUPS.iter().map(|g| group(g)).collect();
            respond(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
        }
        "/openapi/v3" => respond(openapi_index()),
        "/openapi/v2" => Some(openapi_v2(_headers)),
        _ => {
            if let Some(rest) = path.strip_prefix("/openapi/v3/") {
                return openapi_group(rest).and_then(respond);
            }
            let rest = path.strip_prefix("/apis/")?;
            let segments: Vec<&str> = rest.split('/').collect();
            match segments.as_slice() {
                [g] if GROUPS.contains(g) => {
                    let mut v = group(g);
                    v["kind"] = json!("APIGroup");
                    v["apiVersion"] = json!("v1");
                    respond(v)
                }
                [g, "v1"] if GROUPS.contains(g) => respond(resource_list(g, &format!("{g}/v1"))),
                _ => None,
            }
        }
    }
}

fn group(name: &str) -> Value {
    let gv = json!({"groupVersion": format!("{name}/v1"), "version": "v1"});
    json!({"name": name, "versions": [gv.clone()], "preferredVersion": gv})
}

fn verbs(r: Resource) -> Vec<&'static str> {
    let mut v = vec![
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    ];
    if r == Resource::Namespaces {
        v.retain(|x| *x != "deletecollection");
    }
    v
}

fn resource_list(group: &str, group_version: &str) -> Value {
    let mut resources = Vec::new();
    if group.is_empty() {
        resources.push(
            json!({"name": "bindings", "singularName": "binding", "namespaced": true,
                              "kind": "Binding", "verbs": ["create"]}),
        );
    }
    for r in Resource::ALL.iter().filter(|r| r.group() == group) {
        let mut entry = json!({
            "name": r.plural(), "singularName": r.singular(), "namespaced": r.namespaced(),
            "kind": r.kind(), "verbs": verbs(*r)});
        if !r.short_names().is_empty() {
            entry["shortNames"] = json!(r.short_names());
        }
        if *r == Resource::Pods {
            entry["categories"] = json!(["all"]);
        }
        resources.push(entry);
        for (sub, kind, sub_verbs) in r.subresources() {
            let mut entry = json!({"name": format!("{}/{sub}", r.plural()), "singularName": "",
                                   "namespaced": r.namespaced(), "kind": kind, "verbs": sub_verbs});
            if *sub == "eviction" {
                entry["group"] = json!("policy");
                entry["version"] = json!("v1");
            }
            resources.push(entry);
        }
    }
    let mut list = json!({"kind": "APIResourceList", "groupVersion": group_version,
                          "resources": resources});
    if !group.is_empty() {
        list["apiVersion"] = json!("v1");
    }
    list
}

/// An OpenAPI v2 document without definitions. kubectl 1.28 downloads it (as protobuf)
/// before creating anything; an empty protobuf message is a valid empty document, and
/// with no schema to check against kubectl leaves field validation to the server.
fn openapi_v2(headers: &HeaderMap) -> Response {
    let accept = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.contains("protobuf") {
        let ct = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";
        return (
            StatusCode::OK,
            [(axum::http::header::CONTENT_TYPE, ct)],
            Vec::<u8>::new(),
        )
            .into_response();
    }
    let doc = json!({"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.28.7"},
                     "paths": {}, "definitions": {}});
    json_response(StatusCode::OK, serde_json::to_vec(&doc).unwrap_or_default())
}

fn openapi_index() -> Value {
    let mut paths = serde_json::Map::new();
    paths.insert(
        "api/v1".into(),
        json!({"serverRelativeURL": "/openapi/v3/api/v1?hash=kubesim"}),
    );
    for g in GROUPS {
        paths.insert(
            format!("apis/{g}/v1"),
            json!({"serverRelativeURL": format!("/openapi/v3/apis/{g}/v1?hash=kubesim")}),
        );
    }
    json!({"paths": paths})
}

/// A minimal OpenAPI v3 document per group version: the paths with their operations and
/// the `fieldValidation` parameter, which is what kubectl checks before it relies on the
/// server to validate fields.
fn openapi_group(rest: &str) -> Option<Value> {
    let group = match rest {
        "api/v1" => "",
        other => other.strip_prefix("apis/")?.strip_suffix("/v1")?,
    };
    let base = if group.is_empty() {
        "/api/v1".to_string()
    } else {
        format!("/apis/{group}/v1")
    };
    let field_validation =
        json!({"name": "fieldValidation", "in": "query", "schema": {"type": "string"}});
    let op = |verb: &str| {
        json!({"operationId": verb, "parameters": [field_validation.clone()],
                                 "responses": {"200": {"description": "OK"}}})
    };
    let mut paths = serde_json::Map::new();
    for r in Resource::ALL.iter().filter(|r| r.group() == group) {
        let (collection, item) = if r.namespaced() {
            (
                format!("{base}/namespaces/{{namespace}}/{}", r.plural()),
                format!("{base}/namespaces/{{namespace}}/{}/{{name}}", r.plural()),
            )
        } else {
            (
                format!("{base}/{}", r.plural()),
                format!("{base}/{}/{{name}}", r.plural()),
            )
        };
        paths.insert(collection, json!({"post": op("create")}));
        paths.insert(item, json!({"put": op("replace"), "patch": op("patch")}));
    }
    Some(
        json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.28.7"},
                "paths": paths, "components": {"schemas": {}}}),
    )
}
