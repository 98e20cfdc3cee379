//! Pod to Slurm job translation: pure, no I/O. Given a pod and the scheduler's settings it
//! yields the placeholder job to submit, or every reason the pod cannot be scheduled, plus
//! warnings. The scheduler calls [`translate`]; `explain` calls it on manifests.

pub mod annotations;
pub mod policy;
pub mod quantity;
pub mod rejection;
pub mod resources;

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use slurm_client::{Exclusivity, JobMarker, PlaceholderJob, TimeLimit};

pub use annotations::{AnnotationKey, DEFAULT_PREFIX};
pub use policy::{IdRanges, NamespacePolicy, Policies};
pub use quantity::{Quantity, QuantityError};
pub use rejection::{Cause, Reason, Rejection, Warning, WarningKind};

use annotations::Value;

/// The scheduler name of the SUNK Pod Scheduler, kept for drop-in compatibility.
pub const DEFAULT_SCHEDULER_NAME: &str = "slurm-pod-scheduler";

/// What Kubernetes uses when a pod sets no `terminationGracePeriodSeconds`.
pub const DEFAULT_GRACE_PERIOD_SECONDS: i64 = 30;

/// Slurm's default `KillWait`.
pub const DEFAULT_KILL_WAIT: Duration = Duration::from_secs(30);

/// Default margin kept inside KillWait.
pub const DEFAULT_TERMINATION_OFFSET: Duration = Duration::from_secs(5);

/// Slurm keeps `cpus_per_task` in 16 bits, the top value meaning "unset".
pub const MAX_CPUS_PER_TASK: u128 = u16::MAX as u128 - 1;

/// The default map of Kubernetes device resources to Slurm GRES names.
pub fn default_device_map() -> BTreeMap<String, String> {
    [("nvidia.com/gpu", "gpu"), ("amd.com/gpu", "gpu")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The scheduler's settings that decide a translation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslateContext {
    /// `spec.schedulerName` of the pods we own, and the name in job comments.
    pub scheduler_name: String,
    /// Prefix of our annotation keys, e.g. `sunk.coreweave.com/`.
    pub annotation_prefix: String,
    /// Slurm's KillWait.
    pub kill_wait: Duration,
    /// Margin inside KillWait the pod must finish in.
    pub termination_offset: Duration,
    /// Kubernetes extended resource name to Slurm GRES name.
    pub device_map: BTreeMap<String, String>,
    /// The operator's per-namespace policy.
    pub policies: Policies,
}

impl Default for TranslateContext {
    fn default() -> Self {
        TranslateContext {
            scheduler_name: DEFAULT_SCHEDULER_NAME.to_string(),
            annotation_prefix: DEFAULT_PREFIX.to_string(),
            kill_wait: DEFAULT_KILL_WAIT,
            termination_offset: DEFAULT_TERMINATION_OFFSET,
            device_map: default_device_map(),
            policies: Policies::default(),
        }
    }
}

/// The outcome for one pod. Equal inputs give equal translations, so comparing the stored
/// translation with a new one tells whether a rejected pod deserves another try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translation {
    /// The job to submit; `None` exactly when there are rejections.
    pub job: Option<PlaceholderJob>,
    /// Every reason the pod cannot be scheduled, all at once.
    pub rejections: Vec<Rejection>,
    /// Problems that do not stop scheduling (unknown annotation keys).
    pub warnings: Vec<Warning>,
}

impl Translation {
    pub fn is_schedulable(&self) -> bool {
        self.job.is_some()
    }
}

/// Whether `pod` names our scheduler.
pub fn is_ours(pod: &Pod, ctx: &TranslateContext) -> bool {
    pod.spec.as_ref().and_then(|s| s.scheduler_name.as_deref()) == Some(&ctx.scheduler_name)
}

/// The placeholder job's name: `<namespace>/<pod-name>`.
pub fn job_name(namespace: &str, pod_name: &str) -> String {
    format!("{namespace}/{pod_name}")
}

/// The job comment that marks a job as ours and names its pod; `slurm_client` owns the
/// format and parses it back.
pub fn job_comment(scheduler_name: &str, pod_uid: &str) -> String {
    JobMarker::new(scheduler_name, pod_uid).to_string()
}

/// A hash of everything in a pod that [`translate`] reads, to tell cheaply whether a pod
/// changed in a way that could change its translation (status updates do not).
pub fn placement_fingerprint(pod: &Pod, annotation_prefix: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    pod.metadata.namespace.hash(&mut hasher);
    pod.metadata.name.hash(&mut hasher);
    pod.metadata.uid.hash(&mut hasher);
    // `job-id` is our own output, written at binding: it must not look like a change.
    let job_id = AnnotationKey::JobId.key(annotation_prefix);
    for (key, value) in pod.metadata.annotations.iter().flatten() {
        if key.starts_with(annotation_prefix) && *key != job_id {
            (key, value).hash(&mut hasher);
        }
    }
    if let Some(spec) = &pod.spec {
        spec.scheduler_name.hash(&mut hasher);
        spec.termination_grace_period_seconds.hash(&mut hasher);
        let containers = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten());
        for container in containers {
            container.restart_policy.hash(&mut hasher);
            hash_resources(container.resources.as_ref(), &mut hasher);
        }
        hash_resources(spec.resources.as_ref(), &mut hasher);
        if let Some(overhead) = &spec.overhead {
            for (name, value) in overhead {
                (name, &value.0).hash(&mut hasher);
            }
        }
    }
    hasher.finish()
}

