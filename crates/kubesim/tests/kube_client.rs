//! The double through `kube::Api` and `kube::runtime`, the way the scheduler uses an API
//! server: typed CRUD, the binding and eviction subresources, status patches, delete
//! preconditions, leases with optimistic concurrency, both event APIs, paging, and a
//! watcher that survives dropped watches and expired versions.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::Env;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Binding, Event as CoreEvent, Namespace, ObjectReference, Pod};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{
    Api, DeleteParams, EvictParams, ListParams, Patch, PatchParams, PostParams, Preconditions,
};
use kube::runtime::watcher;
use serde_json::json;

const SCHEDULER: &str = "slurm-pod-scheduler";

/// Create the run's namespace (removed by `Env::finish` on a real cluster).
async fn namespace(env: &Env) -> String {
    let ns = env.ns.clone();
    let api: Api<Namespace> = Api::all(env.client.clone());
    let obj: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();
    ns
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "kc"}},
        "spec": {"schedulerName": SCHEDULER, "terminationGracePeriodSeconds": 10,
                 "containers": [{"name": "main", "image": "registry.k8s.io/pause:3.9",
                                 "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}}}]}
    }))
    .unwrap()
}

fn api_code(err: kube::Error) -> (u16, String) {
    match err {
        kube::Error::Api(status) => (status.code, status.reason),
        other => panic!("expected an API error, got {other}"),
    }
}

async fn bind(
    pods: &Api<Pod>,
    name: &str,
    node: &str,
    annotations: BTreeMap<String, String>,
) -> Result<(), kube::Error> {
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(name.into()),
            annotations: Some(annotations),
            ..Default::default()
        },
        target: ObjectReference {
            kind: Some("Node".into()),
            name: Some(node.into()),
            ..Default::default()
        },
    };
    pods.create_subresource::<Binding, serde_json::Value>(
        "binding",
        name,
        &PostParams::default(),
        &binding,
    )
    .await
    .map(|_| ())
}

#[tokio::test]
async fn typed_pod_lifecycle_with_binding_status_and_deletion() {
    let env = Env::start().await;
    let ns = namespace(&env).await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &ns);
    let created = pods
        .create(&PostParams::default(), &pod("p1"))
        .await
        .unwrap();
    let spec = created.spec.as_ref().unwrap();
    let requests = spec.containers[0]
        .resources
        .as_ref()
        .unwrap()
        .requests
        .as_ref()
        .unwrap();
    assert_eq!(requests["cpu"].0, "500m", "requests filled from limits");
    assert_eq!(
        created.status.as_ref().unwrap().phase.as_deref(),
        Some("Pending")
    );
    assert_eq!(spec.priority, Some(0));

    let job = BTreeMap::from([("sunk.coreweave.com/job-id".to_string(), "4711".to_string())]);
    bind(&pods, "p1", "node-a", job).await.unwrap();
    let bound = pods.get("p1").await.unwrap();
    assert_eq!(
        bound.spec.as_ref().unwrap().node_name.as_deref(),
        Some("node-a")
    );
    assert_eq!(
        bound.metadata.annotations.as_ref().unwrap()["sunk.coreweave.com/job-id"],
        "4711"
    );
    let again = bind(&pods, "p1", "node-b", BTreeMap::new())
        .await
        .unwrap_err();
    assert_eq!(api_code(again), (409, "Conflict".into()));
    assert_eq!(
        api_code(
            bind(&pods, "gone", "node-a", BTreeMap::new())
                .await
                .unwrap_err()
        )
        .0,
        404
    );

    let condition = json!({"status": {"conditions": [{"type": "DisruptionTarget", "status": "True",
        "reason": "PreemptionByScheduler", "message": "Slurm job 4711 ended"}]}});
    let patched = pods
        .patch_status("p1", &PatchParams::default(), &Patch::Strategic(condition))
        .await
        .unwrap();
    let types: Vec<String> = patched
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .map(|c| c.type_)
        .collect();
    assert_eq!(types, ["DisruptionTarget", "PodScheduled"]);

    let wrong_uid = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some("00000000-0000-0000-0000-000000000000".into()),
            resource_version: None,
        }),
        ..Default::default()
    };
    assert_eq!(
        api_code(pods.delete("p1", &wrong_uid).await.unwrap_err()).0,
        409
    );
    let uid = DeleteParams {
        preconditions: Some(Preconditions {
            uid: bound.metadata.uid.clone(),
            resource_version: None,
        }),
        grace_period_seconds: Some(5),
        ..Default::default()
    };
    let terminating = pods
        .delete("p1", &uid)
        .await
        .unwrap()
        .left()
        .expect("a bound pod stays");
    assert_eq!(terminating.metadata.deletion_grace_period_seconds, Some(5));
    assert!(pods.get("p1").await.is_ok(), "waits for the kubelet");
    pods.delete(
        "p1",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(api_code(pods.get("p1").await.unwrap_err()).0, 404);

    pods.create(&PostParams::default(), &pod("p2"))
        .await
        .unwrap();
    pods.delete("p2", &DeleteParams::default()).await.unwrap();
    assert_eq!(
        api_code(pods.get("p2").await.unwrap_err()).0,
        404,
        "an unbound pod goes at once"
    );
    env.finish().await;
}

