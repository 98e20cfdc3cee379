//! Deletion as kube-apiserver does it: preconditions, graceful deletion of bound pods
//! (deadline counted from the first delete), immediate deletion of everything else, and
//! finalizers holding an object until the last one is removed.

use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::meta;
use crate::pods::{is_bound, is_finished};
use crate::store::Outcome;

/// Options of a delete (query parameters and `DeleteOptions` body merged).
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// `gracePeriodSeconds`.
    pub grace: Option<i64>,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
}

/// Check delete preconditions against the stored object.
pub fn check_preconditions(
    obj: &Value,
    kind: &str,
    group: &str,
    opts: &DeleteOptions,
) -> ApiResult<()> {
    let name = meta::name(obj);
    if let Some(uid) = opts.uid.as_deref().filter(|u| *u != meta::uid(obj)) {
        return Err(ApiError::conflict(
            kind,
            group,
            kind,
            name,
            &format!(
                "the UID in the precondition ({uid}) does not match the UID in record ({}). The \
                 object might have been deleted and then recreated",
                meta::uid(obj)
            ),
        ));
    }
    let current = obj["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default();
    if let Some(rv) = opts.resource_version.as_deref().filter(|rv| *rv != current) {
        return Err(ApiError::conflict(
            kind,
            group,
            kind,
            name,
            &format!(
                "the ResourceVersion in the precondition ({rv}) does not match the \
                 ResourceVersion in record ({current}). The object might have been modified"
            ),
        ));
    }
    Ok(())
}

/// What a delete does to a stored pod: graceful for a bound running pod, immediate
/// otherwise, held by finalizers either way.
pub fn delete_pod(pod: &Value, opts: &DeleteOptions) -> Outcome {
    let has_finalizers = !meta::finalizers(pod).is_empty();
    let immediate = !is_bound(pod) || is_finished(pod);

    if meta::is_terminating(pod) {
        let old_grace = pod["metadata"]["deletionGracePeriodSeconds"]
            .as_i64()
            .unwrap_or(0);
        let Some(grace) = opts.grace.map(|g| if immediate { 0 } else { g.max(0) }) else {
            return Outcome::Unchanged;
        };
        if grace >= old_grace {
            return Outcome::Unchanged;
        }
        // A shorter grace counts from the first delete, not from now; grace 0 records
        // that state (MODIFIED) and then removes the pod (DELETED).
        let deadline = pod["metadata"]["deletionTimestamp"]
            .as_str()
            .and_then(meta::parse_time);
        let mut pod = pod.clone();
        if let Some(deadline) = deadline {
            let first = deadline - k8s_openapi::jiff::SignedDuration::from_secs(old_grace);
            let new = first + k8s_openapi::jiff::SignedDuration::from_secs(grace);
            pod["metadata"]["deletionTimestamp"] = json!(meta::rfc3339(new));
        }
        pod["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
        if grace == 0 && !has_finalizers {
            return Outcome::UpdateThenDelete(pod);
        }
        return Outcome::Update(pod);
    }

    let grace = if immediate {
        0
    } else {
        opts.grace
            .or_else(|| pod["spec"]["terminationGracePeriodSeconds"].as_i64())
            .unwrap_or(30)
            .max(0)
    };
    let mut pod = pod.clone();
    let meta = meta::metadata_mut(&mut pod);
    meta.insert("deletionTimestamp".into(), json!(meta::now_plus(grace)));
    meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
    if grace == 0 && !has_finalizers {
        Outcome::UpdateThenDelete(pod)
    } else {
        Outcome::Update(pod)
    }
}

/// What a delete does to an object that has no graceful deletion (everything but pods).
pub fn delete_plain(obj: &Value) -> Outcome {
    if meta::finalizers(obj).is_empty() {
        return Outcome::Delete;
    }
    if meta::is_terminating(obj) {
        return Outcome::Unchanged;
    }
    let mut obj = obj.clone();
    let meta = meta::metadata_mut(&mut obj);
    meta.insert("deletionTimestamp".into(), json!(meta::now_rfc3339()));
    meta.insert("deletionGracePeriodSeconds".into(), json!(0));
    Outcome::Update(obj)
}

/// Whether an updated object must now disappear: deletion started with no grace left and
/// its last finalizer was just removed.
pub fn finalized(obj: &Value) -> bool {
    meta::is_terminating(obj)
        && meta::finalizers(obj).is_empty()
        && obj["metadata"]["deletionGracePeriodSeconds"]
            .as_i64()
            .unwrap_or(0)
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pods::default_pod;

    fn new_pod() -> Value {
        json!({"metadata": {"name": "p", "namespace": "ns"},
               "spec": {"containers": [{"name": "c", "image": "img:1"}]}})
    }

    #[test]
    fn deleting_a_bound_pod_is_graceful_and_an_unbound_one_immediate() {
        let mut pod = new_pod();
        default_pod(&mut pod);
        let opts = DeleteOptions {
            grace: Some(20),
            ..Default::default()
        };
        assert!(matches!(
            delete_pod(&pod, &opts),
            Outcome::UpdateThenDelete(_)
        ));
        pod["spec"]["nodeName"] = json!("n1");
        let Outcome::Update(terminating) = delete_pod(&pod, &opts) else {
            panic!()
        };
        assert_eq!(terminating["metadata"]["deletionGracePeriodSeconds"], 20);
        let longer = DeleteOptions {
            grace: Some(30),
            ..Default::default()
        };
        assert!(matches!(
            delete_pod(&terminating, &longer),
            Outcome::Unchanged
        ));
        let zero = DeleteOptions {
            grace: Some(0),
            ..Default::default()
        };
        assert!(matches!(
            delete_pod(&terminating, &zero),
            Outcome::UpdateThenDelete(_)
        ));
    }
}
