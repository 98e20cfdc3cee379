//! Starting and stopping the server, and everything a test or another binary needs to
//! talk to it: its address, a kubeconfig (file or `kube::Config`), the request log, and
//! the store, and the fault injection controls.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::{router, AppState};
use crate::error::Error;
use crate::faults::{Fault, FaultError, FaultListener, Faults, Matcher};
use crate::recorder::{Recorder, RequestRecord};
use crate::resource::Table;
use crate::store::{key, Outcome, Store};
use crate::{admit, resource::Resource};

/// How to run a server.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Bearer token clients must send; `None` accepts any request.
    pub token: Option<String>,
    /// Watch events kept per resource kind for watches from a version.
    pub history_limit: usize,
    /// Requests kept in the request log.
    pub request_log_limit: usize,
    /// Namespaces that exist from the start.
    pub namespaces: Vec<String>,
    /// Feature gates (default: those of kube-apiserver 1.28).
    pub features: crate::pods::Features,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            token: Some("kubesim-admin-token".into()),
            history_limit: 100_000,
            request_log_limit: 200_000,
            namespaces: ["default", "kube-system", "kube-public", "kube-node-lease"]
                .map(String::from)
                .to_vec(),
            features: Default::default(),
        }
    }
}

/// The server entry point.
pub struct Server;

impl Server {
    /// Bind, seed the initial namespaces and serve in the background.
    pub async fn start(config: Config) -> Result<ServerHandle, Error> {
        if !config.listen.ip().is_loopback() {
            return Err(Error::NotLoopback {
                addr: config.listen.to_string(),
            });
        }
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| Error::Bind {
                addr: config.listen.to_string(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: config.listen.to_string(),
            source,
        })?;
        let store = Arc::new(Store::new(config.history_limit));
        for ns in &config.namespaces {
            let obj = admit::prepare_create(
                Resource::Namespaces,
                json!({"metadata": {"name": ns}}),
                None,
                config.features,
            )
            .expect("namespace defaults never fail");
            store
                .write(Table::Namespaces, &key(None, ns), |_| {
                    Ok(Outcome::Create(obj))
                })
                .expect("a fresh store has no namespaces");
        }
        let recorder = Arc::new(Recorder::new(config.request_log_limit));
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (epoch_tx, epoch_rx) = watch::channel(0u64);
        let epoch_tx = Arc::new(epoch_tx);
        let faults = {
            let epoch_tx = epoch_tx.clone();
            Arc::new(Faults::new(Box::new(move || {
                epoch_tx.send_modify(|e| *e += 1)
            })))
        };
        let state = AppState {
            store: store.clone(),
            token: config.token.clone(),
            recorder: recorder.clone(),
            shutdown: shutdown_rx.clone(),
            watch_epoch: epoch_rx,
            address: addr.to_string(),
            features: config.features,
            faults: faults.clone(),
        };
        let app = router(state);
        let mut stop = shutdown_rx;
        let listener = FaultListener {
            inner: listener,
            faults: faults.clone(),
        };
        let join = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
        });
        tracing::info!(%addr, "kubesim listening");
        Ok(ServerHandle {
            addr,
            token: config.token,
            store,
            recorder,
            shutdown_tx,
            epoch_tx,
            faults,
            join,
        })
    }
}

/// A running server.
pub struct ServerHandle {
    addr: SocketAddr,
    token: Option<String>,
    store: Arc<Store>,
    recorder: Arc<Recorder>,
    shutdown_tx: watch::Sender<bool>,
    epoch_tx: Arc<watch::Sender<u64>>,
    faults: Arc<Faults>,
    join: JoinHandle<std::io::Result<()>>,
}

