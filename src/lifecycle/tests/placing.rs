//! Pods before they are allocated: submits, refusals, waiting, changes, outages.

use std::sync::Arc;

use super::*;

#[test]
fn a_rejected_pod_is_told_once_and_reconsidered_only_when_it_changes() {
    let now = Instant::now();
    let mut life = PodLife::new();
    let bad = PodView {
        rejection: Some(Arc::new(("InvalidPod".into(), "no memory request".into()))),
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
        rejection: Some(Arc::new(("AnnotationConflict".into(), "pinned".into()))),
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
