//! The `slurm-pod-scheduler` binary: parses the command line and wires the library's
//! commands to the process (exit status, logging). No logic lives here.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use slurm_pod_scheduler::explain::{self, ExplainArgs};

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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();

    match cli.command {
        Command::Explain(args) => {
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
