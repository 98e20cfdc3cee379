//! `slurm-pod-scheduler run`: wires the watchers, the Slurm poller, the scheduling loop,
//! the executor, leader election and the metrics server together.

pub mod args;
mod core;
mod exec;
mod http;
mod kube_client;
mod limiter;
mod poller;
pub mod project;
pub mod state_probe;
mod watch;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use slurm_client::{ClientConfig, SlurmObserver};
use tokio::sync::{mpsc, watch as wch, RwLock};
use tracing::info;

pub use self::core::job_view;
use crate::leader::{self, LeaseConfig};
use crate::lifecycle::Timing;
use crate::metrics::{Endpoint, EndpointCode, Metrics};
use crate::nodes::map::Mapping;
use crate::translate::TranslateContext;

/// Everything `run` needs, resolved from flags, environment and the config file.
#[derive(Debug, Clone)]
pub struct Settings {
    pub ctx: TranslateContext,
    /// Namespaces to watch; empty means all.
    pub namespaces: Vec<String>,
    pub poll_interval: Duration,
    pub node_mapping: Mapping,
    pub slurmd_namespace: String,
    pub timing: Timing,
    /// How long a job must lack a pod before it is cancelled as an orphan.
    pub orphan_grace: Duration,
    /// UID to Slurm user name, for impersonation where the API cannot carry a UID.
    pub user_names: BTreeMap<u32, String>,
    /// `Some` when leader election is on.
    pub lease: Option<LeaseConfig>,
    pub kube_qps: f32,
    pub kube_burst: u32,
    pub listen: SocketAddr,
    pub slurm: ClientConfig,
    /// This replica's name in events and the lease.
    pub identity: String,
}

/// A handle on a running scheduler (tests use the address and the readiness). Dropping it,
/// or [`Running::stop`], ends every task it started, as a killed process would.
pub struct Running {
    pub metrics_addr: SocketAddr,
    pub ready: wch::Receiver<bool>,
    pub metrics: Arc<Metrics>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stop at once: nothing more is decided or sent (requests in flight may still land).
    pub fn stop(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Start every task and return once they run. They stop when the runtime shuts down.
pub async fn start(settings: Settings, kube_config: kube::Config) -> anyhow::Result<Running> {
    let metrics = Arc::new(Metrics::new());
    let kube = kube_client::build(kube_config, metrics.clone())?;
    start_inner(settings, kube, metrics).await
}

/// Like [`start`] with a client built by the caller (tests that add their own middleware);
/// its requests are not counted in `kube_requests_total`.
pub async fn start_with_client(settings: Settings, kube: kube::Client) -> anyhow::Result<Running> {
    start_inner(settings, kube, Arc::new(Metrics::new())).await
}

async fn start_inner(
    settings: Settings,
    kube: kube::Client,
    metrics: Arc<Metrics>,
) -> anyhow::Result<Running> {
    let settings = Arc::new(settings);
    let mut tasks = Vec::new();
    let (tx, rx) = mpsc::channel(4096);

    let (leading_tx, leading_rx) = wch::channel(settings.lease.is_none());
    if let Some(lease) = settings.lease.clone() {
        tasks.push(tokio::spawn(leader::run(kube.clone(), lease, leading_tx)));
    } else {
        metrics.leader.set(1);
        // Without election this replica always leads; keep the sender alive.
        tasks.push(tokio::spawn(async move {
            leading_tx.closed().await;
        }));
    }

    let (core_ready_tx, core_ready_rx) = wch::channel(false);
    let (slurm_up_tx, slurm_up_rx) = wch::channel(false);
    let (ready_tx, ready_rx) = wch::channel(false);
    tasks.push(tokio::spawn(combine_ready(
        core_ready_rx,
        slurm_up_rx,
        ready_tx,
    )));

    let (metrics_addr, server) = http::serve(settings.listen, metrics.clone(), ready_rx.clone())
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} (--listen): {e}", settings.listen))?;
    tasks.push(server);
    info!(addr = %metrics_addr, "serving /metrics, /healthz and /readyz");

    let shared: exec::SharedSlurm = Arc::new(RwLock::new(None));
    let observer: Arc<dyn SlurmObserver> = Arc::new(SlurmMetrics(metrics.clone()));
    tasks.push(tokio::spawn(poller::run(
        settings.slurm.clone(),
        observer,
        shared.clone(),
        settings.poll_interval,
        tx.clone(),
        slurm_up_tx,
    )));

    let streams: Vec<Option<String>> = if settings.namespaces.is_empty() {
        vec![None]
    } else {
        settings.namespaces.iter().cloned().map(Some).collect()
    };
    for (i, ns) in streams.iter().enumerate() {
        let name = settings.ctx.scheduler_name.clone();
        tasks.push(tokio::spawn(watch::pods(
            kube.clone(),
            ns.clone(),
            name,
            i,
            tx.clone(),
        )));
    }
    tasks.push(tokio::spawn(watch::nodes(kube.clone(), tx.clone())));
    if let Mapping::SlurmdPods(selector) = &settings.node_mapping {
        tasks.push(tokio::spawn(watch::slurmd_pods(
            kube.clone(),
            settings.slurmd_namespace.clone(),
            selector.clone(),
            tx.clone(),
        )));
    }

    let job_annotation = format!(
        "{}{}",
        settings.ctx.annotation_prefix,
        project::JOB_ID_ANNOTATION
    );
    let executor = exec::Executor::new(
        kube,
        shared,
        metrics.clone(),
        tx,
        limiter::RateLimiter::new(settings.kube_qps, settings.kube_burst),
        job_annotation,
        settings.identity.clone(),
    );
    let core = core::Core::new(
        settings.clone(),
        metrics.clone(),
        executor,
        streams.len(),
        leading_rx,
        core_ready_tx,
    );
    tasks.push(tokio::spawn(core.run(rx)));

    Ok(Running {
        metrics_addr,
        ready: ready_rx,
        metrics,
        tasks,
    })
}

async fn combine_ready(
    mut core: wch::Receiver<bool>,
    mut slurm: wch::Receiver<bool>,
    out: wch::Sender<bool>,
) {
    loop {
        out.send_replace(*core.borrow() && *slurm.borrow());
        tokio::select! {
            r = core.changed() => if r.is_err() { return },
            r = slurm.changed() => if r.is_err() { return },
        }
    }
}

/// Feeds the Slurm client's request observations into our Prometheus metrics.
struct SlurmMetrics(Arc<Metrics>);

impl SlurmObserver for SlurmMetrics {
    fn request(&self, endpoint: &'static str, code: &str, duration: Duration) {
        self.0
            .slurm_requests
            .get_or_create(&EndpointCode {
                endpoint: endpoint.into(),
                code: code.into(),
            })
            .inc();
        self.0
            .slurm_request_duration
            .get_or_create(&Endpoint {
                endpoint: endpoint.into(),
            })
            .observe(duration.as_secs_f64());
    }

    fn token_reload(&self) {
        self.0.slurm_token_reloads.inc();
    }
}
