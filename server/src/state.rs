//! What every handler shares: the store's services and the server's lifecycle.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Limits;
use crate::gate::Gate;
use crate::registry::Registry;
use crate::rooms::Rooms;

#[derive(Debug, Clone)]
pub struct AppState {
    pub registry: Registry,
    pub gate: Gate,
    pub rooms: Arc<Rooms>,
    pub limits: Limits,
    /// Fires when the server begins shutting down.
    pub shutdown: CancellationToken,
    /// Every connection and WebSocket session, so shutdown can wait for them.
    pub tracker: TaskTracker,
}
