//! Allocated pods: mapping Slurm's node, binding, and pods bound by someone else.

use super::*;

#[test]
fn happy_path_submits_binds_and_cancels_when_the_pod_succeeds() {
    let now = Instant::now();
    let mut life = PodLife::new();
    let a = life.observe(Observation::Pod(pod()), now, &t());
    assert_eq!(a, vec![Action::Submit { exclude: vec![] }]);

    let a = life.observe(
        Observation::Submitted(SubmitOutcome::Accepted(7)),
        now,
        &t(),
    );
    assert!(a.is_empty());
    let a = life.observe(
        Observation::Job(JobView::Pending {
            reason: "Resources".into(),
        }),
        now,
        &t(),
    );
    assert_eq!(
        a,
        vec![Action::Condition {
            reason: "Unschedulable",
            message: "Slurm job 7 pending: Resources".into()
        }]
    );
    // The same reason again is not written again.
    let a = life.observe(
        Observation::Job(JobView::Pending {
            reason: "Resources".into(),
        }),
        now,
        &t(),
    );
    assert!(a.is_empty());

    let a = life.observe(
        Observation::Job(JobView::Running {
            slurm_node: "node-1".into(),
        }),
        now,
        &t(),
    );
    assert!(a.is_empty(), "the runtime maps the node first");
    let a = life.observe(
        Observation::Placed {
            slurm_node: "node-1".into(),
            fit: NodeFit::Usable("k-1".into()),
        },
        now,
        &t(),
    );
    assert_eq!(
        a,
        vec![Action::Bind {
            job: 7,
            node: "k-1".into()
        }]
    );
    let a = life.observe(Observation::BindResult(BindOutcome::Bound), now, &t());
    assert_eq!(reasons(&a), vec!["Scheduled"]);

    let a = life.observe(
        Observation::Pod(PodView {
            phase: PodPhase::Succeeded,
            ..running_on("k-1")
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
    assert!(!life.is_done());
    let ended = JobView::Ended {
        state: "CANCELLED".into(),
        reason: "None".into(),
    };
    life.observe(Observation::Job(ended), now, &t());
    assert!(life.is_done());
}

#[test]
fn a_pod_bound_by_someone_else_is_left_alone() {
    let now = Instant::now();
    let mut life = PodLife::new();
    assert!(life
        .observe(Observation::Pod(running_on("x")), now, &t())
        .is_empty());
    assert_eq!(life.stage, Stage::Finished);
    assert!(!life.is_done(), "kept until the pod is gone or finished");
    life.observe(Observation::PodGone, now, &t());
    assert!(life.is_done());
}

#[test]
fn deleted_while_waiting_cancels_the_job_and_never_binds() {
    let now = Instant::now();
    let mut life = PodLife::new();
    life.observe(Observation::Pod(pod()), now, &t());
    life.observe(
        Observation::Submitted(SubmitOutcome::Accepted(3)),
        now,
        &t(),
    );
    let a = life.observe(Observation::PodGone, now, &t());
    assert_eq!(
        a,
        vec![Action::Cancel {
            job: 3,
            reason: CancelReason::PodDeletedWhilePending
        }]
    );
    // Slurm allocating it afterwards changes nothing: no bind.
    let a = life.observe(
        Observation::Job(JobView::Running {
            slurm_node: "n".into(),
        }),
        now,
        &t(),
    );
    assert_eq!(
        a,
        vec![Action::Cancel {
            job: 3,
            reason: CancelReason::PodEnded
        }]
    );
    assert!(!a.iter().any(|a| matches!(a, Action::Bind { .. })));
}

#[test]
fn bind_conflict_on_the_same_node_is_success() {
    let (mut life, now) = binding("n1");
    let a = life.observe(
        Observation::BindResult(BindOutcome::AlreadyOn("n1".into())),
        now,
        &t(),
    );
    assert!(a.is_empty());
    assert!(matches!(life.stage, Stage::Bound { job: 7, .. }));
}

#[test]
fn bind_conflict_on_another_node_cancels_our_job_once() {
    let (mut life, now) = binding("n1");
    let a = life.observe(
        Observation::BindResult(BindOutcome::AlreadyOn("n2".into())),
        now,
        &t(),
    );
    assert_eq!(reasons(&a), vec!["FailedScheduling"]);
    assert!(a.contains(&Action::Cancel {
        job: 7,
        reason: CancelReason::BoundElsewhere
    }));
    // The pod, seen on the other node, starts no new attempt.
    let a = life.observe(Observation::Pod(running_on("n2")), now, &t());
    assert!(a.is_empty());
    let ended = JobView::Ended {
        state: "CANCELLED".into(),
        reason: "None".into(),
    };
    life.observe(Observation::Job(ended), now, &t());
    assert_eq!(life.stage, Stage::Finished);
}

#[test]
fn a_failed_bind_is_retried() {
    let (mut life, now) = binding("n1");
    let a = life.observe(
        Observation::BindResult(BindOutcome::Failed("429".into())),
        now,
        &t(),
    );
    assert_eq!(
        a,
        vec![Action::Bind {
            job: 7,
            node: "n1".into()
        }]
    );
}

#[test]
fn an_unusable_node_is_excluded_and_the_job_replaced() {
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
            slurm_node: "n9".into(),
        }),
        now,
        &t(),
    );
    let a = life.observe(
        Observation::Placed {
            slurm_node: "n9".into(),
            fit: NodeFit::Unusable {
                why: "cordoned".into(),
            },
        },
        now,
        &t(),
    );
    assert_eq!(
        a[0],
        Action::Cancel {
            job: 7,
            reason: CancelReason::UnmappableNode
        }
    );
    assert_eq!(reasons(&a), vec!["FailedScheduling"]);
    assert_eq!(
        a.last(),
        Some(&Action::Submit {
            exclude: vec!["n9".into()]
        })
    );
}

