//! Kubernetes I/O: the scheduler's writes (bindings, conditions, deletions, events).

pub mod events;
pub mod writer;
