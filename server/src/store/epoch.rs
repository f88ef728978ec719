//! A count of the writes that change who may read what.
//!
//! A live subscription decides every delivery on the recipient's record, the room's record and
//! the membership. Reading and decrypting those three for every batch of events costs more than
//! the delivery itself, yet they rarely change. [`EpochStore`] sits in front of the store every
//! component writes through and moves its [`Epoch`] after any write to those kinds of key
//! ([`keys::affects_access`]); a subscription keeps what it read while the epoch stays where
//! it was when it read, and reads again before the next event it delivers once it moved.
//!
//! The same count lets the store itself keep the values of those keys it has read: every
//! request reads its member's record, the room's record and the membership again (attributes
//! and status are decided afresh each time), and answering those from memory spares a lookup
//! and an unsealing each. The kept values are dropped as soon as the epoch moves.
//!
//! Invariant: the epoch moves after the write is applied, and readers take it before they
//! read. A reader that races a write therefore holds either the old epoch (and reads again on
//! its next batch) or the new one with the new values; it never keeps old values under the new
//! epoch. The store's own kept values follow the same rule: a value read under epoch `e` is
//! kept only while the epoch is still `e`, and is given out only while it still is.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::{Batch, Entry, Order, Range, Store, StoreError, Swap, Write, keys};

/// The number of access-changing writes so far; shared by the store and its readers.
#[derive(Debug, Clone, Default)]
pub struct Epoch(Arc<AtomicU64>);

impl Epoch {
    pub fn now(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    fn advance(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}

/// A store that moves an [`Epoch`] after writes to access-deciding keys, and answers reads of
/// those keys from memory while it has not moved.
///
/// Every write to the inner store must go through this one, or the values it keeps go stale.
#[derive(Debug)]
pub struct EpochStore {
    inner: Arc<dyn Store>,
    epoch: Epoch,
    kept: Mutex<Kept>,
}

/// Values read under one epoch, within a budget of bytes: what the store keeps of the keys
/// that decide access, and what the gate keeps of the records it decodes from them.
///
/// Invariant: a value is kept only if the epoch it was read under is still the current one,
/// and given out only under that same epoch; when the epoch moves or the budget would be
/// passed, everything kept is dropped.
#[derive(Debug)]
pub struct KeptAtEpoch<K, V> {
    epoch: u64,
    values: HashMap<K, (V, usize)>,
    bytes: usize,
    budget: usize,
}

impl<K: Eq + Hash, V: Clone> KeptAtEpoch<K, V> {
    pub fn new(budget: usize) -> Self {
        Self {
            epoch: 0,
            values: HashMap::new(),
            bytes: 0,
            budget,
        }
    }

    /// The value kept for `key` if it was read under `epoch`.
    pub fn get<Q>(&self, key: &Q, epoch: u64) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        if self.epoch != epoch {
            return None;
        }
        self.values.get(key).map(|(value, _)| value.clone())
    }

    /// Keeps `value`, about `size` bytes, read under `epoch`, unless the epoch is `now` no
    /// longer: a reader that raced a write keeps nothing, so it cannot set what is kept back
    /// to the epoch before that write. Call it after the read.
    pub fn keep(&mut self, key: K, value: V, size: usize, epoch: u64, now: u64) {
        if now != epoch {
            return;
        }
        if self.epoch != epoch || self.bytes + size > self.budget {
            self.values.clear();
            self.bytes = 0;
            self.epoch = epoch;
        }
        if size <= self.budget {
            self.bytes += size;
            if let Some((_, old)) = self.values.insert(key, (value, size)) {
                self.bytes -= old;
            }
        }
    }

    /// About how many bytes are kept.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// Access-deciding values read under one epoch (`None`: the key was absent).
type Kept = KeptAtEpoch<Vec<u8>, Option<Vec<u8>>>;

/// Most bytes kept at once: room for the records of thousands of members and rooms (a room's
/// record grows with its invitations, up to a few hundred KiB). When full, everything is
/// dropped and read again.
const MAX_KEPT_BYTES: usize = 8 * 1024 * 1024;

impl EpochStore {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            epoch: Epoch::default(),
            kept: Mutex::new(KeptAtEpoch::new(MAX_KEPT_BYTES)),
        }
    }

    /// The value kept for `key` under the current epoch, if any.
    fn kept(&self, key: &[u8], epoch: u64) -> Option<Option<Vec<u8>>> {
        self.kept.lock().ok()?.get(key, epoch)
    }

    /// Keeps what was read under `epoch` unless a write has moved it since.
    fn keep(&self, key: &[u8], value: &Option<Vec<u8>>, epoch: u64) {
        let Ok(mut kept) = self.kept.lock() else {
            return;
        };
        let size = key.len() + value.as_ref().map_or(0, Vec::len);
        // The epoch is read under the lock, after the read of the value.
        kept.keep(key.to_vec(), value.clone(), size, epoch, self.epoch.now());
    }

    pub fn epoch(&self) -> Epoch {
        self.epoch.clone()
    }
}