fn hash_resources(
    resources: Option<&k8s_openapi::api::core::v1::ResourceRequirements>,
    hasher: &mut DefaultHasher,
) {
    let requests = resources.and_then(|r| r.requests.as_ref());
    for (name, value) in requests.into_iter().flatten() {
        (name, &value.0).hash(hasher);
    }
    // Separates the lists of consecutive containers, so moving a request changes the hash.
    0xffu8.hash(hasher);
}

/// Translates a pod into its placeholder job, or into every reason it cannot be scheduled.
pub fn translate(pod: &Pod, ctx: &TranslateContext) -> Translation {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let default_spec = Default::default();
    let spec = pod.spec.as_ref().unwrap_or(&default_spec);
    let policy = ctx.policies.for_namespace(namespace);
    let mut rejections = Vec::new();

    let (raw, warnings) =
        annotations::our_annotations(pod.metadata.annotations.as_ref(), &ctx.annotation_prefix);
    let placement = placement(
        &raw,
        namespace,
        policy,
        &ctx.annotation_prefix,
        &mut rejections,
    );

    let devices = ctx.device_map.keys().map(|k| k.as_str());
    let (requests, problems) = resources::effective_requests(spec, devices);
    rejections.extend(problems);
    let sizes = sizes(&requests, &ctx.device_map, &mut rejections);

    let grace = spec.termination_grace_period_seconds;
    let grace_seconds = grace.unwrap_or(DEFAULT_GRACE_PERIOD_SECONDS);
    let limit = ctx.kill_wait.saturating_sub(ctx.termination_offset);
    if u128::try_from(grace_seconds).unwrap_or(0) * 1000 >= limit.as_millis() {
        rejections.push(rejection::grace_period_too_long(
            grace_seconds,
            grace.is_none(),
            ctx.kill_wait.as_secs(),
            ctx.termination_offset.as_secs(),
        ));
    }

    // Sizes computed around unreadable entries are not a job to submit.
    let job = match (rejections.is_empty(), sizes) {
        (true, Some((cpus, memory_mib, gres))) => {
            let uid = pod.metadata.uid.as_deref().unwrap_or("unknown");
            let exclusive = placement
                .exclusive
                .or(gres.as_ref().map(|_| Exclusivity::None));
            Some(PlaceholderJob {
                name: job_name(namespace, name),
                comment: job_comment(&ctx.scheduler_name, uid),
                cpus_per_task: cpus,
                memory_per_node_mb: memory_mib,
                gres,
                partition: placement.partition,
                constraint: placement.constraint,
                account: placement.account,
                qos: placement.qos,
                user_id: placement.user_id,
                group_id: placement.group_id,
                exclusive,
                time_limit: placement.time_limit,
                reservation: placement.reservation,
                excluded_nodes: Vec::new(),
            })
        }
        _ => None,
    };
    tracing::debug!(
        namespace,
        name,
        schedulable = job.is_some(),
        rejections = rejections.len(),
        warnings = warnings.len(),
        "translated pod"
    );
    Translation {
        job,
        rejections,
        warnings,
    }
}

/// The annotation values, checked and merged with the namespace's pinned values.
#[derive(Debug, Default)]
struct Placement {
    partition: Option<String>,
    constraint: Option<String>,
    account: Option<String>,
    qos: Option<String>,
    user_id: Option<u32>,
    group_id: Option<u32>,
    exclusive: Option<Exclusivity>,
    time_limit: Option<TimeLimit>,
    reservation: Option<String>,
}

