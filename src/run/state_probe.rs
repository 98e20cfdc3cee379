//! The scheduling loop's state, built in one process without any I/O, so that what it
//! keeps per pod can be measured (the pod-churn benchmark's "bytes per tracked pod").
//!
//! It is the real loop (`Core`) with an executor that discards every effect, fed the same
//! inputs the watchers and the poller would give it: the pods, an empty node list and a
//! complete job list. Pods whose job the list holds are adopted, as after a restart, and
//! end up waiting for that job exactly as freshly submitted ones do; pods without a job
//! stay where the discarded submit left them, and rejected pods stay rejected.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Pod;
use slurm_client::{ClientConfig, JobSnapshot, JobStatus, TokenSource};
use tokio::sync::watch;

use super::core::{Core, Input};
use super::exec::Executor;
use super::Settings;
use crate::lifecycle::Timing;
use crate::metrics::Metrics;
use crate::nodes::map::Mapping;
use crate::translate::TranslateContext;

/// A scheduling loop holding the pods it was given.
pub struct LoopState {
    core: Core,
    // Kept so the loop still sees itself as the leader.
    _leading: watch::Sender<bool>,
}

impl LoopState {
    /// Feed `pods` (one watch stream, then its end of list) and then `jobs` as one complete
    /// Slurm list to a fresh loop that leads. The inputs are consumed as the loop would
    /// consume them, so what stays allocated afterwards is the loop's own state.
    pub fn build(
        ctx: TranslateContext,
        pods: impl IntoIterator<Item = Pod>,
        jobs: Vec<JobStatus>,
    ) -> Self {
        let settings = Arc::new(settings(ctx));
        let (leading_tx, leading) = watch::channel(true);
        let (ready, _) = watch::channel(false);
        let mut core = Core::new(
            settings,
            Arc::new(Metrics::new()),
            Executor::discarding(),
            1,
            leading,
            ready,
        );
        core.apply(Input::NodesListed);
        core.apply(Input::PodsRelist { stream: 0 });
        for pod in pods {
            core.apply(Input::PodApplied {
                stream: 0,
                pod: Box::new(pod),
            });
        }
        core.apply(Input::PodsListed { stream: 0 });
        let total_jobs = jobs.len();
        core.apply(Input::Jobs(JobSnapshot {
            jobs,
            total_jobs,
            requested_at: SystemTime::now(),
        }));
        Self {
            core,
            _leading: leading_tx,
        }
    }

    /// How many pods the loop tracks, by stage (`pending`, `rejected`, ...).
    pub fn stages(&self) -> BTreeMap<&'static str, usize> {
        self.core.stage_counts()
    }
}

/// Settings for a loop that never talks to anyone: only the translation context and the
/// timing matter to what it keeps; the Slurm client settings are never used.
fn settings(ctx: TranslateContext) -> Settings {
    let slurm = ClientConfig::new(
        "http://127.0.0.1:9",
        TokenSource::Static(String::new()),
        ctx.scheduler_name.clone(),
    );
    Settings {
        timing: Timing {
            kill_wait: ctx.kill_wait,
            ..Default::default()
        },
        identity: ctx.scheduler_name.clone(),
        ctx,
        namespaces: Vec::new(),
        poll_interval: Duration::from_secs(1),
        node_mapping: Mapping::Identity,
        slurmd_namespace: "slurm".into(),
        orphan_grace: Duration::from_secs(60),
        user_names: BTreeMap::new(),
        lease: None,
        kube_qps: 100.0,
        kube_burst: 200,
        listen: "127.0.0.1:0".parse().expect("a literal address"),
        slurm,
    }
}
