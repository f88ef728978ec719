//! A count of the writes that change who may read what.
//!
//! A live subscription decides every delivery on the recipient's record, the room's record and
//! the membership. Reading and decrypting those three for every batch of events costs more than
//! the delivery itself, yet they rarely change. [`EpochStore`] sits in front of the store every
//! component writes through and moves its [`Epoch`] after any write to those kinds of key
//! ([`keys::affects_access`]); a subscription keeps what it read while the epoch stays where
//! it was when it read, and reads again before the next event it delivers once it moved.
//!
//! Invariant: the epoch moves after the write is applied, and readers take it before they
//! read. A reader that races a write therefore holds either the old epoch (and reads again on
//! its next batch) or the new one with the new values; it never keeps old values under the new
//! epoch.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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

/// A store that moves an [`Epoch`] after writes to access-deciding keys.
#[derive(Debug)]
pub struct EpochStore {
    inner: Arc<dyn Store>,
    epoch: Epoch,
}

impl EpochStore {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            epoch: Epoch::default(),
        }
    }

    pub fn epoch(&self) -> Epoch {
        self.epoch.clone()
    }
}

impl Store for EpochStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key)
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
}
