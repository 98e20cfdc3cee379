//! slurm-pod-scheduler: a Kubernetes pod scheduler that hands placement to Slurm.
//!
//! `translate` is the pure heart (pod to placeholder job, or the reasons it cannot be);
//! `config` is the configuration file's schema; `explain` is the offline command that runs
//! the translation on manifests.

pub mod config;
pub mod explain;
pub mod kube_io;
pub mod leader;
pub mod lifecycle;
pub mod metrics;
pub mod nodes;
pub mod run;
pub mod translate;
