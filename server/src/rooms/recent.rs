//! The newest events of each room, kept in memory for their live readers.
//!
//! Every subscriber of a room reads the same events moments after they are appended. Without
//! this, each of them would read every event back from the sealed store, decrypt and decode it,
//! then encode the same frame again: work per recipient that does not depend on the recipient.
//! Here an event is held once, shared by reference, and its frame is encoded once, by the first
//! reader that needs it.
//!
//! Invariants:
//! - the events held are consecutive sequences ending at the room's last appended one; an
//!   append pushes under the room's sequencing lock, so nothing is skipped or reordered;
//! - what is held is what the store holds, or will once the committer writes the room's
//!   pending events: a redaction replaces the entries it rewrote, and retention clears the room;
//! - the size is bounded per room by count and by bytes, so a busy room costs at most about
//!   [`MAX_BYTES`] however large its messages (each event is charged three times its stored
//!   size: the decoded event, its frame, and slack). Every room that was written to since the
//!   server started keeps its window; the rate limits on sending bound how fast that grows.
//!
//! Readers behind the oldest entry read from the store as before; nothing is ever read from here
//! past the durable head, because callers ask only for ranges below it.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};

use axum::extract::ws::Utf8Bytes;
use escape_proto::Event;
use escape_proto::frame::{ServerFrame, ServerMessage};

/// Most events held per room.
pub const MAX_EVENTS: usize = 512;
/// Most bytes held per room (as charged: three times each event's stored encoding).
pub const MAX_BYTES: usize = 1 << 20;

/// An event as read from a room's log, shared by everyone it is delivered to.
#[derive(Debug)]
pub struct SharedEvent {
    pub event: Event,
    /// What the event is charged against the byte bound.
    size: usize,
    frame: OnceLock<Utf8Bytes>,
}

impl SharedEvent {
    /// `stored` is the length of the event's stored encoding.
    pub fn new(event: Event, stored: usize) -> Arc<Self> {
        Arc::new(Self {
            event,
            size: stored.saturating_mul(3),
            frame: OnceLock::new(),
        })
    }

    /// The event frame as it goes on the wire (no request id), encoded on first use; cloning it
    /// shares the bytes.
    pub fn frame(&self) -> Utf8Bytes {
        self.frame
            .get_or_init(|| {
                ServerMessage::new(None, ServerFrame::Event(self.event.clone()))
                    .encode()
                    .into()
            })
            .clone()
    }
}

impl std::ops::Deref for SharedEvent {
    type Target = Event;

    fn deref(&self) -> &Event {
        &self.event
    }
}

/// One room's newest events.
#[derive(Debug, Default)]
pub struct Recent {
    events: VecDeque<Arc<SharedEvent>>,
    bytes: usize,
}

impl Recent {
    /// Adds the room's next event. An event that does not follow the newest one held starts
    /// the window again (keeps the run consecutive whatever a caller does).
    pub fn push(&mut self, event: Arc<SharedEvent>) {
        if self
            .events
            .back()
            .is_some_and(|last| last.seq.checked_add(1) != Some(event.seq))
        {
            self.clear();
        }
        self.bytes += event.size;
        self.events.push_back(event);
        while self.events.len() > MAX_EVENTS || (self.bytes > MAX_BYTES && self.events.len() > 1) {
            if let Some(old) = self.events.pop_front() {
                self.bytes -= old.size;
            }
        }
    }

    /// Events `from..=to`, at most `limit`, if the window holds `from`; `None` sends the
    /// reader to the store.
    pub fn range(&self, from: u64, to: u64, limit: usize) -> Option<Vec<Arc<SharedEvent>>> {
        let first = self.events.front()?.seq;
        if from < first || from > to {
            return None;
        }
        let skip = usize::try_from(from - first).ok()?;
        if skip >= self.events.len() {
            return None;
        }
        Some(
            self.events
                .iter()
                .skip(skip)
                .take_while(|e| e.seq <= to)
                .take(limit)
                .cloned()
                .collect(),
        )
    }

