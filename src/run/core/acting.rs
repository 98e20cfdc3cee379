//! The scheduling loop's acting half: feeding observations to pods' lives and turning
//! their decisions into effects (submit, bind, cancel, delete, conditions, events).

use std::cmp::Reverse;
use std::time::{Instant, SystemTime};

use slurm_client::SubmitOptions;
use tracing::{debug, info, info_span, warn};

use super::{Core, Effect, UidKey};
use crate::lifecycle::{
    Action, JobId, JobView, NodeFit, Observation, PodLife, Stage, SubmitOutcome,
};
use crate::metrics::{ResultLabel, StateLabel};
use crate::nodes::fit::refusal;

impl Core {
    // === acting ===

    pub(super) fn on_leadership(&mut self) {
        let leading = *self.leading.borrow();
        self.metrics.leader.set(i64::from(leading));
        if leading && !self.was_leading && self.synced() {
            self.start_acting();
        }
        self.was_leading = leading;
    }

    /// Becoming the acting replica (first sync, or leadership): every pod's life starts
    /// over from what the caches say, adopting the jobs Slurm already holds for them.
    pub(super) fn start_acting(&mut self) {
        info!(pods = self.pods.len(), "synced; acting on pods");
        self.was_leading = *self.leading.borrow();
        let uids: Vec<String> = self.pods.keys().cloned().collect();
        for uid in uids {
            if let Some(t) = self.pods.get_mut(&uid) {
                t.life = PodLife::new();
                t.last_job = None;
            }
            let view = self.checked(&uid, self.pods[&uid].record.view.clone());
            self.observe(&uid, Observation::Pod(view));
        }
    }

