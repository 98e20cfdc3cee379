//! Fault injection, driven through the Rust handle and the `/kubesim/faults` admin
//! endpoint, and observed the way a client sees it: through `kube::Client`.
//!
//! Every test name contains `fault_injection`, so `cargo test -- fault_injection` runs
//! exactly these.

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::Client;
use kubesim::{Fault, Matcher, Resource, Server, ServerHandle};
use serde_json::json;

/// Generous: the machine is shared and slow at times.
const DEADLINE: Duration = Duration::from_secs(30);

async fn start() -> (ServerHandle, Client) {
    let server = Server::start(kubesim::Config::default()).await.unwrap();
    let client = client(&server, false).await;
    (server, client)
}

/// A client; `retry` keeps kube-rs' default retries of 429/503/504.
async fn client(server: &ServerHandle, retry: bool) -> Client {
    let mut config = server.kube_config().await.unwrap();
    config.default_retry = retry;
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static("fault-test/1"),
    ));
    Client::try_from(config).unwrap()
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "main", "image": "pause"}]}
    }))
    .unwrap()
}

fn api_status(result: Result<impl std::fmt::Debug, kube::Error>) -> kube::core::Status {
    match result {
        Err(kube::Error::Api(status)) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn fault_injection_fails_the_next_n_requests_of_a_kind() {
    let (server, client) = start().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("p"))
        .await
        .unwrap();
    let running = Patch::Merge(json!({"status": {"phase": "Running"}}));

    server
        .fail_next(
            Matcher::any()
                .verb("patch")
                .resource("pods")
                .subresource("status"),
            2,
            500,
        )
        .unwrap();
    // Other kinds of request pass untouched.
    pods.get("p").await.unwrap();
    pods.patch(
        "p",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
    )
    .await
    .unwrap();
    for _ in 0..2 {
        let status = api_status(
            pods.patch_status("p", &PatchParams::default(), &running)
                .await,
        );
        assert_eq!(status.code, 500);
        assert_eq!(status.reason, "InternalError");
        assert!(
            status.message.starts_with("Internal error occurred"),
            "{}",
            status.message
        );
    }
    let pod = pods
        .patch_status("p", &PatchParams::default(), &running)
        .await
        .unwrap();
    assert_eq!(pod.status.unwrap().phase.as_deref(), Some("Running"));

    server
        .fail_next(
            Matcher::any().verb("update").resource("pods").name("p"),
            1,
            409,
        )
        .unwrap();
    let current = pods.get("p").await.unwrap();
    let status = api_status(pods.replace("p", &PostParams::default(), &current).await);
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    assert!(
        status.message.contains("the object has been modified"),
        "{}",
        status.message
    );
    assert_eq!(status.details.unwrap().name, "p");
    pods.replace("p", &PostParams::default(), &current)
        .await
        .unwrap();
    assert!(server.active_faults().is_empty());

    // Injected answers are in the request log like any other, with the client's agent.
    let log = server.requests();
    let failed: Vec<_> = log.iter().filter(|r| r.status == 500).collect();
    assert_eq!(failed.len(), 2);
    assert!(failed.iter().all(|r| r.info.verb == "patch"
        && r.info.subresource.as_deref() == Some("status")
        && r.user_agent == "fault-test/1"));
    assert_eq!(log.iter().filter(|r| r.status == 409).count(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn fault_injection_429_carries_retry_after_and_kube_rs_retries_it() {
    let (server, raw) = start().await;
    let matcher = Matcher::any().verb("list").resource("pods");
    server.throttle_next(matcher.clone(), 1, Duration::from_secs(1));
    let request = http::Request::get("/api/v1/namespaces/default/pods")
        .body(kube::client::Body::empty())
        .unwrap();
    let response = raw.send(request).await.unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()[http::header::RETRY_AFTER], "1");
    let pods: Api<Pod> = Api::namespaced(raw.clone(), "default");
    pods.list(&ListParams::default()).await.unwrap();

    // A client with kube-rs' default retry policy sees only the success.
    server.throttle_next(matcher, 2, Duration::from_secs(1));
    server.clear_requests();
    let retrying: Api<Pod> = Api::namespaced(client(&server, true).await, "default");
    tokio::time::timeout(DEADLINE, retrying.list(&ListParams::default()))
        .await
        .expect("retried list within the deadline")
        .unwrap();
    let statuses: Vec<u16> = server.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 429, 200]);
    server.shutdown().await;
}

#[tokio::test]
async fn fault_injection_delays_responses_for_n_requests() {
    let (server, client) = start().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let delay = Duration::from_millis(1500);
    server.delay(
        Matcher::any().verb("list").resource("pods"),
        delay,
        Some(1),
        None,
    );
    assert_eq!(server.active_faults().len(), 1);
    let started = Instant::now();
    pods.list(&ListParams::default()).await.unwrap();
    assert!(
        started.elapsed() >= delay,
        "answered after {:?}",
        started.elapsed()
    );
    // Used up: the rule is gone and the next list is served as usual.
    assert!(server.active_faults().is_empty());
    pods.list(&ListParams::default()).await.unwrap();

    // A timed delay applies to every matching request until it runs out.
    server.delay(
        Matcher::any().resource("pods"),
        Duration::from_millis(300),
        None,
        Some(Duration::from_secs(60)),
    );
    let started = Instant::now();
    pods.create(&PostParams::default(), &pod("slow"))
        .await
        .unwrap();
    pods.get("slow").await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(600));
    server.clear_faults();
    assert!(server.active_faults().is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn fault_injection_next_watch_gets_410_expired() {
    let (server, client) = start().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("w"))
        .await
        .unwrap();
    let rv = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();

    server.expire_next_watch(Resource::Pods);
    let mut stream = pods
        .watch(&WatchParams::default().timeout(20), &rv)
        .await
        .unwrap()
        .boxed();
    let event = tokio::time::timeout(DEADLINE, stream.try_next())
        .await
        .unwrap()
        .unwrap();
    match event {
        Some(WatchEvent::Error(e)) => {
            assert_eq!((e.code, e.reason.as_str()), (410, "Expired"));
        }
        other => panic!("expected an Expired error event, got {other:?}"),
    }
    let end = tokio::time::timeout(DEADLINE, stream.try_next())
        .await
        .unwrap()
        .unwrap();
    assert!(end.is_none(), "the stream ends after the error");

    // Only the next one: the watch after it streams changes as usual.
    let mut stream = pods
        .watch(&WatchParams::default().timeout(20), &rv)
        .await
        .unwrap()
        .boxed();
    pods.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
    )
    .await
    .unwrap();
    let event = tokio::time::timeout(DEADLINE, stream.try_next())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(event, Some(WatchEvent::Modified(_))), "{event:?}");

    // kube-rs' watcher answers the 410 with a fresh list, as from a real server.
    server.expire_next_watch(Resource::Pods);
    server.end_watches();
    let events = kube::runtime::watcher(pods.clone(), Default::default());
    futures::pin_mut!(events);
    let mut inits = 0;
    let deadline = Instant::now() + DEADLINE;
    while inits < 2 && Instant::now() < deadline {
        match tokio::time::timeout(DEADLINE, events.next()).await.unwrap() {
            Some(Ok(kube::runtime::watcher::Event::InitDone)) => {
                inits += 1;
                if inits == 1 {
                    // The watch after the first list is the one that gets the 410.
                    server.expire_next_watch(Resource::Pods);
                    server.end_watches();
                }
            }
            Some(_) => {}
            None => break,
        }
    }
    assert_eq!(inits, 2, "the watcher re-listed after the injected 410");
    server.shutdown().await;
}

