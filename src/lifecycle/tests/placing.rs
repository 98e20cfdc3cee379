//! Pods before they are bound: submits, refusals, waiting, placement, binding.

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
fn a_rejected_pod_is_told_once_and_reconsidered_only_when_it_changes() {
    let now = Instant::now();
    let mut life = PodLife::new();
    let bad = PodView {
        rejection: Some(("InvalidPod".into(), "no memory request".into())),
        ..pod()
    };
    let a = life.observe(Observation::Pod(bad.clone()), now, &t());
    assert_eq!(
        a,
        vec![
            Action::Condition {
                reason: "InvalidPod",
                message: "no memory request".into()
            },
            Action::Event {
                kind: EventKind::Warning,
                reason: "FailedScheduling",
                message: "no memory request".into()
            },
        ]
    );
    assert!(life.observe(Observation::Pod(bad), now, &t()).is_empty());

    let fixed = PodView {
        fingerprint: 2,
        ..pod()
    };
    let a = life.observe(Observation::Pod(fixed), now, &t());
    assert_eq!(a, vec![Action::Submit { exclude: vec![] }]);
}

#[test]
fn annotation_conflict_keeps_its_reason() {
    let mut life = PodLife::new();
    let bad = PodView {
        rejection: Some(("AnnotationConflict".into(), "pinned".into())),
        ..pod()
    };
    let a = life.observe(Observation::Pod(bad), Instant::now(), &t());
    assert!(matches!(
        a[0],
        Action::Condition {
            reason: "AnnotationConflict",
            ..
        }
    ));
}

#[test]
fn a_gated_pod_waits_for_its_gates() {
    let now = Instant::now();
    let mut life = PodLife::new();
    let gated = PodView {
        gated: true,
        ..pod()
    };
    assert!(life.observe(Observation::Pod(gated), now, &t()).is_empty());
    assert_eq!(life.stage, Stage::New);
    let a = life.observe(Observation::Pod(pod()), now, &t());
    assert_eq!(a, vec![Action::Submit { exclude: vec![] }]);
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
fn a_pod_gone_during_its_submit_gets_the_job_cancelled_when_the_answer_comes() {
    let now = Instant::now();
    let mut life = PodLife::new();
    life.observe(Observation::Pod(pod()), now, &t());
    assert!(life.observe(Observation::PodGone, now, &t()).is_empty());
    let a = life.observe(
        Observation::Submitted(SubmitOutcome::Accepted(4)),
        now,
        &t(),
    );
    assert_eq!(
        a,
        vec![Action::Cancel {
            job: 4,
            reason: CancelReason::PodDeletedWhilePending
        }]
    );
}

#[test]
fn refused_submits_back_off_doubling_up_to_ten_minutes() {
    let start = Instant::now();
    let mut life = PodLife::new();
    life.observe(Observation::Pod(pod()), start, &t());
    let mut now = start;
    let mut waits = Vec::new();
    for _ in 0..10 {
        let a = life.observe(
            Observation::Submitted(SubmitOutcome::Refused(
                "partition `gpu` does not exist".into(),
            )),
            now,
            &t(),
        );
        let wake = a.iter().find_map(|a| match a {
            Action::WakeAt(at) => Some(*at),
            _ => None,
        });
        let wake = wake.expect("a retry timer");
        waits.push((wake - now).as_secs());
        // Too early: nothing.
        assert!(life.observe(Observation::Tick, now, &t()).is_empty());
        now = wake;
        assert_eq!(
            life.observe(Observation::Tick, now, &t()),
            vec![Action::Submit { exclude: vec![] }]
        );
    }
    assert_eq!(waits, vec![5, 10, 20, 40, 80, 160, 320, 600, 600, 600]);
}

#[test]
fn slurm_refusal_is_a_condition_and_an_event_with_slurms_words() {
    let now = Instant::now();
    let mut life = PodLife::new();
    life.observe(Observation::Pod(pod()), now, &t());
    let a = life.observe(
        Observation::Submitted(SubmitOutcome::Refused("no node has features `arm`".into())),
        now,
        &t(),
    );
    let msg = "Slurm refused the placeholder job: no node has features `arm`".to_string();
    assert_eq!(
        a[0],
        Action::Condition {
            reason: "SlurmRejected",
            message: msg.clone()
        }
    );
    assert_eq!(
        a[1],
        Action::Event {
            kind: EventKind::Warning,
            reason: "FailedScheduling",
            message: msg
        }
    );
}

#[test]
fn an_unanswered_submit_is_retried_and_says_slurm_is_unreachable() {
    let now = Instant::now();
    let mut life = PodLife::new();
    life.observe(Observation::Pod(pod()), now, &t());
    let a = life.observe(
        Observation::Submitted(SubmitOutcome::Unknown("timed out".into())),
        now,
        &t(),
    );
    assert!(
        matches!(&a[0], Action::Condition { reason: "Unschedulable", message } if message.contains("unreachable"))
    );
    let a = life.observe(Observation::Tick, now + Duration::from_secs(5), &t());
    assert_eq!(a, vec![Action::Submit { exclude: vec![] }]);
}

#[test]
fn bind_conflict_on_the_same_node_is_success() {
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
            slurm_node: "n1".into(),
        }),
        now,
        &t(),
    );
    life.observe(
        Observation::Placed {
            slurm_node: "n1".into(),
            fit: NodeFit::Usable("n1".into()),
        },
        now,
        &t(),
    );
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
            slurm_node: "n1".into(),
        }),
        now,
        &t(),
    );
    life.observe(
        Observation::Placed {
            slurm_node: "n1".into(),
            fit: NodeFit::Usable("n1".into()),
        },
        now,
        &t(),
    );
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
            slurm_node: "n1".into(),
        }),
        now,
        &t(),
    );
    life.observe(
        Observation::Placed {
            slurm_node: "n1".into(),
            fit: NodeFit::Usable("n1".into()),
        },
        now,
        &t(),
    );
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
fn a_change_during_the_submit_replaces_the_job_when_it_is_accepted() {
    let now = Instant::now();
    let mut life = PodLife::new();
    life.observe(Observation::Pod(pod()), now, &t());
    assert!(life
        .observe(
            Observation::Pod(PodView {
                fingerprint: 2,
                ..pod()
            }),
            now,
            &t()
        )
        .is_empty());
    let a = life.observe(
        Observation::Submitted(SubmitOutcome::Accepted(7)),
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
fn a_pod_resumed_after_a_restart_reports_no_change() {
    let now = Instant::now();
    let mut life = PodLife::new();
    let p = PodView {
        bound_job: Some(11),
        fingerprint: 5,
        ..running_on("node-2")
    };
    assert!(life
        .observe(Observation::Pod(p.clone()), now, &t())
        .is_empty());
    assert!(life.observe(Observation::Pod(p), now, &t()).is_empty());
}

#[test]
fn a_hopeless_pending_reason_is_reported_as_a_refusal() {
    let now = Instant::now();
    let mut life = PodLife::new();
    life.observe(Observation::Pod(pod()), now, &t());
    life.observe(
        Observation::Submitted(SubmitOutcome::Accepted(5)),
        now,
        &t(),
    );
    let a = life.observe(
        Observation::Job(JobView::Pending {
            reason: "PartitionConfig".into(),
        }),
        now,
        &t(),
    );
    assert!(
        matches!(&a[0], Action::Condition { reason: "SlurmRejected", message } if message.contains("PartitionConfig"))
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
