//! The scheduler under failure: expired watches, an API server that is down at start, a
//! restart between submit and bind, two replicas with leader election, and slurmrestd
//! unreachable for longer than MinJobAge while Slurm and Kubernetes both change.

#[macro_use]
mod support;

use std::time::{Duration, Instant};

use kube::api::{DeleteParams, PostParams};
use serde_json::json;
use slurm_pod_scheduler::leader::LeaseConfig;
use support::proxy::Proxy;
use support::{
    block_solo, jobs_named, node_of, phase, scheduled_message, solo_pod, wait_for, wait_ready,
    Harness, DEADLINE,
};

static SOLO: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn an_expired_watch_is_relisted_and_a_pod_created_in_the_gap_is_placed() {
    let h = harness!("expired");
    let Some(server) = h.kubesim.as_ref() else {
        eprintln!("SKIPPED: needs kubesim to expire watches");
        return;
    };
    h.create(&h.pod("before", json!({}))).await;
    h.wait_bound("before").await;
    // Forget the pods' history and end every watch: the scheduler's resumed watch gets
    // 410 Gone and must relist. A pod created right then is in the relist only.
    server.compact(kubesim::Resource::Pods);
    server.end_watches();
    h.create(&h.pod("during", json!({}))).await;
    h.wait_bound("during").await;
    assert_eq!(
        jobs_named(&h, "before").await.len(),
        1,
        "no second job for the first pod"
    );
    h.finish().await;
}

#[tokio::test]
async fn a_scheduler_started_while_the_api_server_is_down_places_pods_once_it_is_up() {
    let Some(slurm) = support::SlurmEnv::from_env() else {
        return;
    };
    if std::env::var("SPS_TEST_KUBECONFIG").is_ok_and(|v| !v.is_empty()) {
        eprintln!("SKIPPED: needs kubesim to play an API server outage");
        return;
    }
    // Pick a port, and point the scheduler at it before anything listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let token = "down-at-start-token".to_string();
    let mut config = kube::Config::new(format!("http://{addr}").parse().unwrap());
    config.auth_info.token = Some(token.clone().into());
    let client = kube::Client::try_from(config.clone()).unwrap();

    let scheduler = support::unique("sps-down");
    let ns = support::unique("t-down");
    let settings = support::test_settings(&slurm, &scheduler, &ns);
    let running = slurm_pod_scheduler::run::start(settings, config)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !*running.ready.borrow(),
        "not ready while the API server is down"
    );
    let readyz = reqwest_get(&format!("http://{}/readyz", running.metrics_addr)).await;
    assert_eq!(readyz, 503);

    let server = kubesim::Server::start(kubesim::Config {
        listen: addr,
        token: Some(token),
        namespaces: vec!["default".into(), "kube-node-lease".into(), ns.clone()],
        ..Default::default()
    })
    .await
    .expect("starting kubesim on the chosen port");
    let came_up = Instant::now();
    let nodes = slurm
        .nodes
        .iter()
        .map(|n| kubelet_sim::NodeSpec::new(n.clone()))
        .collect();
    let _kubelet =
        kubelet_sim::KubeletHandle::start(client.clone(), kubelet_sim::KubeletConfig::new(nodes))
            .await
            .unwrap();
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(client.clone(), &ns);
    let pod = json!({"metadata": {"name": "late", "namespace": ns}, "spec": {
        "schedulerName": scheduler, "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "main", "image": "busybox",
            "resources": {"requests": {"cpu": "1", "memory": "100Mi"}}}]}});
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(pod).unwrap(),
    )
    .await
    .unwrap();
    wait_for("binding after the API server came up", || async {
        pods.get("late")
            .await
            .ok()
            .and_then(|p| node_of(&p))
            .is_some()
    })
    .await;
    let took = came_up.elapsed();
    assert!(
        took < Duration::from_secs(30),
        "placed {took:?} after the API server returned"
    );
    wait_ready(&running).await;
    pods.delete("late", &DeleteParams::default()).await.unwrap();
    let slurm_client = slurm.client(&scheduler).await;
    wait_for("the job to be released", || async {
        let jobs = slurm_client.list_our_jobs().await.unwrap().jobs;
        !jobs
            .iter()
            .any(|j| j.state.holds_allocation() || j.state.is_pending())
    })
    .await;
    drop(server);
}