impl Store for EpochStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if !keys::affects_access(key) {
            return self.inner.get(key);
        }
        // Taken before reading, as every reader of the epoch does.
        let epoch = self.epoch.now();
        if let Some(value) = self.kept(key, epoch) {
            return Ok(value);
        }
        let value = self.inner.get(key)?;
        self.keep(key, &value, epoch);
        Ok(value)
    }

    fn apply(&self, batch: Batch) -> Result<(), StoreError> {
        let touches = batch.writes().iter().any(|w| match w {
            Write::Put(key, _) | Write::Delete(key) => keys::affects_access(key),
        });
        // Moved even when the write failed: a partial failure must not leave stale readers.
        let applied = self.inner.apply(batch);
        if touches {
            self.epoch.advance();
        }
        applied
    }

    fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<Swap, StoreError> {
        let swapped = self.inner.compare_and_swap(key, expected, new);
        if keys::affects_access(key) {
            self.epoch.advance();
        }
        swapped
    }

    fn scan(&self, range: &Range, order: Order, limit: usize) -> Result<Vec<Entry>, StoreError> {
        self.inner.scan(range, order, limit)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use escape_proto::{MemberId, RoomName};

    #[test]
    fn only_access_deciding_writes_move_the_epoch() {
        let store = EpochStore::new(Arc::new(MemoryStore::new()));
        let epoch = store.epoch();
        let room = RoomName::parse("ops").expect("room");
        let member = MemberId::parse("alice").expect("member");

        store.put(&keys::message(&room, 1), b"m").expect("put");
        store
            .put(&keys::read_marker(&room, &member), b"1")
            .expect("put");
        assert_eq!(
            epoch.now(),
            0,
            "messages and read markers do not decide access"
        );

        let deciding = [
            keys::member(&member),
            keys::room(&room),
            keys::room_member(&room, &member),
            keys::member_room(&member, &room),
            keys::revoked_cert("01"),
            keys::room_policy(&room),
            keys::DEPLOYMENT_POLICY.to_vec(),
        ];
        for (i, key) in deciding.iter().enumerate() {
            store.put(key, b"v").expect("put");
            assert_eq!(epoch.now(), i as u64 * 3 + 1, "put {key:?}");
            store
                .compare_and_swap(key, Some(b"v"), Some(b"w"))
                .expect("swap");
            assert_eq!(epoch.now(), i as u64 * 3 + 2, "swap {key:?}");
            store.delete(key).expect("delete");
            assert_eq!(epoch.now(), i as u64 * 3 + 3, "delete {key:?}");
        }
        assert_eq!(store.get(&keys::room(&room)).expect("get"), None);
    }

    fn alice() -> Vec<u8> {
        keys::member(&MemberId::parse("alice").expect("member"))
    }

    #[test]
    fn access_deciding_values_are_read_once_until_the_epoch_moves() {
        let inner = Arc::new(MemoryStore::new());
        let store = EpochStore::new(inner.clone());
        let room = RoomName::parse("ops").expect("room");
        store.put(&alice(), b"v1").expect("put");
        store.put(&keys::message(&room, 1), b"m1").expect("put");
        assert_eq!(
            store.get(&alice()).expect("get").as_deref(),
            Some(&b"v1"[..])
        );
        assert_eq!(store.get(b"member/bob").expect("get"), None);

        // Written behind its back (which no component does): the kept values are still given.
        inner.put(&alice(), b"behind").expect("put");
        inner.put(b"member/bob", b"behind").expect("put");
        inner.put(&keys::message(&room, 1), b"m2").expect("put");
        assert_eq!(
            store.get(&alice()).expect("get").as_deref(),
            Some(&b"v1"[..])
        );
        assert_eq!(store.get(b"member/bob").expect("get"), None);
        // Other keys are always read from the store.
        assert_eq!(
            store.get(&keys::message(&room, 1)).expect("get").as_deref(),
            Some(&b"m2"[..])
        );

        // Any access-deciding write through it drops them all.
        store
            .put(
                &keys::room_member(&room, &MemberId::parse("carol").expect("member")),
                b"1",
            )
            .expect("put");
        assert_eq!(
            store.get(&alice()).expect("get").as_deref(),
            Some(&b"behind"[..])
        );
        assert_eq!(
            store.get(b"member/bob").expect("get").as_deref(),
            Some(&b"behind"[..])
        );
    }

    #[test]
    fn a_value_read_while_a_write_moved_the_epoch_is_not_kept() {
        let inner = Arc::new(MemoryStore::new());
        let store = EpochStore::new(inner.clone());
        store.put(&alice(), b"old").expect("put");
        let (writer, epoch) = (inner.clone(), store.epoch());
        // A write lands, and moves the epoch, after the next read took its value.
        inner.after_next_get(move || {
            writer.put(&alice(), b"new").expect("put");
            epoch.advance();
        });
        // This read returns what it read before the write...
        assert_eq!(
            store.get(&alice()).expect("get").as_deref(),
            Some(&b"old"[..])
        );
        // ...and the next one does not get it again.
        assert_eq!(
            store.get(&alice()).expect("get").as_deref(),
            Some(&b"new"[..])
        );
    }

    #[test]
    fn what_is_kept_stays_within_its_budget() {
        let inner = Arc::new(MemoryStore::new());
        let store = EpochStore::new(inner.clone());
        let big = vec![1u8; MAX_KEPT_BYTES / 2 + 1];
        let (a, b) = (b"member/a".to_vec(), b"member/b".to_vec());
        inner.put(&a, &big).expect("put");
        inner.put(&b, &big).expect("put");
        store.get(&a).expect("get");
        // Both do not fit: keeping b's value drops a's.
        store.get(&b).expect("get");
        inner.put(&a, b"changed").expect("put");
        inner.put(&b, b"changed").expect("put");
        assert_eq!(
            store.get(&a).expect("get").as_deref(),
            Some(&b"changed"[..])
        );
        assert_eq!(store.get(&b).expect("get"), Some(big));
        let kept = store.kept.lock().expect("lock");
        assert!(
            kept.bytes() <= MAX_KEPT_BYTES,
            "{} bytes kept",
            kept.bytes()
        );
    }
}
