//! Talking to slurmrestd: one interface, adapters per REST API version.

pub mod job;

pub use job::{Exclusivity, PlaceholderJob, TimeLimit};
