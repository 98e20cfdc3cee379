//! What the scheduler keeps of a pod: a slim record projected from the Pod object, so no
//! whole Pod is held in memory.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Pod;
use slurm_client::PlaceholderJob;

use crate::kube_io::writer::PodRef;
use crate::lifecycle::{JobId, PodPhase, PodView};
use crate::nodes::fit::NodeRules;
use crate::translate::{self, TranslateContext};

/// The annotation (after the prefix) that carries the Slurm job id onto a bound pod.
pub const JOB_ID_ANNOTATION: &str = "job-id";

/// One pod of ours, as the scheduler remembers it.
#[derive(Debug, Clone)]
pub struct PodRecord {
    pub pod: PodRef,
    pub view: PodView,
    /// The job to submit, less its name and comment (see [`PodRecord::job_to_submit`]);
    /// `None` when the pod is rejected, and once it is bound.
    pub job: Option<Box<PlaceholderJob>>,
    /// The pod's node constraints; `None` for the common pod without any.
    pub rules: Option<Arc<NodeRules>>,
    pub created: Option<SystemTime>,
    /// Warnings to publish once (unknown annotation keys).
    pub warnings: Vec<String>,
    /// The kubelet refused the pod (`OutOfcpu`, `OutOfmemory`): capacity is used outside
    /// Slurm.
    pub kubelet_refusal: Option<String>,
}

/// Project a pod. `previous` lets an unchanged pod skip the translation, which is the
/// expensive part: status updates arrive far more often than spec changes.
pub fn project(pod: &Pod, ctx: &TranslateContext, previous: Option<&PodRecord>) -> PodRecord {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let fingerprint = translate::placement_fingerprint(pod, &ctx.annotation_prefix);
    let job_key = format!("{}{}", ctx.annotation_prefix, JOB_ID_ANNOTATION);
    let bound_job: Option<JobId> = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(&job_key))
        .and_then(|v| v.trim().parse().ok());
    let phase = match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Running") => PodPhase::Running,
        Some("Succeeded") => PodPhase::Succeeded,
        Some("Failed") => PodPhase::Failed,
        Some("Pending") | None => PodPhase::Pending,
        Some(_) => PodPhase::Unknown,
    };
    let grace = spec
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(translate::DEFAULT_GRACE_PERIOD_SECONDS)
        .max(0) as u64;

    let reuse = previous.filter(|p| p.view.fingerprint == fingerprint);
    let (job, rejection, warnings, rules) = match reuse {
        Some(prev) => (
            prev.job.clone(),
            prev.view.rejection.clone(),
            Vec::new(),
            prev.rules.clone(),
        ),
        None => {
            let t = translate::translate(pod, ctx);
            let rejection = (!t.rejections.is_empty()).then(|| {
                let messages: Vec<&str> = t.rejections.iter().map(|r| r.message.as_str()).collect();
                Arc::new((
                    t.rejections[0].reason.as_str().to_string(),
                    messages.join(" "),
                ))
            });
            let warnings = t.warnings.into_iter().map(|w| w.message).collect();
            let rules = spec.and_then(NodeRules::from_spec).map(Arc::new);
            (t.job.map(stored_job), rejection, warnings, rules)
        }
    };

    PodRecord {
        pod: PodRef {
            namespace: meta.namespace.clone().unwrap_or_else(|| "default".into()),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
        },
        view: PodView {
            node: spec
                .and_then(|s| s.node_name.clone())
                .filter(|n| !n.is_empty()),
            phase,
            terminating: meta.deletion_timestamp.is_some(),
            gated: spec
                .and_then(|s| s.scheduling_gates.as_ref())
                .is_some_and(|g| !g.is_empty()),
            grace: Duration::from_secs(grace),
            fingerprint,
            rejection,
            bound_job,
        },
        job,
        rules,
        created: meta
            .creation_timestamp
            .as_ref()
            .map(|t| SystemTime::UNIX_EPOCH + Duration::from_secs(t.0.as_second().max(0) as u64)),
        warnings,
        kubelet_refusal: kubelet_refusal(pod),
    }
}

/// The job as the record keeps it: without name and comment, which repeat the pod's
/// namespace, name and UID (about 100 bytes per tracked pod); [`PodRecord::job_to_submit`]
/// puts them back.
fn stored_job(mut job: PlaceholderJob) -> Box<PlaceholderJob> {
    job.name = String::new();
    job.comment = String::new();
    Box::new(job)
}

impl PodRecord {
    /// The whole placeholder job to submit for this pod, `None` when it is rejected (or
    /// bound, when the job is no longer kept).
    pub fn job_to_submit(&self, scheduler_name: &str) -> Option<PlaceholderJob> {
        let mut job = self.job.as_deref()?.clone();
        job.name = translate::job_name(&self.pod.namespace, &self.pod.name);
        job.comment = translate::job_comment(scheduler_name, &self.pod.uid);
        Some(job)
    }
}

/// The pod failed because the kubelet refused it (capacity used outside Slurm).
fn kubelet_refusal(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Failed") {
        return None;
    }
    let reason = status.reason.as_deref()?;
    reason
        .starts_with("OutOf")
        .then(|| format!("{reason}: {}", status.message.clone().unwrap_or_default()))
}
