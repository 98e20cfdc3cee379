//! Load check (ignored by default): hold many pods, write with watches open, and print
//! what it measured. Run with
//! `cargo test -p kubesim --release --test load -- --ignored --nocapture`;
//! `KUBESIM_LOAD_PODS` sets the pod count (default 50 000), `KUBESIM_LOAD_RATE` the paced
//! write rate (default 500/s) and `KUBESIM_LOAD_SECONDS` how long it is held (default 20).
//!
//! Phases: create the pods (32 in flight), list them, then status writes as fast as 32
//! in-flight requests go with two watches open, then writes paced at the target rate with
//! the same watches plus a `kube::runtime` watcher open, reporting the rate achieved and
//! the latency of each write. Client and server share the process (and the 2 cores).

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;

fn rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

fn pod(i: usize) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": format!("load-{i:06}"), "labels": {"app": "load"}},
        "spec": {"schedulerName": if i % 2 == 0 { "slurm-pod-scheduler" } else { "default-scheduler" },
                 "containers": [{"name": "main", "image": "registry.k8s.io/pause:3.9",
                                 "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]}
    }))
    .unwrap()
}

/// Count watch events until the stream has delivered `want` of them.
fn count_events(api: Api<Pod>, params: WatchParams, want: usize) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut stream = api.watch(&params, "0").await.unwrap().boxed();
        let mut n = 0;
        while n < want {
            match stream.try_next().await {
                Ok(Some(
                    WatchEvent::Added(_) | WatchEvent::Modified(_) | WatchEvent::Deleted(_),
                )) => n += 1,
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        n
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "load measurement; run explicitly"]
async fn hold_many_pods_and_write_with_watches_open() {
    let count: usize = std::env::var("KUBESIM_LOAD_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let server = kubesim::Server::start(kubesim::Config::default())
        .await
        .unwrap();
    let mut config = server.kube_config().await.unwrap();
    config.default_retry = false;
    let client = kube::Client::try_from(config).unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    let started = Instant::now();
    futures::stream::iter(0..count)
        .map(|i| {
            let pods = pods.clone();
            async move { pods.create(&PostParams::default(), &pod(i)).await.unwrap() }
        })
        .buffer_unordered(32)
        .for_each(|_| async {})
        .await;
    let create = started.elapsed();
    println!(
        "created {count} pods in {create:?}: {:.0}/s, RSS {} MiB",
        count as f64 / create.as_secs_f64(),
        rss_mib()
    );

    let started = Instant::now();
    let listed = pods.list(&ListParams::default()).await.unwrap();
    println!(
        "full list of {} pods: {:?}",
        listed.items.len(),
        started.elapsed()
    );
    let started = Instant::now();
    let selected = pods
        .list(&ListParams::default().fields("spec.schedulerName=slurm-pod-scheduler"))
        .await
        .unwrap();
    println!(
        "field-selected list of {} pods: {:?}",
        selected.items.len(),
        started.elapsed()
    );
    drop(listed);
    drop(selected);

    // Two watches from now: one on everything, one on our scheduler's half.
    let rv = pods
        .list(&ListParams::default().limit(1))
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let writes = 10_000.min(count);
    let all = {
        let pods = pods.clone();
        let rv = rv.clone();
        tokio::spawn(async move {
            let mut stream = pods
                .watch(&WatchParams::default().timeout(290), &rv)
                .await
                .unwrap()
                .boxed();
            let mut n = 0;
            while n < writes {
                match stream.try_next().await {
                    Ok(Some(WatchEvent::Modified(_))) => n += 1,
                    Ok(Some(_)) => {}
                    _ => break,
                }
            }
            n
        })
    };
    let ours = count_events(
        pods.clone(),
        WatchParams::default()
            .fields("spec.schedulerName=slurm-pod-scheduler")
            .timeout(290),
        count / 2 + writes / 2,
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    futures::stream::iter(0..writes)
        .map(|i| {
            let pods = pods.clone();
            async move {
                let name = format!("load-{i:06}");
                let running = Patch::Merge(json!({"status": {"phase": "Running"}}));
                pods.patch_status(&name, &PatchParams::default(), &running)
                    .await
                    .unwrap()
            }
        })
        .buffer_unordered(32)
        .for_each(|_| async {})
        .await;
    let write = started.elapsed();
    let seen_all = tokio::time::timeout(Duration::from_secs(120), all)
        .await
        .unwrap()
        .unwrap();
    let delivered = started.elapsed();
    let seen_ours = tokio::time::timeout(Duration::from_secs(120), ours)
        .await
        .unwrap()
        .unwrap();
    println!(
        "{writes} status writes with 2 watches open in {write:?}: {:.0}/s; all-pods watch got {seen_all} \
         MODIFIED by {delivered:?}; selector watch got {seen_ours} events (initial + changes); RSS {} MiB",
        writes as f64 / write.as_secs_f64(),
        rss_mib()
    );
    assert_eq!(seen_all, writes);
    assert_eq!(seen_ours, count / 2 + writes / 2);

    paced_writes(&server, &pods, count).await;
    server.shutdown().await;
}

/// Writes at a fixed rate with watches open: do they keep up, and how long does each take?
async fn paced_writes(server: &kubesim::ServerHandle, pods: &Api<Pod>, count: usize) {
    let rate: u64 = std::env::var("KUBESIM_LOAD_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let seconds: u64 = std::env::var("KUBESIM_LOAD_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let writes = (rate * seconds) as usize;
    let rv = pods
        .list(&ListParams::default().limit(1))
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    // An all-pods watch, a field-selected one, and kube-rs' watcher (which lists first).
    let all = {
        let pods = pods.clone();
        tokio::spawn(async move {
            let mut stream = pods
                .watch(&WatchParams::default().timeout(290), &rv)
                .await
                .unwrap()
                .boxed();
            let mut n = 0;
            while n < writes {
                match stream.try_next().await {
                    Ok(Some(WatchEvent::Modified(_))) => n += 1,
                    Ok(Some(_)) => {}
                    _ => break,
                }
            }
            n
        })
    };
    let selected = count_events(
        pods.clone(),
        WatchParams::default()
            .fields("spec.schedulerName=slurm-pod-scheduler")
            .timeout(290),
        count / 2 + writes / 2,
    );
    let client = server.client().await.unwrap();
    let (listed_tx, listed_rx) = tokio::sync::oneshot::channel();
    let watcher_task = tokio::spawn(async move {
        use kube::runtime::watcher::{watcher, Config, Event};
        let api: Api<Pod> = Api::namespaced(client, "default");
        let stream = watcher(api, Config::default().labels("app=load"));
        futures::pin_mut!(stream);
        let mut applied = 0;
        let mut listed_tx = Some(listed_tx);
        while applied < writes {
            match stream.try_next().await {
                Ok(Some(Event::Apply(_))) => applied += 1,
                Ok(Some(Event::InitDone)) => {
                    if let Some(tx) = listed_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        applied
    });
    // Let the watcher finish its initial list of every pod before the clock starts.
    let list_started = Instant::now();
    tokio::time::timeout(Duration::from_secs(300), listed_rx)
        .await
        .unwrap()
        .unwrap();
    println!(
        "kube-rs watcher listed {count} pods (pages of 500) in {:?}",
        list_started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(256));
    let mut tasks = Vec::with_capacity(writes);
    let started = Instant::now();
    for i in 0..writes {
        ticker.tick().await;
        let permit = limit.clone().acquire_owned().await.unwrap();
        let pods = pods.clone();
        tasks.push(tokio::spawn(async move {
            let name = format!("load-{:06}", i % count);
            let patch = Patch::Merge(json!({"status": {"message": format!("paced write {i}")}}));
            let t = Instant::now();
            pods.patch_status(&name, &PatchParams::default(), &patch)
                .await
                .unwrap();
            drop(permit);
            t.elapsed()
        }));
    }
    let mut latencies = Vec::with_capacity(writes);
    for t in tasks {
        latencies.push(t.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    let seen_all = tokio::time::timeout(Duration::from_secs(120), all)
        .await
        .unwrap()
        .unwrap();
    let delivered = started.elapsed();
    let seen_selected = tokio::time::timeout(Duration::from_secs(120), selected)
        .await
        .unwrap()
        .unwrap();
    let applied = tokio::time::timeout(Duration::from_secs(120), watcher_task)
        .await
        .unwrap()
        .unwrap();
    println!(
        "paced: {writes} status writes offered at {rate}/s over {seconds} s with 3 watches open: \
         done in {elapsed:?} ({:.0}/s); latency p50 {:?} p99 {:?} max {:?}; all-pods watch got \
         {seen_all} MODIFIED by {delivered:?}; selector watch {seen_selected}; watcher {applied} \
         applies; RSS {} MiB",
        writes as f64 / elapsed.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        latencies.last().unwrap(),
        rss_mib()
    );
    assert_eq!(seen_all, writes);
    assert_eq!(seen_selected, count / 2 + writes / 2);
    assert_eq!(applied, writes);
}
