//! The poll's cost does not grow with the number of jobs: with 2 000 jobs in Slurm (half
//! ours, half another scheduler's), every poll is one request. Also measures how long
//! decoding one full job list takes (printed as `MEASURED` lines for the test note).
//! `SPS_POLL_COST_JOBS` changes the number of jobs (default 2000).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use slurm_client::{decode_job_list, CancelSignal, PollCursor, PollOutcome, SubmitOptions};
use support::{small_job, unique, Cleanup, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poll_cost_is_constant_with_2000_jobs() {
    let Some(cl) = Cluster::from_env("poll_cost_is_constant_with_2000_jobs") else {
        return;
    };
    let total: usize = std::env::var("SPS_POLL_COST_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let ours = unique("cost-ours");
    let others = unique("cost-other");
    let (client, counters) = cl.client(&ours).await;
    let client = Arc::new(client);
    let cleanup = Arc::new(Cleanup::new(&cl));

    // Submit: half ours, half another scheduler's, 16 at a time.
    let started = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        let (client, cleanup, sem) = (client.clone(), cleanup.clone(), sem.clone());
        let sched = if i % 2 == 0 {
            ours.clone()
        } else {
            others.clone()
        };
        tasks.spawn(async move {
            let _permit = sem.acquire().await.unwrap();
            let mut job = small_job(&sched, &format!("{sched}-{i}"));
            job.memory_per_node_mb = 10;
            let id = client
                .submit(&job, &SubmitOptions::default())
                .await
                .expect("submit");
            cleanup.track(id);
            id
        });
    }
    let mut ids = Vec::with_capacity(total);
    while let Some(id) = tasks.join_next().await {
        ids.push(id.unwrap());
    }
    eprintln!(
        "MEASURED submit of {total} jobs: {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // A full list: our half, and at least all the jobs we submitted.
    let mut cursor = PollCursor::default();
    let before = counters.total_requests();
    let t = Instant::now();
    let PollOutcome::Changed(snap) = client.poll(&mut cursor).await.unwrap() else {
        panic!("the first poll must be a full list");
    };
    let full_poll = t.elapsed();
    assert_eq!(counters.total_requests(), before + 1);
    assert_eq!(snap.jobs.len(), total.div_ceil(2), "exactly our half");
    assert!(snap.total_jobs >= total);

    // Ten polls, with changes in between: one request each, whatever changed.
    for round in 0..10 {
        if round % 3 == 1 {
            let id = snap.jobs[round].job_id;
            client.cancel(id, CancelSignal::Kill).await.unwrap();
        }
        let n = counters.total_requests();
        let out = client.poll(&mut cursor).await.unwrap();
        assert_eq!(
            counters.total_requests(),
            n + 1,
            "round {round}: one request per poll"
        );
        if let PollOutcome::Changed(s) = out {
            assert_eq!(s.jobs.len(), total.div_ceil(2), "round {round}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Decode cost of one full answer, fetched raw.
    let url = format!(
        "{}/slurm/{}/jobs/",
        cl.url.trim_end_matches('/'),
        cl.version
    );
    let body = reqwest::Client::new()
        .get(url)
        .header("X-SLURM-USER-NAME", &cl.user)
        .header("X-SLURM-USER-TOKEN", &cl.jwt)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let runs = 5;
    let t = Instant::now();
    let mut decoded = 0;
    for _ in 0..runs {
        decoded = decode_job_list(cl.version, &body).unwrap().len();
    }
    let per = t.elapsed() / runs;
    eprintln!(
        "MEASURED {} ({}): full job list of {decoded} jobs, {:.1} MB: decode {:.1} ms \
         ({} build, mean of {runs}); full poll round trip {:.0} ms",
        cl.slurm,
        cl.version,
        body.len() as f64 / 1e6,
        per.as_secs_f64() * 1e3,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        full_poll.as_secs_f64() * 1e3
    );
    assert!(decoded >= total);
    drop(ids);
}
