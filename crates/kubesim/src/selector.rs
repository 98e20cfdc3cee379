//! Label and field selectors: parsing with kube-apiserver's error messages, and matching
//! against stored objects.

use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::resource::Resource;

/// One label requirement.
#[derive(Debug, Clone, PartialEq)]
enum LabelReq {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector {
    reqs: Vec<LabelReq>,
}

/// Split on commas that are not inside parentheses.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn parse_set(key: &str, rest: &str) -> ApiResult<Vec<String>> {
    let rest = rest.trim();
    let Some(inner) = rest.strip_prefix('(').and_then(|r| r.strip_suffix(')')) else {
        let found = rest.split_whitespace().next().unwrap_or(rest);
        return Err(ApiError::bad_request(format!(
            "unable to parse requirement: found '{found}' expected: '('"
        )));
    };
    let values: Vec<String> = inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect();
    if values.is_empty() {
        return Err(ApiError::bad_request(format!(
            "unable to parse requirement: for 'in', 'notin' operators, values set can't be empty \
             (key {key})"
        )));
    }
    Ok(values)
}

impl LabelSelector {
    /// Parse the `labelSelector` query parameter.
    pub fn parse(s: &str) -> ApiResult<LabelSelector> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(LabelSelector { reqs });
        }
        for part in split_top_level(s) {
            let part = part.trim();
            if part.is_empty() {
                return Err(ApiError::bad_request(
                    "unable to parse requirement: found '', expected: identifier",
                ));
            }
            let req = if let Some(key) = part.strip_prefix('!') {
                LabelReq::NotExists(key.trim().to_string())
            } else if let Some((k, v)) = part.split_once("!=") {
                LabelReq::NotEq(k.trim().to_string(), v.trim().to_string())
            } else if let Some((k, v)) = part.split_once("==") {
                LabelReq::Eq(k.trim().to_string(), v.trim().to_string())
            } else if let Some((k, v)) = part.split_once('=') {
                LabelReq::Eq(k.trim().to_string(), v.trim().to_string())
            } else if let Some((k, rest)) = part.split_once(" notin ") {
                LabelReq::NotIn(k.trim().to_string(), parse_set(k, rest)?)
            } else if let Some((k, rest)) = part.split_once(" in ") {
                LabelReq::In(k.trim().to_string(), parse_set(k, rest)?)
            } else if part.contains(char::is_whitespace) {
                let found = part.split_whitespace().nth(1).unwrap_or(part);
                return Err(ApiError::bad_request(format!(
                    "unable to parse requirement: found '{found}', expected: in, notin, =, ==, \
                     !=, gt, lt"
                )));
            } else {
                LabelReq::Exists(part.to_string())
            };
            reqs.push(req);
        }
        Ok(LabelSelector { reqs })
    }

    /// Whether the selector is empty.
    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// Whether an object's `metadata.labels` satisfy the selector.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels");
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.reqs.iter().all(|r| match r {
            LabelReq::Eq(k, v) => get(k) == Some(v.as_str()),
            LabelReq::NotEq(k, v) => get(k) != Some(v.as_str()),
            LabelReq::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            LabelReq::NotIn(k, vs) => !get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            LabelReq::Exists(k) => get(k).is_some(),
            LabelReq::NotExists(k) => get(k).is_none(),
        })
    }
}

/// One field requirement: `field=value` or `field!=value`.
#[derive(Debug, Clone, PartialEq)]
struct FieldReq {
    field: String,
    value: String,
    equal: bool,
}

/// A parsed field selector; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSelector {
    reqs: Vec<FieldReq>,
}

