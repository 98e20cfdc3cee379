//! Pod semantics: the defaults admission and defaulting add on create, what an update
//! may change, binding, graceful deletion and eviction. Pure functions over JSON
//! objects; the HTTP layer applies them through the store.

use serde_json::{json, Map, Value};

use crate::error::{ApiError, ApiResult};
use crate::meta;

/// The fields `pods/binding` uses from a Binding body.
pub struct Binding<'a> {
    /// Target node name.
    pub node: &'a str,
    /// `metadata.uid` precondition, when given.
    pub uid: Option<&'a str>,
    /// Annotations to copy onto the pod.
    pub annotations: Option<&'a Map<String, Value>>,
}

/// Feature gates that change how pods are admitted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Features {
    /// `SidecarContainers`: off in 1.28 (init containers lose `restartPolicy`), on by
    /// default from 1.29 (it is kept, and only `Always` is valid).
    pub sidecar_containers: bool,
}

/// Apply the defaults kube-apiserver's defaulting and admission chain give a new pod,
/// with the 1.28 feature gates.
pub fn default_pod(pod: &mut Value) {
    default_pod_with(pod, Features::default());
}

/// [`default_pod`] with chosen feature gates.
pub fn default_pod_with(pod: &mut Value, features: Features) {
    let spec = object_at(pod, "spec");
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    set_default(spec, "enableServiceLinks", json!(true));
    set_default(spec, "priority", json!(0));
    set_default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    for list in ["containers", "initContainers"] {
        if let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in containers {
                default_container(c);
                if list == "initContainers" && !features.sidecar_containers {
                    // With the SidecarContainers gate off the field is dropped.
                    if let Some(c) = c.as_object_mut() {
                        c.remove("restartPolicy");
                    }
                }
            }
        }
    }
    add_default_tolerations(spec);

    let qos = qos_class(&pod["spec"]);
    let status = object_at(pod, "status");
    set_default(status, "phase", json!("Pending"));
    status.insert("qosClass".into(), json!(qos));
}

fn default_container(c: &mut Value) {
    let Some(c) = c.as_object_mut() else { return };
    set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(c, "terminationMessagePolicy", json!("File"));
    let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
    let tag = image.rsplit('/').next().unwrap_or_default();
    let pull = if image.contains('@') || (tag.contains(':') && !tag.ends_with(":latest")) {
        "IfNotPresent"
    } else {
        "Always"
    };
    set_default(c, "imagePullPolicy", json!(pull));
    let resources = c.entry("resources").or_insert_with(|| json!({}));
    if let Some(limits) = resources.get("limits").and_then(Value::as_object).cloned() {
        let requests = resources
            .as_object_mut()
            .expect("resources is an object")
            .entry("requests")
            .or_insert_with(|| json!({}));
        if let Some(requests) = requests.as_object_mut() {
            for (k, v) in limits {
                requests.entry(k).or_insert(v);
            }
        }
    }
    if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            set_default(p, "protocol", json!("TCP"));
        }
    }
}

fn add_default_tolerations(spec: &mut Map<String, Value>) {
    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    let Some(list) = tolerations.as_array_mut() else {
        return;
    };
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        let tolerated = list.iter().any(|t| {
            let effect = t["effect"].as_str().unwrap_or_default();
            let op = t["operator"].as_str().unwrap_or("Equal");
            (t["key"].as_str() == Some(key) || (t.get("key").is_none() && op == "Exists"))
                && (effect.is_empty() || effect == "NoExecute")
        });
        if !tolerated {
            list.push(
                json!({"key": key, "operator": "Exists", "effect": "NoExecute",
                             "tolerationSeconds": 300}),
            );
        }
    }
}

