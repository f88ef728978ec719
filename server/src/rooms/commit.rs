//! Group commit: many appends, one write per room, one flush.
//!
//! An append takes its sequence at once and leaves its event with its room, pending. The
//! committer collects every append waiting for durability, writes each room's pending events
//! (as runs: see `stored`), flushes once for all of them, then advances each room's durable
//! head. Readers (live subscriptions, history) never go past the durable head, so no one ever
//! sees a message that a crash could take back, and acks are sent only once the head has passed
//! them.
//!
//! Invariant: a room's events are pending in sequence order (appended under the room's lock)
//! and the committer writes all of them each time, so when a flush covers sequence `n` it
//! covers every smaller sequence of that room too; advancing the head to the largest flushed
//! sequence is therefore safe. An append's request reaches the committer after its event is
//! pending, so the write before the flush that answers it includes the event.
//!
//! Invariant: after a write fails, nothing is acknowledged again either: the store may hold a
//! prefix of it (see `Batch::in_order`), which the server's next start reads as it is.
//!
//! Invariant: after a flush fails, no head moves again. A failed sync may have dropped the
//! written pages, and the kernel reports that once: a later flush that succeeds proves nothing
//! about the writes before it. The committer stops and says so through [`Committer::failed`];
//! the server then shuts down, so that it starts again from what the disk holds, and senders
//! retry with the same client message id.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::RoomLog;
use crate::store::{Store, StoreError};

/// The newest durable sequence of one room, watched by subscribers and waiting senders.
#[derive(Debug)]
pub struct DurableHead {
    head: watch::Sender<u64>,
}

impl DurableHead {
    pub fn new(initial: u64) -> Self {
        Self {
            head: watch::Sender::new(initial),
        }
    }

    pub fn get(&self) -> u64 {
        *self.head.borrow()
    }

    pub fn watch(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }

    fn advance(&self, seq: u64) {
        self.head.send_if_modified(|head| {
            let moved = seq > *head;
            if moved {
                *head = seq;
            }
            moved
        });
    }
}

/// The handle appenders use to ask for durability.
#[derive(Debug, Clone)]
pub struct Committer {
    tx: mpsc::UnboundedSender<(Arc<RoomLog>, u64)>,
    failed: CancellationToken,
}

impl Committer {
    /// Starts the commit task. It ends once every `Committer` clone is dropped; await the
    /// handle to know the store is no longer used.
    pub fn spawn(store: Arc<dyn Store>) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let failed = CancellationToken::new();
        let task = tokio::spawn(run(store, rx, failed.clone()));
        (Self { tx, failed }, task)
    }

    /// Cancelled when a flush failed: nothing is acknowledged any more.
    pub fn failed(&self) -> &CancellationToken {
        &self.failed
    }

    /// Asks for `seq` of the room to be written and made durable.
    pub(super) fn request(&self, log: Arc<RoomLog>, seq: u64) {
        // If the task is gone the server is shutting down; the waiting sender times out and
        // its client retries with the same client message id.
        let _ = self.tx.send((log, seq));
    }
}

/// Most requests one flush covers; bounds the work between two head advances.
const MAX_GROUP: usize = 4096;

async fn run(
    store: Arc<dyn Store>,
    mut rx: mpsc::UnboundedReceiver<(Arc<RoomLog>, u64)>,
    failed: CancellationToken,
) {
    let mut group = Vec::new();
    while rx.recv_many(&mut group, MAX_GROUP).await > 0 {
        let mut rooms = HashMap::new();
        for (log, _) in &group {
            rooms
                .entry(Arc::as_ptr(log) as usize)
                .or_insert_with(|| log.clone());
        }
        let store = store.clone();
        let written = tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
            for log in rooms.values() {
                log.write(store.as_ref())?;
            }
            store.flush()
        });
        let error = match written.await {
            // Another flush of the store failed meanwhile (an admin's change, see
            // `AppState::persist`): this one proves nothing either.
            Ok(Ok(())) if failed.is_cancelled() => return,
            Ok(Ok(())) => {
                for (log, seq) in group.drain(..) {
                    log.durable.advance(seq);
                }
                continue;
            }
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        tracing::error!(
            %error,
            waiting = group.len(),
            "the store could not be written or flushed; no message is acknowledged any more and the server stops"
        );
        failed.cancel();
        return;
    }
}
