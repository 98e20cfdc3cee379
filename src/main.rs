//! The `slurm-pod-scheduler` binary: parses the command line and wires the library's
//! commands to the process (exit status, logging). No logic lives here.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use slurm_pod_scheduler::explain::{self, ExplainArgs};
use slurm_pod_scheduler::run::args::{LogFormat, RunArgs};

/// A Kubernetes pod scheduler that hands placement decisions to Slurm.
#[derive(Debug, Parser)]
#[command(name = "slurm-pod-scheduler", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the Slurm job each pod in manifests would become, or why it would be refused.
    /// Exit status: 0 all our pods schedulable, 2 some rejected, 1 unreadable input.
    Explain(ExplainArgs),
    /// Schedule pods through Slurm: watch our pods, submit placeholder jobs, bind pods to
    /// the nodes Slurm allocates, and keep both sides agreeing. Stops cleanly on SIGTERM.
    Run(Box<RunArgs>),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Usage errors exit 1, not clap's 2, which `explain` uses for "rejected".
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    match cli.command {
        Command::Run(args) => run(*args),
        Command::Explain(args) => {
            init_logging(LogFormat::Text, "warn");
            let stdout = &mut std::io::stdout().lock();
            let stderr = &mut std::io::stderr().lock();
            match explain::run(&args, stdout, stderr) {
                Ok(status) => ExitCode::from(status.code()),
                Err(e) => {
                    eprintln!("slurm-pod-scheduler explain: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

fn init_logging(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn run(args: RunArgs) -> ExitCode {
    let format = match args.log_format() {
        Ok(format) => format,
        Err(e) => {
            eprintln!("slurm-pod-scheduler run: {e}");
            return ExitCode::from(1);
        }
    };
    init_logging(format, "info");
    let settings = match args
        .settings()
        .and_then(|s| RunArgs::check_token_file(&s).map(|()| s))
    {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("slurm-pod-scheduler run: {e}");
            return ExitCode::from(1);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("slurm-pod-scheduler run: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        let kube = match kube::Config::infer().await {
            Ok(config) => config,
            Err(e) => {
                eprintln!(
                    "slurm-pod-scheduler run: no Kubernetes configuration (KUBECONFIG or in-cluster): {e}"
                );
                return ExitCode::from(1);
            }
        };
        // Dropping `Running` aborts every task: keep it until shutdown.
        let _running = match slurm_pod_scheduler::run::start(settings, kube).await {
            Ok(running) => running,
            Err(e) => {
                eprintln!("slurm-pod-scheduler run: {e:#}");
                return ExitCode::from(1);
            }
        };
        wait_for_shutdown().await;
        tracing::info!("shutting down");
        ExitCode::SUCCESS
    })
}

/// SIGTERM (Kubernetes stopping the pod) or Ctrl-C. In-flight requests are abandoned: every
/// decision is re-derived from Kubernetes and Slurm by whoever runs next.
async fn wait_for_shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