async fn reqwest_get(url: &str) -> u16 {
    // A raw HTTP/1.0 GET keeps the test free of another client dependency.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest.split_once('/').unwrap();
    let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
    s.write_all(format!("GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_restart_between_submit_and_bind_adopts_the_job_instead_of_submitting_again() {
    let _solo = SOLO.lock().await;
    let mut h = harness!("restart");
    let blocker = block_solo(&h);
    h.create(&solo_pod(&h, "patient")).await;
    wait_for("a job for the pod", || async {
        !jobs_named(&h, "patient").await.is_empty()
    })
    .await;
    let first = jobs_named(&h, "patient").await;

    h.running.stop();
    let replacement = h.replica(|_| {}).await;
    wait_ready(&replacement).await;
    h.slurm.exec(&["scancel", &blocker]);
    let (_, job) = h.wait_bound("patient").await;
    assert_eq!(
        vec![job],
        first,
        "the restarted scheduler bound the pod with the job it had"
    );
    assert_eq!(jobs_named(&h, "patient").await, first, "never a second job");
    h.finish().await;
}

#[tokio::test]
async fn with_two_replicas_one_leads_and_the_other_takes_over_without_duplicate_jobs() {
    let lease = |ns: &str, name: &str, id: &str| {
        let mut l = LeaseConfig::new(ns.into(), name.into(), id.into());
        l.duration = Duration::from_secs(4);
        l.renew_deadline = Duration::from_secs(3);
        l.retry_period = Duration::from_millis(500);
        Some(l)
    };
    let mut h = match Harness::start("leader", |_| {}).await {
        Some(h) => h,
        None => return,
    };
    // Restart the first replica with election on, then add a second one.
    h.running.stop();
    let (ns, name) = (h.ns.clone(), h.scheduler.clone());
    let mut first = h
        .replica(|s| s.lease = lease(&ns, &name, "replica-a"))
        .await;
    wait_for("a leader", || async { first.metrics.leader.get() == 1 }).await;
    let second = h
        .replica(|s| s.lease = lease(&ns, &name, "replica-b"))
        .await;
    wait_ready(&second).await; // a standby is ready too: warm caches, Slurm answering
    assert_eq!(second.metrics.leader.get(), 0, "one leader at a time");

    let lease_api: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(h.client.clone(), &ns);
    let held = lease_api
        .get(&name)
        .await
        .expect("the lease is named after the scheduler");
    assert_eq!(
        held.spec.unwrap().holder_identity.as_deref(),
        Some("replica-a")
    );

    h.create(&h.pod("one", json!({}))).await;
    h.wait_bound("one").await;
    assert_eq!(jobs_named(&h, "one").await.len(), 1);

    first.stop();
    let stopped = Instant::now();
    h.create(&h.pod("two", json!({}))).await;
    h.wait_bound("two").await;
    assert!(second.metrics.leader.get() == 1, "the standby took over");
    assert!(stopped.elapsed() < DEADLINE);
    assert_eq!(
        jobs_named(&h, "one").await.len(),
        1,
        "no duplicate job after the handover"
    );
    assert_eq!(jobs_named(&h, "two").await.len(), 1);
    drop(second);
    // The harness's own scheduler is stopped: clean up with a fresh replica.
    h.running = h.replica(|_| {}).await;
    h.finish().await;
}

#[tokio::test]
async fn while_slurmrestd_is_unreachable_nothing_is_guessed_and_everything_catches_up() {
    let _solo = SOLO.lock().await;
    let slurm_url = match support::SlurmEnv::from_env() {
        Some(s) => s.url,
        None => return,
    };
    let proxy = Proxy::start(slurm_url.trim_start_matches("http://").to_string()).await;
    let proxy_url = proxy.url();
    let h = harness!("outage", |s| s.slurm.url = proxy_url.clone());
    let blocker = block_solo(&h);
    h.create(&h.pod("ended", json!({}))).await;
    h.create(&h.pod("deleted", json!({}))).await;
    h.create(&solo_pod(&h, "waiting")).await;
    let (_, ended_job) = h.wait_bound("ended").await;
    let (_, deleted_job) = h.wait_bound("deleted").await;
    wait_for("a pending condition", || async {
        scheduled_message(&h, "waiting")
            .await
            .is_some_and(|m| m.contains("pending"))
    })
    .await;

    proxy.set_down(true);
    h.slurm.exec(&["scancel", &ended_job.to_string()]);
    h.pods()
        .delete("deleted", &DeleteParams::default())
        .await
        .unwrap();
    h.wait_gone("deleted").await;
    wait_for("the waiting pod told that Slurm is unreachable", || async {
        scheduled_message(&h, "waiting")
            .await
            .is_some_and(|m| m.contains("unreachable"))
    })
    .await;
    // Longer than MinJobAge and a purge cycle: the scancelled job vanishes from Slurm's
    // lists while we cannot see it.
    let outage = h.slurm.kill_wait + Duration::from_secs(10);
    let until = Instant::now() + outage;
    while Instant::now() < until {
        let pod = h.pods().get("ended").await.unwrap();
        assert!(
            pod.metadata.deletion_timestamp.is_none(),
            "deleted on a guess during the outage"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let deleted_state = h
        .slurm_client
        .get_job(deleted_job)
        .await
        .unwrap()
        .status
        .state;
    assert!(
        deleted_state.holds_allocation(),
        "cancelled without an answer from Slurm?"
    );

    proxy.set_down(false);
    h.wait_gone("ended").await;
    h.wait_job(deleted_job, "cancel", |j| {
        j.is_none_or(|j| !j.status.state.holds_allocation())
    })
    .await;
    wait_for(
        "the waiting pod's condition back to Slurm's reason",
        || async {
            scheduled_message(&h, "waiting")
                .await
                .is_some_and(|m| m.contains("pending"))
        },
    )
    .await;
    assert_eq!(phase(&h.pods().get("waiting").await.unwrap()), "Pending");
    h.slurm.exec(&["scancel", &blocker]);
    h.finish().await;
}

/// A pod's `job-id` annotation is written by whoever can write the pod: the scheduler must
/// never cancel a job on its word alone.
#[tokio::test]
async fn a_forged_job_id_annotation_never_cancels_someone_elses_job() {
    let mut h = harness!("forged");
    let foreign = h.slurm.exec(&[
        "sbatch",
        "--parsable",
        "-J",
        "someones-batch-job",
        "-o",
        "/dev/null",
        "-e",
        "/dev/null",
        "--chdir",
        "/tmp",
        "--mem",
        "100",
        "--wrap",
        "sleep 600",
    ]);
    let foreign = foreign.trim().split(';').next().unwrap().to_string();
    wait_for("the foreign job to start", || alive(&h, &foreign)).await;

    // Route 1: a pod created already bound, claiming the foreign job, then deleted.
    let forged = h.pod(
        "prebound",
        json!({"metadata": {"annotations": {"sunk.coreweave.com/job-id": foreign}},
        "spec": {"nodeName": "node-1"}}),
    );
    h.create(&forged).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Slurm does not list that job as ours, so the scheduler may delete the pod as one whose
    // job is gone; either way it goes, and the job must stay.
    let _ = h.pods().delete("prebound", &DeleteParams::default()).await;
    h.wait_gone("prebound").await;
    assert!(
        alive(&h, &foreign).await,
        "the scheduler cancelled someone else's job"
    );

    // Route 2: a pod of ours whose annotation is rewritten, then a restart, then deletion.
    h.create(&h.pod("rewritten", json!({}))).await;
    let (_, own) = h.wait_bound("rewritten").await;
    h.pods()
        .patch(
            "rewritten",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(
                json!({"metadata": {"annotations": {"sunk.coreweave.com/job-id": foreign}}}),
            ),
        )
        .await
        .unwrap();
    h.running.stop();
    h.running = h.replica(|_| {}).await;
    wait_ready(&h.running).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    h.pods()
        .delete("rewritten", &DeleteParams::default())
        .await
        .unwrap();
    h.wait_gone("rewritten").await;
    // Its own job is released (the pod is gone); the foreign job is untouched.
    h.wait_job(own, "release of the pod's own job", |j| {
        j.is_none_or(|j| !j.status.state.holds_allocation())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        alive(&h, &foreign).await,
        "the scheduler cancelled someone else's job"
    );
    h.slurm.exec(&["scancel", &foreign]);
    h.finish().await;
}

async fn alive(h: &Harness, id: &str) -> bool {
    let id: u32 = id.parse().unwrap();
    h.slurm_client
        .get_job(id)
        .await
        .is_ok_and(|j| j.status.state.holds_allocation() || j.status.state.is_pending())
}

/// A token that expires mid-run: requests fail, nothing is deleted or cancelled on that
/// account, the file is read again, and work resumes once it holds a valid token.
#[tokio::test]
async fn an_expired_token_is_read_again_and_nothing_is_lost_meanwhile() {
    let Some(slurm) = support::SlurmEnv::from_env() else {
        return;
    };
    let mint = |lifespan: &str| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/slurm-cluster");
        let out = std::process::Command::new("bash")
            .args([
                script,
                "token",
                "--state-dir",
                &slurm.state_dir,
                "--lifespan",
                lifespan,
            ])
            .output()
            .expect("minting a token");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let file = std::env::temp_dir().join(support::unique("sps-token"));
    std::fs::write(&file, mint("12")).unwrap();
    let minted = Instant::now();
    let path = file.clone();
    let h = harness!("token", |s| s.slurm.token =
        slurm_client::TokenSource::File(path));
    h.create(&h.pod("steady", json!({}))).await;
    let (_, job) = h.wait_bound("steady").await;

    // Past the token's life: every request is refused until the file changes.
    tokio::time::sleep(Duration::from_secs(13).saturating_sub(minted.elapsed())).await;
    h.create(&h.pod("later", json!({}))).await;
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        let pod = h.pods().get("steady").await.unwrap();
        assert!(
            pod.metadata.deletion_timestamp.is_none(),
            "deleted for lack of an answer"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        h.slurm_client
            .get_job(job)
            .await
            .unwrap()
            .status
            .state
            .holds_allocation(),
        "the running pod's job was cancelled without an answer"
    );

    std::fs::write(&file, mint("3600")).unwrap();
    h.wait_bound("later").await;
    assert!(
        h.running.metrics.slurm_token_reloads.get() > 0,
        "token reloads are counted"
    );
    h.finish().await;
    let _ = std::fs::remove_file(&file);
}
