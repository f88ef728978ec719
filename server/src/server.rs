//! Starting and stopping a server: open the store, build the TLS listener, serve until told to
//! stop, then drain connections, flush and close the store.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::deployment::{DeploymentError, Layout};
use crate::gate::Gate;
use crate::registry::Registry;
use crate::rooms::Rooms;
use crate::state::AppState;
use crate::store::{SledStore, Store};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Deployment(#[from] DeploymentError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A server that is accepting connections.
#[derive(Debug)]
pub struct RunningServer {
    local_addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl RunningServer {
    /// Where it listens (the real port when the configuration asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A token that stops the server when cancelled (for signal handlers).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops accepting, lets open requests and acknowledgements finish, closes WebSockets with a
    /// close frame, flushes and closes the store. Returns once the data dir can be reopened.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.stopped().await;
    }

    /// Waits until the server has stopped (after its shutdown token was cancelled).
    pub async fn stopped(self) {
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "server task failed");
        }
    }
}

/// Opens the deployment in `config.data_dir` and starts serving on `config.listen`.
pub async fn start(config: Config) -> Result<RunningServer, StartError> {
    crate::tls::install_provider();
    let layout = Layout::new(&config.data_dir);
    if !layout.is_initialised() {
        return Err(DeploymentError::NotInitialised(config.data_dir.clone()).into());
    }
    let tls = crate::tls::server_config(
        &layout.read(&layout.ca_cert())?,
        &layout.read(&layout.server_cert())?,
        &layout.read(&layout.server_key())?,
    )?;
    let store: Arc<dyn Store> = Arc::new(SledStore::open(&layout.store())?);
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: config.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| StartError::Listen {
        addr: config.listen,
        source,
    })?;
    let (rooms, committer) = Rooms::new(store.clone(), config.limits.clone());
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let state = AppState {
        registry: Registry::new(store.clone()),
        gate: Gate::new(store.clone()),
        rooms: Arc::new(rooms),
        limits: config.limits.clone(),
        shutdown: shutdown.clone(),
        tracker: tracker.clone(),
    };
    let app = crate::http::router(state);
    let limits = config.limits.clone();
    let token = shutdown.clone();
    let task = tokio::spawn(async move {
        crate::listener::accept_loop(
            listener,
            Arc::new(tls),
            app,
            limits.clone(),
            token,
            tracker.clone(),
        )
        .await;
        tracing::info!("no longer accepting connections; draining");
        tracker.close();
        if tokio::time::timeout(limits.shutdown_grace(), tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                open = tracker.len(),
                "connections still open after the grace period; closing anyway"
            );
        }
        // Every handle on the room service is gone with the connections; the committer ends
        // after its last flush. Then the store is flushed once more and closed.
        match tokio::time::timeout(limits.shutdown_grace(), committer).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "commit task failed"),
            Err(_) => tracing::warn!("commit task still running after the grace period"),
        }
        let flushed = tokio::task::spawn_blocking(move || {
            let result = store.flush();
            drop(store);
            result
        })
        .await;
        match flushed {
            Ok(Ok(())) => tracing::info!("store flushed and closed"),
            Ok(Err(e)) => tracing::error!(error = %e, "final flush failed"),
            Err(e) => tracing::error!(error = %e, "final flush task failed"),
        }
    });
    tracing::info!(%local_addr, "listening (mutual TLS)");
    Ok(RunningServer {
        local_addr,
        shutdown,
        task,
    })
}
