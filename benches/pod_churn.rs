//! The pod-churn benchmark: a real local Slurm with a short MinJobAge, the `kubesim` API
//! server with the kubelet simulator, pods created at a fixed rate and finishing after
//! their lifetime (a share of them ended by scancel instead), served first by the
//! scheduler and then by a bare baseline loop in the same run, each as a process of its
//! own so the operating system measures its CPU time and peak memory. Prints a table and
//! one final `RESULT {json}` line. Also measures the bytes the scheduler keeps per tracked
//! pod. With `--smoke` it runs a tiny churn and checks only that nothing leaks.
//!
//! `cargo bench --bench pod_churn -- --pods 200 --rate 20 --lifetime 5s --nodes 8`

mod support;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use kubelet_sim::{KubeletConfig, KubeletHandle, NodeSpec};
use serde_json::{json, Value};
use slurm_client::{ClientConfig, SlurmClient, TokenSource};

use support::baseline::{self, BaselineArgs};
use support::cluster::{self, ClusterSpec, SlurmEnv};
use support::driver::{self, quantile, Load, Outcome};
use support::procstat::{cpu_ms, http_get, metric_sum, peak_rss_mib};
use support::state_size::{self, Counting};
use support::waiting::{self, Waiting};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Pod-churn benchmark of slurm-pod-scheduler against a bare baseline.
#[derive(Debug, Parser)]
#[command(name = "pod_churn")]
struct Args {
    /// Pods created per run (each run: scheduler, then baseline).
    #[arg(long, default_value_t = 200)]
    pods: usize,
    /// Pods created per second.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// How long each pod runs: `5`, `5s`, `500ms`.
    #[arg(long, default_value = "5s", value_parser = parse_lifetime)]
    lifetime: Duration,
    /// Slurm nodes (and simulated kubelets).
    #[arg(long, default_value_t = 8)]
    nodes: u32,
    /// CPUs per node; every pod asks for one.
    #[arg(long, default_value_t = 32)]
    cpus: u32,
    /// Slurm flavour: 22.05 or 24.11 [default: the host Debian's].
    #[arg(long)]
    slurm: Option<String>,
    /// Every Nth pod runs until the benchmark scancels its job (0: none).
    #[arg(long, default_value_t = 10)]
    cancel_every: usize,
    /// Slurm poll interval of both the scheduler and the baseline.
    #[arg(long, default_value = "500ms", value_parser = parse_lifetime)]
    poll_interval: Duration,
    /// MinJobAge of the benchmark's cluster, seconds.
    #[arg(long, default_value_t = 5)]
    min_job_age: u64,
    /// Synthetic pods for the state-size measurement (0: skip it).
    #[arg(long, default_value_t = 50_000)]
    state_pods: usize,
    /// After the churn: this many pods waiting in Slurm at once, served by a fresh
    /// scheduler (0: skip). Confirms the state size end to end; MaxJobCount is 20 000.
    #[arg(long, default_value_t = 0)]
    waiting: usize,
    /// Measure the state size only (no Slurm, no root needed), then stop.
    #[arg(long)]
    state_only: bool,
    /// Leave the Slurm cluster running afterwards.
    #[arg(long)]
    keep_cluster: bool,
    /// Tiny run on a cluster of its own; checks only that nothing leaks.
    #[arg(long)]
    smoke: bool,
    /// Passed by `cargo bench`; without it (under `cargo test`) nothing runs.
    #[arg(long, hide = true)]
    bench: bool,

    // The baseline process's own arguments (the binary starts itself again).
    #[arg(long, hide = true)]
    baseline: bool,
    #[arg(long, hide = true, default_value = "")]
    scheduler_name: String,
    #[arg(long, hide = true, default_value = "")]
    namespace: String,
    #[arg(long, hide = true, default_value = "")]
    kubeconfig: String,
    #[arg(long, hide = true, default_value = "")]
    slurm_url: String,
    #[arg(long, hide = true, default_value = "root")]
    slurm_user: String,
    #[arg(long, hide = true, default_value_t = 10)]
    kill_wait_seconds: u64,
}

fn parse_lifetime(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return Ok(Duration::from_secs_f64(secs));
    }
    if let Some(ms) = s.strip_suffix("ms") {
        return ms
            .parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|e| e.to_string());
    }
    if let Some(secs) = s.strip_suffix('s') {
        return secs
            .parse::<f64>()
            .map(Duration::from_secs_f64)
            .map_err(|e| e.to_string());
    }
    Err(format!("`{s}` is not a duration such as 5, 5s or 500ms"))
}

