//! The submit bodies each version gets: the shapes the real daemons accepted (see the
//! integration tests) and the traps they must avoid.

use serde_json::json;

use super::*;
use crate::job::{Exclusivity, TimeLimit};

fn job() -> PlaceholderJob {
    PlaceholderJob {
        name: "ns/pod-a".into(),
        comment: "slurm-pod-scheduler/v1 scheduler=s uid=u".into(),
        cpus_per_task: 2,
        memory_per_node_mb: 1024,
        gres: Some("gpu:2".into()),
        partition: Some("gpu".into()),
        constraint: Some("a100|h100".into()),
        account: Some("research".into()),
        qos: Some("high".into()),
        user_id: None,
        group_id: None,
        exclusive: Some(Exclusivity::None),
        time_limit: Some(TimeLimit::Minutes(90)),
        reservation: Some("maint".into()),
        excluded_nodes: Vec::new(),
    }
}

#[test]
fn v0038_body() {
    let b = submit_body(ApiVersion::V0038, &job(), &SubmitOptions::default()).unwrap();
    let j = &b["job"];
    assert_eq!(b["script"], json!(PLACEHOLDER_SCRIPT));
    assert_eq!(j["environment"], json!({"PATH": "/bin:/usr/bin"}));
    assert_eq!(j["memory_per_node"], json!(1024));
    assert_eq!(j["time_limit"], json!(90));
    assert_eq!(j["exclusive"], json!("exclusive"));
    assert_eq!(j["gres"], json!("gpu:2"));
    assert_eq!(j["constraints"], json!("a100|h100"));
    assert_eq!(j["reservation"], json!("maint"));
    assert_eq!(j["standard_output"], json!("/dev/null"));
    assert_eq!(j["current_working_directory"], json!("/tmp"));
    assert_eq!(j["requeue"], json!(false));
    // A non-empty argv crashes slurmrestd 22.05; ids are refused keys.
    assert!(j.get("argv").is_none() && j.get("user_id").is_none());
}

#[test]
fn v0038_refuses_what_it_cannot_express() {
    let mut with_uid = job();
    with_uid.user_id = Some(7001);
    with_uid.group_id = Some(7001);
    let err = submit_body(ApiVersion::V0038, &with_uid, &SubmitOptions::default()).unwrap_err();
    assert!(err.to_string().contains("too old"), "{err}");
    // Mapped to a user name: submitted as that user, ids left out of the body.
    let opts = SubmitOptions {
        run_as_user: Some("alice".into()),
    };
    let b = submit_body(ApiVersion::V0038, &with_uid, &opts).unwrap();
    assert!(b["job"].get("user_id").is_none() && b["job"].get("group_id").is_none());

    // Excluded nodes cannot be expressed: left out, not refused (the scheduler cancels an
    // allocation on such a node instead).
    let mut excluding = job();
    excluding.excluded_nodes = vec!["node-1".into()];
    let b = submit_body(ApiVersion::V0038, &excluding, &SubmitOptions::default()).unwrap();
    assert!(b["job"].get("excluded_nodes").is_none() && b["job"].get("required_nodes").is_none());
}

#[test]
fn v004x_bodies() {
    let mut j = job();
    j.user_id = Some(7001);
    j.excluded_nodes = vec!["node-1".into(), "node-3".into()];
    for v in [ApiVersion::V0040, ApiVersion::V0041, ApiVersion::V0042] {
        let b = submit_body(v, &j, &SubmitOptions::default()).unwrap();
        let body = &b["job"];
        assert!(
            b.get("script").is_none(),
            "{v}: the script goes inside the job"
        );
        assert_eq!(body["script"], json!(PLACEHOLDER_SCRIPT));
        assert_eq!(body["environment"], json!(["PATH=/bin:/usr/bin"]));
        assert_eq!(
            body["memory_per_node"],
            json!({"set": true, "number": 1024})
        );
        assert_eq!(body["time_limit"], json!({"set": true, "number": 90}));
        assert_eq!(body["shared"], json!(["none"]));
        assert_eq!(body["tres_per_node"], json!("gres/gpu:2"));
        assert_eq!(body["excluded_nodes"], json!(["node-1", "node-3"]));
        // Numeric strings only: a group name crashes slurmrestd 24.11.
        assert_eq!(body["user_id"], json!("7001"));
        assert_eq!(
            body["group_id"],
            json!("7001"),
            "group defaults to the user id"
        );
        assert_eq!(body["requeue"], json!(false));
        assert!(body.get("argv").is_none());
    }
}

#[test]
fn optional_fields_are_left_out() {
    let mut j = job();
    j.gres = None;
    j.partition = None;
    j.constraint = None;
    j.account = None;
    j.qos = None;
    j.reservation = None;
    j.exclusive = Some(Exclusivity::Ok);
    j.time_limit = Some(TimeLimit::Infinite);
    let b = submit_body(ApiVersion::V0042, &j, &SubmitOptions::default()).unwrap();
    for key in [
        "tres_per_node",
        "partition",
        "constraints",
        "account",
        "qos",
        "shared",
    ] {
        assert!(b["job"].get(key).is_none(), "{key}");
    }
    assert_eq!(
        b["job"]["time_limit"],
        json!({"set": true, "infinite": true})
    );
    let b = submit_body(ApiVersion::V0038, &j, &SubmitOptions::default()).unwrap();
    assert!(b["job"].get("exclusive").is_none());
    assert_eq!(b["job"]["time_limit"], json!(u32::MAX));
}

#[test]
fn gres_prefixes_are_normalised() {
    for g in ["gpu:1", "gres/gpu:1", "gres:gpu:1"] {
        let mut j = job();
        j.gres = Some(g.into());
        let b = submit_body(ApiVersion::V0041, &j, &SubmitOptions::default()).unwrap();
        assert_eq!(b["job"]["tres_per_node"], json!("gres/gpu:1"), "{g}");
        let b = submit_body(ApiVersion::V0038, &j, &SubmitOptions::default()).unwrap();
        assert_eq!(b["job"]["gres"], json!("gpu:1"), "{g}");
    }
}
