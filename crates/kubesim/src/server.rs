//! Starting and stopping the server, and everything a test or another binary needs to
//! talk to it: its address, a kubeconfig (file or `kube::Config`), the request log, and
//! the store.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::{router, AppState};
use crate::error::Error;
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
        let state = AppState {
            store: store.clone(),
            token: config.token.clone(),
            recorder: recorder.clone(),
            shutdown: shutdown_rx.clone(),
            watch_epoch: epoch_rx,
            address: addr.to_string(),
            features: config.features,
        };
        let app = router(state);
        let mut stop = shutdown_rx;
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
    epoch_tx: watch::Sender<u64>,
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