#[tokio::test]
async fn fault_injection_end_watches_closes_open_streams() {
    let (server, client) = start().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut stream = pods
        .watch(&WatchParams::default().timeout(120), "0")
        .await
        .unwrap()
        .boxed();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Through the admin endpoint this time.
    admin(&client, http::Method::POST, json!({"fault": "endWatches"}))
        .await
        .unwrap();
    let end = tokio::time::timeout(DEADLINE, stream.try_next())
        .await
        .expect("stream ended");
    assert!(matches!(end, Ok(None)), "{end:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn fault_injection_refuses_connections_for_a_while() {
    let (server, client) = start().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.list(&ListParams::default()).await.unwrap();
    server.refuse_connections(Duration::from_secs(3));
    // The pooled connection and any new one fail: no answer at all, not an API error.
    for fresh in [false, true] {
        let c = if fresh {
            self::client(&server, false).await
        } else {
            client.clone()
        };
        let result = Api::<Pod>::namespaced(c, "default")
            .list(&ListParams::default())
            .await;
        match result {
            Err(kube::Error::Api(s)) => panic!("expected a connection failure, got status {s:?}"),
            Err(_) => {}
            Ok(_) => panic!("a request was served while refusing connections"),
        }
    }
    assert_eq!(
        server.active_faults().len(),
        1,
        "{:?}",
        server.active_faults()
    );
    // Afterwards clients reconnect and are served.
    let deadline = Instant::now() + DEADLINE;
    loop {
        match pods.list(&ListParams::default()).await {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "still refused");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("not served again after refusing: {e}"),
        }
    }
    server.shutdown().await;
}

