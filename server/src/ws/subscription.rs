//! A subscription is a cursor over the room's durable log.
//!
//! It remembers the next sequence it owes the client, wakes when the room's durable head moves,
//! reads the missing events in order (from the room's window of recent events, else the store)
//! and hands each to the gate for this recipient before queueing its frame, encoded once for
//! all recipients. Because the backlog and live events come from the same log
//! through the same cursor there is no seam: nothing is skipped and nothing is sent twice.
//! A cursor holds no events of its own, so a slow reader costs a position, not memory.

use escape_proto::frame::ServerMessage;
use escape_proto::{ErrorCode, ServerFrame};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::connection::Outbox;
use crate::error::ApiError;
use crate::gate::{Authorized, Deliveries, action};
use crate::state::AppState;

/// How many events one store read fetches.
const READ_BATCH: usize = 128;

#[derive(Debug)]
pub struct Cursor {
    state: AppState,
    auth: Authorized<action::Subscribe>,
    head: watch::Receiver<u64>,
    since: Option<u64>,
    outbox: Outbox,
    /// A child of the session's own signal, made here so that it always is one: stopping the
    /// session stops the cursor, and the outbox checks this token alone per frame.
    stop: CancellationToken,
    expiry: Option<time::OffsetDateTime>,
}

impl Cursor {
    pub fn new(
        state: AppState,
        auth: Authorized<action::Subscribe>,
        head: watch::Receiver<u64>,
        since: Option<u64>,
        outbox: Outbox,
    ) -> Self {
        let stop = outbox.closed().child_token();
        Self {
            state,
            auth,
            head,
            since,
            outbox,
            stop,
            expiry: None,
        }
    }

    /// What stops this cursor alone (the session's end stops it too).
    pub fn stopper(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// The subscriber's certificate expiry, for the per-delivery decision.
    pub fn with_certificate_expiry(mut self, expiry: Option<time::OffsetDateTime>) -> Self {
        self.expiry = expiry;
        self
    }

    /// Delivers until the session or the subscription stops. The cursor is boxed so that its
    /// task holds a pointer to it rather than a copy (what an idle subscription costs).
    pub async fn run(mut self: Box<Self>, request_id: Option<String>) {
        let room = self.auth.resource().clone();
        let head = *self.head.borrow_and_update();
        let mut next = self.since.map_or(head, |s| s.min(head)).saturating_add(1);
        let subscribed = ServerMessage::new(
            request_id,
            ServerFrame::Subscribed {
                room: room.clone(),
                head,
            },
        );
        if !self.outbox.send_until(subscribed, &self.stop).await {
            return;
        }
        let mut deliveries = None;
        loop {
            let head = *self.head.borrow_and_update();
            while next <= head {
                // Also here, so that a long run of events this recipient may not see still
                // stops within one batch.
                if self.stop.is_cancelled() {
                    return;
                }
                let events = match self.state.rooms.read_range(&room, next, head, READ_BATCH) {
                    Ok(events) if !events.is_empty() => events,
                    Ok(_) => {
                        // Cannot happen while sequences are gap-free; skip rather than spin.
                        tracing::error!(%room, next, head, "durable range empty");
                        next = head + 1;
                        break;
                    }
                    Err(e) => {
                        self.outbox.error(None, &e).await;
                        return;
                    }
                };
                for event in events {
                    // For an event that is sent, stopping is checked where its frame is queued.
                    next = event.seq + 1;
                    let decision = self
                        .current(&mut deliveries)
                        .and_then(|current| self.state.gate.admit(current, &event));
                    match decision {
                        Ok(true) => {}
                        // TLP: this recipient may read the room but not this indicator.
                        Ok(false) => continue,
                        // The policy does not let this member see it now: it simply does not
                        // arrive. Access may come back with the next change of attributes or policy.
                        Err(denied) if denied.code == ErrorCode::Forbidden => continue,
                        Err(denied) => {
                            self.end(&room, denied).await;
                            return;
                        }
                    }
                    if !self.outbox.send_encoded(event.frame(), &self.stop).await {
                        return;
                    }
                }
            }
            tokio::select! {
                () = self.stop.cancelled() => return,
                changed = self.head.changed() => if changed.is_err() { return },
            }
        }
    }

    /// What this recipient's deliveries are decided on: the member's record, the room and the
    /// membership, read again when a write that decides access happened since they were read
    /// (checking costs one atomic load). The policy and the event's rules are still asked for
    /// every event, by [`Gate::admit`](crate::gate::Gate::admit).
    ///
    /// Kept on the heap: until the first event, a subscription holds a pointer's worth.
    fn current<'a>(
        &self,
        kept: &'a mut Option<Box<Deliveries>>,
    ) -> Result<&'a Deliveries, ApiError> {
        let gate = &self.state.gate;
        let deliveries = match kept.take() {
            Some(deliveries) if gate.still_current(&deliveries) => deliveries,
            _ => Box::new(gate.deliveries(
                &self.state.registry,
                self.auth.principal().id(),
                self.expiry,
                self.auth.resource(),
            )?),
        };
        Ok(kept.insert(deliveries))
    }

    /// The member left, was suspended or the room is gone: the stream ends, saying why.
    async fn end(&self, room: &escape_proto::RoomName, denied: ApiError) {
        let message = format!("subscription to {room} ended: {}", denied.message);
        self.outbox
            .error(None, &ApiError::new(denied.code, message))
            .await;
    }
}
