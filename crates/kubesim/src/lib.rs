//! `kubesim`: a Kubernetes API server test double for pods, nodes, namespaces, leases
//! and events (`v1` and `events.k8s.io/v1`), answering like kube-apiserver 1.28 where
//! clients depend on it: defaults, Status bodies, binding and graceful deletion rules,
//! resourceVersions, watches with bookmarks and `410 Expired`, selectors and paging.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kubesim::Error> {
//! let server = kubesim::Server::start(kubesim::Config::default()).await?;
//! let client = server.client().await?;
//! # let _ = client;
//! server.shutdown().await;
//! # Ok(()) }
//! ```

pub mod admit;
mod api;
pub mod deletion;
pub mod error;
pub mod events;
pub mod faults;
pub mod meta;
pub mod patch;
pub mod pods;
pub mod recorder;
pub mod request;
pub mod resource;
pub mod selector;
mod server;
pub mod store;

pub use error::{ApiError, Error};
pub use faults::{Fault, FaultError, Matcher};
pub use recorder::RequestRecord;
pub use request::RequestInfo;
pub use resource::Resource;
pub use server::{Config, Server, ServerHandle};
