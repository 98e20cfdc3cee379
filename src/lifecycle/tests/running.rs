//! Bound pods: their end, their job's end, KillWait, dead nodes, restarts.

use super::*;

#[test]
fn scancel_of_a_running_pod_evicts_it_inside_killwait() {
    let (mut life, now) = bound();
    let ended = JobView::Ended {
        state: "CANCELLED".into(),
        reason: "None".into(),
    };
    let a = life.observe(Observation::Job(ended), now, &t());
    assert_eq!(reasons(&a), vec!["SlurmJobEnded"]);
    assert!(a.contains(&Action::Evict {
        job: 7,
        grace: Duration::from_secs(3)
    }));
    assert!(a.contains(&Action::WakeAt(now + Duration::from_secs(30))));

    // The pod goes in time: the job is cancelled (freeing the allocation at once).
    let a = life.observe(Observation::PodGone, now + Duration::from_secs(4), &t());
    assert_eq!(
        a,
        vec![Action::Cancel {
            job: 7,
            reason: CancelReason::PodEnded
        }]
    );
    // The deadline passing later does nothing.
    assert!(life
        .observe(Observation::Tick, now + Duration::from_secs(31), &t())
        .is_empty());
}

#[test]
fn eviction_grace_stays_inside_the_killwait_window() {
    let (mut life, now) = bound();
    life.observe(
        Observation::Pod(PodView {
            grace: Duration::from_secs(60),
            ..running_on("node-1")
        }),
        now,
        &t(),
    );
    let a = life.observe(Observation::Job(JobView::Gone), now, &t());
    assert!(a.contains(&Action::Evict {
        job: 7,
        grace: Duration::from_secs(24)
    }));
}

#[test]
fn a_pod_outliving_killwait_is_force_deleted_once() {
    let (mut life, now) = bound();
    let ended = JobView::Ended {
        state: "TIMEOUT".into(),
        reason: "TimeLimit".into(),
    };
    life.observe(Observation::Job(ended), now, &t());
    assert!(life
        .observe(Observation::Tick, now + Duration::from_secs(29), &t())
        .is_empty());
    let a = life.observe(Observation::Tick, now + Duration::from_secs(30), &t());
    assert_eq!(a[0], Action::ForceDelete { job: 7 });
    assert_eq!(reasons(&a), vec!["KillWaitOverrun"]);
    assert!(life
        .observe(Observation::Tick, now + Duration::from_secs(40), &t())
        .is_empty());
}

#[test]
fn a_terminating_pod_on_a_ready_node_keeps_its_job_until_it_is_gone() {
    let (mut life, now) = bound();
    let terminating = PodView {
        terminating: true,
        ..running_on("node-1")
    };
    assert!(life
        .observe(Observation::Pod(terminating), now, &t())
        .is_empty());
    assert!(life
        .observe(Observation::Node(NodeHealth::Ready), now, &t())
        .is_empty());
    assert!(life
        .observe(Observation::Tick, now + Duration::from_secs(3600), &t())
        .is_empty());
    let a = life.observe(Observation::PodGone, now, &t());
    assert_eq!(
        a,
        vec![Action::Cancel {
            job: 7,
            reason: CancelReason::PodEnded
        }]
    );
}

#[test]
fn a_pod_stuck_terminating_on_a_dead_node_releases_its_job_after_grace_and_margin() {
    let (mut life, now) = bound();
    let terminating = PodView {
        terminating: true,
        ..running_on("node-1")
    };
    life.observe(Observation::Pod(terminating), now, &t());
    let a = life.observe(Observation::Node(NodeHealth::Dead), now, &t());
    assert_eq!(a, vec![Action::WakeAt(now + Duration::from_secs(33))]);
    assert!(life
        .observe(Observation::Tick, now + Duration::from_secs(32), &t())
        .is_empty());
    let a = life.observe(Observation::Tick, now + Duration::from_secs(33), &t());
    assert!(a.contains(&Action::Cancel {
        job: 7,
        reason: CancelReason::StuckOnDeadNode
    }));
}

#[test]
fn a_node_that_recovers_stops_the_stuck_clock() {
    let (mut life, now) = bound();
    life.observe(Observation::Node(NodeHealth::Dead), now, &t());
    life.observe(Observation::Node(NodeHealth::Ready), now, &t());
    assert!(life
        .observe(Observation::Tick, now + Duration::from_secs(100), &t())
        .is_empty());
}

#[test]
fn a_change_after_binding_is_ignored_with_one_event() {
    let (mut life, now) = bound();
    let changed = PodView {
        fingerprint: 9,
        ..running_on("node-1")
    };
    let a = life.observe(Observation::Pod(changed.clone()), now, &t());
    assert_eq!(reasons(&a), vec!["PlacementChangeIgnored"]);
    assert!(!a
        .iter()
        .any(|a| matches!(a, Action::Cancel { .. } | Action::Submit { .. })));
    assert!(
        life.observe(Observation::Pod(changed), now, &t())
            .is_empty(),
        "said once"
    );
}

#[test]
fn a_cancel_that_did_not_take_is_repeated_while_the_job_runs() {
    let (mut life, now) = bound();
    life.observe(Observation::PodGone, now, &t());
    let a = life.observe(
        Observation::Job(JobView::Running {
            slurm_node: "node-1".into(),
        }),
        now,
        &t(),
    );
    assert_eq!(
        a,
        vec![Action::Cancel {
            job: 7,
            reason: CancelReason::PodEnded
        }]
    );
}

#[test]
fn nothing_happens_to_a_bound_pod_without_news() {
    // "Unknown is not gone": the runtime sends no job view when Slurm did not answer, and
    // time alone never deletes a pod or cancels a job.
    let (mut life, now) = bound();
    assert!(life
        .observe(Observation::Tick, now + Duration::from_secs(86_400), &t())
        .is_empty());
    let a = life.observe(
        Observation::Job(JobView::Running {
            slurm_node: "node-1".into(),
        }),
        now,
        &t(),
    );
    assert!(a.is_empty());
}

#[test]
fn a_pod_that_stops_while_being_evicted_releases_the_job() {
    let (mut life, now) = bound();
    life.observe(Observation::Job(JobView::Gone), now, &t());
    let done = PodView {
        phase: PodPhase::Failed,
        ..running_on("node-1")
    };
    let a = life.observe(Observation::Pod(done), now, &t());
    assert_eq!(
        a,
        vec![Action::Cancel {
            job: 7,
            reason: CancelReason::PodEnded
        }]
    );
}

#[test]
fn waiting_pods_are_told_when_slurm_is_unreachable_and_nothing_else_happens() {
    let (mut life, now) = queued();
    let a = life.observe(
        Observation::SlurmUnreachable("connection refused".into()),
        now,
        &t(),
    );
    assert_eq!(
        a,
        vec![Action::Condition {
            reason: "Unschedulable",
            message: "Slurm is unreachable, so the pod waits: connection refused".into()
        }]
    );
    assert_eq!(life.stage, Stage::Queued { job: 7 });
    // Back: the next pending view rewrites the condition.
    let a = life.observe(
        Observation::Job(JobView::Pending {
            reason: "Priority".into(),
        }),
        now,
        &t(),
    );
    assert_eq!(a.len(), 1);

    let (mut bound_life, now) = bound();
    let a = bound_life.observe(Observation::SlurmUnreachable("timeout".into()), now, &t());
    assert!(a.is_empty(), "a running pod's condition is not touched");
}
