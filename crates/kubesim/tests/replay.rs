//! Replays the kube-apiserver 1.28.7 recording section by section and checks every
//! answer: status code, body (run-specific values aside) and resourceVersion relations.
//! A section's test replays the sections before it too, since the recording's requests
//! build on each other's state.
//!
//! Sections and what they check: namespaces and nodes (create, 409, 404, selectors,
//! status split); pods (defaults, 409/404/422, generateName, fieldValidation, field and
//! label selectors with their 400s, paging, `resourceVersion=0`); binding; status
//! (strategic merge vs merge vs JSON patch, stale 409, phase changes); update
//! (immutable spec 422, stale 409, name mismatch); delete (immediate vs graceful,
//! shorter grace, preconditions, finalizers, collection); eviction; events (both APIs,
//! one storage); leases (optimistic concurrency, PUT creates).

mod common;

use common::{exchange, Env};

async fn section(last_prefix: &str) {
    let env = Env::start().await;
    env.replay_through(last_prefix).await;
    env.finish().await;
}

#[tokio::test]
async fn namespaces_and_nodes() {
    section("nodes/list-fieldSelector-spec.unschedulable-after").await;
}

#[tokio::test]
async fn pods_create_get_list_and_paging() {
    section("nodes/list-informer-style").await;
}

#[tokio::test]
async fn binding() {
    section("binding/pod-created-with-nodeName-bind-409").await;
}

#[tokio::test]
async fn status_subresource_and_patch_types() {
    section("status/").await;
}

#[tokio::test]
async fn updates() {
    section("update/").await;
}

#[tokio::test]
async fn deletion_finalizers_and_collections() {
    section("delete/").await;
}

#[tokio::test]
async fn eviction() {
    section("eviction/").await;
}

#[tokio::test]
async fn watch_writes_events_and_leases() {
    section("leases/").await;
}

/// deletionTimestamp = first delete + grace; a shorter grace counts from the first
/// delete too; a longer one changes nothing.
#[tokio::test]
async fn graceful_deletion_deadlines_follow_the_first_delete() {
    use k8s_openapi::jiff::{SignedDuration, Timestamp};
    let env = Env::start().await;
    env.replay_through("delete/create-bound").await;
    let started = Timestamp::now();
    let first = env.replay("delete/bound-grace20").await.body;
    let deadline = |v: &serde_json::Value| -> Timestamp {
        v["metadata"]["deletionTimestamp"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    let first_deadline = deadline(&first);
    let lower = started + SignedDuration::from_secs(19);
    let upper = Timestamp::now() + SignedDuration::from_secs(21);
    assert!(
        first_deadline >= lower && first_deadline <= upper,
        "{first_deadline}"
    );
    let longer = env.replay("delete/bound-again-grace30-longer").await.body;
    assert_eq!(
        longer["metadata"], first["metadata"],
        "a longer grace changes nothing"
    );
    let shorter = env.replay("delete/bound-again-grace10-shorter").await.body;
    assert_eq!(
        deadline(&shorter),
        first_deadline - SignedDuration::from_secs(10)
    );
    assert_eq!(shorter["metadata"]["deletionGracePeriodSeconds"], 10);
    env.finish().await;
}

/// Lists that must read storage at an old version fail with 410 once the history is
/// gone; lists served from the cache do not. Future and malformed versions are refused.
#[tokio::test]
async fn lists_at_versions_the_store_no_longer_has_or_does_not_have_yet() {
    let env = Env::start().await;
    env.replay_through("pods/list-limit1-page3-continue").await;
    for step in [
        "expired/list-rv-future-notolderthan",
        "expired/list-rv-future-exact",
        "expired/list-rv-not-a-number",
    ] {
        let reply = env.replay(step).await;
        if step.ends_with("future-notolderthan") {
            assert_eq!(reply.headers.get("retry-after").unwrap(), "1");
        }
    }
    let Some(server) = env.server() else {
        eprintln!("skipped the expiry half on a real cluster: it needs an etcd compaction");
        return env.finish().await;
    };
    // Writes happen after the list, then the history before them is compacted away.
    env.replay("binding/create").await;
    server.compact(kubesim::Resource::Pods);
    for step in [
        "expired/list-rv-old-exact-after-compaction",
        "expired/list-rv-old-limit-after-compaction",
        "expired/list-continue-token-from-before-compaction",
    ] {
        env.replay(step).await;
    }
    for step in [
        "expired/list-rv-old-notolderthan-after-compaction",
        "expired/list-rv-old-no-match-after-compaction",
        "expired/get-pod-rv-old",
    ] {
        let (reply, recorded) = env.send_recorded(step).await;
        assert_eq!(reply.status, recorded.status, "{step}: {}", reply.body);
    }
    // The fresh token in the 410 continues the list from where the old one stopped.
    let (expired, _) = env
        .send_recorded("expired/list-continue-token-from-before-compaction")
        .await;
    let token = expired.body["metadata"]["continue"].as_str().unwrap();
    let path = format!(
        "/api/v1/namespaces/{}/pods?limit=1&continue={token}",
        env.ns
    );
    let rest = env.raw("GET", &path, None, None, None).await;
    assert_eq!(rest.status, 200);
    let first_page = exchange("pods/list-limit1-page2-continue").response_body;
    assert_eq!(
        rest.body["items"][0]["metadata"]["name"],
        first_page["items"][0]["metadata"]["name"]
    );
    env.finish().await;
}

/// With the SidecarContainers gate on (as from 1.29), restartable init containers keep
/// their `restartPolicy` and any other value is refused.
#[tokio::test]
async fn sidecar_containers_gate_on() {
    let features = kubesim::pods::Features {
        sidecar_containers: true,
    };
    let env = Env::start_with(kubesim::Config {
        features,
        ..Default::default()
    })
    .await;
    if env.is_real() {
        eprintln!("note: on a real cluster this checks whatever its gate says (on from 1.29)");
    }
    env.replay_all(common::SETUP).await;
    for step in [
        "sidecar-gate-on/pods/create-initcontainers-sidecar",
        "sidecar-gate-on/pods/get",
        "sidecar-gate-on/pods/create-initcontainer-restartPolicy-OnFailure-invalid",
    ] {
        env.replay(step).await;
    }
    env.finish().await;
}
