//! The `kubesim` binary: serve the API double on loopback and write a kubeconfig.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// A Kubernetes API server test double.
#[derive(Debug, Parser)]
#[command(name = "kubesim", version)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "KUBESIM_LISTEN", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Write a kubeconfig for the server to this file.
    #[arg(long, env = "KUBESIM_KUBECONFIG_OUT")]
    kubeconfig_out: Option<PathBuf>,
    /// Bearer token clients must send.
    #[arg(long, env = "KUBESIM_TOKEN", default_value = "kubesim-admin-token")]
    token: String,
    /// Watch events kept per resource kind.
    #[arg(long, env = "KUBESIM_HISTORY_LIMIT", default_value_t = 100_000)]
    history_limit: usize,
    /// Turn the SidecarContainers feature gate on (off in 1.28, on from 1.29).
    #[arg(long, env = "KUBESIM_SIDECAR_CONTAINERS")]
    sidecar_containers: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "kubesim=info".into()),
        )
        .init();
    let args = Args::parse();
    if !args.listen.ip().is_loopback() {
        anyhow::bail!(
            "refusing to listen on {}: kubesim serves loopback only",
            args.listen
        );
    }
    let config = kubesim::Config {
        listen: args.listen,
        token: Some(args.token),
        history_limit: args.history_limit,
        features: kubesim::pods::Features {
            sidecar_containers: args.sidecar_containers,
        },
        ..Default::default()
    };
    let server = kubesim::Server::start(config).await?;
    if let Some(path) = &args.kubeconfig_out {
        server
            .write_kubeconfig(path)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!("kubesim listening on {}", server.url());
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    server.shutdown().await;
    Ok(())
}
