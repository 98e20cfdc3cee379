//! Integration tests against a real Slurm cluster (22.05 or 24.11) started by
//! `scripts/slurm-cluster`; `tests/run-against-clusters` runs them once per cluster.
//! Every test uses its own scheduler name and job names and cancels what it submits, so
//! other suites can share the cluster.

mod support;

use std::time::Duration;

use slurm_client::{
    ApiVersion, BaseState, CancelOutcome, CancelSignal, ClientConfig, Error, Exclusivity,
    PingStatus, PollCursor, PollOutcome, Rejection, SlurmClient, SubmitOptions, TimeLimit,
    TokenSource,
};
use support::{small_job, unique, wait_job, Cleanup, Cluster};

const DEADLINE: Duration = Duration::from_secs(60);

fn opts() -> SubmitOptions {
    SubmitOptions::default()
}

#[tokio::test]
async fn detects_the_version_and_pings() {
    let Some(cl) = Cluster::from_env("detects_the_version_and_pings") else {
        return;
    };
    let (client, counters) = cl.client(&unique("ping")).await;
    assert_eq!(client.version(), Some(cl.version));
    assert_eq!(client.ping().await.unwrap(), PingStatus::Up);
    let nodes = client.list_nodes().await.unwrap();
    assert!(nodes.iter().any(|n| n.name == cl.node(0)), "{nodes:?}");
    // Detection pings too, unless the version is forced.
    let pings = if cl.forced { 1 } else { 2 };
    assert!(counters.requests_to("ping") >= pings);

    // A forced version is used as given.
    let mut cfg = cl.config("forced");
    cfg.version = Some(cl.version);
    let forced = SlurmClient::connect(cfg).await.unwrap();
    assert_eq!(forced.version(), Some(cl.version));
}

#[tokio::test]
async fn submits_with_every_field_and_sees_it_running() {
    let Some(cl) = Cluster::from_env("submits_with_every_field") else {
        return;
    };
    let sched = unique("fields");
    let (client, _) = cl.client(&sched).await;
    let cleanup = Cleanup::new(&cl);

    let mut job = small_job(&sched, &unique("every-field"));
    job.cpus_per_task = 2;
    job.memory_per_node_mb = 300;
    job.partition = Some("hpc-prod".into());
    job.constraint = Some("amd".into());
    job.time_limit = Some(TimeLimit::Minutes(90));
    job.exclusive = Some(Exclusivity::User);
    if cl.accounting {
        job.account = Some("research".into());
        job.qos = Some("high".into());
    }
    // v0.0.38 cannot exclude nodes: the submit leaves them out rather than failing.
    job.excluded_nodes = vec![cl.node(3)];
    let id = cleanup.track(client.submit(&job, &opts()).await.unwrap());

    let j = wait_job(&client, id, DEADLINE, "RUNNING", |j| {
        j.status.state.holds_allocation()
    })
    .await;
    let expected_nodes: Vec<String> = if cl.version.can_exclude_nodes() {
        vec![cl.node(2)]
    } else {
        vec![cl.node(2), cl.node(3)]
    };
    assert_eq!(j.status.nodes.len(), 1);
    assert!(
        expected_nodes.contains(&j.status.nodes[0]),
        "ran on {:?}",
        j.status.nodes
    );
    assert_eq!(j.status.name, job.name);
    assert_eq!(j.comment, job.comment);
    assert_eq!(j.cpus, Some(2));
    assert_eq!(j.memory_per_node_mb, Some(300));
    assert_eq!(j.partition, "hpc-prod");
    assert_eq!(j.features, "amd");
    assert_eq!(j.time_limit, Some(TimeLimit::Minutes(90)));
    assert_eq!(j.exclusivity, Some(Exclusivity::User));
    assert!(j.tres_alloc.contains("cpu=2"), "{}", j.tres_alloc);
    if cl.accounting {
        assert_eq!(j.account, "research");
        assert_eq!(j.qos, "high");
    }
    if cl.version.can_exclude_nodes() {
        assert_eq!(j.excluded_nodes, vec![cl.node(3)]);
        assert_eq!(j.requeue, Some(false));
    } else {
        assert!(j.excluded_nodes.is_empty(), "{:?}", j.excluded_nodes);
    }

    // Our job list has it, by marker.
    let ours = client.list_our_jobs().await.unwrap();
    assert_eq!(ours.jobs.iter().filter(|s| s.job_id == id).count(), 1);
    assert!(ours
        .jobs
        .iter()
        .all(|s| s.marker.as_ref().unwrap().scheduler == sched));

    // SIGKILL ends it: no longer holding the allocation.
    client.cancel(id, CancelSignal::Kill).await.unwrap();
    let ended = wait_job(&client, id, DEADLINE, "ended", |j| {
        !j.status.state.holds_allocation()
    })
    .await;
    assert_ne!(
        ended.status.state.base,
        BaseState::Running,
        "{}",
        ended.status.state
    );
}