impl FieldSelector {
    /// Parse the `fieldSelector` query parameter and check its labels are supported by
    /// `resource`.
    pub fn parse(s: &str, resource: Resource) -> ApiResult<FieldSelector> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(FieldSelector { reqs });
        }
        for part in s.split(',') {
            let (field, value, equal) = if let Some((f, v)) = part.split_once("!=") {
                (f, v, false)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, v, true)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, v, true)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                )));
            };
            let field = field.trim();
            let supported = field == "metadata.name"
                || (field == "metadata.namespace" && resource.namespaced())
                || resource.field_labels().contains(&field);
            if !supported {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {field}"
                )));
            }
            reqs.push(FieldReq {
                field: field.to_string(),
                value: value.to_string(),
                equal,
            });
        }
        Ok(FieldSelector { reqs })
    }

    /// Whether the selector is empty.
    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// The value the selector requires for `field`, when it has an equality term for it.
    pub fn required(&self, field: &str) -> Option<&str> {
        self.reqs
            .iter()
            .find(|r| r.equal && r.field == field)
            .map(|r| r.value.as_str())
    }

    /// Whether a stored object (core form) satisfies the selector.
    pub fn matches(&self, obj: &Value) -> bool {
        self.reqs.iter().all(|r| {
            let actual = field_value(obj, &r.field);
            (actual == r.value) == r.equal
        })
    }
}

/// The string value of a field label on a stored object, as kube-apiserver's field set
/// renders it (missing strings are empty, booleans are `true`/`false`).
fn field_value(obj: &Value, field: &str) -> String {
    let path = match field {
        // events.k8s.io labels read the core-form storage.
        f if f.starts_with("regarding.") => {
            format!("/involvedObject/{}", &f["regarding.".len()..])
        }
        "reportingController" => "/reportingComponent".to_string(),
        "source" => "/source/component".to_string(),
        f => format!("/{}", f.replace('.', "/")),
    };
    match obj.pointer(&path) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        // Booleans that are unset read as false in the real field sets.
        None if field == "spec.unschedulable" || field == "spec.hostNetwork" => "false".into(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(labels: Value, node: &str, phase: &str) -> Value {
        json!({"metadata": {"name": "p", "namespace": "ns", "labels": labels},
               "spec": {"nodeName": node, "schedulerName": "s"},
               "status": {"phase": phase}})
    }

    #[test]
    fn label_selectors_match_like_kubernetes() {
        let p = pod(json!({"app": "rec", "tier": "b"}), "", "Pending");
        let cases = [
            ("app=rec", true),
            ("app==rec", true),
            ("app=rec,tier!=b", false),
            ("tier,tier in (b,sidecar)", true),
            ("tier notin (b)", false),
            ("!missing", true),
            ("missing", false),
            ("app!=x", true),
            ("", true),
        ];
        for (sel, want) in cases {
            assert_eq!(
                LabelSelector::parse(sel).unwrap().matches(&p),
                want,
                "{sel}"
            );
        }
    }

    #[test]
    fn malformed_label_selector_names_the_token() {
        let err = LabelSelector::parse("tier in b").unwrap_err();
        assert_eq!(err.code, 400);
        assert_eq!(
            err.message,
            "unable to parse requirement: found 'b' expected: '('"
        );
    }

    #[test]
    fn field_selectors_match_and_reject_like_kubernetes() {
        let p = pod(json!({}), "", "Pending");
        let cases = [
            ("spec.nodeName=", true),
            ("spec.nodeName!=", false),
            ("spec.schedulerName==s", true),
            ("status.phase!=Succeeded,status.phase!=Failed", true),
            ("metadata.name=p,metadata.namespace=ns", true),
        ];
        for (sel, want) in cases {
            let s = FieldSelector::parse(sel, Resource::Pods).unwrap();
            assert_eq!(s.matches(&p), want, "{sel}");
        }
        let err = FieldSelector::parse("spec.priority=1", Resource::Pods).unwrap_err();
        assert_eq!(err.message, "field label not supported: spec.priority");
        let err = FieldSelector::parse("spec.schedulerName", Resource::Pods).unwrap_err();
        assert_eq!(
            err.message,
            "invalid selector: 'spec.schedulerName'; can't understand 'spec.schedulerName'"
        );
        assert!(FieldSelector::parse("involvedObject.name=x", Resource::Events).is_err());
        assert!(FieldSelector::parse("regarding.name=x", Resource::Events).is_ok());
    }
}