    pub(super) fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, uid))) = self.timers.pop() else {
                break;
            };
            if self.acting() {
                self.observe(&uid, Observation::Tick);
            }
        }
    }

    pub(super) fn observe_job(&mut self, uid: &str, job: JobId, view: JobView) {
        if let JobView::Running { slurm_node } = &view {
            // Running: the life asks where; answer from the node cache right after.
            let slurm_node = slurm_node.clone();
            self.observe(uid, Observation::Job(view));
            let placing = matches!(
                self.pods.get(uid).map(|t| &t.life.stage),
                Some(Stage::Placing { job: j, .. }) if *j == job
            );
            if placing {
                let fit = self.fit(uid, &slurm_node);
                self.observe(uid, Observation::Placed { slurm_node, fit });
            }
        } else {
            self.observe(uid, Observation::Job(view));
        }
    }

    pub(super) fn fit(&self, uid: &str, slurm_node: &str) -> NodeFit {
        let rules = self.pods.get(uid).and_then(|t| t.record.rules.clone());
        match self.map.kube_node(slurm_node) {
            Err(_) => NodeFit::Unusable {
                why: format!(
                    "no Kubernetes node maps to it under `{}`",
                    self.map.mapping()
                ),
            },
            Ok(kube) => match self.nodes.get(&kube) {
                None => NodeFit::Unusable {
                    why: format!("Kubernetes node {kube} does not exist"),
                },
                Some(facts) => match refusal(rules.as_deref(), facts) {
                    Some(why) => NodeFit::Unusable { why },
                    None => NodeFit::Usable(kube),
                },
            },
        }
    }

    /// Feed one observation to a pod's life and carry out what it decides.
    pub(super) fn observe(&mut self, uid: &str, obs: Observation) {
        let Some(t) = self.pods.get_mut(uid) else {
            return;
        };
        let span = info_span!("pod", namespace = %t.record.pod.namespace, name = %t.record.pod.name, uid = %uid, job_id = ?t.life.job());
        let _enter = span.enter();
        let before = std::mem::discriminant(&t.life.stage);
        let is_job_news = matches!(obs, Observation::Job(_));
        let actions = t.life.observe(obs, Instant::now(), &self.settings.timing);
        let after = std::mem::discriminant(&t.life.stage);
        if before != after {
            debug!(stage = t.life.stage_label(), "stage changed");
            if matches!(t.life.stage, Stage::Bound { .. }) {
                // A bound pod's job is never submitted again: keep the state small.
                t.record.job = None;
            }
        }
        for action in actions {
            self.act(uid, action);
        }
        // A stage change can make old news relevant (a job that ended while the bind was
        // in flight): feed the last job view again, once. Not after releasing: the view
        // predates our own cancel.
        let releasing = matches!(
            self.pods.get(uid).map(|t| &t.life.stage),
            Some(Stage::Releasing { .. })
        );
        if before != after && !is_job_news && !releasing {
            let again = self.pods.get(uid).and_then(|t| {
                let (job, view) = t.last_job.clone()?;
                (t.life.job() == Some(job)).then_some((job, view))
            });
            if let Some((job, view)) = again {
                self.observe_job(uid, job, view);
            }
        }
        if self.pods.get(uid).is_some_and(|t| t.life.is_done()) {
            self.pods.remove(uid);
        }
    }

    pub(super) fn act(&mut self, uid: &str, action: Action) {
        let Some(t) = self.pods.get(uid) else {
            return;
        };
        let pod = t.record.pod.clone();
        match action {
            Action::Submit { exclude } => self.submit(uid, exclude),
            Action::Cancel { job, reason } => {
                let trusted = self.pods.get(uid).is_some_and(|t| t.own_job == Some(job))
                    || self.job_owner.get(&job) == Some(&UidKey::new(uid));
                if !trusted {
                    // Never cancel a job Slurm does not list as this pod's: the id may come
                    // from an annotation anyone with access to the pod could have written.
                    warn!(
                        job_id = job,
                        "not cancelling a job Slurm does not list as this pod's"
                    );
                    return;
                }
                self.cancelled.insert(job);
                self.exec.run(Effect::Cancel {
                    job,
                    label: reason.label(),
                })
            }
            Action::Bind { job, node } => self.exec.run(Effect::Bind { pod, node, job }),
            Action::Evict { job, grace } => self.exec.run(Effect::Evict {
                pod,
                grace,
                message: format!(
                    "Slurm job {job} ended; the pod is deleted before Slurm's KillWait runs out"
                ),
            }),
            Action::ForceDelete { job: _ } => {
                self.metrics.killwait_overruns.inc();
                self.exec.run(Effect::ForceDelete { pod })
            }
            Action::Condition { reason, message } => {
                if reason != "Unschedulable" {
                    self.metrics
                        .pods_scheduled
                        .get_or_create(&ResultLabel {
                            result: "rejected".into(),
                        })
                        .inc();
                }
                self.exec.run(Effect::Condition {
                    pod,
                    reason,
                    message,
                })
            }
            Action::Event {
                kind,
                reason,
                message,
            } => {
                let warning = kind == crate::lifecycle::EventKind::Warning;
                self.exec.run(Effect::event(&pod, warning, reason, message))
            }
            Action::WakeAt(at) => self.timers.push(Reverse((at, uid.to_string()))),
        }
    }

    pub(super) fn submit(&mut self, uid: &str, exclude: Vec<String>) {
        // A live job for this pod already exists (submitted before a restart or by the
        // previous leader): adopt it instead of submitting a second one.
        if let Some(&id) = self.jobs_by_uid.get(&UidKey::new(uid)) {
            info!(job_id = id, "adopting the existing job of this pod");
            if let Some(t) = self.pods.get_mut(uid) {
                t.submitted_at = SystemTime::now();
                t.own_job = Some(id);
            }
            self.observe(uid, Observation::Submitted(SubmitOutcome::Accepted(id)));
            return;
        }
        let Some(t) = self.pods.get(uid) else { return };
        let Some(mut job) = t.record.job_to_submit(&self.settings.ctx.scheduler_name) else {
            // The pod became invalid since: its life hears about it with the next view.
            return;
        };
        job.excluded_nodes = self.excluded_for(uid, exclude);
        let opts = SubmitOptions {
            run_as_user: job
                .user_id
                .and_then(|id| self.settings.user_names.get(&id).cloned()),
        };
        self.exec.run(Effect::Submit {
            uid: uid.to_string(),
            job: Box::new(job),
            opts,
        });
    }

    /// Slurm nodes this pod must not get: those its life excluded and those whose
    /// Kubernetes node would refuse it.
    pub(super) fn excluded_for(&self, uid: &str, mut exclude: Vec<String>) -> Vec<String> {
        let rules = self.pods.get(uid).and_then(|t| t.record.rules.clone());
        for (name, facts) in &self.nodes {
            if refusal(rules.as_deref(), facts).is_some() {
                if let Some(slurm) = self.map.slurm_node(name) {
                    if !exclude.contains(&slurm) {
                        exclude.push(slurm);
                    }
                }
            }
        }
        exclude.sort();
        exclude
    }

    pub(super) fn count_bound(&self, uid: &str) {
        self.metrics
            .pods_scheduled
            .get_or_create(&ResultLabel {
                result: "bound".into(),
            })
            .inc();
        let created = self.pods.get(uid).and_then(|t| t.record.created);
        if let Some(age) = created.and_then(|c| SystemTime::now().duration_since(c).ok()) {
            self.metrics.scheduling_duration.observe(age.as_secs_f64());
        }
    }

    pub(super) fn effect(&self, _uid: &str, effect: Effect) {
        self.exec.run(effect);
    }

    pub(super) fn publish_gauges(&self) {
        let counts = self.stage_counts();
        for state in [
            "new",
            "rejected",
            "submitting",
            "refused",
            "pending",
            "binding",
            "bound",
            "evicting",
            "releasing",
            "finished",
        ] {
            let n = counts.get(state).map_or(0, |&n| n as i64);
            self.metrics
                .tracked_pods
                .get_or_create(&StateLabel {
                    state: state.into(),
                })
                .set(n);
        }
    }
}