#[tokio::test]
async fn gpu_jobs_get_gres_and_whole_nodes() {
    let Some(cl) = Cluster::from_env("gpu_jobs") else {
        return;
    };
    if !cl.gpus {
        eprintln!("SKIPPED gpu_jobs: the cluster has no GPUs (SLURM_GPU_NODES unset)");
        return;
    }
    let sched = unique("gpu");
    let (client, _) = cl.client(&sched).await;
    let cleanup = Cleanup::new(&cl);
    let mut job = small_job(&sched, &unique("gpu"));
    job.gres = Some("gpu:1".into());
    job.partition = Some("gpu".into());
    job.exclusive = Some(Exclusivity::None);
    let id = cleanup.track(client.submit(&job, &opts()).await.unwrap());
    let j = wait_job(&client, id, DEADLINE, "RUNNING", |j| {
        j.status.state.holds_allocation()
    })
    .await;
    assert!(j.tres_per_node.ends_with("gpu:1"), "{}", j.tres_per_node);
    assert_eq!(j.gres_allocated.len(), 1, "{:?}", j.gres_allocated);
    // A whole node comes with every GPU on it (the clusters have 2 per GPU node).
    assert!(
        j.gres_allocated[0].starts_with("gpu:2"),
        "{:?}",
        j.gres_allocated
    );
    assert_eq!(j.exclusivity, Some(Exclusivity::None));
    // Whole node: every CPU of the node is allocated to the job.
    assert!(j.tres_alloc.contains("cpu=8"), "{}", j.tres_alloc);
    assert!(
        [cl.node(2), cl.node(3)].contains(&j.status.nodes[0]),
        "{:?}",
        j.status.nodes
    );
    client.cancel(id, CancelSignal::Kill).await.unwrap();
}

#[tokio::test]
async fn user_and_group_ids() {
    let Some(cl) = Cluster::from_env("user_and_group_ids") else {
        return;
    };
    let sched = unique("uid");
    let (client, _) = cl.client(&sched).await;
    let cleanup = Cleanup::new(&cl);
    let mut job = small_job(&sched, &unique("uid"));
    job.user_id = Some(7001);
    job.group_id = Some(7001);
    if cl.version.can_set_user_id() {
        let id = cleanup.track(client.submit(&job, &opts()).await.unwrap());
        let j = wait_job(&client, id, DEADLINE, "RUNNING", |j| {
            j.status.state.holds_allocation()
        })
        .await;
        assert_eq!((j.user_id, j.group_id), (Some(7001), Some(7001)));
        client.cancel(id, CancelSignal::Kill).await.unwrap();
    } else {
        let err = client.submit(&job, &opts()).await.unwrap_err();
        assert!(matches!(err, Error::Unsupported(_)), "{err}");
        assert!(err.to_string().contains("too old"), "{err}");
        // With the UID mapped to a user name, the submit impersonates that user.
        let o = SubmitOptions {
            run_as_user: Some("sps-test".into()),
        };
        let id = cleanup.track(client.submit(&job, &o).await.unwrap());
        let j = wait_job(&client, id, DEADLINE, "RUNNING", |j| {
            j.status.state.holds_allocation()
        })
        .await;
        assert_eq!(j.user_id, Some(7001));
        client.cancel(id, CancelSignal::Kill).await.unwrap();
    }
}

