//! Every path of a pod's life, one scenario per test, with the actions asserted exactly.

mod binding;
mod placing;
mod running;

use super::*;

pub(super) fn t() -> Timing {
    Timing {
        kill_wait: Duration::from_secs(30),
        termination_offset: Duration::from_secs(5),
        submit_backoff: Duration::from_secs(5),
        submit_backoff_max: Duration::from_secs(600),
        stuck_margin: Duration::from_secs(30),
    }
}

pub(super) fn pod() -> PodView {
    PodView {
        node: None,
        phase: PodPhase::Pending,
        terminating: false,
        gated: false,
        grace: Duration::from_secs(3),
        fingerprint: 1,
        rejection: None,
        bound_job: None,
    }
}

pub(super) fn running_on(node: &str) -> PodView {
    PodView {
        node: Some(node.into()),
        phase: PodPhase::Running,
        ..pod()
    }
}

/// A life driven up to `Bound { job: 7, node: node-1 }`, with the clock it used.
pub(super) fn bound() -> (PodLife, Instant) {
    let now = Instant::now();
    let mut life = PodLife::new();
    life.observe(Observation::Pod(pod()), now, &t());
    life.observe(
        Observation::Submitted(SubmitOutcome::Accepted(7)),
        now,
        &t(),
    );
    life.observe(
        Observation::Job(JobView::Running {
            slurm_node: "node-1".into(),
        }),
        now,
        &t(),
    );
    life.observe(
        Observation::Placed {
            slurm_node: "node-1".into(),
            fit: NodeFit::Usable("node-1".into()),
        },
        now,
        &t(),
    );
    life.observe(Observation::BindResult(BindOutcome::Bound), now, &t());
    assert_eq!(
        life.stage,
        Stage::Bound {
            job: 7,
            node: "node-1".into(),
            stuck_since: None
        }
    );
    (life, now)
}

pub(super) fn reasons(actions: &[Action]) -> Vec<&'static str> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Event { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect()
}

/// A life whose job is queued as job 7.
pub(super) fn queued() -> (PodLife, Instant) {
    let now = Instant::now();
    let mut life = PodLife::new();
    life.observe(Observation::Pod(pod()), now, &t());
    life.observe(
        Observation::Submitted(SubmitOutcome::Accepted(7)),
        now,
        &t(),
    );
    (life, now)
}

/// A life whose job 7 runs on `node`, with the bind to `node` in flight.
pub(super) fn binding(node: &str) -> (PodLife, Instant) {
    let (mut life, now) = queued();
    life.observe(
        Observation::Job(JobView::Running {
            slurm_node: node.into(),
        }),
        now,
        &t(),
    );
    let fit = NodeFit::Usable(node.into());
    let a = life.observe(
        Observation::Placed {
            slurm_node: node.into(),
            fit,
        },
        now,
        &t(),
    );
    assert_eq!(
        a,
        vec![Action::Bind {
            job: 7,
            node: node.into()
        }]
    );
    (life, now)
}