#[tokio::test]
async fn eviction_marks_and_deletes_a_running_pod() {
    let env = Env::start().await;
    let ns = namespace(&env).await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &ns);
    pods.create(&PostParams::default(), &pod("ev"))
        .await
        .unwrap();
    bind(&pods, "ev", "node-a", BTreeMap::new()).await.unwrap();
    pods.evict("ev", &EvictParams::default()).await.unwrap();
    let evicted = pods.get("ev").await.unwrap();
    assert!(evicted.metadata.deletion_timestamp.is_some());
    let conditions = evicted.status.unwrap().conditions.unwrap();
    let target = conditions
        .iter()
        .find(|c| c.type_ == "DisruptionTarget")
        .unwrap();
    assert_eq!(target.reason.as_deref(), Some("EvictionByEvictionAPI"));
    env.finish().await;
}

#[tokio::test]
async fn leases_are_optimistically_concurrent() {
    let env = Env::start().await;
    let ns = namespace(&env).await;
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), &ns);
    let lease: Lease = serde_json::from_value(json!({"metadata": {"name": SCHEDULER},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}}))
    .unwrap();
    let mut held = leases.create(&PostParams::default(), &lease).await.unwrap();
    let stale = held.clone();
    held.spec.as_mut().unwrap().holder_identity = Some("b".into());
    let renewed = leases
        .replace(SCHEDULER, &PostParams::default(), &held)
        .await
        .unwrap();
    assert_ne!(
        renewed.metadata.resource_version,
        stale.metadata.resource_version
    );
    let err = leases
        .replace(SCHEDULER, &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert_eq!(api_code(err), (409, "Conflict".into()));
    env.finish().await;
}

