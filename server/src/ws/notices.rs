//! What reaches a session apart from its rooms' events: early-warning alerts (those waiting
//! since the member's last session, then each one as it is sent), mentions and typing notices.
//!
//! The session's reader loop keeps the [`Inbox`] and waits on it beside the socket; an inbox has
//! no task of its own, because every task an idle session holds is memory it costs.

use std::collections::HashSet;
use std::sync::Arc;

use escape_proto::frame::ServerMessage;
use escape_proto::{MemberId, ServerFrame};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use super::connection::Outbox;
use crate::alerts::Delivery;
use crate::identity::Principal;
use crate::state::AppState;

/// One session's listener on the server's notice hub, and the alerts it already sent.
#[derive(Debug)]
pub struct Inbox {
    live: broadcast::Receiver<Arc<Delivery>>,
    /// Alert ids sent in this session: each alert goes out once per session.
    sent: HashSet<String>,
    open: bool,
}

impl Inbox {
    /// Listens from now: open the inbox before reading the backlog, so that an alert sent in
    /// between is not missed (it may arrive twice and is then sent once).
    pub fn open(state: &AppState) -> Self {
        Self {
            live: state.alerts.subscribe(),
            sent: HashSet::new(),
            open: true,
        }
    }

    /// Whether the hub still runs (it closes only with the server).
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// The next notice for anyone, or why there is none; cancel-safe, for the reader's select.
    pub async fn recv(&mut self) -> Result<Arc<Delivery>, RecvError> {
        self.live.recv().await
    }

    /// Queues this member's unacknowledged alerts; `false` when the session is closing.
    pub async fn backlog(&mut self, state: &AppState, member: &MemberId, outbox: &Outbox) -> bool {
        let pending = match state.alerts.pending(member) {
            Ok(pending) => pending,
            Err(e) => {
                tracing::error!(%member, error = %e.message, "reading pending alerts");
                Vec::new()
            }
        };
        for alert in pending {
            if self.sent.insert(alert.id.clone())
                && !outbox
                    .send(ServerMessage::new(None, ServerFrame::Alert { alert }))
                    .await
            {
                return false;
            }
        }
        true
    }

    /// Queues what `received` holds if it is for this member, who must still be active now; a
    /// session that fell behind the hub reads its pending alerts again. `false` when the session
    /// is closing.
    pub async fn deliver(
        &mut self,
        state: &AppState,
        member: &MemberId,
        outbox: &Outbox,
        received: Result<Arc<Delivery>, RecvError>,
    ) -> bool {
        match received {
            Ok(delivery) => {
                if delivery.recipients.contains(member)
                    && Principal::resolve_id(&state.registry, member).is_ok()
                    && delivery
                        .key
                        .as_ref()
                        .is_none_or(|key| self.sent.insert(key.clone()))
                {
                    return outbox
                        .send(ServerMessage::new(None, delivery.frame.clone()))
                        .await;
                }
                true
            }
            // What was missed is in the pending inbox.
            Err(RecvError::Lagged(_)) => self.backlog(state, member, outbox).await,
            Err(RecvError::Closed) => {
                self.open = false;
                true
            }
        }
    }
}