#[tokio::test]
async fn every_error_kind() {
    let Some(cl) = Cluster::from_env("every_error_kind") else {
        return;
    };
    let sched = unique("errors");
    let (client, _) = cl.client(&sched).await;
    let _cleanup = Cleanup::new(&cl);

    let rejected = |e: Error| match e {
        Error::Rejected { rejection, .. } => rejection,
        other => panic!("expected a rejection, got {other:?}"),
    };
    let mut job = small_job(&sched, &unique("bad-partition"));
    job.partition = Some("nosuch".into());
    let r = rejected(client.submit(&job, &opts()).await.unwrap_err());
    assert_eq!(r.to_string(), "partition `nosuch` does not exist");

    let mut job = small_job(&sched, &unique("bad-feature"));
    job.constraint = Some("arm".into());
    let r = rejected(client.submit(&job, &opts()).await.unwrap_err());
    assert_eq!(r.to_string(), "no node has features `arm`");

    let mut job = small_job(&sched, &unique("too-big"));
    job.cpus_per_task = 64;
    job.memory_per_node_mb = 512_000;
    let r = rejected(client.submit(&job, &opts()).await.unwrap_err());
    assert!(
        matches!(
            r,
            Rejection::NodeTooSmall { .. } | Rejection::PartitionTooSmall { .. }
        ),
        "{r:?}"
    );
    assert!(r.to_string().contains("64 CPUs and 512000 MB"), "{r}");

    if cl.accounting {
        let mut job = small_job(&sched, &unique("bad-account"));
        job.account = Some("nosuchaccount".into());
        let r = rejected(client.submit(&job, &opts()).await.unwrap_err());
        assert_eq!(r, Rejection::InvalidAccount("nosuchaccount".into()), "{r}");

        let mut job = small_job(&sched, &unique("bad-qos"));
        job.qos = Some("nosuchqos".into());
        let r = rejected(client.submit(&job, &opts()).await.unwrap_err());
        assert_eq!(r, Rejection::InvalidQos("nosuchqos".into()), "{r}");
    }

    // An unknown job id is proof of absence.
    let err = client.get_job(999_999_999).await.unwrap_err();
    assert!(matches!(err, Error::JobNotFound(999_999_999)), "{err:?}");

    // Cancelling an unknown job (an id below MaxJobId: beyond it 24.11 answers 404 + 2017
    // on every version): reported where the version says so, never an error.
    let outcome = client.cancel(999_999, CancelSignal::Kill).await.unwrap();
    let says = matches!(cl.version, ApiVersion::V0038 | ApiVersion::V0042);
    let want = if says {
        CancelOutcome::AlreadyDoneOrUnknown
    } else {
        CancelOutcome::Accepted
    };
    assert_eq!(outcome, want);

    // Nobody listening: unknown, never "gone".
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut cfg = ClientConfig::new(
        format!("http://127.0.0.1:{port}"),
        TokenSource::Static(cl.jwt.clone()),
        &sched,
    );
    cfg.version = Some(cl.version);
    cfg.retries = 1;
    let dead = SlurmClient::new(
        cfg,
        std::sync::Arc::new(slurm_client::RequestCounters::default()),
    )
    .unwrap();
    let err = dead.get_job(1).await.unwrap_err();
    assert_eq!(err.kind(), slurm_client::ErrorKind::Unknown, "{err:?}");
}

