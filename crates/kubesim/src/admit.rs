//! What the server does to an object between the request body and the store, per
//! resource: defaults on create, the fields an update may not touch, the status
//! subresource split, event conversion, and unknown-field detection for
//! `fieldValidation`.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::pods::Features;
use crate::resource::Resource;
use crate::{events, meta, pods};

/// Turn a create body into the object to store (core form for events).
pub fn prepare_create(
    resource: Resource,
    mut obj: Value,
    namespace: Option<&str>,
    features: Features,
) -> ApiResult<Value> {
    if resource == Resource::Events {
        events::validate_events_v1(&obj)?;
        let name = meta::name(&obj).to_string();
        obj = events::to_core(&obj);
        meta::metadata_mut(&mut obj).insert("name".into(), json!(name));
    }
    meta::drop_nulls(&mut obj);
    meta::stamp_new(&mut obj, namespace);
    obj["kind"] = json!(resource.kind());
    obj["apiVersion"] = json!(if resource == Resource::Events {
        "v1"
    } else {
        resource.api_version()
    });
    match resource {
        Resource::Pods => {
            pods::validate_new(&obj, features)?;
            // Clients cannot create a pod with a status: the server starts it Pending.
            obj["status"] = json!({});
            pods::default_pod_with(&mut obj, features);
        }
        Resource::Namespaces => {
            let name = meta::name(&obj).to_string();
            let m = meta::metadata_mut(&mut obj);
            let labels = m.entry("labels").or_insert_with(|| json!({}));
            labels["kubernetes.io/metadata.name"] = json!(name);
            obj["spec"] = json!({"finalizers": ["kubernetes"]});
            obj["status"] = json!({"phase": "Active"});
        }
        Resource::CoreEvents | Resource::Events => events::default_core(&mut obj),
        Resource::Nodes => default_node(&mut obj),
        Resource::Leases => {}
    }
    normalize_conditions(resource, &mut obj);
    Ok(obj)
}

fn default_node(node: &mut Value) {
    if !node["spec"].is_object() {
        node["spec"] = json!({});
    }
    if !node["status"].is_object() {
        node["status"] = json!({});
    }
    let status = &mut node["status"];
    if status.get("daemonEndpoints").is_none() {
        status["daemonEndpoints"] = json!({"kubeletEndpoint": {"Port": 0}});
    }
    let info = status
        .as_object_mut()
        .expect("status is an object")
        .entry("nodeInfo")
        .or_insert_with(|| json!({}));
    for field in [
        "machineID",
        "systemUUID",
        "bootID",
        "kernelVersion",
        "osImage",
        "containerRuntimeVersion",
        "kubeletVersion",
        "kubeProxyVersion",
        "operatingSystem",
        "architecture",
    ] {
        if info.get(field).is_none() {
            info[field] = json!("");
        }
    }
}

/// Merge an update of the main resource (or of `status`) into the stored object.
/// `new` is in the addressed API's form.
pub fn prepare_update(
    resource: Resource,
    status_only: bool,
    mut new: Value,
    old: &Value,
    features: Features,
) -> ApiResult<Value> {
    if resource == Resource::Events {
        events::validate_events_v1_update(&new, old)?;
        let name = meta::name(&new).to_string();
        new = events::to_core(&new);
        meta::metadata_mut(&mut new).insert("name".into(), json!(name));
    }
    if matches!(resource, Resource::Events | Resource::CoreEvents) {
        events::default_core(&mut new);
    }
    meta::drop_nulls(&mut new);
    if status_only {
        // The status subresource changes status and nothing else.
        let mut merged = old.clone();
        merged["status"] = new.get("status").cloned().unwrap_or_else(|| json!({}));
        if let Some(m) = merged.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
        normalize_conditions(resource, &mut merged);
        return Ok(merged);
    }
    meta::keep_server_fields(&mut new, old);
    new["kind"] = old["kind"].clone();
    new["apiVersion"] = old["apiVersion"].clone();
    if resource.has_status() {
        // Status written through the main resource is ignored.
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(m) = new.as_object_mut() {
                    m.remove("status");
                }
            }
        }
    }
    if resource == Resource::Pods {
        pods::validate_update(&new, old, features)?;
        // Defaults the client left out of a PUT come back, as the server re-defaults.
        let mut spec_only = json!({"spec": new["spec"].take()});
        pods::default_pod_with(&mut spec_only, features);
        new["spec"] = spec_only["spec"].take();
    }
    pods::check_finalizers(resource.kind(), &new, old)?;
    normalize_conditions(resource, &mut new);
    Ok(new)
}

/// Give every condition the timestamp keys Go's structs always serialize (null when
/// unset), as stored objects read back from kube-apiserver have them.
pub fn normalize_conditions(resource: Resource, obj: &mut Value) {
    let keys: &[&str] = match resource {
        Resource::Pods => &["lastProbeTime", "lastTransitionTime"],
        Resource::Nodes => &["lastHeartbeatTime", "lastTransitionTime"],
        _ => return,
    };
    let Some(conditions) = obj
        .pointer_mut("/status/conditions")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for c in conditions.iter_mut().filter_map(Value::as_object_mut) {
        for k in keys {
            c.entry(*k).or_insert(Value::Null);
        }
    }
}

