//! `meta.k8s.io/v1` Tables, the form `kubectl get` asks for, with the columns
//! kube-apiserver prints for pods and nodes and a name/age table for the rest.

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};

use crate::meta;
use crate::resource::Resource;

fn column(name: &str, priority: u8, format: &str) -> Value {
    json!({"name": name, "type": "string", "format": format, "description": "", "priority": priority})
}

fn columns(resource: Resource) -> Vec<Value> {
    match resource {
        Resource::Pods => vec![
            column("Name", 0, "name"),
            column("Ready", 0, ""),
            column("Status", 0, ""),
            column("Restarts", 0, ""),
            column("Age", 0, ""),
            column("IP", 1, ""),
            column("Node", 1, ""),
            column("Nominated Node", 1, ""),
            column("Readiness Gates", 1, ""),
        ],
        Resource::Nodes => vec![
            column("Name", 0, "name"),
            column("Status", 0, ""),
            column("Roles", 0, ""),
            column("Age", 0, ""),
            column("Version", 0, ""),
            column("Internal-IP", 1, ""),
            column("External-IP", 1, ""),
            column("OS-Image", 1, ""),
            column("Kernel-Version", 1, ""),
            column("Container-Runtime", 1, ""),
        ],
        Resource::Namespaces => {
            vec![
                column("Name", 0, "name"),
                column("Status", 0, ""),
                column("Age", 0, ""),
            ]
        }
        Resource::Leases => {
            vec![
                column("Name", 0, "name"),
                column("Holder", 0, ""),
                column("Age", 0, ""),
            ]
        }
        Resource::CoreEvents | Resource::Events => vec![
            column("Last Seen", 0, ""),
            column("Type", 0, ""),
            column("Reason", 0, ""),
            column("Object", 0, ""),
            column("Message", 0, ""),
        ],
    }
}

/// kubectl's short human duration ("5s", "3m2s", "4h", "2d").
pub fn human_age(since: Option<&str>) -> String {
    let Some(t) = since.and_then(meta::parse_time) else {
        return "<unknown>".into();
    };
    let secs = (Timestamp::now() - t).get_seconds().max(0);
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86400);
    if secs < 120 {
        format!("{secs}s")
    } else if m < 10 {
        if secs % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", secs % 60)
        }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 192 {
        if h % 24 == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{}h", h % 24)
        }
    } else {
        format!("{d}d")
    }
}

fn or_none(v: &Value) -> Value {
    match v.as_str() {
        Some(s) if !s.is_empty() => json!(s),
        _ => json!("<none>"),
    }
}

fn cells(resource: Resource, obj: &Value) -> Vec<Value> {
    let name = json!(meta::name(obj));
    let age = json!(human_age(obj["metadata"]["creationTimestamp"].as_str()));
    match resource {
        Resource::Pods => {
            let total = obj["spec"]["containers"].as_array().map_or(0, Vec::len);
            let statuses = obj["status"]["containerStatuses"].as_array();
            let ready = statuses.map_or(0, |s| s.iter().filter(|c| c["ready"] == true).count());
            let restarts: i64 = statuses.map_or(0, |s| {
                s.iter().filter_map(|c| c["restartCount"].as_i64()).sum()
            });
            let status = if meta::is_terminating(obj) {
                "Terminating".to_string()
            } else {
                obj["status"]["reason"]
                    .as_str()
                    .or(obj["status"]["phase"].as_str())
                    .unwrap_or("Unknown")
                    .to_string()
            };
            vec![
                name,
                json!(format!("{ready}/{total}")),
                json!(status),
                json!(restarts.to_string()),
                age,
                or_none(&obj["status"]["podIP"]),
                or_none(&obj["spec"]["nodeName"]),
                or_none(&obj["status"]["nominatedNodeName"]),
                json!("<none>"),
            ]
        }
        Resource::Nodes => {
            let ready = obj["status"]["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
                .map(|c| c["status"].as_str().unwrap_or_default().to_string());
            let mut status = match ready.as_deref() {
                Some("True") => "Ready".to_string(),
                Some("False") => "NotReady".to_string(),
                _ => "Unknown".to_string(),
            };
            if obj["spec"]["unschedulable"] == true {
                status.push_str(",SchedulingDisabled");
            }
            let info = &obj["status"]["nodeInfo"];
            let address = |ty: &str| {
                obj["status"]["addresses"]
                    .as_array()
                    .and_then(|a| a.iter().find(|x| x["type"] == ty))
                    .map_or(json!("<none>"), |x| or_none(&x["address"]))
            };
            let unknown = |v: &Value| match v.as_str() {
                Some(s) if !s.is_empty() => json!(s),
                _ => json!("<unknown>"),
            };
            vec![
                name,
                json!(status),
                json!("<none>"),
                age,
                json!(info["kubeletVersion"].as_str().unwrap_or_default()),
                address("InternalIP"),
                address("ExternalIP"),
                unknown(&info["osImage"]),
                unknown(&info["kernelVersion"]),
                unknown(&info["containerRuntimeVersion"]),
            ]
        }
        Resource::Namespaces => vec![
            name,
            json!(obj["status"]["phase"].as_str().unwrap_or("")),
            age,
        ],
        Resource::Leases => vec![name, or_none(&obj["spec"]["holderIdentity"]), age],
        Resource::CoreEvents | Resource::Events => {
            let last = obj["lastTimestamp"]
                .as_str()
                .or(obj["eventTime"].as_str())
                .or(obj["metadata"]["creationTimestamp"].as_str());
            let involved = &obj["involvedObject"];
            let object = format!(
                "{}/{}",
                involved["kind"].as_str().unwrap_or_default().to_lowercase(),
                involved["name"].as_str().unwrap_or_default()
            );
            vec![
                json!(human_age(last)),
                json!(obj["type"].as_str().unwrap_or_default()),
                json!(obj["reason"].as_str().unwrap_or_default()),
                json!(object),
                json!(obj["message"].as_str().unwrap_or_default()),
            ]
        }
    }
}

/// One table row for an object, carrying its metadata as kubectl expects.
fn row(resource: Resource, obj: &Value) -> Value {
    json!({
        "cells": cells(resource, obj),
        "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                   "metadata": obj["metadata"].clone()}
    })
}

/// A Table of objects.
pub fn table(resource: Resource, items: &[Arc<Value>], rv: u64, with_columns: bool) -> Value {
    let rows: Vec<Value> = items.iter().map(|o| row(resource, o)).collect();
    let columns = if with_columns {
        columns(resource)
    } else {
        Vec::new()
    };
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1",
           "metadata": {"resourceVersion": rv.to_string()},
           "columnDefinitions": columns, "rows": rows})
}
