//! Watch semantics against the recorded kube-apiserver streams: event sequences and
//! their versions, selector transitions, bookmarks, initial state, and the `Expired`
//! error inside a 200 stream.

mod common;

use std::time::Duration;

use common::{watch_recording, Env, SETUP};
use serde_json::Value;

/// The recorded watch path with a shorter timeout, for streams whose timing is not
/// what the test is about.
fn path_with_timeout(recording: &Value, seconds: u64) -> String {
    let path = recording["path"].as_str().unwrap();
    let (base, query) = path.split_once('?').unwrap();
    let query: Vec<String> = query
        .split('&')
        .map(|kv| {
            if kv.starts_with("timeoutSeconds=") {
                format!("timeoutSeconds={seconds}")
            } else {
                kv.into()
            }
        })
        .collect();
    format!("{base}?{}", query.join("&"))
}

#[tokio::test]
async fn a_pods_life_in_one_watch_matches_the_recording() {
    let env = Env::start().await;
    env.replay_all(SETUP).await;
    env.send_recorded("watchseq/list-for-rv").await;
    let recorded = watch_recording("pods-sequence-20s");
    let watch = env.open_watch(&path_with_timeout(&recorded, 20));
    tokio::time::sleep(Duration::from_millis(300)).await;
    for step in [
        "watchseq/create",
        "watchseq/bind",
        "watchseq/status-patch",
        "watchseq/delete-graceful",
        "watchseq/delete-force",
    ] {
        env.replay(step).await;
    }
    let stream = watch.await.unwrap();

    // Same events, objects and versions as the real server, bookmarks aside (they depend
    // on the timeout and are checked below).
    let mut recorded_changes = recorded.clone();
    recorded_changes["events"] = Value::Array(
        recorded["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["event"]["type"] != "BOOKMARK")
            .cloned()
            .collect(),
    );
    let changes = common::Stream {
        events: stream
            .events
            .iter()
            .filter(|(_, e)| e["type"] != "BOOKMARK")
            .cloned()
            .collect(),
        closed_after: stream.closed_after,
    };
    env.assert_stream_matches(&changes, &recorded_changes, "pods-sequence");

    // The force delete shows as MODIFIED (grace 0) then DELETED at the next version.
    let events = changes.changes();
    let (modified, deleted) = (events[events.len() - 2], events[events.len() - 1]);
    assert_eq!(
        modified["object"]["metadata"]["deletionGracePeriodSeconds"],
        0
    );
    assert_eq!(
        common::rv(&deleted["object"]),
        common::rv(&modified["object"]) + 1
    );
    assert!(
        stream.closed_after >= Duration::from_secs(19),
        "closed at the timeout, not before"
    );
    env.finish().await;
}

#[tokio::test]
async fn selector_watches_turn_matching_changes_into_added_and_deleted() {
    let env = Env::start().await;
    env.replay_all(SETUP).await;
    env.send_recorded("watchsel/create-a").await;
    let names = [
        "pods-fieldSelector-schedulerName",
        "pods-fieldSelector-nodeName-empty",
        "pods-fieldSelector-nodeName-notempty",
        "pods-fieldSelector-phase-not-terminal",
        "pods-labelSelector-app-rec-not-sel-out",
    ];
    // The recorded watches started just before watchsel/create-a; ours start from the
    // version before it, so they see the same writes.
    let before_create = env
        .mapped("rv", "294")
        .map(|v| v.parse::<u64>().unwrap() - 1)
        .unwrap();
    let recordings: Vec<Value> = names.iter().map(|n| watch_recording(n)).collect();
    let watches: Vec<_> = recordings
        .iter()
        .map(|r| {
            let path = path_with_timeout(r, 20).replace(
                "resourceVersion=293",
                &format!("resourceVersion={before_create}"),
            );
            env.open_watch(&path)
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for step in [
        "watchsel/create-b",
        "watchsel/bind-a",
        "watchsel/bind-b",
        "watchsel/label-b-out",
        "watchsel/status-a-running",
        "watchsel/status-a-succeeded",
        "watchsel/delete-a",
        "watchsel/delete-b",
    ] {
        env.replay(step).await;
    }
    for ((watch, recording), name) in watches.into_iter().zip(&recordings).zip(names) {
        let stream = watch.await.unwrap();
        env.assert_stream_matches(&stream, recording, name);
    }
    env.finish().await;
}

#[tokio::test]
async fn bookmarks_come_only_when_asked_shortly_before_the_deadline() {
    let env = Env::start().await;
    env.replay_all(SETUP).await;
    let list = env.send_recorded("bookmark/list-for-rv").await.0;
    let recorded = watch_recording("pods-bookmarks-75s");
    let with = env.open_watch(&path_with_timeout(&recorded, 10));
    let without =
        env.open_watch(&path_with_timeout(&recorded, 10).replace("&allowWatchBookmarks=true", ""));
    tokio::time::sleep(Duration::from_millis(300)).await;
    for step in ["bookmark/create", "bookmark/patch-label", "bookmark/delete"] {
        env.replay(step).await;
    }
    // Writes to other resources do not move the bookmark's version.
    env.raw("POST", &format!("/apis/coordination.k8s.io/v1/namespaces/{}/leases", env.ns), Some(&serde_json::json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "rec-bm-lease"},
        "spec": {"holderIdentity": "x"}})), Some("application/json"), None).await;
    let with = with.await.unwrap();
    let without = without.await.unwrap();
    assert!(
        without.bookmarks().is_empty(),
        "no bookmark without allowWatchBookmarks"
    );
    assert_eq!(with.changes().len(), 4);

    let bookmarks = with.bookmarks();
    assert_eq!(
        bookmarks.len(),
        2,
        "two bookmarks before a 10 s deadline: {bookmarks:?}"
    );
    let last_pod_event = common::rv(&with.changes()[3]["object"]);
    let recorded_bookmark = &recorded["events"].as_array().unwrap().last().unwrap()["event"];
    for (at, bookmark) in &bookmarks {
        common::assert_same(bookmark, recorded_bookmark, &env.ns, "bookmark shape");
        assert_eq!(common::rv(&bookmark["object"]), last_pod_event);
        assert!(
            *at > Duration::from_secs(5) && *at < with.closed_after,
            "bookmark at {at:?}"
        );
    }
    assert!(common::rv(&list.body) < last_pod_event);
    env.finish().await;
}