    /// Puts a rewritten event (a redaction) in place of the one held under its sequence.
    pub fn replace(&mut self, event: Arc<SharedEvent>) {
        let Some(first) = self.events.front().map(|e| e.seq) else {
            return;
        };
        let Some(index) = event
            .seq
            .checked_sub(first)
            .and_then(|i| usize::try_from(i).ok())
        else {
            return;
        };
        if let Some(slot) = self.events.get_mut(index) {
            self.bytes = self.bytes - slot.size + event.size;
            *slot = event;
        }
    }

    pub fn clear(&mut self) {
        self.events.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use escape_proto::{Body, MemberId, RoomName};

    fn event(seq: u64, text: &str) -> Arc<SharedEvent> {
        let event = Event {
            room: RoomName::parse("ops").expect("room"),
            seq,
            sender: MemberId::parse("alice").expect("member"),
            sender_name: String::new(),
            sender_organisation: String::new(),
            sent_at: time::OffsetDateTime::UNIX_EPOCH,
            client_msg_id: format!("m{seq}"),
            body: Body::text(text),
        };
        SharedEvent::new(event, text.len())
    }

    fn seqs(events: &[Arc<SharedEvent>]) -> Vec<u64> {
        events.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn serves_only_what_it_holds_in_order() {
        let mut recent = Recent::default();
        assert!(recent.range(1, 1, 10).is_none(), "empty window");
        for seq in 5..=9 {
            recent.push(event(seq, "x"));
        }
        assert_eq!(
            seqs(&recent.range(5, 9, 10).expect("held")),
            [5, 6, 7, 8, 9]
        );
        assert_eq!(seqs(&recent.range(7, 8, 10).expect("held")), [7, 8]);
        assert_eq!(seqs(&recent.range(6, 9, 2).expect("held")), [6, 7]);
        assert!(recent.range(4, 9, 10).is_none(), "older than the window");
        assert!(recent.range(10, 12, 10).is_none(), "newer than the window");
    }

    #[test]
    fn a_gap_restarts_the_window_and_bounds_hold() {
        let mut recent = Recent::default();
        recent.push(event(1, "a"));
        recent.push(event(3, "b"));
        assert!(
            recent.range(1, 3, 10).is_none(),
            "1 is gone: 2 was never seen"
        );
        assert_eq!(seqs(&recent.range(3, 3, 10).expect("held")), [3]);

        let mut recent = Recent::default();
        let big = "x".repeat(MAX_BYTES / 12 + 1);
        for seq in 1..=8 {
            recent.push(event(seq, &big));
        }
        assert!(recent.bytes <= MAX_BYTES);
        assert_eq!(recent.range(6, 8, 10).map(|e| e.len()), Some(3));
        assert!(recent.range(5, 8, 10).is_none());

        let mut recent = Recent::default();
        for seq in 1..=(MAX_EVENTS as u64 + 10) {
            recent.push(event(seq, "x"));
        }
        assert_eq!(recent.events.len(), MAX_EVENTS);
        assert_eq!(recent.events.front().map(|e| e.seq), Some(11));
    }

    #[test]
    fn a_replaced_event_is_what_readers_get() {
        let mut recent = Recent::default();
        for seq in 1..=3 {
            recent.push(event(seq, "secret"));
        }
        let before = recent.range(2, 2, 1).expect("held")[0].frame();
        assert!(before.as_str().contains("secret"));
        recent.replace(event(2, "gone"));
        recent.replace(event(9, "not held"));
        let after = recent.range(1, 3, 10).expect("held");
        assert_eq!(seqs(&after), [1, 2, 3]);
        assert!(after[1].frame().as_str().contains("gone"));
        assert!(!after[1].frame().as_str().contains("secret"));
    }
}
