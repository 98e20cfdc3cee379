//! The scheduling loop: one task that owns every pod's life, fed by the watchers, the Slurm
//! poller and the answers of the requests it started. It decides synchronously and hands
//! each effect to the executor, so no lock is held across I/O and the order of decisions
//! for one pod is the order of its observations.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use k8s_openapi::api::core::v1::Pod;
use slurm_client::{BaseState, JobSnapshot, JobStatus};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use super::exec::{Effect, Executor};
use super::project::{project, PodRecord};
use super::Settings;
use crate::lifecycle::{
    BindOutcome, JobId, JobView, NodeHealth, Observation, PodLife, PodView, SubmitOutcome,
};
use crate::metrics::Metrics;
use crate::nodes::fit::NodeFacts;
use crate::nodes::map::NodeMap;

/// Everything the loop is told.
#[derive(Debug)]
pub enum Input {
    /// A watcher (re)started listing: pods of that stream not applied before `PodsListed`
    /// are gone.
    PodsRelist {
        stream: usize,
    },
    PodApplied {
        stream: usize,
        pod: Box<Pod>,
    },
    PodDeleted {
        uid: String,
    },
    PodsListed {
        stream: usize,
    },
    NodeApplied(Box<NodeFacts>),
    NodeDeleted(String),
    NodesListed,
    SlurmdPod {
        key: String,
        slurm_name: String,
        node: Option<String>,
    },
    SlurmdPodDeleted(String),
    /// A complete list of our jobs.
    Jobs(JobSnapshot),
    /// slurmrestd answered nothing (or an error): nothing is concluded from it.
    SlurmUnreachable(String),
    Submitted {
        uid: String,
        outcome: SubmitOutcome,
    },
    BindResult {
        uid: String,
        outcome: BindOutcome,
    },
}

/// One tracked pod.
struct Tracked {
    record: PodRecord,
    life: PodLife,
    /// The last view of this pod's job, to feed again after a stage change.
    last_job: Option<(JobId, JobView)>,
    /// When the current job was submitted (our clock): a complete list taken later that
    /// lacks it proves it gone.
    submitted_at: SystemTime,
    /// The job this process submitted or adopted for the pod (trusted without a list).
    own_job: Option<JobId>,
    /// Which watcher stream reported the pod, for relists.
    stream: usize,
    seen_in_relist: bool,
}

pub struct Core {
    settings: Arc<Settings>,
    metrics: Arc<Metrics>,
    exec: Executor,
    pods: HashMap<String, Box<Tracked>>,
    nodes: HashMap<String, NodeFacts>,
    map: NodeMap,
    timers: BinaryHeap<Reverse<(Instant, String)>>,
    /// Our live jobs by pod UID from the last snapshot, for adopting a job after a restart.
    jobs_by_uid: HashMap<UidKey, JobId>,
    /// Jobs we asked Slurm to cancel and it still lists: never adopted again.
    cancelled: HashSet<JobId>,
    /// The pod UID in each of our jobs' comment, from the last complete list: a pod's
    /// `job-id` annotation is only believed when Slurm agrees, since anyone who can write
    /// a pod can write an annotation.
    job_owner: HashMap<JobId, UidKey>,
    /// Jobs without a pod, and when they were first seen so.
    orphans: HashMap<JobId, Instant>,
    relisting: HashSet<usize>,
    pod_streams: usize,
    pods_synced: HashSet<usize>,
    nodes_synced: bool,
    jobs_synced: bool,
    slurm_reachable: bool,
    /// The pods were told of the current Slurm outage.
    told_unreachable: bool,
    leading: watch::Receiver<bool>,
    was_leading: bool,
    ready: watch::Sender<bool>,
}

mod acting;
mod uid_key;

use uid_key::UidKey;

impl Core {
    pub fn new(
        settings: Arc<Settings>,
        metrics: Arc<Metrics>,
        exec: Executor,
        pod_streams: usize,
        leading: watch::Receiver<bool>,
        ready: watch::Sender<bool>,
    ) -> Self {
        let map = NodeMap::new(settings.node_mapping.clone());
        Self {
            settings,
            metrics,
            exec,
            pods: HashMap::new(),
            nodes: HashMap::new(),
            map,
            timers: BinaryHeap::new(),
            jobs_by_uid: HashMap::new(),
            cancelled: HashSet::new(),
            job_owner: HashMap::new(),
            orphans: HashMap::new(),
            relisting: HashSet::new(),
            pod_streams,
            pods_synced: HashSet::new(),
            nodes_synced: false,
            jobs_synced: false,
            slurm_reachable: false,
            told_unreachable: false,
            leading,
            was_leading: false,
            ready,
        }
    }

