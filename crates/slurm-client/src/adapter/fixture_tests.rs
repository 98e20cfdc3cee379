//! Decodes answers recorded from real slurmrestd daemons (22.05: v0.0.38; 24.11: v0.0.40,
//! v0.0.41, v0.0.42), kept under `tests/fixtures/<version>/` by `tests/fixtures/record`.

use super::*;
use crate::error::{classify_rejection, Asked};
use crate::job::{Exclusivity, TimeLimit};
use crate::types::BaseState;

const ALL: [ApiVersion; 4] = [
    ApiVersion::V0038,
    ApiVersion::V0040,
    ApiVersion::V0041,
    ApiVersion::V0042,
];

fn fixture(v: ApiVersion, name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/{v}/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn status(v: ApiVersion, name: &str) -> u16 {
    let path = format!(
        "{}/tests/fixtures/{v}/{name}.status",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn node_prefix(v: ApiVersion) -> &'static str {
    if v == ApiVersion::V0038 {
        "sim-node-"
    } else {
        "node-"
    }
}

#[test]
fn running_job_shows_every_requested_field() {
    for v in ALL {
        let a = Adapter::new(v);
        let jobs = a
            .decode_job_details("job/{id}", &fixture(v, "job_running"))
            .unwrap();
        let j = &jobs[0];
        let submitted: serde_json::Value = serde_json::from_slice(&fixture(v, "submit")).unwrap();
        assert_eq!(
            u64::from(j.status.job_id),
            submitted["job_id"].as_u64().unwrap(),
            "{v}"
        );
        assert_eq!(j.status.state.base, BaseState::Running, "{v}");
        assert!(j.status.state.holds_allocation(), "{v}");
        assert_eq!(j.status.reason, None, "{v}");
        assert_eq!(j.status.nodes.len(), 1, "{v}");
        assert!(j.status.nodes[0].starts_with(node_prefix(v)), "{v}");
        assert!(j.status.name.starts_with("fixtures/"), "{v}");
        let marker = j.status.marker.as_ref().expect("marker");
        assert_eq!(marker.scheduler, "recorder", "{v}");
        assert_eq!(j.partition, "hpc-prod", "{v}");
        assert_eq!(j.features, "amd", "{v}");
        assert_eq!(j.account, "research", "{v}");
        assert_eq!(j.cpus, Some(2), "{v}");
        assert_eq!(j.memory_per_node_mb, Some(300), "{v}");
        assert_eq!(j.time_limit, Some(TimeLimit::Minutes(90)), "{v}");
        assert_eq!(j.exclusivity, Some(Exclusivity::User), "{v}");
        assert!(j.tres_alloc.contains("cpu=2"), "{v}: {}", j.tres_alloc);
        if v.can_exclude_nodes() {
            assert_eq!(j.excluded_nodes, vec!["node-3".to_string()], "{v}");
            assert_eq!(j.requeue, Some(false), "{v}");
        }
    }
}

#[test]
fn pending_held_and_ended_jobs() {
    for v in ALL {
        let a = Adapter::new(v);
        let held = &a
            .decode_job_details("job/{id}", &fixture(v, "job_pending"))
            .unwrap()[0];
        assert!(held.status.state.is_pending(), "{v}");
        assert_eq!(held.status.reason.as_deref(), Some("JobHeldUser"), "{v}");
        assert!(held.status.nodes.is_empty(), "{v}");

        let cancelled = &a
            .decode_job_details("job/{id}", &fixture(v, "job_held_cancelled"))
            .unwrap()[0];
        assert_eq!(cancelled.status.state.base, BaseState::Cancelled, "{v}");

        // After SIGKILL the job is being torn down: never a held allocation.
        let killed = &a
            .decode_job_details("job/{id}", &fixture(v, "job_killed"))
            .unwrap()[0];
        assert!(
            !killed.status.state.holds_allocation(),
            "{v}: {}",
            killed.status.state
        );
        assert!(killed.status.state.has_flag("COMPLETING"), "{v}");
        if v == ApiVersion::V0038 {
            assert_eq!(killed.status.state.base, BaseState::EndedUnknown);
        } else {
            assert_eq!(killed.status.state.base, BaseState::Cancelled, "{v}");
        }
    }
}

#[test]
fn job_lists_and_the_unchanged_answer() {
    for v in ALL {
        let a = Adapter::new(v);
        let list = a.decode_job_list("jobs", &fixture(v, "jobs")).unwrap();
        assert!(list.jobs.len() >= 2, "{v}");
        assert!(list.jobs.iter().any(|j| j.marker.is_some()), "{v}");
        if v == ApiVersion::V0038 {
            assert_eq!(list.last_update, None);
            // 22.05 answers an unchanged update_time with 304 and an empty list.
            assert_eq!(status(v, "jobs_unchanged"), 304);
        } else {
            assert!(list.last_update.unwrap() > 1_700_000_000, "{v}");
            assert_eq!(status(v, "jobs_unchanged"), 200);
            let unchanged = a
                .decode_job_list("jobs", &fixture(v, "jobs_unchanged"))
                .unwrap();
            assert!(unchanged.jobs.is_empty(), "{v}");
            assert_eq!(
                unchanged.last_update, None,
                "{v}: last_update 0 must not be kept"
            );
        }
    }
}

#[test]
fn job_states_endpoint() {
    for v in [ApiVersion::V0040, ApiVersion::V0041, ApiVersion::V0042] {
        let a = Adapter::new(v);
        let states = a.decode_states(&fixture(v, "jobs_state")).unwrap();
        assert_eq!(states.len(), 2, "{v}");
        assert!(
            states.iter().any(|(_, s)| s.base == BaseState::Running),
            "{v}"
        );
        assert!(
            states.iter().any(|(_, s)| s.base == BaseState::Pending),
            "{v}"
        );
    }
}

#[test]
fn nodes_and_ping() {
    for v in ALL {
        let a = Adapter::new(v);
        let nodes = a.decode_nodes(&fixture(v, "nodes")).unwrap();
        assert_eq!(nodes.len(), 4, "{v}");
        let n0 = nodes
            .iter()
            .find(|n| n.name == format!("{}0", node_prefix(v)))
            .unwrap();
        assert!(
            n0.features.contains(&"intel".to_string()),
            "{v}: {:?}",
            n0.features
        );
        assert_eq!(n0.cpus, 8, "{v}");
        assert_eq!(n0.real_memory_mb, 16000, "{v}");
        assert!(!n0.state.is_empty(), "{v}");
        assert_eq!(
            a.decode_ping(&fixture(v, "ping")).unwrap(),
            PingStatus::Up,
            "{v}"
        );
    }
    // 24.11 answers a rejected token's ping with 200 and DOWN.
    for v in [ApiVersion::V0040, ApiVersion::V0041, ApiVersion::V0042] {
        let a = Adapter::new(v);
        assert_eq!(
            a.decode_ping(&fixture(v, "ping_bad_token")).unwrap(),
            PingStatus::Down
        );
    }
}

#[test]
fn submit_answers_and_rejections() {
    let asked = Asked {
        partition: Some("nosuch"),
        constraint: Some("arm"),
        account: Some("nosuchaccount"),
        qos: Some("nosuchqos"),
        gres: None,
        reservation: None,
        cpus: 64,
        memory_mb: 64000,
    };
    for v in ALL {
        let a = Adapter::new(v);
        assert!(
            a.decode_submit(&fixture(v, "submit")).unwrap().is_some(),
            "{v}"
        );
        // A held job is accepted with an id and an error next to it.
        assert!(
            a.decode_submit(&fixture(v, "submit_held"))
                .unwrap()
                .is_some(),
            "{v}"
        );

        let reject = |name: &str| {
            assert_eq!(status(v, name), 500, "{v} {name}");
            let errors = decode_errors(&fixture(v, name));
            classify_rejection(&errors[0], &asked).to_string()
        };
        assert_eq!(
            reject("submit_bad_partition"),
            "partition `nosuch` does not exist",
            "{v}"
        );
        assert_eq!(
            reject("submit_bad_feature"),
            "no node has features `arm`",
            "{v}"
        );
        // Recorded against --accounting clusters.
        assert_eq!(
            reject("submit_bad_account"),
            "account `nosuchaccount` does not exist or may not use this partition",
            "{v}"
        );
        assert_eq!(
            reject("submit_bad_qos"),
            "QoS `nosuchqos` does not exist or is not allowed for this account",
            "{v}"
        );
        let too_big = reject("submit_too_big_node");
        assert!(
            too_big.starts_with("no node has 64 CPUs and 64000 MB"),
            "{v}: {too_big}"
        );
    }
}

#[test]
fn cancelling_an_unknown_job() {
    // 22.05: a 500 with 2017; v0.0.42: a 200 with 2017 in `status`; v0.0.40/41: a plain 200.
    let errors = decode_errors(&fixture(ApiVersion::V0038, "cancel_unknown"));
    assert_eq!(errors[0].number, Some(2017));
    assert_eq!(
        decode_kill_codes(&fixture(ApiVersion::V0042, "cancel_unknown")),
        vec![2017]
    );
    for v in [ApiVersion::V0040, ApiVersion::V0041] {
        assert_eq!(status(v, "cancel_unknown"), 200);
        assert!(
            decode_kill_codes(&fixture(v, "cancel_unknown")).is_empty(),
            "{v}"
        );
        assert!(
            decode_errors(&fixture(v, "cancel_unknown")).is_empty(),
            "{v}"
        );
    }
}

#[test]
fn unknown_jobs_and_rejected_tokens() {
    for v in ALL {
        let errors = decode_errors(&fixture(v, "job_unknown"));
        assert_eq!(errors[0].number, Some(2017), "{v}");
        let code = status(v, "job_unknown");
        assert_eq!(code, if v == ApiVersion::V0038 { 500 } else { 404 }, "{v}");

        let bad = decode_errors(&fixture(v, "jobs_bad_token"));
        if v == ApiVersion::V0038 {
            // 22.05: a 500 with no usable error number.
            assert_eq!(status(v, "jobs_bad_token"), 500);
            assert!(bad
                .iter()
                .all(|e| !e.number.is_some_and(crate::error::is_known_job_error)));
        } else {
            assert_eq!(status(v, "jobs_bad_token"), 511, "{v}");
            assert_eq!(bad[0].number, Some(1007), "{v}");
        }
    }
}
