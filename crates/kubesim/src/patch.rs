//! Patches: JSON merge patch (RFC 7386), JSON patch (RFC 6902, through `json-patch`), and
//! the subset of strategic merge patch that clients of pods, nodes, events and leases use:
//! lists merged by their Kubernetes merge keys, `$patch: delete|replace`,
//! `$deleteFromPrimitiveList/<field>`, and `$setElementOrder`/`$retainKeys` accepted.

use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};

/// The patch flavours a PATCH request may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/merge-patch+json`.
    Merge,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/json-patch+json`.
    Json,
    /// `application/apply-patch+yaml`: applied as a merge patch (no field ownership).
    Apply,
}

impl PatchType {
    /// From the request's Content-Type.
    pub fn from_content_type(ct: &str) -> Option<PatchType> {
        match ct.split(';').next().unwrap_or_default().trim() {
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/json-patch+json" => Some(PatchType::Json),
            "application/apply-patch+yaml" => Some(PatchType::Apply),
            _ => None,
        }
    }
}

/// Apply a patch body to a document.
pub fn apply(doc: &Value, patch_type: PatchType, body: &[u8]) -> ApiResult<Value> {
    match patch_type {
        PatchType::Json => {
            let ops: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
            let mut out = doc.clone();
            json_patch::patch(&mut out, &ops).map_err(|_| {
                ApiError::invalid_plain(
                    "the server rejected our request due to an error in our request",
                )
            })?;
            Ok(out)
        }
        PatchType::Merge | PatchType::Apply => {
            let patch: Value = parse_body(body, patch_type == PatchType::Apply)?;
            let mut out = doc.clone();
            json_patch::merge(&mut out, &patch);
            Ok(out)
        }
        PatchType::Strategic => {
            let patch: Value = parse_body(body, false)?;
            let mut out = doc.clone();
            strategic_merge(&mut out, &patch, "");
            Ok(out)
        }
    }
}

fn parse_body(body: &[u8], yaml: bool) -> ApiResult<Value> {
    let parsed = if yaml {
        serde_yaml::from_slice::<Value>(body).map_err(|e| e.to_string())
    } else {
        serde_json::from_slice::<Value>(body).map_err(|e| e.to_string())
    };
    parsed.map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))
}

/// The merge key of a list field, by its path from the object root (indices dropped).
fn merge_key(path: &str) -> Option<&'static str> {
    let field = path.rsplit('/').next().unwrap_or_default();
    match field {
        "conditions" => Some("type"),
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "volumeMounts"
        | "imagePullSecrets"
        | "schedulingGates"
        | "resourceClaims" => Some("name"),
        "ports" if path.contains("containers") => Some("containerPort"),
        "podIPs" | "hostIPs" => Some("ip"),
        "addresses" => Some("type"),
        "ownerReferences" => Some("uid"),
        "containerStatuses" | "initContainerStatuses" => Some("name"),
        _ => None,
    }
}

/// Lists of scalars merged as sets rather than replaced.
fn merges_as_set(path: &str) -> bool {
    path == "/metadata/finalizers"
}

fn strategic_merge(target: &mut Value, patch: &Value, path: &str) {
    let Some(patch_map) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if patch_map.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut replacement = patch_map.clone();
        replacement.remove("$patch");
        *target = Value::Object(replacement);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let target_map = target.as_object_mut().expect("just made an object");
    for (key, value) in patch_map {
        if key.starts_with("$setElementOrder/") || key == "$retainKeys" || key == "$patch" {
            continue;
        }
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(list), Some(remove)) = (
                target_map.get_mut(field).and_then(Value::as_array_mut),
                value.as_array(),
            ) {
                list.retain(|v| !remove.contains(v));
            }
            continue;
        }
        let child_path = format!("{path}/{key}");
        if value.is_null() {
            target_map.remove(key);
            continue;
        }
        match (target_map.get_mut(key), value) {
            (Some(existing @ Value::Array(_)), Value::Array(items)) => {
                merge_list(existing, items, &child_path);
            }
            (Some(existing @ Value::Object(_)), Value::Object(_)) => {
                strategic_merge(existing, value, &child_path);
            }
            _ => {
                let mut fresh = Value::Null;
                strategic_merge_new(&mut fresh, value, &child_path);
                target_map.insert(key.clone(), fresh);
            }
        }
    }
}

/// A patch value for a field the target lacks: strip directives.
fn strategic_merge_new(target: &mut Value, patch: &Value, path: &str) {
    match patch {
        Value::Object(_) => strategic_merge(target, patch, path),
        Value::Array(items) => {
            *target = Value::Array(
                items
                    .iter()
                    .filter(|i| i.get("$patch").is_none())
                    .cloned()
                    .collect(),
            )
        }
        other => *target = other.clone(),
    }
}

/// Merge a patch list into a list, the way Go's strategic merge orders the result:
/// the patch's items first (in patch order, merged with their server counterparts),
/// then the server's items the patch did not name.
fn merge_list(existing: &mut Value, items: &[Value], path: &str) {
    let list = existing
        .as_array_mut()
        .expect("caller checked it is an array");
    if merges_as_set(path) {
        let mut merged: Vec<Value> = Vec::new();
        for item in items.iter().chain(list.iter()) {
            if !merged.contains(item) {
                merged.push(item.clone());
            }
        }
        *list = merged;
        return;
    }
    let Some(key) = merge_key(path) else {
        *list = items.to_vec();
        return;
    };
    let mut server_only: Vec<Option<Value>> = list.drain(..).map(Some).collect();
    let mut merged = Vec::new();
    for item in items {
        let id = &item[key];
        let position = server_only
            .iter()
            .position(|e| e.as_ref().is_some_and(|e| &e[key] == id));
        let directive = item.get("$patch").and_then(Value::as_str);
        let original = position.and_then(|i| server_only[i].take());
        match (original, directive) {
            (_, Some("delete")) => {}
            (Some(mut original), _) => {
                strategic_merge(&mut original, item, path);
                merged.push(original);
            }
            (None, _) => {
                let mut fresh = Value::Null;
                strategic_merge_new(&mut fresh, item, path);
                merged.push(fresh);
            }
        }
    }
    merged.extend(server_only.into_iter().flatten());
    *list = merged;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn status() -> Value {
        json!({"status": {"phase": "Running", "conditions": [
            {"type": "PodScheduled", "status": "True"}]}})
    }

    #[test]
    fn strategic_merge_adds_conditions_by_type() {
        let patch =
            json!({"status": {"conditions": [{"type": "DisruptionTarget", "status": "True"}]}});
        let out = apply(
            &status(),
            PatchType::Strategic,
            patch.to_string().as_bytes(),
        )
        .unwrap();
        let types: Vec<_> = out["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].clone())
            .collect();
        assert_eq!(
            types,
            vec![json!("DisruptionTarget"), json!("PodScheduled")]
        );
    }

    #[test]
    fn merge_patch_replaces_the_list() {
        let patch =
            json!({"status": {"conditions": [{"type": "DisruptionTarget", "status": "True"}]}});
        let out = apply(&status(), PatchType::Merge, patch.to_string().as_bytes()).unwrap();
        assert_eq!(out["status"]["conditions"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn strategic_merge_updates_and_deletes_by_key() {
        let patch = json!({"status": {"conditions": [
            {"type": "PodScheduled", "status": "False"}]}});
        let out = apply(
            &status(),
            PatchType::Strategic,
            patch.to_string().as_bytes(),
        )
        .unwrap();
        assert_eq!(out["status"]["conditions"][0]["status"], "False");
        let patch =
            json!({"status": {"conditions": [{"type": "PodScheduled", "$patch": "delete"}]}});
        let out = apply(
            &status(),
            PatchType::Strategic,
            patch.to_string().as_bytes(),
        )
        .unwrap();
        assert_eq!(out["status"]["conditions"].as_array().unwrap().len(), 0);
    }

    #[test]
    fn failed_json_patch_test_is_422() {
        let patch = json!([{"op": "test", "path": "/status/phase", "value": "Pending"}]);
        let err = apply(&status(), PatchType::Json, patch.to_string().as_bytes()).unwrap_err();
        assert_eq!(err.code, 422);
    }
}
