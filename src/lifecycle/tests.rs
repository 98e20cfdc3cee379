//! Every path of a pod's life, one scenario per test, with the actions asserted exactly.

use super::*;

fn t() -> Timing {
    Timing {
        kill_wait: Duration::from_secs(30),
        termination_offset: Duration::from_secs(5),
        submit_backoff: Duration::from_secs(5),
        submit_backoff_max: Duration::from_secs(600),
        stuck_margin: Duration::from_secs(30),
    }
}

fn pod() -> PodView {
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

fn running_on(node: &str) -> PodView {
    PodView {
        node: Some(node.into()),
        phase: PodPhase::Running,
        ..pod()
    }
}

/// A life driven up to `Bound { job: 7, node: node-1 }`, with the clock it used.
fn bound() -> (PodLife, Instant) {
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

fn reasons(actions: &[Action]) -> Vec<&'static str> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Event { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect()
}

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
fn a_change_after_binding_is_ignored_with_one_event() {
    let (mut life, now) = bound();
    let changed = PodView { fingerprint: 9, ..running_on("node-1") };
    let a = life.observe(Observation::Pod(changed.clone()), now, &t());
    assert_eq!(reasons(&a), vec!["PlacementChangeIgnored"]);
    assert!(!a.iter().any(|a| matches!(a, Action::Cancel { .. } | Action::Submit { .. })));
    assert!(life.observe(Observation::Pod(changed), now, &t()).is_empty(), "said once");
}

#[test]
fn a_pod_resumed_after_a_restart_reports_no_change() {
    let now = Instant::now();
    let mut life = PodLife::new();
    let p = PodView { bound_job: Some(11), fingerprint: 5, ..running_on("node-2") };
    assert!(life.observe(Observation::Pod(p.clone()), now, &t()).is_empty());
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

/// A life whose job is queued as job 7.
fn queued() -> (PodLife, Instant) {
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
