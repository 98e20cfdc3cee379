//! Events are stored once in their core `v1` form. This module converts between that
//! form and `events.k8s.io/v1`, and validates what the newer API requires.

use serde_json::{json, Map, Value};

use crate::error::{ApiError, ApiResult};
use crate::meta;

/// Field pairs: (events.k8s.io/v1 name, core/v1 name).
const RENAMED: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

/// Fields with the same name in both APIs.
const SHARED: &[&str] = &[
    "metadata",
    "eventTime",
    "series",
    "reportingInstance",
    "action",
    "reason",
    "related",
    "type",
];

/// A stored core event as `events.k8s.io/v1`.
pub fn to_events_v1(core: &Value) -> Value {
    let mut out = Map::new();
    out.insert("kind".into(), json!("Event"));
    out.insert("apiVersion".into(), json!("events.k8s.io/v1"));
    for field in SHARED {
        if let Some(v) = core.get(*field) {
            out.insert((*field).into(), v.clone());
        }
    }
    out.entry("eventTime").or_insert(Value::Null);
    for (new, old) in RENAMED {
        match core.get(*old) {
            Some(v) => {
                out.insert((*new).into(), v.clone());
            }
            None if *new == "deprecatedSource" => {
                out.insert((*new).into(), json!({}));
            }
            None if new.starts_with("deprecated") && *new != "deprecatedCount" => {
                out.insert((*new).into(), Value::Null);
            }
            None => {}
        }
    }
    Value::Object(out)
}

/// An `events.k8s.io/v1` event in its stored core form.
pub fn to_core(new: &Value) -> Value {
    let mut out = Map::new();
    out.insert("kind".into(), json!("Event"));
    out.insert("apiVersion".into(), json!("v1"));
    for field in SHARED {
        if let Some(v) = new.get(*field) {
            out.insert((*field).into(), v.clone());
        }
    }
    for (new_name, old) in RENAMED {
        if let Some(v) = new.get(*new_name).filter(|v| !v.is_null()) {
            out.insert((*old).into(), v.clone());
        }
    }
    if !out.contains_key("involvedObject") {
        out.insert("involvedObject".into(), json!({}));
    }
    Value::Object(out)
}

/// Defaults the core API gives a new event.
pub fn default_core(event: &mut Value) {
    if let Some(map) = event.as_object_mut() {
        // Go's core Event struct always serializes these.
        map.entry("eventTime").or_insert(Value::Null);
        map.entry("involvedObject").or_insert_with(|| json!({}));
        map.entry("source").or_insert_with(|| json!({}));
        map.entry("firstTimestamp").or_insert(Value::Null);
        map.entry("lastTimestamp").or_insert(Value::Null);
    }
}

/// What `events.k8s.io/v1` requires of a new event.
pub fn validate_events_v1(event: &Value) -> ApiResult<()> {
    if event.get("eventTime").is_none_or(Value::is_null) {
        return Err(ApiError::invalid(
            "Event",
            "",
            meta::name(event),
            &[("eventTime", "FieldValueRequired", "Required value".into())],
        ));
    }
    Ok(())
}

/// `note` of an `events.k8s.io/v1` event cannot change (reported under its core name).
pub fn validate_events_v1_update(new: &Value, old_core: &Value) -> ApiResult<()> {
    if new.get("note") != old_core.get("message") {
        let note = new.get("note").cloned().unwrap_or(Value::Null);
        return Err(ApiError::invalid(
            "Event",
            "",
            meta::name(new),
            &[(
                "message",
                "FieldValueInvalid",
                format!("Invalid value: {note}: field is immutable"),
            )],
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversion_round_trips_the_shared_and_renamed_fields() {
        let new = json!({"metadata": {"name": "e"}, "eventTime": "2026-01-01T00:00:00.000000Z",
            "reportingController": "s", "reportingInstance": "s-0", "action": "Binding",
            "reason": "Scheduled", "regarding": {"kind": "Pod", "name": "p"}, "note": "hi",
            "type": "Normal"});
        let core = to_core(&new);
        assert_eq!(core["message"], "hi");
        assert_eq!(core["involvedObject"]["name"], "p");
        assert_eq!(core["reportingComponent"], "s");
        let back = to_events_v1(&core);
        for f in [
            "note",
            "regarding",
            "reportingController",
            "action",
            "reason",
            "type",
        ] {
            assert_eq!(back[f], new[f], "{f}");
        }
        assert_eq!(back["deprecatedSource"], json!({}));
    }
}
