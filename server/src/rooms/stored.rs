//! A room's log as stored: runs of consecutive events, each run one value under the key of its
//! last sequence (`keys::message(room, last)`).
//!
//! Why runs: a store write costs about the same whether it holds one event or forty, and one
//! write per event was most of the server's time under a steady stream of acknowledged sends
//! (each insert into sequential keys splits a leaf every few events and rewrites its parent).
//! The committer therefore writes everything a room appended since its last group commit as a
//! few runs (see `commit`), each event encoded once, when it was appended.
//!
//! Invariants:
//! - a run holds at least one event, in ascending sequence, and its key is its last event's;
//! - runs do not overlap: each run's first sequence is above the key of the run before it, so
//!   the run holding `seq`, if any, is the first one keyed at or after `keys::message(room, seq)`,
//!   and no run keyed below `seq` holds anything at or after it;
//! - a value written before runs existed holds one event (a JSON object), read as a run of one;
//! - an event's client message id record is written when it is appended, before its run (see
//!   `Rooms::earlier` for what a crash between the two leaves).

use std::ops::Bound;
use std::sync::Arc;

use escape_proto::{Event, RoomName};

use super::recent::SharedEvent;
use crate::store::{Batch, Entry, Order, Range, Store, StoreError, Write, keys, value};

/// Most bytes of encoded events one run holds (an event larger than this is a run of its own;
/// the value adds two brackets). Every read of one event decodes its whole run, so runs stay
/// small.
pub const RUN_BYTES: usize = 16 * 1024;

/// Runs read per scan when a range spans many of them.
const SCAN_BATCH: usize = 8;

/// An appended event the committer has not written yet.
#[derive(Debug)]
pub struct PendingEvent {
    pub event: Arc<SharedEvent>,
    /// Its stored encoding, made once when it was appended.
    pub encoded: Vec<u8>,
    /// Writes that must not outlive it in a crash, made right after its run.
    pub after: Vec<Write>,
}

/// A run as read.
#[derive(Debug)]
pub struct Run {
    pub key: Vec<u8>,
    pub events: Vec<Event>,
    /// The stored value's length.
    pub bytes: usize,
}

impl Run {
    fn decode(key: Vec<u8>, bytes: &[u8]) -> Result<Self, StoreError> {
        let events = if value::is_array(bytes) {
            value::decode(&key, bytes)?
        } else {
            vec![value::decode(&key, bytes)?]
        };
        Ok(Self {
            key,
            events,
            bytes: bytes.len(),
        })
    }

    /// What each of its events is charged in a window of recent events: a share of the value.
    pub fn share(&self) -> usize {
        self.bytes / self.events.len().max(1)
    }
}

/// Writes `events` (in sequence order) as runs, each followed by its events' `after` writes, in
/// order: after a crash the store holds a prefix of these writes, never a later one without the
/// earlier.
pub fn write(
    store: &dyn Store,
    room: &RoomName,
    events: &[PendingEvent],
) -> Result<(), StoreError> {
    let mut batch = Batch::in_order();
    for run in runs_of(events) {
        let Some(last) = run.last() else {
            continue;
        };
        batch.put(
            keys::message(room, last.event.seq),
            value::encode_array(run.iter().map(|p| p.encoded.as_slice()))?,
        );
        for write in run.iter().flat_map(|p| &p.after) {
            batch.push(write.clone());
        }
    }
    store.apply(batch)
}

/// `events` cut into runs of at most [`RUN_BYTES`] (or one event).
fn runs_of(events: &[PendingEvent]) -> impl Iterator<Item = &[PendingEvent]> {
    let mut rest = events;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = rest[0].encoded.len();
        let mut count = 1;
        while let Some(next) = rest.get(count) {
            if bytes + next.encoded.len() > RUN_BYTES {
                break;
            }
            bytes += next.encoded.len();
            count += 1;
        }
        let (run, tail) = rest.split_at(count);
        rest = tail;
        Some(run)
    })
}

