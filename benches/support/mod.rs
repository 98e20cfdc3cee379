//! The pod-churn benchmark's parts: the Slurm cluster, the load and its measurements, the
//! baseline loop, process statistics, the state-size measurement, and the waiting-queue run.

pub mod baseline;
pub mod cluster;
pub mod driver;
pub mod procstat;
pub mod state_size;
pub mod waiting;