/// What one side (scheduler or baseline) showed.
struct Figures {
    outcome: Outcome,
    cpu_ms: f64,
    peak_rss_mib: f64,
    kube_requests: f64,
    slurm_requests: f64,
    /// CPU spent with no pods at all (watches, polls), per second: the fixed cost in
    /// `cpu_ms` that does not grow with pods.
    idle_cpu_ms_per_s: f64,
    /// Seconds between the first pod and the end of the drain (the span of `cpu_ms`).
    span_s: f64,
}

impl Figures {
    fn json(&self, pods: usize) -> Value {
        let o = &self.outcome;
        let per = |x: f64| round(x / pods.max(1) as f64, 3);
        json!({
            "pods_per_second": round(o.pods_per_second, 2),
            "bind_p50_ms": round(quantile(&o.bind_ms, 0.50), 1),
            "bind_p99_ms": round(quantile(&o.bind_ms, 0.99), 1),
            "delete_p99_ms": round(quantile(&o.delete_ms, 0.99), 1),
            "cpu_ms_per_pod": per(self.cpu_ms),
            "peak_rss_mib": round(self.peak_rss_mib, 1),
            "kube_requests_per_pod": per(self.kube_requests),
            "slurm_requests_per_pod": per(self.slurm_requests),
            "jobs_left": o.jobs_left,
            "pods_stuck": o.pods_stuck,
        })
    }
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    if x.is_finite() {
        (x * f).round() / f
    } else {
        -1.0
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // `cargo test --benches` (or `--all-targets`) runs this binary without `--bench`: the
    // benchmark needs root and starts a Slurm cluster, so a test run does nothing.
    if !args.bench && !args.baseline {
        println!("pod_churn: run it with `cargo bench --bench pod_churn`; nothing to do here");
        return Ok(());
    }
    let rt = tokio::runtime::Runtime::new()?;
    if args.baseline {
        return rt.block_on(baseline::run(BaselineArgs {
            scheduler_name: args.scheduler_name.clone(),
            namespace: args.namespace.clone(),
            kubeconfig: args.kubeconfig.clone(),
            slurm_url: args.slurm_url.clone(),
            slurm_user: args.slurm_user.clone(),
            poll_interval: args.poll_interval,
            kill_wait: Duration::from_secs(args.kill_wait_seconds),
        }));
    }

    // First, while nothing else allocates: the state-size measurement.
    let state = (!args.smoke && args.state_pods > 0).then(|| state_size::measure(args.state_pods));
    if let Some(s) = &state {
        println!(
            "state: {} synthetic pods in the real scheduling loop: {:.0} B/pod waiting for \
             a pending Slurm job, {:.0} B/pod rejected",
            s.pods, s.waiting_bytes_per_pod, s.rejected_bytes_per_pod
        );
        for (what, bytes) in &s.breakdown {
            println!("  {bytes:>7.0} B/pod  {what}");
        }
    }
    if args.state_only {
        return Ok(());
    }

    let spec = ClusterSpec {
        version: args.slurm.as_deref(),
        nodes: args.nodes,
        cpus: args.cpus,
        min_job_age: args.min_job_age,
        max_job_count: 20_000,
        kill_wait: 10,
        smoke: args.smoke,
    };
    eprintln!("starting Slurm (MinJobAge {} s)...", args.min_job_age);
    let slurm = cluster::start(&spec).map_err(anyhow::Error::msg)?;
    println!(
        "cluster: Slurm {} at {}, {} nodes x {} CPUs, MinJobAge {} s, KillWait {} s",
        slurm.version,
        slurm.url,
        slurm.nodes.len(),
        args.cpus,
        slurm.min_job_age,
        slurm.kill_wait.as_secs()
    );
    let result = rt.block_on(churn(&args, &slurm));
    if !args.keep_cluster {
        cluster::stop(&slurm);
    }
    let (sched, base, queue) = result?;
    report(&args, &slurm, &sched, &base, state.as_ref(), queue.as_ref())
}

async fn churn(
    args: &Args,
    slurm: &SlurmEnv,
) -> anyhow::Result<(Figures, Figures, Option<Waiting>)> {
    let server = kubesim::Server::start(kubesim::Config {
        request_log_limit: 5_000_000,
        ..Default::default()
    })
    .await
    .context("starting kubesim")?;
    let client = server.client().await?;
    let dir = std::env::temp_dir().join(format!("pod-churn-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let kubeconfig = dir.join("kubeconfig");
    server.write_kubeconfig(&kubeconfig)?;
    let nodes = slurm
        .nodes
        .iter()
        .map(|n| NodeSpec {
            cpus: args.cpus,
            ..NodeSpec::new(n.clone())
        })
        .collect();
    let _kubelet = KubeletHandle::start(client.clone(), KubeletConfig::new(nodes)).await?;

    let load = Load {
        pods: args.pods,
        rate: args.rate,
        lifetime: args.lifetime,
        cancel_every: args.cancel_every,
        cancel_after: Duration::from_secs(1),
    };
    let tag = std::process::id() % 100_000;
    let mut figures = Vec::new();
    for side in ["scheduler", "baseline"] {
        let name = format!("churn-{}-{tag}", &side[..5]);
        driver::create_namespace(&client, &name).await?;
        let bench_slurm = Arc::new(slurm_client_for(slurm, &name).await?);

        eprintln!("{side}: starting");
        let mut proc = if side == "scheduler" {
            Proc::scheduler(args, slurm, &name, &kubeconfig, &dir)?
        } else {
            Proc::baseline(args, slurm, &name, &kubeconfig, &dir)?
        };
        proc.wait_ready().await?;
        let pid = proc.child.id();
        let idle = Duration::from_secs(5);
        let idle_start = cpu_ms(pid).unwrap_or(0.0);
        tokio::time::sleep(idle).await;
        let cpu_start = cpu_ms(pid).unwrap_or(0.0);
        let idle_cpu_ms_per_s = (cpu_start - idle_start) / idle.as_secs_f64();
        let started = Instant::now();

        eprintln!("{side}: {} pods at {}/s", args.pods, args.rate);
        let outcome = driver::run(&client, bench_slurm, &name, &name, &load).await;

        let cpu = cpu_ms(pid).unwrap_or(f64::NAN) - cpu_start;
        let span_s = started.elapsed().as_secs_f64();
        let rss = peak_rss_mib(pid).unwrap_or(f64::NAN);
        let slurm_requests = proc.stop_and_count(&dir)?;
        let agent = if side == "scheduler" {
            "slurm-pod-scheduler/"
        } else {
            baseline::USER_AGENT
        };
        let kube_requests = server
            .requests()
            .iter()
            .filter(|r| r.user_agent.starts_with(agent))
            .count() as f64;
        eprintln!(
            "{side}: bound {}/{}, {} scancelled, {} stuck, {} jobs left",
            outcome.bound,
            outcome.created,
            outcome.cancelled,
            outcome.pods_stuck,
            outcome.jobs_left
        );
        if outcome.pods_stuck > 0 || outcome.jobs_left > 0 {
            eprintln!(
                "{side}: stuck pods {:?}, jobs left {:?}",
                outcome.stuck_names, outcome.left_ids
            );
        }
        let api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client.clone());
        let _ = api.delete(&name, &Default::default()).await;
        figures.push(Figures {
            outcome,
            cpu_ms: cpu,
            peak_rss_mib: rss,
            kube_requests,
            slurm_requests,
            idle_cpu_ms_per_s,
            span_s,
        });
    }
    let queue = if args.waiting > 0 {
        let name = format!("churn-wait-{tag}");
        driver::create_namespace(&client, &name).await?;
        let bench_slurm = slurm_client_for(slurm, &name).await?;
        eprintln!("waiting: {} pods held in Slurm at once", args.waiting);
        let mut proc = Proc::scheduler(args, slurm, &name, &kubeconfig, &dir)?;
        proc.wait_ready().await?;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let addr = proc.metrics.expect("the scheduler's metrics address");
        let result = waiting::run(
            &client,
            &bench_slurm,
            &slurm.state_dir,
            &name,
            proc.child.id(),
            addr,
            args.waiting,
        )
        .await;
        proc.stop_and_count(&dir)?;
        Some(result?)
    } else {
        None
    };
    eprintln!("logs and the scheduler's last /metrics: {}", dir.display());
    let base = figures.pop().expect("two sides");
    let sched = figures.pop().expect("two sides");
    server.shutdown().await;
    Ok((sched, base, queue))
}

/// The benchmark's own slurmrestd client, seeing the jobs of the scheduler named `name`.
async fn slurm_client_for(slurm: &SlurmEnv, name: &str) -> anyhow::Result<SlurmClient> {
    let mut cfg = ClientConfig::new(&slurm.url, TokenSource::Static(slurm.token.clone()), name);
    cfg.user = slurm.user.clone();
    Ok(SlurmClient::connect(cfg).await?)
}

/// A scheduler or baseline process.
struct Proc {
    child: Child,
    kind: &'static str,
    metrics: Option<SocketAddr>,
    stdout: Option<BufReader<std::process::ChildStdout>>,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Proc {
    fn scheduler(
        args: &Args,
        slurm: &SlurmEnv,
        name: &str,
        kubeconfig: &Path,
        dir: &Path,
    ) -> anyhow::Result<Self> {
        let listen: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let log = std::fs::File::create(dir.join("scheduler.log"))?;
        let child = Command::new(env!("CARGO_BIN_EXE_slurm-pod-scheduler"))
            .args(["run", "--scheduler-name", name, "--namespaces", name])
            .args(["--slurm-url", &slurm.url, "--slurm-user", &slurm.user])
            .args([
                "--slurm-kill-wait",
                &format!("{}s", slurm.kill_wait.as_secs()),
            ])
            .args([
                "--poll-interval",
                &format!("{}ms", args.poll_interval.as_millis()),
            ])
            .args(["--listen", &listen.to_string()])
            .env("KUBECONFIG", kubeconfig)
            .env("SLURM_JWT", &slurm.token)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting the scheduler")?;
        Ok(Self {
            child,
            kind: "scheduler",
            metrics: Some(listen),
            stdout: None,
        })
    }

    fn baseline(
        args: &Args,
        slurm: &SlurmEnv,
        name: &str,
        kubeconfig: &Path,
        dir: &Path,
    ) -> anyhow::Result<Self> {
        let log = std::fs::File::create(dir.join("baseline.log"))?;
        let mut child = Command::new(std::env::current_exe()?)
            .args(["--baseline", "--scheduler-name", name, "--namespace", name])
            .args(["--kubeconfig", &kubeconfig.to_string_lossy()])
            .args(["--slurm-url", &slurm.url, "--slurm-user", &slurm.user])
            .args([
                "--kill-wait-seconds",
                &slurm.kill_wait.as_secs().to_string(),
            ])
            .args([
                "--poll-interval",
                &format!("{}ms", args.poll_interval.as_millis()),
            ])
            .env("SLURM_JWT", &slurm.token)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("starting the baseline")?;
        let stdout = child.stdout.take().map(BufReader::new);
        Ok(Self {
            child,
            kind: "baseline",
            metrics: None,
            stdout,
        })
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(90);
        if let Some(addr) = self.metrics {
            while Instant::now() < deadline {
                if let Ok((200, _)) = http_get(addr, "/readyz") {
                    return Ok(());
                }
                if let Some(status) = self.child.try_wait()? {
                    bail!("the scheduler exited before it was ready ({status}); see its log");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            bail!("the scheduler was not ready within 90 s");
        }
        let mut out = self.stdout.take().expect("the baseline's stdout");
        let (out, line) = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            let _ = out.read_line(&mut line);
            (out, line)
        })
        .await?;
        self.stdout = Some(out);
        if line.trim() != "READY" {
            bail!("the baseline did not start (said {line:?}); see its log");
        }
        Ok(())
    }

    /// End the process; its Slurm request count (from `/metrics`, or the baseline's own).
    /// The scheduler's last `/metrics` is kept in `dir` for a closer look.
    fn stop_and_count(mut self, dir: &Path) -> anyhow::Result<f64> {
        let count = if let Some(addr) = self.metrics {
            let (_, body) = http_get(addr, "/metrics")?;
            let _ = std::fs::write(dir.join("scheduler-metrics.txt"), &body);
            let _ = self.child.kill();
            metric_sum(&body, "slurm_pod_scheduler_slurm_requests_total")
        } else {
            drop(self.child.stdin.take());
            let mut count = f64::NAN;
            if let Some(out) = self.stdout.take() {
                for line in out.lines().map_while(Result::ok) {
                    if let Some(j) = line.strip_prefix("COUNTS ") {
                        let v: Value = serde_json::from_str(j)?;
                        count = v["slurm_requests"].as_f64().unwrap_or(f64::NAN);
                    }
                }
            }
            count
        };
        let _ = self.child.wait();
        eprintln!("{}: stopped", self.kind);
        Ok(count)
    }
}

fn report(
    args: &Args,
    slurm: &SlurmEnv,
    sched: &Figures,
    base: &Figures,
    state: Option<&state_size::StateSize>,
    queue: Option<&Waiting>,
) -> anyhow::Result<()> {
    let (s, b) = (sched.json(args.pods), base.json(args.pods));
    if args.smoke {
        let mut passed = 0;
        let mut failed = 0;
        for (side, f) in [("scheduler", sched), ("baseline", base)] {
            let o = &f.outcome;
            for (check, ok) in [
                (
                    "every pod bound",
                    o.bound == o.created && o.created == args.pods,
                ),
                ("no pod stuck", o.pods_stuck == 0),
                ("no job left in Slurm", o.jobs_left == 0),
            ] {
                println!("{} {side}: {check}", if ok { "ok  " } else { "FAIL" });
                if ok {
                    passed += 1
                } else {
                    failed += 1
                }
            }
        }
        println!("{passed} passed, {failed} failed");
        if failed > 0 {
            bail!("pod churn smoke run leaked");
        }
        return Ok(());
    }

    println!();
    println!(
        "{:<24} {:>12} {:>12} {:>10}",
        "figure", "scheduler", "baseline", "ratio"
    );
    for key in [
        "pods_per_second",
        "bind_p50_ms",
        "bind_p99_ms",
        "delete_p99_ms",
        "cpu_ms_per_pod",
        "peak_rss_mib",
        "kube_requests_per_pod",
        "slurm_requests_per_pod",
        "jobs_left",
        "pods_stuck",
    ] {
        let (x, y) = (
            s[key].as_f64().unwrap_or(f64::NAN),
            b[key].as_f64().unwrap_or(f64::NAN),
        );
        let ratio = if y != 0.0 {
            format!("{:.2}", x / y)
        } else {
            "-".into()
        };
        println!("{key:<24} {x:>12} {y:>12} {ratio:>10}");
    }
    for (side, f) in [("scheduler", sched), ("baseline", base)] {
        let marginal = (f.cpu_ms - f.idle_cpu_ms_per_s * f.span_s) / args.pods.max(1) as f64;
        println!(
            "{side}: idle {:.2} ms CPU/s; CPU over {:.1} s of load {:.0} ms, of which above idle \
             {:.3} ms/pod",
            f.idle_cpu_ms_per_s, f.span_s, f.cpu_ms, marginal
        );
    }
    let config = json!({
        "pods": args.pods,
        "rate": args.rate,
        "lifetime_s": args.lifetime.as_secs_f64(),
        "nodes": slurm.nodes.len(),
        "cpus_per_node": args.cpus,
        "slurm": slurm.version,
        "min_job_age_s": slurm.min_job_age,
        "kill_wait_s": slurm.kill_wait.as_secs(),
        "poll_interval_ms": args.poll_interval.as_millis() as u64,
        "cancel_every": args.cancel_every,
        "scancelled": sched.outcome.cancelled,
        "bytes_per_tracked_pod": state.map(|st| round(st.waiting_bytes_per_pod, 0)),
        "bytes_per_rejected_pod": state.map(|st| round(st.rejected_bytes_per_pod, 0)),
        "state_pods": state.map(|st| st.pods),
        "waiting": queue.map(|q| json!({
            "pods": q.pods,
            "all_pending_s": round(q.all_pending_s, 1),
            "rss_before_mib": round(q.rss_before_mib, 1),
            "rss_waiting_mib": round(q.rss_waiting_mib, 1),
            "rss_bytes_per_pod": round(q.rss_bytes_per_pod, 0),
            "cpu_ms_per_s_waiting": round(q.cpu_ms_per_s_waiting, 1),
            "drain_s": round(q.drain_s, 1),
            "jobs_left": q.jobs_left,
        })),
    });
    if let Some(q) = queue {
        println!(
            "waiting queue: {} pods pending after {:.0} s; scheduler RSS {:.1} -> {:.1} MiB \
             ({:.0} B per waiting pod); {:.1} ms CPU per second while they wait; deleted, \
             {} jobs left after {:.0} s",
            q.pods,
            q.all_pending_s,
            q.rss_before_mib,
            q.rss_waiting_mib,
            q.rss_bytes_per_pod,
            q.cpu_ms_per_s_waiting,
            q.jobs_left,
            q.drain_s
        );
    }
    println!();
    println!(
        "RESULT {}",
        json!({"scheduler": s, "baseline": b, "config": config})
    );
    Ok(())
}
