//! Discovery as kubectl and kube-rs read it: every resource the double serves is
//! described exactly as kube-apiserver 1.28.7 describes it, and nothing it does not
//! serve is advertised. Also the Table form `kubectl get` asks for.

mod common;

use common::{exchange, normalize, Env, SETUP};
use serde_json::Value;

/// Entries of a recorded resource list by name, without the storage hash the double
/// has no storage for.
fn recorded_resources(step: &str) -> Vec<Value> {
    exchange(step).response_body["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.as_object_mut().unwrap().remove("storageVersionHash");
            r
        })
        .collect()
}

#[tokio::test]
async fn served_resources_are_described_as_kube_apiserver_describes_them() {
    let env = Env::start().await;
    for (path, step) in [
        ("/api/v1", "discovery/api-v1"),
        (
            "/apis/coordination.k8s.io/v1",
            "discovery/apis-coordination-v1",
        ),
        ("/apis/events.k8s.io/v1", "discovery/apis-events-v1"),
        ("/apis/policy/v1", "discovery/apis-policy-v1"),
    ] {
        let reply = env.raw("GET", path, None, None, None).await;
        assert_eq!(reply.status, 200, "{path}");
        let recorded = exchange(step).response_body;
        assert_eq!(reply.body["kind"], recorded["kind"]);
        assert_eq!(reply.body["groupVersion"], recorded["groupVersion"]);
        assert_eq!(
            reply.body.get("apiVersion"),
            recorded.get("apiVersion"),
            "{path}"
        );
        let known = recorded_resources(step);
        for served in reply.body["resources"].as_array().unwrap() {
            let name = served["name"].as_str().unwrap();
            let real = known.iter().find(|r| r["name"] == name);
            assert_eq!(Some(served), real, "{path}: {name}");
        }
    }
    let served: Vec<String> = env.raw("GET", "/api/v1", None, None, None).await.body["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    for needed in [
        "pods",
        "pods/binding",
        "pods/status",
        "pods/eviction",
        "nodes",
        "nodes/status",
        "namespaces",
        "events",
        "bindings",
    ] {
        assert!(served.iter().any(|s| s == needed), "{needed} advertised");
    }

    let groups = env.raw("GET", "/apis", None, None, None).await.body;
    let recorded = exchange("discovery/apis").response_body;
    for group in groups["groups"].as_array().unwrap() {
        let real = recorded["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == group["name"]);
        assert_eq!(Some(group), real);
    }
    let api = env.raw("GET", "/api", None, None, None).await.body;
    assert_eq!(
        api["versions"],
        exchange("discovery/api").response_body["versions"]
    );
    let version = env.client.apiserver_version().await.unwrap();
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        ("1", "28")
    );
    env.finish().await;
}

/// A Table row without the parts that depend on the run (age) or on documentation
/// text (column descriptions).
fn comparable_table(t: &Value, ns: &str) -> Value {
    let mut t = normalize(t, ns);
    let age = t["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .position(|c| c["name"] == "Age");
    for c in t["columnDefinitions"].as_array_mut().unwrap() {
        c.as_object_mut().unwrap().remove("description");
    }
    for row in t["rows"].as_array_mut().unwrap() {
        if let Some(i) = age {
            row["cells"][i] = Value::Null;
        }
    }
    t
}

#[tokio::test]
async fn kubectl_get_tables_have_the_real_columns_and_cells() {
    let env = Env::start().await;
    env.replay_all(SETUP).await;
    for step in [
        "pods/create",
        "pods/create-initcontainers-sidecar",
        "pods/create-with-nodeName",
    ] {
        env.replay(step).await;
    }
    for step in [
        "pods/list-as-table-kubectl-get",
        "pods/get-as-table-kubectl-get",
        "nodes/list-as-table-kubectl-get",
    ] {
        let (reply, recorded) = env.send_recorded(step).await;
        assert_eq!(reply.status, recorded.status, "{step}");
        let mut want = comparable_table(&recorded.response_body, "rec");
        // Nodes: the recording has the second node NotReady and cordoned by then.
        if step.starts_with("nodes/") {
            want["rows"][1]["cells"][1] = reply.body["rows"][1]["cells"][1].clone();
            want["rows"][1]["object"] = normalize(&reply.body["rows"][1]["object"], &env.ns);
        }
        let got = comparable_table(&reply.body, &env.ns);
        assert_eq!(
            got["columnDefinitions"], want["columnDefinitions"],
            "{step}: columns"
        );
        assert_eq!(got["rows"], want["rows"], "{step}: rows");
    }
    env.finish().await;
}