async fn admin(
    client: &Client,
    method: http::Method,
    body: serde_json::Value,
) -> Result<serde_json::Value, kube::Error> {
    let request = http::Request::builder()
        .method(method)
        .uri("/kubesim/faults")
        .header("Content-Type", "application/json")
        .body(serde_json::to_vec(&body).unwrap())
        .unwrap();
    let text = client.request_text(request).await?;
    Ok(serde_json::from_str(&text).unwrap())
}

#[tokio::test]
async fn fault_injection_admin_endpoint_takes_json_faults() {
    let (server, client) = start().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("a"))
        .await
        .unwrap();
    server.clear_requests();

    let fault = json!({"fault": "fail", "match": {"verb": "get", "resource": "pods", "name": "a"},
                       "status": 503, "count": 2});
    let listed = admin(&client, http::Method::POST, fault).await.unwrap();
    assert_eq!(listed["faults"][0]["remaining"], 2);
    assert_eq!(listed["faults"][0]["fault"]["status"], 503);
    for _ in 0..2 {
        let status = api_status(pods.get("a").await);
        assert_eq!(
            (status.code, status.reason.as_str()),
            (503, "ServiceUnavailable")
        );
    }
    pods.get("a").await.unwrap();

    // Parsed as Rust sees it too.
    let fault: Fault =
        serde_json::from_value(json!({"fault": "delay", "millis": 5, "seconds": 60})).unwrap();
    assert!(matches!(fault, Fault::Delay { millis: 5, .. }));
    admin(
        &client,
        http::Method::POST,
        json!({"fault": "expireWatch", "resource": "nodes"}),
    )
    .await
    .unwrap();
    let listed = admin(&client, http::Method::GET, json!({})).await.unwrap();
    assert_eq!(listed["faults"].as_array().unwrap().len(), 1);
    let listed = admin(&client, http::Method::DELETE, json!({}))
        .await
        .unwrap();
    assert_eq!(listed["faults"], json!([]));
    assert!(server.active_faults().is_empty());

    // Nonsense is refused with a Status, not half-applied.
    for bad in [
        json!({"fault": "fail", "status": 200}),
        json!({"fault": "fail", "status": 500, "bogus": 1}),
        json!({"fault": "expireWatch", "resource": "deployments"}),
        json!({"fault": "refuseConnections", "seconds": -1}),
    ] {
        let status = match admin(&client, http::Method::POST, bad.clone()).await {
            Err(kube::Error::Api(s)) => s,
            other => panic!("{bad} accepted: {other:?}"),
        };
        assert_eq!(status.code, 400, "{bad}");
    }
    assert!(server.active_faults().is_empty());

    // The admin endpoint is neither logged nor faulted.
    let log = server.requests();
    assert!(
        log.iter().all(|r| !r.info.path.starts_with("/kubesim")),
        "{log:?}"
    );
    assert_eq!(log.len(), 3);
    server.shutdown().await;
}

#[tokio::test]
async fn fault_injection_request_log_is_served_as_json_too() {
    let (server, client) = start().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    server
        .fail_next(Matcher::any().verb("create"), 1, 500)
        .unwrap();
    assert_eq!(
        api_status(pods.create(&PostParams::default(), &pod("x")).await).code,
        500
    );
    pods.create(&PostParams::default(), &pod("x"))
        .await
        .unwrap();
    let request = http::Request::get("/kubesim/requests")
        .body(Vec::new())
        .unwrap();
    let log: serde_json::Value =
        serde_json::from_str(&client.request_text(request).await.unwrap()).unwrap();
    let log = log["requests"].as_array().unwrap();
    let seen: Vec<_> = log
        .iter()
        .map(|r| (r["verb"].as_str().unwrap(), r["status"].as_u64().unwrap()))
        .collect();
    assert_eq!(seen, [("create", 500), ("create", 201)]);
    assert_eq!(log[1]["resource"], "pods");
    assert_eq!(log[1]["namespace"], "default");
    assert_eq!(log[1]["userAgent"], "fault-test/1");
    assert!(log[1]["timeMillis"].as_u64().unwrap() >= log[0]["timeMillis"].as_u64().unwrap());
    server.shutdown().await;
}