/// Whether an update changed nothing but the resourceVersion it carried (compared
/// without copying either object).
pub fn unchanged(new: &Value, old: &Value) -> bool {
    let (Some(n), Some(o)) = (new.as_object(), old.as_object()) else {
        return new == old;
    };
    if n.len() != o.len() {
        return false;
    }
    n.iter().all(|(k, v)| match (k.as_str(), o.get(k)) {
        ("metadata", Some(ov)) => same_except_rv(v, ov),
        (_, Some(ov)) => v == ov,
        (_, None) => false,
    })
}

fn same_except_rv(new: &Value, old: &Value) -> bool {
    let (Some(n), Some(o)) = (new.as_object(), old.as_object()) else {
        return new == old;
    };
    let relevant = |m: &'_ serde_json::Map<String, Value>| {
        m.keys().filter(|k| *k != "resourceVersion").count()
    };
    relevant(n) == relevant(o)
        && n.iter()
            .filter(|(k, _)| *k != "resourceVersion")
            .all(|(k, v)| o.get(k) == Some(v))
}

/// Fields of `input` the resource's schema does not know, as dotted paths, and the
/// input without them.
pub fn unknown_fields(resource: Resource, input: &Value) -> (Vec<String>, Option<Value>) {
    use k8s_openapi::api::{coordination, core, events as ev};
    let known = match resource {
        Resource::Pods => round_trip::<core::v1::Pod>(input),
        Resource::Nodes => round_trip::<core::v1::Node>(input),
        Resource::Namespaces => round_trip::<core::v1::Namespace>(input),
        Resource::Leases => round_trip::<coordination::v1::Lease>(input),
        Resource::CoreEvents => round_trip::<core::v1::Event>(input),
        Resource::Events => round_trip::<ev::v1::Event>(input),
    };
    let Some(known) = known else {
        return (Vec::new(), None);
    };
    let mut out = Vec::new();
    missing_paths(input, &known, "", &mut out);
    if out.is_empty() {
        return (out, None);
    }
    let mut cleaned = input.clone();
    strip_unknown(&mut cleaned, &known);
    (out, Some(cleaned))
}

fn strip_unknown(input: &mut Value, known: &Value) {
    match (input, known) {
        (Value::Object(i), Value::Object(k)) => {
            i.retain(|key, v| v.is_null() || k.contains_key(key));
            for (key, v) in i.iter_mut() {
                if let Some(kv) = k.get(key) {
                    strip_unknown(v, kv);
                }
            }
        }
        (Value::Array(i), Value::Array(k)) => {
            for (iv, kv) in i.iter_mut().zip(k) {
                strip_unknown(iv, kv);
            }
        }
        _ => {}
    }
}

fn round_trip<T: DeserializeOwned + Serialize>(input: &Value) -> Option<Value> {
    let typed: T = serde_json::from_value(input.clone()).ok()?;
    serde_json::to_value(typed).ok()
}

fn missing_paths(input: &Value, known: &Value, path: &str, out: &mut Vec<String>) {
    match (input, known) {
        (Value::Object(i), Value::Object(k)) => {
            for (key, value) in i {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match k.get(key) {
                    Some(kv) => missing_paths(value, kv, &child, out),
                    None if !value.is_null() => out.push(child),
                    None => {}
                }
            }
        }
        (Value::Array(i), Value::Array(k)) => {
            for (n, (iv, kv)) in i.iter().zip(k).enumerate() {
                missing_paths(iv, kv, &format!("{path}[{n}]"), out);
            }
        }
        _ => {}
    }
}

/// Enforce `fieldValidation`: `Strict` refuses unknown fields (400); otherwise they are
/// dropped from `input` and, unless `Ignore`, named in `Warning` headers (returned).
pub fn field_validation(
    resource: Resource,
    input: &mut Value,
    mode: Option<&str>,
) -> ApiResult<Vec<String>> {
    let (unknown, cleaned) = unknown_fields(resource, input);
    let Some(cleaned) = cleaned else {
        return Ok(Vec::new());
    };
    let kind = resource.kind();
    if mode == Some("Strict") {
        let list: Vec<String> = unknown
            .iter()
            .map(|f| format!("unknown field \"{f}\""))
            .collect();
        let version = resource.api_version();
        return Err(ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding \
             error: {}",
            list.join(", ")
        )));
    }
    *input = cleaned;
    if mode == Some("Ignore") {
        return Ok(Vec::new());
    }
    Ok(unknown
        .iter()
        .map(|f| format!("299 - \"unknown field \\\"{f}\\\"\""))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_pod_fields_are_found() {
        let pod = json!({"metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "i", "bogus": 1}], "alsoBogus": true}});
        let (mut unknown, cleaned) = unknown_fields(Resource::Pods, &pod);
        assert!(cleaned.unwrap()["spec"].get("alsoBogus").is_none());
        unknown.sort();
        assert_eq!(unknown, vec!["spec.alsoBogus", "spec.containers[0].bogus"]);
    }
}