impl ServerHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig for this server that both kube-rs and kubectl accept.
    pub fn kubeconfig_yaml(&self) -> String {
        let user = match &self.token {
            Some(t) => format!("    token: {t}\n"),
            None => "    {}\n".to_string(),
        };
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kubesim\n  cluster:\n    server: {}\n\
             contexts:\n- name: kubesim\n  context:\n    cluster: kubesim\n    user: kubesim\n    \
             namespace: default\ncurrent-context: kubesim\nusers:\n- name: kubesim\n  user:\n{user}",
            self.url()
        )
    }

    /// Write the kubeconfig to a file.
    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), Error> {
        std::fs::write(path, self.kubeconfig_yaml()).map_err(|source| Error::Kubeconfig {
            path: path.display().to_string(),
            source,
        })
    }

    /// A `kube::Config` built from the same kubeconfig.
    pub async fn kube_config(&self) -> Result<kube::Config, Error> {
        let err = |message: String| Error::ClientConfig {
            url: self.url(),
            message,
        };
        let kubeconfig = kube::config::Kubeconfig::from_yaml(&self.kubeconfig_yaml())
            .map_err(|e| err(e.to_string()))?;
        kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .map_err(|e| err(e.to_string()))
    }

    /// A `kube::Client` for this server.
    pub async fn client(&self) -> Result<kube::Client, Error> {
        let config = self.kube_config().await?;
        kube::Client::try_from(config).map_err(|e| Error::ClientConfig {
            url: self.url(),
            message: e.to_string(),
        })
    }

    /// Every request answered so far.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.recorder.snapshot()
    }

    /// Forget the request log.
    pub fn clear_requests(&self) {
        self.recorder.clear();
    }

    /// End every open watch now (clients see the stream close and re-watch).
    pub fn end_watches(&self) {
        self.epoch_tx.send_modify(|e| *e += 1);
    }

    /// Drop the watch history of a resource: watches from older versions get 410.
    pub fn compact(&self, resource: Resource) {
        self.store.compact(resource.table());
    }

    /// Add a fault rule, or act on one at once (see [`Fault`]); the same as POSTing it to
    /// `/kubesim/faults`.
    pub fn inject(&self, fault: Fault) -> Result<(), FaultError> {
        self.faults.inject(fault)
    }

    /// Fail the next `count` requests that `matcher` selects with `status` and the
    /// `Status` body kube-apiserver sends with it (429 carries `Retry-After: 1`).
    pub fn fail_next(&self, matcher: Matcher, count: u32, status: u16) -> Result<(), FaultError> {
        self.inject(Fault::Fail {
            matcher,
            status,
            count: Some(count),
            seconds: None,
            retry_after_seconds: None,
            message: None,
        })
    }

    /// Answer the next `count` requests `matcher` selects with 429 and `Retry-After`.
    pub fn throttle_next(&self, matcher: Matcher, count: u32, retry_after: Duration) {
        let fault = Fault::Fail {
            matcher,
            status: 429,
            count: Some(count),
            seconds: None,
            retry_after_seconds: Some(retry_after.as_secs().max(1)),
            message: None,
        };
        self.inject(fault).expect("429 is an error status");
    }

    /// Hold each request `matcher` selects for `delay`, for the next `count` requests, or
    /// for `period`, or (both `None`) until [`ServerHandle::clear_faults`].
    pub fn delay(
        &self,
        matcher: Matcher,
        delay: Duration,
        count: Option<u32>,
        period: Option<Duration>,
    ) {
        let fault = Fault::Delay {
            matcher,
            millis: delay.as_millis() as u64,
            count,
            seconds: period.map(|p| p.as_secs_f64().min(86_400.0)),
        };
        self.inject(fault).expect("a Duration is a usable duration");
    }

    /// The next watch of `resource` gets the `410 Expired` ERROR event and ends.
    pub fn expire_next_watch(&self, resource: Resource) {
        let fault = Fault::ExpireWatch {
            resource: resource.plural().to_string(),
            count: Some(1),
        };
        self.inject(fault).expect("a served resource");
    }

    /// Close new connections at once, and established ones on their next read or write,
    /// for `period`; open watches end now.
    pub fn refuse_connections(&self, period: Duration) {
        let fault = Fault::RefuseConnections {
            seconds: period.as_secs_f64().min(86_400.0),
        };
        self.inject(fault).expect("a Duration is a usable duration");
    }

    /// Remove every fault rule and stop refusing connections.
    pub fn clear_faults(&self) {
        self.faults.clear();
    }

    /// The live fault rules, as `GET /kubesim/faults` lists them.
    pub fn active_faults(&self) -> Vec<serde_json::Value> {
        self.faults.active()
    }

    /// The store, for tests that inspect or seed state directly.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Stop: end watches, stop accepting, wait for in-flight requests.
    pub async fn shutdown(self) {
        let _ = self.shutdown_tx.send(true);
        match self.join.await {
            Ok(Ok(())) => tracing::info!(addr = %self.addr, "kubesim stopped"),
            Ok(Err(e)) => tracing::warn!(error = %e, "kubesim server ended with an error"),
            Err(e) => tracing::warn!(error = %e, "kubesim server task failed"),
        }
    }
}