/// The QoS class kube-apiserver computes from requests and limits.
fn qos_class(spec: &Value) -> &'static str {
    let mut any = false;
    let mut guaranteed = true;
    for list in ["containers", "initContainers"] {
        for c in spec[list].as_array().into_iter().flatten() {
            let requests = &c["resources"]["requests"];
            let limits = &c["resources"]["limits"];
            for r in ["cpu", "memory"] {
                if requests.get(r).is_some() || limits.get(r).is_some() {
                    any = true;
                }
                if limits.get(r).is_none() || requests.get(r) != limits.get(r) {
                    guaranteed = false;
                }
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

/// Validate a new pod the way the real server rejects the common mistakes.
pub fn validate_new(pod: &Value, features: Features) -> ApiResult<()> {
    let name = meta::name(pod);
    let containers = pod["spec"]["containers"].as_array();
    if containers.is_none_or(|c| c.is_empty()) {
        return Err(ApiError::invalid(
            "Pod",
            "",
            name,
            &[(
                "spec.containers",
                "FieldValueRequired",
                "Required value".into(),
            )],
        ));
    }
    let mut causes = Vec::new();
    for list in ["containers", "initContainers"] {
        for (i, c) in pod["spec"][list]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            for field in ["name", "image"] {
                if c[field].as_str().is_none_or(str::is_empty) {
                    causes.push((format!("spec.{list}[{i}].{field}"), "FieldValueRequired"));
                }
            }
        }
    }
    if features.sidecar_containers {
        for (i, c) in pod["spec"]["initContainers"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            if let Some(policy) = c["restartPolicy"].as_str().filter(|p| *p != "Always") {
                let field = format!("spec.initContainers[{i}].restartPolicy");
                let message =
                    format!("Unsupported value: \"{policy}\": supported values: \"Always\"");
                return Err(ApiError::invalid(
                    "Pod",
                    "",
                    name,
                    &[(&field, "FieldValueNotSupported", message)],
                ));
            }
        }
    }
    if !causes.is_empty() {
        let causes: Vec<(&str, &str, String)> = causes
            .iter()
            .map(|(f, r)| (f.as_str(), *r, "Required value".to_string()))
            .collect();
        return Err(ApiError::invalid("Pod", "", name, &causes));
    }
    Ok(())
}

const UPDATE_FORBIDDEN: &str = "Forbidden: pod updates may not change fields other than \
`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,\
`spec.tolerations` (only additions to existing tolerations),\
`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// Check an update of a pod's main resource: only the mutable spec fields may change.
/// `new` must already carry the stored status.
pub fn validate_update(new: &Value, old: &Value, features: Features) -> ApiResult<()> {
    let mut candidate = new["spec"].clone();
    let old_spec = &old["spec"];
    if let Some(spec) = candidate.as_object_mut() {
        default_spec_only(spec, features);
        for field in [
            "activeDeadlineSeconds",
            "tolerations",
            "terminationGracePeriodSeconds",
        ] {
            match old_spec.get(field) {
                Some(v) => spec.insert(field.into(), v.clone()),
                None => spec.remove(field),
            };
        }
        // Removing scheduling gates is allowed; adding them is not.
        let gates = spec
            .get("schedulingGates")
            .and_then(Value::as_array)
            .map(Vec::len);
        let old_gates = old_spec
            .get("schedulingGates")
            .and_then(Value::as_array)
            .map(Vec::len);
        if gates.unwrap_or(0) <= old_gates.unwrap_or(0) {
            match old_spec.get("schedulingGates") {
                Some(v) => spec.insert("schedulingGates".into(), v.clone()),
                None => spec.remove("schedulingGates"),
            };
        }
        for list in ["containers", "initContainers"] {
            let (Some(new_cs), Some(old_cs)) = (
                spec.get_mut(list).and_then(Value::as_array_mut),
                old_spec.get(list).and_then(Value::as_array),
            ) else {
                continue;
            };
            for (n, o) in new_cs.iter_mut().zip(old_cs) {
                if let Some(image) = o.get("image") {
                    n["image"] = image.clone();
                }
            }
        }
    }
    if &candidate == old_spec {
        return Ok(());
    }
    let changed: Vec<String> = changed_fields(&candidate, old_spec);
    let message = format!("{UPDATE_FORBIDDEN}\n  changed: {}\n", changed.join(", "));
    Err(ApiError::invalid(
        "Pod",
        "",
        meta::name(new),
        &[("spec", "FieldValueForbidden", message)],
    ))
}

fn default_spec_only(spec: &mut Map<String, Value>, features: Features) {
    let mut pod = json!({"spec": Value::Object(std::mem::take(spec))});
    default_pod_with(&mut pod, features);
    if let Value::Object(s) = pod["spec"].take() {
        *spec = s;
    }
}

fn changed_fields(new: &Value, old: &Value) -> Vec<String> {
    let empty = Map::new();
    let n = new.as_object().unwrap_or(&empty);
    let o = old.as_object().unwrap_or(&empty);
    let mut keys: Vec<&String> = n.keys().chain(o.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| n.get(*k) != o.get(*k))
        .map(|k| format!("spec.{k}"))
        .collect()
}

/// Check that an update does not add finalizers to an object being deleted.
pub fn check_finalizers(kind: &str, new: &Value, old: &Value) -> ApiResult<()> {
    if !meta::is_terminating(old) {
        return Ok(());
    }
    let old_f = meta::finalizers(old);
    let added: Vec<String> = meta::finalizers(new)
        .into_iter()
        .filter(|f| !old_f.contains(f))
        .collect();
    if added.is_empty() {
        return Ok(());
    }
    let quoted: Vec<String> = added.iter().map(|f| format!("\"{f}\"")).collect();
    let msg = format!(
        "Forbidden: no new finalizers can be added if the object is being deleted, found new \
         finalizers []string{{{}}}",
        quoted.join(", ")
    );
    let mut err = ApiError::invalid(
        kind,
        "",
        meta::name(new),
        &[("metadata.finalizers", "FieldValueForbidden", msg)],
    );
    // kube-apiserver runs this check twice (object meta and update validation) and
    // reports the cause twice, while the message shows it once.
    if let Some(causes) = err
        .details
        .as_mut()
        .and_then(|d| d["causes"].as_array_mut())
    {
        let cause = causes[0].clone();
        causes.push(cause);
    }
    Err(err)
}

/// Whether a pod is bound to a node.
pub fn is_bound(pod: &Value) -> bool {
    pod["spec"]["nodeName"]
        .as_str()
        .is_some_and(|n| !n.is_empty())
}

/// Whether a pod has finished (phase Succeeded or Failed).
pub fn is_finished(pod: &Value) -> bool {
    matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded") | Some("Failed")
    )
}

/// Set or replace a condition in `status.conditions`, keyed by type.
pub fn set_condition(pod: &mut Value, condition: Value) {
    let status = object_at(pod, "status");
    let list = status.entry("conditions").or_insert_with(|| json!([]));
    if !list.is_array() {
        *list = json!([]);
    }
    let list = list.as_array_mut().expect("conditions is an array");
    let ty = condition["type"].clone();
    match list.iter_mut().find(|c| c["type"] == ty) {
        Some(existing) => *existing = condition,
        None => list.push(condition),
    }
}

/// Apply a Binding to a stored pod, or say why kube-apiserver would refuse it.
pub fn bind(pod: &Value, binding: &Binding<'_>) -> ApiResult<Value> {
    let name = meta::name(pod);
    if let Some(uid) = binding
        .uid
        .filter(|u| !u.is_empty() && *u != meta::uid(pod))
    {
        let namespace = pod["metadata"]["namespace"].as_str().unwrap_or_default();
        return Err(ApiError::conflict(
            "pods",
            "",
            "pods",
            name,
            &format!(
                "StorageError: invalid object, Code: 4, Key: /registry/pods/{namespace}/{name}, \
                 ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: UID in \
                 precondition: {uid}, UID in object meta: {}",
                meta::uid(pod)
            ),
        ));
    }
    if meta::is_terminating(pod) {
        return Err(ApiError::conflict(
            "pods/binding",
            "",
            "pods/binding",
            name,
            &format!("pod {name} is being deleted, cannot be assigned to a host"),
        ));
    }
    if let Some(node) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
        return Err(ApiError::conflict(
            "pods/binding",
            "",
            "pods/binding",
            name,
            &format!("pod {name} is already assigned to node \"{node}\""),
        ));
    }
    let mut pod = pod.clone();
    pod["spec"]["nodeName"] = json!(binding.node);
    if let Some(annotations) = binding.annotations {
        let meta = meta::metadata_mut(&mut pod);
        let target = meta.entry("annotations").or_insert_with(|| json!({}));
        if !target.is_object() {
            *target = json!({});
        }
        for (k, v) in annotations {
            target[k] = v.clone();
        }
    }
    set_condition(
        &mut pod,
        json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null,
               "lastTransitionTime": meta::now_rfc3339()}),
    );
    Ok(pod)
}