#[tokio::test]
async fn both_event_apis_share_one_storage_and_select_by_their_fields() {
    let env = Env::start().await;
    let ns = namespace(&env).await;
    let events: Api<Event> = Api::namespaced(env.client.clone(), &ns);
    let event = Event {
        metadata: ObjectMeta {
            name: Some("p.1".into()),
            ..Default::default()
        },
        event_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
        reporting_controller: Some(SCHEDULER.into()),
        reporting_instance: Some("r0".into()),
        action: Some("Binding".into()),
        reason: Some("Scheduled".into()),
        note: Some("Bound to node-a (Slurm job 4711)".into()),
        type_: Some("Normal".into()),
        regarding: Some(ObjectReference {
            kind: Some("Pod".into()),
            name: Some("p".into()),
            namespace: Some(ns.clone()),
            ..Default::default()
        }),
        ..Default::default()
    };
    events.create(&PostParams::default(), &event).await.unwrap();
    let core: Api<CoreEvent> = Api::namespaced(env.client.clone(), &ns);
    let listed = core
        .list(&ListParams::default().fields("involvedObject.name=p"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(
        listed.items[0].message.as_deref(),
        Some("Bound to node-a (Slurm job 4711)")
    );
    let by_regarding = events
        .list(&ListParams::default().fields("regarding.name=p"))
        .await
        .unwrap();
    assert_eq!(by_regarding.items[0].note, event.note);
    let refused = events
        .list(&ListParams::default().fields("involvedObject.name=p"))
        .await
        .unwrap_err();
    assert_eq!(api_code(refused).0, 400);
    env.finish().await;
}

#[tokio::test]
async fn paging_walks_every_pod_once() {
    let env = Env::start().await;
    let ns = namespace(&env).await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &ns);
    for i in 0..7 {
        pods.create(&PostParams::default(), &pod(&format!("page-{i}")))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut params = ListParams::default().limit(3);
    loop {
        let page = pods.list(&params).await.unwrap();
        seen.extend(page.items.into_iter().map(|p| p.metadata.name.unwrap()));
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => break,
        }
    }
    assert_eq!(
        seen,
        (0..7).map(|i| format!("page-{i}")).collect::<Vec<_>>()
    );
    env.finish().await;
}

type PodEvents = futures::stream::BoxStream<'static, Result<watcher::Event<Pod>, watcher::Error>>;

/// Read watcher events until one names `want`.
async fn wait_for(
    stream: &mut PodEvents,
    names: &mut std::collections::BTreeSet<String>,
    want: &str,
) {
    tokio::time::timeout(Duration::from_secs(30), async {
        while !names.contains(want) {
            match stream.next().await.expect("watcher stream continues") {
                Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => {
                    names.insert(p.metadata.name.unwrap());
                }
                Ok(_) => {}
                Err(e) => eprintln!("watcher error (retried): {e}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("watcher never saw {want}"));
}

/// A watcher keeps going when its watch is dropped or its version expires, and sees
/// pods created meanwhile (the "watch expires" case).
#[tokio::test]
async fn a_runtime_watcher_survives_dropped_and_expired_watches() {
    let env = Env::start_with(kubesim::Config {
        history_limit: 20,
        ..Default::default()
    })
    .await;
    let Some(server) = env.server() else {
        eprintln!("skipped on a real cluster: needs kubesim's fault controls");
        return;
    };
    let ns = namespace(&env).await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &ns);
    let config = watcher::Config::default().fields(&format!("spec.schedulerName={SCHEDULER}"));
    let mut stream: PodEvents = watcher(pods.clone(), config).boxed();
    let mut names = std::collections::BTreeSet::new();
    pods.create(&PostParams::default(), &pod("w1"))
        .await
        .unwrap();
    wait_for(&mut stream, &mut names, "w1").await;

    // Drop the watch once it is open: the watcher re-watches and sees w2.
    let watches = |server: &kubesim::ServerHandle| {
        server
            .requests()
            .iter()
            .filter(|r| r.info.verb == "watch" && r.info.resource == "pods")
            .count()
    };
    let opened = async {
        while watches(server) == 0 {
            let _ = tokio::time::timeout(Duration::from_millis(50), stream.next()).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), opened)
        .await
        .expect("the watcher watches");
    server.end_watches();
    pods.create(&PostParams::default(), &pod("w2"))
        .await
        .unwrap();
    wait_for(&mut stream, &mut names, "w2").await;

    // Expire the watcher's version: churn a pod it does not select past the history
    // (its version stays behind), then drop the watch.
    let mut other = pod("other");
    other.spec.as_mut().unwrap().scheduler_name = None;
    pods.create(&PostParams::default(), &other).await.unwrap();
    for i in 0..40 {
        let patch = json!({"metadata": {"labels": {"churn": i.to_string()}}});
        pods.patch("other", &PatchParams::default(), &Patch::Merge(patch))
            .await
            .unwrap();
    }
    let lists = |server: &kubesim::ServerHandle| {
        server
            .requests()
            .iter()
            .filter(|r| r.info.verb == "list" && r.info.resource == "pods")
            .count()
    };
    let lists_before = lists(server);
    server.end_watches();
    pods.create(&PostParams::default(), &pod("w3"))
        .await
        .unwrap();
    wait_for(&mut stream, &mut names, "w3").await;
    assert!(
        lists(server) > lists_before,
        "the expired version made the watcher list again"
    );
    assert!(
        watches(server) >= 3,
        "watched, re-watched after the drop, and after the expiry"
    );

    env.finish().await;
}

/// The request log says who asked for what: verb, resource, subresource and user agent.
#[tokio::test]
async fn the_request_log_records_verb_resource_subresource_and_agent() {
    let env = Env::start().await;
    let Some(server) = env.server() else {
        eprintln!("skipped on a real cluster: the request log is kubesim's");
        return;
    };
    let ns = namespace(&env).await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &ns);
    pods.create(&PostParams::default(), &pod("logged"))
        .await
        .unwrap();
    server.clear_requests();
    let request = http::Request::patch(format!("/api/v1/namespaces/{ns}/pods/logged/status"))
        .header("User-Agent", "slurm-pod-scheduler/test")
        .header("Content-Type", "application/merge-patch+json")
        .body(br#"{"status":{"phase":"Running"}}"#.to_vec())
        .unwrap();
    let patched: Pod = env.client.request(request).await.unwrap();
    assert_eq!(patched.status.unwrap().phase.as_deref(), Some("Running"));
    let records = server.requests();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(
        (r.info.verb.as_str(), r.info.resource.as_str()),
        ("patch", "pods")
    );
    assert_eq!(r.info.subresource.as_deref(), Some("status"));
    assert_eq!(r.info.namespace.as_deref(), Some(ns.as_str()));
    assert_eq!(r.user_agent, "slurm-pod-scheduler/test");
    assert_eq!(r.status, 200);
    env.finish().await;
}

/// Deleting a namespace removes what it holds, then the namespace (here at once; on a
/// real cluster once the namespace controller is done).
#[tokio::test]
async fn deleting_a_namespace_removes_its_pods_and_itself() {
    let env = Env::start().await;
    let ns = namespace(&env).await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &ns);
    pods.create(&PostParams::default(), &pod("inside"))
        .await
        .unwrap();
    bind(&pods, "inside", "node-a", BTreeMap::new())
        .await
        .unwrap();
    let namespaces: Api<Namespace> = Api::all(env.client.clone());
    let answer = namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .unwrap();
    let terminating = answer
        .left()
        .expect("the namespace as it starts terminating");
    assert_eq!(
        terminating.status.unwrap().phase.as_deref(),
        Some("Terminating")
    );
    let gone = tokio::time::timeout(Duration::from_secs(60), async {
        while pods.get_opt("inside").await.unwrap().is_some()
            || namespaces.get_opt(&ns).await.unwrap().is_some()
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(gone.is_ok(), "pod and namespace removed");
    env.finish().await;
}
