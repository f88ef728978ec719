//! What every handler shares: the store's services and the server's lifecycle.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::audit::AuditLog;
use crate::config::{Limits, Vetting};
use crate::gate::Gate;
use crate::pki::Pki;
use crate::registry::Registry;
use crate::rooms::Rooms;
use crate::sessions::Sessions;
use crate::vetting::applications::Applications;
use crate::vetting::invites::Invites;
use crate::vetting::members::Members;
use crate::vetting::oidc::RelyingParty;

/// The handle every handler, session and task holds: one pointer to the shared services.
///
/// A pointer rather than the services themselves because every request and every task of a
/// WebSocket session holds a copy: cloning is then one reference count, and an idle session
/// carries a few words instead of the whole set (memory per idle connection, BENCHMARKS.md).
#[derive(Debug, Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    pub fn new(services: Services) -> Self {
        Self(Arc::new(services))
    }

    /// Makes every write so far durable, for a reply that promises a decision took effect: an
    /// admin's suspension or new attributes, with their audit entry, must not be undone by a
    /// power cut after the admin was told they hold. (Messages have their own group commit.)
    ///
    /// A failure stops the server as a failed group commit does (see `rooms::commit`), and the
    /// reply says the change may hold: it was applied, so repeating it blindly could do it twice.
    pub async fn persist(&self) -> Result<(), crate::error::ApiError> {
        let state = self.clone();
        let flushed = tokio::task::spawn_blocking(move || state.registry.store().flush()).await;
        let error = match flushed {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        tracing::error!(%error, "the store could not be flushed after a change; the server stops");
        self.rooms.store_failed().cancel();
        Err(crate::error::ApiError::new(
            escape_proto::ErrorCode::Internal,
            "the change was applied but could not be written to disk, and the server is stopping: \
             once it is back, check whether the change held before repeating it",
        ))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// The store's services and the server's lifecycle.
#[derive(Debug)]
pub struct Services {
    pub registry: Registry,
    pub gate: Gate,
    pub rooms: Arc<Rooms>,
    pub pki: Arc<Pki>,
    pub sessions: Arc<Sessions>,
    pub invites: Invites,
    pub applications: Applications,
    pub members: Members,
    pub oidc: Arc<RelyingParty>,
    pub audit: Arc<AuditLog>,
    /// Per-member rate limits.
    pub flood: Arc<crate::flood::Flood>,
    /// Early-warning alerts and the hub live sessions listen to.
    pub alerts: Arc<crate::alerts::Alerts>,
    /// TAXII 2.1 write statuses.
    pub taxii_statuses: Arc<crate::taxii::Statuses>,
    /// Room keys and end-to-end encrypted files.
    pub files: Arc<crate::files::Files>,
    /// The sealed store's keys, for rotating the master key while serving.
    pub sealing: Arc<crate::seal::Sealing>,
    pub limits: Limits,
    pub vetting: Vetting,
    /// The enrollment listener's address as applicants should use it.
    pub enroll_address: String,
    /// Fires when the server begins shutting down.
    pub shutdown: CancellationToken,
    /// Every connection and WebSocket session, so shutdown can wait for them.
    pub tracker: TaskTracker,
}