#[test]
fn after_a_restart_a_bound_pod_resumes_its_job() {
    let now = Instant::now();
    let mut life = PodLife::new();
    let p = PodView {
        bound_job: Some(11),
        ..running_on("node-2")
    };
    assert!(life.observe(Observation::Pod(p), now, &t()).is_empty());
    assert_eq!(life.job(), Some(11));
    let a = life.observe(Observation::Job(JobView::Gone), now, &t());
    assert!(a.contains(&Action::Evict {
        job: 11,
        grace: Duration::from_secs(3)
    }));
}

#[test]
fn a_placement_change_while_pending_replaces_the_job() {
    let now = Instant::now();
    let mut life = PodLife::new();
    life.observe(Observation::Pod(pod()), now, &t());
    life.observe(
        Observation::Submitted(SubmitOutcome::Accepted(7)),
        now,
        &t(),
    );
    let a = life.observe(
        Observation::Pod(PodView {
            fingerprint: 2,
            ..pod()
        }),
        now,
        &t(),
    );
    assert_eq!(
        a,
        vec![
            Action::Cancel {
                job: 7,
                reason: CancelReason::PodChanged
            },
            Action::Submit { exclude: vec![] }
        ]
    );
}

#[test]
fn a_job_ended_before_binding_is_replaced() {
    let now = Instant::now();
    let mut life = PodLife::new();
    life.observe(Observation::Pod(pod()), now, &t());
    life.observe(
        Observation::Submitted(SubmitOutcome::Accepted(5)),
        now,
        &t(),
    );
    let ended = JobView::Ended {
        state: "CANCELLED".into(),
        reason: "None".into(),
    };
    let a = life.observe(Observation::Job(ended), now, &t());
    assert_eq!(reasons(&a), vec!["SlurmJobEnded"]);
    assert_eq!(a.last(), Some(&Action::Submit { exclude: vec![] }));
}

#[test]
fn repeated_unusable_placements_back_off() {
    let now = Instant::now();
    let mut life = PodLife::new();
    life.observe(Observation::Pod(pod()), now, &t());
    for (job, node) in [(7, "n9"), (8, "n9")] {
        life.observe(
            Observation::Submitted(SubmitOutcome::Accepted(job)),
            now,
            &t(),
        );
        life.observe(
            Observation::Job(JobView::Running {
                slurm_node: node.into(),
            }),
            now,
            &t(),
        );
        let a = life.observe(
            Observation::Placed {
                slurm_node: node.into(),
                fit: NodeFit::Unusable {
                    why: "cordoned".into(),
                },
            },
            now,
            &t(),
        );
        if job == 7 {
            assert_eq!(
                a.last(),
                Some(&Action::Submit {
                    exclude: vec!["n9".into()]
                })
            );
        } else {
            assert_eq!(
                a.last(),
                Some(&Action::WakeAt(now + Duration::from_secs(10)))
            );
            let a = life.observe(Observation::Tick, now + Duration::from_secs(10), &t());
            assert_eq!(
                a,
                vec![Action::Submit {
                    exclude: vec!["n9".into()]
                }]
            );
        }
    }
}

#[test]
fn bound_by_someone_else_to_slurms_node_keeps_the_job_without_binding() {
    let (mut life, now) = queued();
    let elsewhere = PodView {
        node: Some("n1".into()),
        ..pod()
    };
    assert!(life
        .observe(Observation::Pod(elsewhere), now, &t())
        .is_empty());
    life.observe(
        Observation::Job(JobView::Running {
            slurm_node: "n1".into(),
        }),
        now,
        &t(),
    );
    let a = life.observe(
        Observation::Placed {
            slurm_node: "n1".into(),
            fit: NodeFit::Usable("n1".into()),
        },
        now,
        &t(),
    );
    assert!(a.is_empty(), "no bind, no cancel: {a:?}");
    assert!(matches!(life.stage, Stage::Bound { job: 7, .. }));
}

#[test]
fn bound_by_someone_else_to_another_node_cancels_the_job_when_slurm_allocates() {
    let (mut life, now) = queued();
    let elsewhere = PodView {
        node: Some("n2".into()),
        ..pod()
    };
    assert!(life
        .observe(Observation::Pod(elsewhere), now, &t())
        .is_empty());
    life.observe(
        Observation::Job(JobView::Running {
            slurm_node: "n1".into(),
        }),
        now,
        &t(),
    );
    let a = life.observe(
        Observation::Placed {
            slurm_node: "n1".into(),
            fit: NodeFit::Usable("n1".into()),
        },
        now,
        &t(),
    );
    assert_eq!(reasons(&a), vec!["FailedScheduling"]);
    assert!(a.contains(&Action::Cancel {
        job: 7,
        reason: CancelReason::BoundElsewhere
    }));
    assert!(!a
        .iter()
        .any(|a| matches!(a, Action::Bind { .. } | Action::Submit { .. })));
}