/// The first run keyed at or after `seq`: the one holding `seq` if any run does, and the last
/// one that can hold anything up to `seq`.
fn first_from(store: &dyn Store, room: &RoomName, seq: u64) -> Result<Option<Entry>, StoreError> {
    let range = Range {
        start: Bound::Included(keys::message(room, seq)),
        end: Bound::Included(keys::message(room, u64::MAX)),
    };
    Ok(store.scan(&range, Order::Ascending, 1)?.into_iter().next())
}

/// The run holding `seq`, if any.
pub fn containing(store: &dyn Store, room: &RoomName, seq: u64) -> Result<Option<Run>, StoreError> {
    let Some((key, bytes)) = first_from(store, room, seq)? else {
        return Ok(None);
    };
    let run = Run::decode(key, &bytes)?;
    Ok(run.events.iter().any(|e| e.seq == seq).then_some(run))
}

/// One stored event.
pub fn event(store: &dyn Store, room: &RoomName, seq: u64) -> Result<Option<Event>, StoreError> {
    Ok(containing(store, room, seq)?.and_then(|run| run.events.into_iter().find(|e| e.seq == seq)))
}

/// Stored events with `from <= seq <= to`, at most `limit`, in the given order, each with what
/// it is charged in a window (see [`Run::share`]).
pub fn range(
    store: &dyn Store,
    room: &RoomName,
    from: u64,
    to: u64,
    order: Order,
    limit: usize,
) -> Result<Vec<(Event, usize)>, StoreError> {
    let mut out = Vec::new();
    if from > to || limit == 0 {
        return Ok(out);
    }
    let mut start = Bound::Included(keys::message(room, from));
    // The run holding `to` is the last one that can hold any of the range.
    let mut end = match order {
        Order::Ascending => Bound::Included(keys::message(room, u64::MAX)),
        Order::Descending => Bound::Included(
            first_from(store, room, to)?.map_or_else(|| keys::message(room, to), |(key, _)| key),
        ),
    };
    loop {
        let runs = store.scan(
            &Range {
                start: start.clone(),
                end: end.clone(),
            },
            order,
            SCAN_BATCH,
        )?;
        let scanned = runs.len();
        let mut last_key = None;
        for (key, bytes) in runs {
            let run = Run::decode(key, &bytes)?;
            let share = run.share();
            let mut events = run.events;
            if order == Order::Descending {
                events.reverse();
            }
            for event in events {
                if order == Order::Ascending && event.seq > to {
                    return Ok(out);
                }
                if event.seq < from || event.seq > to {
                    continue;
                }
                out.push((event, share));
                if out.len() == limit {
                    return Ok(out);
                }
            }
            last_key = Some(run.key);
        }
        let Some(last_key) = last_key.filter(|_| scanned == SCAN_BATCH) else {
            return Ok(out);
        };
        match order {
            Order::Ascending => start = Bound::Excluded(last_key),
            Order::Descending => end = Bound::Excluded(last_key),
        }
    }
}

/// The newest run of a room: the sequence of its key, and its events unless they are unreadable.
pub type Newest = (u64, Result<Vec<Event>, StoreError>);

/// The room's newest run.
pub fn newest(store: &dyn Store, room: &RoomName) -> Result<Option<Newest>, StoreError> {
    let newest = store
        .scan(
            &Range::prefix(&keys::messages_prefix(room)),
            Order::Descending,
            1,
        )?
        .into_iter()
        .next();
    Ok(newest.map(|(key, bytes)| {
        let seq = keys::seq_of_message_key(&key).unwrap_or(0);
        (seq, Run::decode(key, &bytes).map(|run| run.events))
    }))
}

/// The room's oldest runs, at most `count`.
pub fn oldest(store: &dyn Store, room: &RoomName, count: usize) -> Result<Vec<Run>, StoreError> {
    store
        .scan_prefix(&keys::messages_prefix(room), count)?
        .into_iter()
        .map(|(key, bytes)| Run::decode(key, &bytes))
        .collect()
}