fn placement(
    raw: &BTreeMap<AnnotationKey, &str>,
    namespace: &str,
    policy: Option<&NamespacePolicy>,
    prefix: &str,
    rejections: &mut Vec<Rejection>,
) -> Placement {
    let mut values: BTreeMap<AnnotationKey, &str> = raw.clone();
    for (key, pinned) in policy.iter().flat_map(|p| &p.pinned) {
        if let Some(value) = raw.get(key).filter(|v| *v != pinned) {
            rejections.push(rejection::pinned_annotation(
                &key.key(prefix),
                value,
                pinned,
                namespace,
            ));
        }
        // The pinned value is the one judged and used, so a conflict is reported once.
        values.insert(*key, pinned);
    }

    let mut placement = Placement::default();
    for (key, value) in values {
        let full_key = key.key(prefix);
        let checked = match annotations::check_value(key, &full_key, value) {
            Ok(checked) => checked,
            Err(rejection) => {
                rejections.push(rejection);
                continue;
            }
        };
        match (key, checked) {
            (AnnotationKey::Partition, Value::Text(v)) => placement.partition = Some(v),
            (AnnotationKey::Constraint, Value::Text(v)) => placement.constraint = Some(v),
            (AnnotationKey::Account, Value::Text(v)) => placement.account = Some(v),
            (AnnotationKey::Qos, Value::Text(v)) => placement.qos = Some(v),
            (AnnotationKey::Reservation, Value::Text(v)) => placement.reservation = Some(v),
            (AnnotationKey::Exclusive, Value::Exclusive(v)) => placement.exclusive = Some(v),
            (AnnotationKey::TimeLimit, Value::TimeLimit(v)) => placement.time_limit = Some(v),
            (AnnotationKey::UserId, Value::Id(id)) => {
                let allowed = policy.and_then(|p| p.allowed_uids.as_ref());
                if check_id(&full_key, id, "UID", namespace, policy, allowed, rejections) {
                    placement.user_id = Some(id);
                }
            }
            (AnnotationKey::GroupId, Value::Id(id)) => {
                let allowed = policy.and_then(|p| p.allowed_gids.as_ref());
                if check_id(&full_key, id, "GID", namespace, policy, allowed, rejections) {
                    placement.group_id = Some(id);
                }
            }
            (key, value) => unreachable!("check_value gave {value:?} for {key:?}"),
        }
    }

    // The group defaults to the user's number, which the GID policy must allow as well.
    if let (None, Some(uid)) = (placement.group_id, placement.user_id) {
        let full_key = format!(
            "{} (defaulted from user-id)",
            AnnotationKey::GroupId.key(prefix)
        );
        let allowed = policy.and_then(|p| p.allowed_gids.as_ref());
        if check_id(
            &full_key, uid, "GID", namespace, policy, allowed, rejections,
        ) {
            placement.group_id = Some(uid);
        }
    }
    placement
}

/// Applies the namespace's id policy; root is refused unless the policy allows it.
fn check_id(
    full_key: &str,
    id: u32,
    what: &str,
    namespace: &str,
    policy: Option<&NamespacePolicy>,
    allowed: Option<&IdRanges>,
    rejections: &mut Vec<Rejection>,
) -> bool {
    let allow_root = policy.is_some_and(|p| p.allow_root);
    let refusal = if id == 0 && !allow_root {
        Some(rejection::root_not_allowed(full_key, what, namespace))
    } else if allowed.is_some_and(|a| !a.contains(id)) && !(id == 0 && allow_root) {
        let text = allowed.map(|a| a.to_string()).unwrap_or_default();
        Some(rejection::id_not_allowed(
            full_key, id, what, namespace, &text,
        ))
    } else {
        None
    };
    match refusal {
        Some(r) => {
            rejections.push(r);
            false
        }
        None => true,
    }
}

/// CPUs, MiB and GRES of the job, or `None` with rejections.
fn sizes(
    requests: &resources::EffectiveRequests,
    device_map: &BTreeMap<String, String>,
    rejections: &mut Vec<Rejection>,
) -> Option<(u32, u64, Option<String>)> {
    let before = rejections.len();
    if requests.cpu.requested.is_zero() && !requests.cpu.invalid {
        rejections.push(rejection::missing_request(
            "CPU",
            requests.cpu.named,
            "500m",
        ));
    }
    if requests.memory.requested.is_zero() && !requests.memory.invalid {
        rejections.push(rejection::missing_request(
            "memory",
            requests.memory.named,
            "512Mi",
        ));
    }

    // Both conversions succeed: the quantities were checked to be non-negative.
    let cpus = requests.cpu.total().ceil_units().unwrap_or_default().max(1);
    if cpus > MAX_CPUS_PER_TASK {
        rejections.push(rejection::request_too_large(
            "CPUs",
            cpus,
            MAX_CPUS_PER_TASK,
        ));
    }
    let memory_mib = requests
        .memory
        .total()
        .ceil_mib()
        .unwrap_or_default()
        .max(1);

    let mut gres_counts: BTreeMap<&str, u128> = BTreeMap::new();
    for (resource, quantity) in &requests.devices {
        match quantity.whole_units() {
            Some(0) => {}
            Some(count) => *gres_counts.entry(&device_map[resource]).or_default() += count,
            None => rejections.push(rejection::fractional_devices(
                resource,
                &quantity.to_string(),
            )),
        }
    }
    let gres = (!gres_counts.is_empty()).then(|| {
        let parts: Vec<String> = gres_counts
            .iter()
            .map(|(n, c)| format!("{n}:{c}"))
            .collect();
        parts.join(",")
    });

    (rejections.len() == before).then_some((cpus as u32, memory_mib as u64, gres))
}

#[cfg(test)]
mod tests;