/// The condition the eviction API adds to a running pod before deleting it.
pub fn eviction_condition() -> Value {
    json!({"type": "DisruptionTarget", "status": "True", "lastProbeTime": null,
           "lastTransitionTime": meta::now_rfc3339(), "reason": "EvictionByEvictionAPI",
           "message": "Eviction API: evicting"})
}

fn object_at<'a>(obj: &'a mut Value, field: &str) -> &'a mut Map<String, Value> {
    if !obj[field].is_object() {
        obj[field] = json!({});
    }
    obj[field].as_object_mut().expect("just made an object")
}

fn set_default(map: &mut Map<String, Value>, key: &str, value: Value) {
    if map.get(key).is_none_or(Value::is_null) {
        map.insert(key.into(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_pod() -> Value {
        json!({"metadata": {"name": "p", "namespace": "ns"},
               "spec": {"containers": [{"name": "c", "image": "img:1",
                        "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}})
    }

    #[test]
    fn defaults_match_what_clients_rely_on() {
        let mut pod = new_pod();
        default_pod(&mut pod);
        let spec = &pod["spec"];
        assert_eq!(spec["terminationGracePeriodSeconds"], 30);
        assert_eq!(spec["schedulerName"], "default-scheduler");
        assert_eq!(spec["priority"], 0);
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(spec["dnsPolicy"], "ClusterFirst");
        assert_eq!(spec["tolerations"].as_array().unwrap().len(), 2);
        assert_eq!(spec["containers"][0]["resources"]["requests"]["cpu"], "1");
        assert_eq!(pod["status"]["phase"], "Pending");
        assert_eq!(pod["status"]["qosClass"], "Guaranteed");
    }

    #[test]
    fn schedulername_change_is_forbidden_but_image_change_is_not() {
        let mut old = new_pod();
        default_pod(&mut old);
        let mut image = old.clone();
        image["spec"]["containers"][0]["image"] = json!("img:2");
        assert!(validate_update(&image, &old, Features::default()).is_ok());
        let mut sched = old.clone();
        sched["spec"]["schedulerName"] = json!("other");
        let err = validate_update(&sched, &old, Features::default()).unwrap_err();
        assert_eq!(err.code, 422);
        assert!(err
            .message
            .starts_with("Pod \"p\" is invalid: spec: Forbidden"));
    }
}