#[tokio::test]
async fn watch_from_zero_or_unset_starts_with_the_current_pods() {
    let env = Env::start().await;
    // The recorded state when these watches ran: after the bookmark section.
    env.replay_through("bookmark/").await;
    for name in ["pods-rv0-initial-state", "pods-rv-unset-initial-state"] {
        let recorded = watch_recording(name);
        let stream = env
            .open_watch(recorded["path"].as_str().unwrap())
            .await
            .unwrap();
        // The cache sends the initial objects in its own order; compare by name.
        let by_name = |events: Vec<&Value>| {
            let mut v: Vec<Value> = events.into_iter().cloned().collect();
            v.sort_by_key(|e| {
                e["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .to_string()
            });
            v
        };
        let got = by_name(stream.changes());
        let want = by_name(
            recorded["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| &e["event"])
                .collect(),
        );
        assert_eq!(got.len(), want.len(), "{name}");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g["type"], "ADDED");
            common::assert_same(g, w, &env.ns, name);
            assert_eq!(
                Some(common::rv(&g["object"]).to_string()),
                env.mapped(
                    "rv",
                    w["object"]["metadata"]["resourceVersion"].as_str().unwrap()
                ),
                "{name}: object versions"
            );
        }
    }
    env.finish().await;
}

#[tokio::test]
async fn a_version_older_than_the_history_gets_expired_inside_a_200_stream() {
    let config = kubesim::Config {
        history_limit: 50,
        ..Default::default()
    };
    let env = Env::start_with(config).await;
    if env.is_real() {
        eprintln!("skipped on a real cluster: expiring the watch cache takes > 75 s of churn");
        return;
    }
    env.replay_all(SETUP).await;
    let old = env.send_recorded("bookmark/list-for-rv").await.0;
    env.replay("pods/create").await;
    for i in 0..60 {
        let patch = serde_json::json!({"metadata": {"labels": {"churn": i.to_string()}}});
        let reply = env
            .raw(
                "PATCH",
                "/api/v1/namespaces/rec/pods/rec-pod-a",
                Some(&patch),
                Some("application/merge-patch+json"),
                None,
            )
            .await;
        assert_eq!(reply.status, 200);
    }
    let recorded = watch_recording("pods-watch-old-rv-after-churn");
    assert_eq!(
        watch_recording("pods-watch-rv-1")["events"][0]["event"]["object"]["reason"],
        "Expired",
        "resourceVersion=1 expires the same way"
    );
    for asked in [common::rv(&old.body), 1] {
        let path = format!("/api/v1/namespaces/rec/pods?watch=1&resourceVersion={asked}&allowWatchBookmarks=true&timeoutSeconds=10");
        let stream = env.open_watch(&path).await.unwrap();
        assert_eq!(stream.events.len(), 1);
        let error = &stream.events[0].1;
        common::assert_same(error, &recorded["events"][0]["event"], &env.ns, "expired");
        let message = error["object"]["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("too old resource version: {asked} (")),
            "{message}"
        );
        assert!(
            stream.closed_after < Duration::from_secs(5),
            "closed right after the error"
        );
    }
    env.finish().await;
}

#[tokio::test]
async fn refused_watches_answer_like_the_real_server() {
    let env = Env::start().await;
    env.replay_all(SETUP).await;
    for name in [
        "pods-watch-rv-not-a-number",
        "pods-sendInitialEvents-watchlist-gate-off",
    ] {
        let recorded = watch_recording(name);
        let reply = env
            .raw("GET", recorded["path"].as_str().unwrap(), None, None, None)
            .await;
        assert_eq!(
            reply.status as u64,
            recorded["status"].as_u64().unwrap(),
            "{name}"
        );
        common::assert_same(&reply.body, &recorded["response_body"], &env.ns, name);
    }
    // A version from the future: no error, no events, closed at the timeout.
    let recorded = watch_recording("pods-watch-rv-future");
    let stream = env
        .open_watch(&path_with_timeout(&recorded, 2))
        .await
        .unwrap();
    assert!(stream.events.is_empty());
    env.finish().await;
}