    /// Run until the input channel closes.
    pub async fn run(mut self, mut inputs: mpsc::Receiver<Input>) {
        let mut gauges = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            let next_timer = self.timers.peek().map(|Reverse((at, _))| *at);
            let sleep = async {
                match next_timer {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                input = inputs.recv() => match input {
                    Some(input) => self.on_input(input),
                    None => return,
                },
                _ = sleep => self.fire_timers(),
                changed = self.leading.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    self.on_leadership();
                }
                _ = gauges.tick() => self.publish_gauges(),
            }
        }
    }

    /// Apply one input as the running loop does; for `state_probe`, which has no channel.
    pub(in crate::run) fn apply(&mut self, input: Input) {
        self.on_input(input);
    }

    /// Tracked pods by stage label.
    pub(in crate::run) fn stage_counts(&self) -> std::collections::BTreeMap<&'static str, usize> {
        let mut counts = std::collections::BTreeMap::new();
        for t in self.pods.values() {
            *counts.entry(t.life.stage_label()).or_default() += 1;
        }
        counts
    }

    fn synced(&self) -> bool {
        self.pods_synced.len() == self.pod_streams && self.nodes_synced && self.jobs_synced
    }

    /// Only a synced leader acts; everyone else keeps its caches warm.
    fn acting(&self) -> bool {
        *self.leading.borrow() && self.synced()
    }

    fn update_ready(&self) {
        self.ready
            .send_replace(self.synced() && self.slurm_reachable);
    }

    // === inputs ===

    fn on_input(&mut self, input: Input) {
        let was_acting = self.acting();
        match input {
            Input::PodsRelist { stream } => {
                self.relisting.insert(stream);
                for t in self.pods.values_mut().filter(|t| t.stream == stream) {
                    t.seen_in_relist = false;
                }
            }
            Input::PodApplied { stream, pod } => self.on_pod(stream, &pod),
            Input::PodDeleted { uid } => self.on_pod_gone(&uid),
            Input::PodsListed { stream } => {
                if self.relisting.remove(&stream) {
                    let gone: Vec<String> = self
                        .pods
                        .iter()
                        .filter(|(_, t)| t.stream == stream && !t.seen_in_relist)
                        .map(|(uid, _)| uid.clone())
                        .collect();
                    for uid in gone {
                        self.on_pod_gone(&uid);
                    }
                }
                self.pods_synced.insert(stream);
            }
            Input::NodeApplied(facts) => self.on_node(*facts),
            Input::NodeDeleted(name) => {
                self.nodes.remove(&name);
                self.map.remove(&name);
                self.node_health_changed(&name);
            }
            Input::NodesListed => self.nodes_synced = true,
            Input::SlurmdPod {
                key,
                slurm_name,
                node,
            } => self.map.slurmd_pod_seen(&key, &slurm_name, node.as_deref()),
            Input::SlurmdPodDeleted(key) => self.map.remove(&key),
            Input::Jobs(snapshot) => {
                if !self.slurm_reachable {
                    // Back after an outage: every job's view is fed again from this
                    // complete list, which also rewrites the "unreachable" conditions.
                    for t in self.pods.values_mut() {
                        t.last_job = None;
                    }
                }
                self.slurm_reachable = true;
                self.told_unreachable = false;
                self.jobs_synced = true;
                self.on_jobs(snapshot);
            }
            Input::SlurmUnreachable(why) => {
                if self.slurm_reachable {
                    warn!(error = %why, "slurmrestd is unreachable; acting on nothing until it answers");
                }
                self.slurm_reachable = false;
                if !self.told_unreachable && self.acting() {
                    self.told_unreachable = true;
                    let uids: Vec<String> = self.pods.keys().cloned().collect();
                    for uid in uids {
                        self.observe(&uid, Observation::SlurmUnreachable(why.clone()));
                    }
                }
            }
            Input::Submitted { uid, outcome } => {
                if let SubmitOutcome::Accepted(id) = outcome {
                    if let Some(t) = self.pods.get_mut(&uid) {
                        t.submitted_at = SystemTime::now();
                        t.own_job = Some(id);
                    }
                }
                self.observe(&uid, Observation::Submitted(outcome));
            }
            Input::BindResult { uid, outcome } => {
                if outcome == BindOutcome::Bound {
                    self.count_bound(&uid);
                }
                self.observe(&uid, Observation::BindResult(outcome));
            }
        }
        self.update_ready();
        if !was_acting && self.acting() {
            self.start_acting();
        }
    }

    fn on_pod(&mut self, stream: usize, pod: &Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        let previous = self.pods.get(&uid).map(|t| &t.record);
        let record = project(pod, &self.settings.ctx, previous);
        let fresh_warnings = record.warnings.clone();
        let refusal = record.kubelet_refusal.clone();
        let view = record.view.clone();
        let tracked = self.pods.entry(uid.clone()).or_insert_with(|| {
            Box::new(Tracked {
                record: record.clone(),
                life: PodLife::new(),
                last_job: None,
                submitted_at: SystemTime::UNIX_EPOCH,
                own_job: None,
                stream,
                seen_in_relist: true,
            })
        });
        tracked.record = record;
        tracked.stream = stream;
        tracked.seen_in_relist = true;
        if !self.acting() {
            return;
        }
        for warning in fresh_warnings {
            self.effect(
                &uid,
                Effect::event(
                    &self.pods[&uid].record.pod,
                    true,
                    "UnknownAnnotation",
                    warning,
                ),
            );
        }
        if let (Some(why), Some(job)) = (refusal, self.pods[&uid].life.job()) {
            let message = format!(
                "The kubelet refused the pod after Slurm job {job} placed it ({why}): capacity \
                 on the node is used outside Slurm. See the operator guide on reserving \
                 resources for what runs outside Slurm."
            );
            self.effect(
                &uid,
                Effect::event(&self.pods[&uid].record.pod, true, "KubeletRefused", message),
            );
        }
        let view = self.checked(&uid, view);
        self.observe(&uid, Observation::Pod(view));
        if let Some(node) = self.pods.get(&uid).and_then(|t| t.record.view.node.clone()) {
            if self.pods[&uid].record.view.terminating {
                let health = self.health(&node);
                self.observe(&uid, Observation::Node(health));
            }
        }
    }

    /// Slurm's word wins over a pod's `job-id` annotation, which anyone who can write the
    /// pod can write: the job whose comment names this pod replaces the claim, and a claim
    /// on another pod's job is dropped. A claimed job Slurm does not list at all stays (a
    /// purged job of ours) but is never cancelled on the annotation's word alone.
    fn checked(&self, uid: &str, mut view: PodView) -> PodView {
        let Some(claimed) = view.bound_job else {
            return view;
        };
        let key = UidKey::new(uid);
        if self.job_owner.get(&claimed) != Some(&key) {
            let real = self.jobs_by_uid.get(&key).copied();
            if real.is_some() || self.job_owner.contains_key(&claimed) {
                warn!(uid, claimed, real = ?real, "the pod's job-id annotation does not match Slurm's; using Slurm's");
                view.bound_job = real;
            }
        }
        view
    }

    fn on_pod_gone(&mut self, uid: &str) {
        if !self.pods.contains_key(uid) {
            return;
        }
        if self.acting() {
            self.observe(uid, Observation::PodGone);
        }
        // A pod gone while we do not act leaves its job to the orphan sweep of whoever
        // acts next.
        let done = self
            .pods
            .get(uid)
            .is_none_or(|t| t.life.is_done() || !self.acting());
        if done {
            self.pods.remove(uid);
        }
    }

    fn on_node(&mut self, facts: NodeFacts) {
        self.map.node_seen(&facts.name, &facts.labels);
        let name = facts.name.clone();
        let health_changed = self
            .nodes
            .get(&name)
            .is_none_or(|old| old.is_dead() != facts.is_dead());
        self.nodes.insert(name.clone(), facts);
        if health_changed {
            self.node_health_changed(&name);
        }
    }

    fn health(&self, node: &str) -> NodeHealth {
        match self.nodes.get(node) {
            Some(n) if !n.is_dead() => NodeHealth::Ready,
            _ => NodeHealth::Dead,
        }
    }

    /// Tell terminating pods on this node how it is doing.
    fn node_health_changed(&mut self, node: &str) {
        if !self.acting() {
            return;
        }
        let health = self.health(node);
        let on_node: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, t)| {
                t.record.view.node.as_deref() == Some(node) && t.record.view.terminating
            })
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in on_node {
            self.observe(&uid, Observation::Node(health));
        }
    }

    fn on_jobs(&mut self, snapshot: JobSnapshot) {
        let by_id: HashMap<JobId, &JobStatus> =
            snapshot.jobs.iter().map(|j| (j.job_id, j)).collect();
        self.cancelled.retain(|id| by_id.contains_key(id));
        self.job_owner = snapshot
            .jobs
            .iter()
            .filter_map(|j| {
                j.marker
                    .as_ref()
                    .map(|m| (j.job_id, UidKey::new(&m.pod_uid)))
            })
            .collect();
        self.jobs_by_uid = snapshot
            .jobs
            .iter()
            .filter(|j| is_live(j) && !self.cancelled.contains(&j.job_id))
            .filter_map(|j| {
                j.marker
                    .as_ref()
                    .map(|m| (UidKey::new(&m.pod_uid), j.job_id))
            })
            .collect();
        if !self.acting() {
            return;
        }
        let mut claimed = HashSet::new();
        let uids: Vec<String> = self.pods.keys().cloned().collect();
        for uid in uids {
            let Some(t) = self.pods.get(&uid) else {
                continue;
            };
            let Some(job) = t.life.job() else { continue };
            claimed.insert(job);
            let view = match by_id.get(&job) {
                Some(status) => job_view(status),
                // Absent from a complete list taken after the submit: gone.
                None if snapshot.requested_at > t.submitted_at => JobView::Gone,
                None => continue,
            };
            if t.last_job.as_ref() == Some(&(job, view.clone())) {
                continue;
            }
            if let Some(t) = self.pods.get_mut(&uid) {
                t.last_job = Some((job, view.clone()));
            }
            self.observe_job(&uid, job, view);
        }
        self.sweep_orphans(&snapshot, &claimed);
    }

    /// Our live jobs whose pod we do not know are cancelled, once they have been orphans
    /// for a while (a pod created a moment ago may not have reached our watch yet).
    fn sweep_orphans(&mut self, snapshot: &JobSnapshot, claimed: &HashSet<JobId>) {
        let now = Instant::now();
        let mut still = HashMap::new();
        for job in snapshot
            .jobs
            .iter()
            .filter(|j| is_live(j) && !claimed.contains(&j.job_id))
        {
            let uid = job
                .marker
                .as_ref()
                .map(|m| m.pod_uid.as_str())
                .unwrap_or_default();
            if self.pods.contains_key(uid) {
                continue; // its pod is tracked and about to claim it
            }
            let since = self.orphans.get(&job.job_id).copied().unwrap_or(now);
            if now.duration_since(since) >= self.settings.orphan_grace {
                info!(job_id = job.job_id, name = %job.name, "cancelling a job whose pod is gone");
                self.cancelled.insert(job.job_id);
                self.exec.run(Effect::Cancel {
                    job: job.job_id,
                    label: "orphan",
                });
            } else {
                still.insert(job.job_id, since);
            }
        }
        self.orphans = still;
    }
}

/// A job that still holds or waits for an allocation.
fn is_live(job: &JobStatus) -> bool {
    matches!(job.state.base, BaseState::Pending | BaseState::Running)
        && !job.state.has_flag("COMPLETING")
}

/// How the pod's life sees a job Slurm reports.
pub fn job_view(job: &JobStatus) -> JobView {
    let completing = job.state.has_flag("COMPLETING");
    let reason = job.reason.clone().unwrap_or_else(|| "None".into());
    match job.state.base {
        BaseState::Pending if !completing => JobView::Pending { reason },
        BaseState::Running if !completing => match job.nodes.first() {
            Some(node) => JobView::Running {
                slurm_node: node.clone(),
            },
            None => JobView::Pending { reason },
        },
        // 22.05 reports only COMPLETING for a job being ended, whatever the cause.
        BaseState::EndedUnknown => JobView::Ended {
            state: "COMPLETING, cause not reported by this Slurm version".into(),
            reason,
        },
        _ => JobView::Ended {
            state: job.state.base.as_str().to_string(),
            reason,
        },
    }
}