/// Adds to `batch` what puts `events` (what is left of the run under `key`, in order) in its
/// place: nothing left deletes it, and a run whose last event went moves to its new last key.
pub fn replace_run(
    batch: &mut Batch,
    room: &RoomName,
    key: &[u8],
    events: &[Event],
) -> Result<(), StoreError> {
    let Some(last) = events.last() else {
        batch.delete(key.to_vec());
        return Ok(());
    };
    let new_key = keys::message(room, last.seq);
    if new_key != key {
        batch.delete(key.to_vec());
    }
    batch.put(new_key, value::encode(&events)?);
    Ok(())
}

/// Adds to `batch` what writes `changed` (stored events, rewritten) over their stored versions.
pub fn rewrite(
    store: &dyn Store,
    room: &RoomName,
    changed: Vec<Event>,
    batch: &mut Batch,
) -> Result<(), StoreError> {
    let mut runs: Vec<Run> = Vec::new();
    for event in changed {
        let at = match runs
            .iter()
            .position(|run| run.events.iter().any(|e| e.seq == event.seq))
        {
            Some(at) => at,
            None => match containing(store, room, event.seq)? {
                Some(run) => {
                    runs.push(run);
                    runs.len() - 1
                }
                None => continue,
            },
        };
        if let Some(slot) = runs[at].events.iter_mut().find(|e| e.seq == event.seq) {
            *slot = event;
        }
    }
    for run in &runs {
        replace_run(batch, room, &run.key, &run.events)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use escape_proto::{Body, MemberId};

    fn room() -> RoomName {
        RoomName::parse("ops").expect("room")
    }

    fn sample(seq: u64, text: &str) -> Event {
        Event {
            room: room(),
            seq,
            sender: MemberId::parse("alice").expect("member"),
            sender_name: String::new(),
            sender_organisation: String::new(),
            sent_at: time::OffsetDateTime::UNIX_EPOCH,
            client_msg_id: format!("c{seq}"),
            body: Body::text(text),
        }
    }

    fn pending(seq: u64, text: &str) -> PendingEvent {
        let event = sample(seq, text);
        let encoded = value::encode(&event).expect("encode");
        PendingEvent {
            event: SharedEvent::new(event, encoded.len()),
            encoded,
            after: Vec::new(),
        }
    }

    fn seqs(events: &[(Event, usize)]) -> Vec<u64> {
        events.iter().map(|(e, _)| e.seq).collect()
    }

    fn runs_stored(store: &dyn Store) -> usize {
        store
            .scan_prefix(&keys::messages_prefix(&room()), usize::MAX)
            .expect("scan")
            .len()
    }

    /// A store holding events 1..=3 as the release before runs wrote them (one value each),
    /// then 4..=40 written as runs in two groups, the second with events large enough to need
    /// several runs.
    fn mixed_store() -> MemoryStore {
        let store = MemoryStore::new();
        for seq in 1..=3 {
            store
                .put(
                    &keys::message(&room(), seq),
                    &value::encode(&sample(seq, "old")).expect("encode"),
                )
                .expect("put");
        }
        let first: Vec<_> = (4..=10).map(|seq| pending(seq, "small")).collect();
        write(&store, &room(), &first).expect("write");
        let large = "x".repeat(RUN_BYTES / 4);
        let second: Vec<_> = (11..=40).map(|seq| pending(seq, &large)).collect();
        write(&store, &room(), &second).expect("write");
        store
    }

    #[test]
    fn runs_hold_many_events_and_older_values_read_as_runs_of_one() {
        let store = mixed_store();
        let stored = runs_stored(&store);
        assert!(stored < 20, "{stored} values for 40 events");
        assert!(stored > 3 + 2, "large events need several runs: {stored}");
        for value in store
            .scan_prefix(&keys::messages_prefix(&room()), usize::MAX)
            .expect("scan")
        {
            assert!(value.1.len() <= RUN_BYTES + 1024 || !value::is_array(&value.1));
        }
        for seq in 1..=40 {
            let found = event(&store, &room(), seq).expect("read").expect("stored");
            assert_eq!(found.seq, seq);
        }
        assert!(event(&store, &room(), 41).expect("read").is_none());
        assert_eq!(
            newest(&store, &room())
                .expect("read")
                .map(|(seq, events)| (seq, events.map(|e| !e.is_empty()).ok())),
            Some((40, Some(true)))
        );
    }

    #[test]
    fn ranges_cross_runs_in_both_orders() {
        let store = mixed_store();
        let all = range(&store, &room(), 1, 40, Order::Ascending, 100).expect("range");
        assert_eq!(seqs(&all), (1..=40).collect::<Vec<_>>());
        let middle = range(&store, &room(), 2, 12, Order::Ascending, 100).expect("range");
        assert_eq!(seqs(&middle), (2..=12).collect::<Vec<_>>());
        let limited = range(&store, &room(), 5, 40, Order::Ascending, 3).expect("range");
        assert_eq!(seqs(&limited), [5, 6, 7]);
        let backwards = range(&store, &room(), 3, 38, Order::Descending, 100).expect("range");
        assert_eq!(seqs(&backwards), (3..=38).rev().collect::<Vec<_>>());
        let newest_two = range(&store, &room(), 1, 9, Order::Descending, 2).expect("range");
        assert_eq!(seqs(&newest_two), [9, 8]);
        assert!(
            range(&store, &room(), 41, 50, Order::Ascending, 10)
                .expect("range")
                .is_empty()
        );
        assert!(
            range(&store, &room(), 9, 8, Order::Descending, 10)
                .expect("range")
                .is_empty()
        );
    }

    #[test]
    fn a_rewritten_event_replaces_its_stored_version_only() {
        let store = mixed_store();
        let mut changed = Vec::new();
        for seq in [2, 6, 7] {
            let mut e = sample(seq, "");
            e.body = Body::Redacted;
            changed.push(e);
        }
        let mut batch = Batch::default();
        rewrite(&store, &room(), changed, &mut batch).expect("rewrite");
        store.apply(batch).expect("apply");
        for seq in 1..=10 {
            let e = event(&store, &room(), seq).expect("read").expect("stored");
            assert_eq!(
                matches!(e.body, Body::Redacted),
                [2, 6, 7].contains(&seq),
                "{seq}"
            );
        }
        assert_eq!(
            seqs(&range(&store, &room(), 1, 40, Order::Ascending, 100).expect("range")).len(),
            40
        );
    }

    /// What must not outlive an event in a crash (an indicator's label) is written after its
    /// run: a write cut short keeps the run without it, never the other way round.
    #[test]
    fn writes_made_after_an_event_follow_its_run() {
        let store = MemoryStore::new();
        let mut events: Vec<_> = (1..=2).map(|seq| pending(seq, "x")).collect();
        events[1].after = vec![Write::Put(b"label".to_vec(), b"RED".to_vec())];
        store.cut_next_in_order_batch();
        write(&store, &room(), &events).expect_err("cut after the first write");
        assert!(
            event(&store, &room(), 2).expect("read").is_some(),
            "the run"
        );
        assert!(store.get(b"label").expect("get").is_none());

        let store = MemoryStore::new();
        write(&store, &room(), &events).expect("write");
        assert_eq!(store.get(b"label").expect("get"), Some(b"RED".to_vec()));
    }

    #[test]
    fn a_run_trimmed_of_its_newest_events_moves_to_its_new_last_key() {
        let store = MemoryStore::new();
        let events: Vec<_> = (1..=5).map(|seq| pending(seq, "x")).collect();
        write(&store, &room(), &events).expect("write");
        let run = oldest(&store, &room(), 1).expect("read").remove(0);
        let kept: Vec<Event> = run.events.iter().filter(|e| e.seq <= 3).cloned().collect();
        let mut batch = Batch::default();
        replace_run(&mut batch, &room(), &run.key, &kept).expect("replace");
        store.apply(batch).expect("apply");
        assert_eq!(
            newest(&store, &room()).expect("read").map(|(s, _)| s),
            Some(3)
        );
        assert_eq!(
            seqs(&range(&store, &room(), 1, 9, Order::Ascending, 9).expect("range")),
            [1, 2, 3]
        );
        let mut batch = Batch::default();
        replace_run(&mut batch, &room(), &keys::message(&room(), 3), &[]).expect("replace");
        store.apply(batch).expect("apply");
        assert_eq!(runs_stored(&store), 0);
    }
}
