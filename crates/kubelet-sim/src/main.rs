//! The `kubelet-sim` binary: play the kubelets of the given nodes against the API server of
//! `KUBECONFIG` until interrupted.

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use kubelet_sim::{KubeletConfig, KubeletHandle, NodeSpec};

/// Simulate kubelets for a test cluster.
#[derive(Debug, Parser)]
#[command(name = "kubelet-sim", version)]
struct Args {
    /// Node names, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    nodes: Vec<String>,
    /// CPUs per node.
    #[arg(long, default_value_t = 8)]
    cpus: u32,
    /// Memory per node in MiB.
    #[arg(long, default_value_t = 16_000)]
    memory_mib: u64,
    /// GPUs (`nvidia.com/gpu`) on each node listed in --gpu-nodes.
    #[arg(long, default_value_t = 0)]
    gpus: u32,
    /// Nodes that have GPUs, comma-separated.
    #[arg(long, value_delimiter = ',')]
    gpu_nodes: Vec<String>,
    /// Seconds between node heartbeats.
    #[arg(long, default_value_t = 10)]
    heartbeat_seconds: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "kubelet_sim=info".into()),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let nodes = args
        .nodes
        .iter()
        .map(|name| NodeSpec {
            name: name.clone(),
            cpus: args.cpus,
            memory_mib: args.memory_mib,
            gpus: if args.gpu_nodes.contains(name) {
                args.gpus
            } else {
                0
            },
            labels: Vec::new(),
        })
        .collect();
    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes configuration (set KUBECONFIG)")?;
    let mut config = KubeletConfig::new(nodes);
    config.heartbeat = Duration::from_secs(args.heartbeat_seconds.max(1));
    let _kubelet = KubeletHandle::start(client, config).await?;
    eprintln!("kubelet-sim: playing nodes {}", args.nodes.join(","));
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    Ok(())
}
