//! The scheduler's writes to Kubernetes: bindings, `PodScheduled` and `DisruptionTarget`
//! conditions, deletions with a UID precondition, and events. Each call reports an outcome
//! the pod's life understands; the kube client already retries 429/503/504, honouring
//! `Retry-After`.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::Client;
use serde_json::json;

use crate::lifecycle::BindOutcome;

/// The pod a write is about; the UID pins it against a namesake created later.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// Field manager and event reporter name.
pub const MANAGER: &str = "slurm-pod-scheduler";

/// Why a write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The pod (with this UID) no longer exists: nothing to do.
    #[error("pod {0} is gone")]
    PodGone(String),
    /// Any other failure of the API server; retried by the caller.
    #[error("the API server refused or failed a write to pod {pod}: {source}")]
    Api {
        pod: String,
        #[source]
        source: kube::Error,
    },
}

impl PodRef {
    fn api(&self, client: &Client) -> Api<Pod> {
        Api::namespaced(client.clone(), &self.namespace)
    }

    /// `namespace/name`, for logs and messages.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    fn fail(&self, err: kube::Error) -> WriteError {
        match &err {
            kube::Error::Api(status) if status.code == 404 => WriteError::PodGone(self.key()),
            // A UID precondition that no longer holds: the pod we knew is gone.
            kube::Error::Api(status) if status.code == 409 && status.message.contains("UID") => {
                WriteError::PodGone(self.key())
            }
            _ => WriteError::Api {
                pod: self.key(),
                source: err,
            },
        }
    }
}

/// Bind through `pods/binding`, carrying the job id onto the pod in the same call.
pub async fn bind(
    client: &Client,
    pod: &PodRef,
    node: &str,
    job_annotation: (&str, String),
) -> BindOutcome {
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(pod.name.clone()),
            uid: Some(pod.uid.clone()),
            annotations: Some([(job_annotation.0.to_string(), job_annotation.1)].into()),
            ..Default::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.to_string()),
            ..Default::default()
        },
    };
    let api = pod.api(client);
    let result: Result<serde_json::Value, _> = api
        .create_subresource("binding", &pod.name, &PostParams::default(), &binding)
        .await;
    match result {
        Ok(_) => BindOutcome::Bound,
        Err(kube::Error::Api(s)) if s.code == 404 => BindOutcome::PodGone,
        Err(kube::Error::Api(s)) if s.code == 409 => {
            // Already assigned, being deleted, or replaced (UID): look at the pod itself
            // rather than parse the message.
            match api.get_opt(&pod.name).await {
                Ok(Some(p)) if p.metadata.uid.as_deref() != Some(pod.uid.as_str()) => {
                    BindOutcome::PodGone
                }
                Ok(Some(p)) if p.metadata.deletion_timestamp.is_some() => BindOutcome::PodGone,
                Ok(Some(p)) => match p.spec.and_then(|s| s.node_name) {
                    Some(other) => BindOutcome::AlreadyOn(other),
                    None => BindOutcome::Failed(s.message),
                },
                Ok(None) => BindOutcome::PodGone,
                Err(e) => BindOutcome::Failed(e.to_string()),
            }
        }
        Err(e) => BindOutcome::Failed(e.to_string()),
    }
}

/// Set `PodScheduled=False` with a reason and message (strategic merge: other conditions
/// stay).
pub async fn set_unschedulable(
    client: &Client,
    pod: &PodRef,
    reason: &str,
    message: &str,
) -> Result<(), WriteError> {
    let patch = json!({
        "metadata": {"uid": pod.uid},
        "status": {"conditions": [{
            "type": "PodScheduled",
            "status": "False",
            "reason": reason,
            "message": message,
            "lastTransitionTime": now_rfc3339(),
        }]}
    });
    let params = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    pod.api(client)
        .patch_status(&pod.name, &params, &Patch::Strategic(patch))
        .await
        .map(drop)
        .map_err(|e| pod.fail(e))
}

/// Mark the pod as disrupted by Slurm and delete it with `grace` and a UID precondition.
pub async fn evict(
    client: &Client,
    pod: &PodRef,
    grace: Duration,
    message: &str,
) -> Result<(), WriteError> {
    let patch = json!({
        "metadata": {"uid": pod.uid},
        "status": {"conditions": [{
            "type": "DisruptionTarget",
            "status": "True",
            "reason": "SlurmJobEnded",
            "message": message,
            "lastTransitionTime": now_rfc3339(),
        }]}
    });
    let params = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    match pod
        .api(client)
        .patch_status(&pod.name, &params, &Patch::Strategic(patch))
        .await
    {
        Ok(_) => {}
        Err(e) => match pod.fail(e) {
            gone @ WriteError::PodGone(_) => return Err(gone),
            // The condition is information; the deletion is what matters.
            WriteError::Api { .. } => {}
        },
    }
    delete(client, pod, grace).await
}

/// Delete with a UID precondition; grace 0 removes the pod at once.
pub async fn delete(client: &Client, pod: &PodRef, grace: Duration) -> Result<(), WriteError> {
    let params = DeleteParams {
        grace_period_seconds: Some(grace.as_secs() as u32),
        preconditions: Some(Preconditions {
            uid: Some(pod.uid.clone()),
            resource_version: None,
        }),
        ..Default::default()
    };
    pod.api(client)
        .delete(&pod.name, &params)
        .await
        .map(drop)
        .map_err(|e| pod.fail(e))
}

fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}