#[tokio::test]
async fn token_rotation_and_rejection() {
    let Some(cl) = Cluster::from_env("token_rotation") else {
        return;
    };
    if cl.state_dir.is_none() {
        eprintln!("SKIPPED token_rotation: needs SLURM_CLUSTER_STATE_DIR to mint tokens");
        return;
    }
    let dir = std::env::temp_dir().join(unique("sc-token"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("jwt");
    std::fs::write(&file, format!("{}\n", cl.jwt)).unwrap();
    let counters = std::sync::Arc::new(slurm_client::RequestCounters::default());
    let mut cfg = cl.config(&unique("token"));
    cfg.token = TokenSource::File(file.clone());
    let client = SlurmClient::connect_with_observer(cfg, counters.clone())
        .await
        .unwrap();
    client.list_our_jobs().await.unwrap();

    // Rotation: a new token in the file is used from the next request.
    let fresh = cl.mint_token(&cl.user);
    std::fs::write(&file, format!("{fresh}\n")).unwrap();
    client.list_our_jobs().await.unwrap();
    assert_eq!(counters.token_reloads(), 0, "a rotation is not a rejection");

    // A rejected token: one re-read, one retry, then a typed error and a count.
    std::fs::write(&file, "not-a-valid-token\n").unwrap();
    let err = client.list_our_jobs().await.unwrap_err();
    assert!(matches!(err, Error::AuthRejected { .. }), "{err:?}");
    assert_eq!(counters.token_reloads(), 1);
    assert_eq!(counters.auth_failures(), 1);
    assert_eq!(client.auth_rejections(), 1);
    if cl.version >= ApiVersion::V0040 {
        assert_eq!(client.ping().await.unwrap(), PingStatus::Down);
    }

    // The operator fixes the file: requests work again without a restart.
    std::fs::write(&file, format!("{}\n", cl.mint_token(&cl.user))).unwrap();
    client.list_our_jobs().await.unwrap();
    assert_eq!(client.ping().await.unwrap(), PingStatus::Up);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn lost_submit_answer_makes_no_duplicate() {
    let Some(cl) = Cluster::from_env("lost_submit_answer") else {
        return;
    };
    let upstream = cl
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let proxy = support::proxy::Proxy::start(&upstream).await;
    let sched = unique("lost");
    let mut cfg = cl.config(&sched);
    cfg.url = proxy.url();
    let client = SlurmClient::connect(cfg).await.unwrap();
    let cleanup = Cleanup::new(&cl);

    let job = small_job(&sched, &unique("lost"));
    proxy.drop_next_submit_answers(1);
    let id = cleanup.track(client.submit(&job, &opts()).await.unwrap());
    assert_eq!(proxy.dropped(), 1, "the proxy must have dropped the answer");

    let ours = client.list_our_jobs().await.unwrap();
    let same: Vec<_> = ours.jobs.iter().filter(|j| j.name == job.name).collect();
    for j in &same {
        cleanup.track(j.job_id);
    }
    assert_eq!(same.len(), 1, "exactly one job for the pod: {same:?}");
    assert_eq!(same[0].job_id, id);
    client.cancel(id, CancelSignal::Kill).await.unwrap();
}

#[tokio::test]
async fn poll_sees_changes_with_one_request() {
    let Some(cl) = Cluster::from_env("poll_sees_changes") else {
        return;
    };
    let sched = unique("poll");
    let (client, counters) = cl.client(&sched).await;
    let cleanup = Cleanup::new(&cl);
    let mut cursor = PollCursor::default();
    let before = counters.requests_to("jobs");
    let first = client.poll(&mut cursor).await.unwrap();
    assert!(
        matches!(first, PollOutcome::Changed(_)),
        "the first poll is a full list"
    );
    assert_eq!(counters.requests_to("jobs"), before + 1);

    let job = small_job(&sched, &unique("poll"));
    let id = cleanup.track(client.submit(&job, &opts()).await.unwrap());
    // The change shows in a later poll; each poll is exactly one request.
    let start = std::time::Instant::now();
    loop {
        let n = counters.requests_to("jobs");
        let out = client.poll(&mut cursor).await.unwrap();
        assert_eq!(counters.requests_to("jobs"), n + 1);
        if let PollOutcome::Changed(snap) = out {
            if snap.jobs.iter().any(|j| j.job_id == id) {
                break;
            }
        }
        assert!(
            start.elapsed() < DEADLINE,
            "job {id} never showed in a poll"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    if cl.version >= ApiVersion::V0040 {
        let states = client.job_states(&[id]).await.unwrap();
        assert_eq!(states.len(), 1);
        assert_eq!(states[0].0, id);
    } else {
        assert!(matches!(
            client.job_states(&[id]).await,
            Err(Error::Unsupported(_))
        ));
    }
    client.cancel(id, CancelSignal::Kill).await.unwrap();
}

#[tokio::test]
async fn term_cancel_holds_the_allocation_through_killwait() {
    let Some(cl) = Cluster::from_env("term_cancel_holds_the_allocation") else {
        return;
    };
    let sched = unique("killwait");
    let (client, _) = cl.client(&sched).await;
    let cleanup = Cleanup::new(&cl);
    let job = small_job(&sched, &unique("killwait"));
    let id = cleanup.track(client.submit(&job, &opts()).await.unwrap());
    let running = wait_job(&client, id, DEADLINE, "RUNNING", |j| {
        j.status.state.holds_allocation()
    })
    .await;

    // RUNNING is reported before slurmd has started the script; a SIGTERM in that gap
    // kills the shell before its trap is set (seen on 22.05). Give the script time.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The placeholder ignores SIGTERM: Slurm keeps the job COMPLETING on its node until
    // it sends SIGKILL, KillWait later.
    client.cancel(id, CancelSignal::Term).await.unwrap();
    let ending = wait_job(&client, id, DEADLINE, "COMPLETING", |j| {
        j.status.state.has_flag("COMPLETING")
    })
    .await;
    assert!(!ending.status.state.holds_allocation());
    tokio::time::sleep(cl.kill_wait / 2).await;
    let held = client.get_job(id).await.unwrap();
    assert!(
        held.status.state.has_flag("COMPLETING"),
        "released early: {}",
        held.status.state
    );
    assert_eq!(held.status.nodes, running.status.nodes);

    // SIGKILL after KillWait ends it.
    let done = wait_job(&client, id, cl.kill_wait + DEADLINE, "done", |j| {
        !j.status.state.has_flag("COMPLETING")
    })
    .await;
    assert_eq!(
        done.status.state.base,
        BaseState::Cancelled,
        "{}",
        done.status.state
    );
}
