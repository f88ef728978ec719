//! Starting and stopping a server: open the store, build the TLS listener, serve until told to
//! stop, then drain connections, flush and close the store.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::audit::{AuditLog, Signer};
use crate::config::Config;
use crate::deployment::{DeploymentError, Layout};
use crate::gate::Gate;
use crate::listener::TlsSource;
use crate::pki::Pki;
use crate::policy::PolicyEngine;
use crate::registry::Registry;
use crate::rooms::Rooms;
use crate::sessions::Sessions;
use crate::state::{AppState, Services};
use crate::store::Store;
use crate::vetting::applications::Applications;
use crate::vetting::invites::Invites;
use crate::vetting::members::Members;
use crate::vetting::oidc::RelyingParty;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Deployment(#[from] DeploymentError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Seal(#[from] crate::seal::SealError),
    #[error(transparent)]
    Pki(#[from] crate::pki::PkiError),
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    #[error("OpenID Connect: {0}")]
    Oidc(String),
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
    enroll_addr: SocketAddr,
    shutdown: CancellationToken,
    store_failed: CancellationToken,
    task: JoinHandle<()>,
}

impl RunningServer {
    /// Where it listens (the real port when the configuration asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where the enrollment listener (no client certificate) listens.
    pub fn enroll_addr(&self) -> SocketAddr {
        self.enroll_addr
    }

    /// A token that stops the server when cancelled (for signal handlers).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Cancelled when the store failed to flush; the server then stops by itself, and its
    /// process should end with an error so that whatever supervises it restarts it.
    pub fn store_failed(&self) -> CancellationToken {
        self.store_failed.clone()
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

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), StartError> {
    let listen_error = |source| StartError::Listen { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(listen_error)?;
    let local = listener
        .local_addr()
        .map_err(|source| StartError::Listen { addr, source })?;
    Ok((listener, local))
}

/// Something put between the server and its store: it receives the store every component
/// reads and writes through, and returns the one they will use instead.
pub type StoreLayer = Box<dyn FnOnce(Arc<dyn Store>) -> Arc<dyn Store> + Send>;

/// Opens the deployment in `config.data_dir` and starts serving on `config.listen`.
pub async fn start(config: Config) -> Result<RunningServer, StartError> {
    start_layered(config, Box::new(|store| store)).await
}

/// [`start`], with the store every component reads and writes through wrapped by `layer` (all
/// but the sealing keys themselves, which are read and created beneath it): how the tests give
/// a real server a disk that fails, to see that nothing is acknowledged after a write that may
/// be lost. Not for production use.
#[doc(hidden)]
pub async fn start_layered(config: Config, layer: StoreLayer) -> Result<RunningServer, StartError> {
    crate::tls::install_provider();
    let layout = Layout::new(&config.data_dir);
    if !layout.is_initialised() {
        return Err(DeploymentError::NotInitialised(config.data_dir.clone()).into());
    }
    let (sealed, master) =
        crate::seal::open_deployment(&config.data_dir, &layout.store(), &config.master_key)?;
    tracing::info!(master_key = %master.path().display(), "store opened; values sealed at rest");
    // Every component writes through this one store, so every access-deciding write is counted.
    let counted = crate::store::EpochStore::new(sealed.clone());
    let epoch = counted.epoch();
    let store: Arc<dyn Store> = layer(Arc::new(counted));
    let sealing = Arc::new(crate::seal::Sealing::new(sealed, master));
    let pki = Arc::new(Pki::load(&layout, store.clone())?);
    let (listener, local_addr) = bind(config.listen).await?;
    let (enroll_listener, enroll_addr) = bind(config.vetting.enroll_listen).await?;
    let enroll_address = config
        .vetting
        .enroll_public
        .clone()
        .unwrap_or_else(|| enroll_addr.to_string());
    let (rooms, committer) = Rooms::new(store.clone(), config.limits.clone());
    let state_rooms = Arc::new(rooms);
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let registry = Registry::new(store.clone());
    let sessions = Arc::new(Sessions::default());
    let invites = Invites::new(store.clone(), config.vetting.clone());
    let applications = Applications::new(
        store.clone(),
        registry.clone(),
        invites.clone(),
        pki.clone(),
        config.vetting.clone(),
        layout.public_address()?,
    );
    let policy = Arc::new(PolicyEngine::load(store.clone())?);
    let signer = Signer::from_pem(&layout.read(&layout.server_key())?)?;
    let audit = Arc::new(AuditLog::open(store.clone(), Some(signer))?);
    audit.record(
        None,
        "server.start",
        "",
        format!("listening on {}", config.listen),
    );
    let oidc = Arc::new(
        RelyingParty::new(&config.oidc, &enroll_address)
            .map_err(|e| StartError::Oidc(e.message))?,
    );
    let state = AppState::new(Services {
        oidc,
        gate: Gate::new(store.clone(), policy)
            .with_epoch(epoch)
            .with_members_may_invite(config.vetting.members_may_invite)
            .with_audit(audit.clone()),
        audit: audit.clone(),
        sealing,
        taxii_statuses: Arc::default(),
        flood: Arc::new(crate::flood::Flood::new(config.limits.clone())),
        alerts: Arc::new(crate::alerts::Alerts::new(store.clone(), registry.clone())),
        files: Arc::new(crate::files::Files::new(
            store.clone(),
            registry.clone(),
            config.limits.clone(),
            layout.files(),
        )),
        members: Members::new(
            registry.clone(),
            pki.clone(),
            sessions.clone(),
            config.vetting.member_cert_days,
        ),
        registry,
        rooms: state_rooms.clone(),
        pki: pki.clone(),
        sessions: sessions.clone(),
        invites,
        applications,
        limits: config.limits.clone(),
        vetting: config.vetting.clone(),
        enroll_address,
        shutdown: shutdown.clone(),
        tracker: tracker.clone(),
    });
    let main_tls: TlsSource = {
        let pki = pki.clone();
        Arc::new(move || pki.main_tls())
    };
    let enroll_tls: TlsSource = {
        let config = pki.enroll_tls()?;
        Arc::new(move || config.clone())
    };
    let enroll_app = crate::http::enroll::router(state.clone());
    let app = crate::http::router(state);
    let limits = config.limits.clone();
    let token = shutdown.clone();
    tracker.spawn(crate::listener::accept_loop(
        enroll_listener,
        enroll_tls,
        enroll_app,
        limits.clone(),
        token.clone(),
        tracker.clone(),
        None,
    ));
    // A store that failed to flush acknowledges nothing more: stop, and start again from the disk.
    let store_failed = state_rooms.store_failed();
    {
        let (failed, token) = (store_failed.clone(), shutdown.clone());
        tracker.spawn(async move {
            tokio::select! {
                () = token.cancelled() => {}
                () = failed.cancelled() => {
                    tracing::error!("stopping: the store failed to flush");
                    token.cancel();
                }
            }
        });
    }
    // Retention: messages older than a room's retention period are deleted, every minute.
    {
        let (rooms, token) = (state_rooms.clone(), shutdown.clone());
        tracker.spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                tokio::select! {
                    () = token.cancelled() => break,
                    _ = every.tick() => {
                        let rooms = rooms.clone();
                        let run = tokio::task::spawn_blocking(move || {
                            rooms.enforce_retention(time::OffsetDateTime::now_utc())
                        })
                        .await;
                        match run {
                            Ok(Ok(0)) => {}
                            Ok(Ok(n)) => tracing::info!(deleted = n, "retention: old messages deleted"),
                            Ok(Err(e)) => tracing::error!(error = %e.message, "retention failed"),
                            Err(e) => tracing::error!(error = %e, "retention task failed"),
                        }
                    }
                }
            }
        });
    }
    // Signed checkpoints: every minute while entries are added, and once more at shutdown.
    {
        let (audit, token) = (audit.clone(), shutdown.clone());
        tracker.spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
            every.tick().await;
            loop {
                tokio::select! {
                    () = token.cancelled() => break,
                    _ = every.tick() => {
                        if let Err(e) = audit.checkpoint() {
                            tracing::error!(error = %e, "audit checkpoint failed");
                        }
                    }
                }
            }
        });
    }
    let task = tokio::spawn(async move {
        crate::listener::accept_loop(
            listener,
            main_tls,
            app,
            limits.clone(),
            token,
            tracker.clone(),
            Some(sessions),
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
        audit.record(None, "server.stop", "", "graceful shutdown");
        if let Err(e) = audit.checkpoint() {
            tracing::error!(error = %e, "final audit checkpoint failed");
        }
        drop(audit);
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
    tracing::info!(%local_addr, %enroll_addr, "listening (mutual TLS; enrollment without client certificates)");
    Ok(RunningServer {
        local_addr,
        enroll_addr,
        shutdown,
        store_failed,
        task,
    })
}
