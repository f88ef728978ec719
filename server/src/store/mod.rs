//! The storage seam: a small key-value interface that embedded and distributed stores alike offer.
//!
//! The server talks to storage only through [`Store`]. [`SledStore`] is the embedded default;
//! [`MemoryStore`] serves unit tests. Both pass the same conformance suite (`conformance.rs`).
//! Key layouts live in [`keys`] and value encoding in [`value`]; nothing outside this module
//! imports sled.
//!
//! Invariant: a write is durable only once [`Store::flush`] has returned after it. Callers that
//! promise durability (message acks) wait for a flush; see `rooms::commit`.

mod epoch;
pub mod keys;
mod memory;
mod sled_store;
pub mod value;

#[cfg(test)]
mod conformance;

use std::ops::Bound;

pub use epoch::{Epoch, EpochStore, KeptAtEpoch};
pub use memory::MemoryStore;
pub use sled_store::SledStore;

/// Why storage failed. The cause is for the server's log, never for peers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("storage backend: {0}")]
    Backend(String),
    #[error("stored value under {key} is unreadable: {reason}")]
    Corrupt { key: String, reason: String },
}

/// One write of an atomic batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

/// Writes applied all together or not at all; or, for a batch made by [`Batch::in_order`], one
/// after another.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    writes: Vec<Write>,
    in_order: bool,
}

impl Batch {
    /// A batch whose writes need not be atomic, only ordered: readers may see the first writes
    /// before the last, and after a crash the store holds a prefix of them, never a later write
    /// without the earlier ones. A backend may apply it much faster (sled's atomic batches
    /// exclude every other writer: the `store` micro-benchmark appends about three times as
    /// fast in order); the caller must be able to live with a prefix, as a room's log does (a
    /// client id record without its message is found stale).
    pub fn in_order() -> Self {
        Self {
            writes: Vec::new(),
            in_order: true,
        }
    }

    /// Whether the batch was made by [`Batch::in_order`]; wrappers that rewrite a batch keep it.
    pub fn is_in_order(&self) -> bool {
        self.in_order
    }

    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> &mut Self {
        self.writes.push(Write::Put(key.into(), value.into()));
        self
    }

    pub fn delete(&mut self, key: impl Into<Vec<u8>>) -> &mut Self {
        self.writes.push(Write::Delete(key.into()));
        self
    }

    /// Adds a write made elsewhere (one another batch held, say).
    pub fn push(&mut self, write: Write) -> &mut Self {
        self.writes.push(write);
        self
    }

    pub fn writes(&self) -> &[Write] {
        &self.writes
    }

    pub fn into_writes(self) -> Vec<Write> {
        self.writes
    }
}

/// Which way a scan walks its range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Ascending,
    Descending,
}

/// A key range for [`Store::scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub start: Bound<Vec<u8>>,
    pub end: Bound<Vec<u8>>,
}

impl Range {
    /// Every key that starts with `prefix`.
    pub fn prefix(prefix: &[u8]) -> Self {
        let end = match prefix_successor(prefix) {
            Some(next) => Bound::Excluded(next),
            None => Bound::Unbounded,
        };
        Self {
            start: Bound::Included(prefix.to_vec()),
            end,
        }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        let after_start = match &self.start {
            Bound::Included(s) => key >= s.as_slice(),
            Bound::Excluded(s) => key > s.as_slice(),
            Bound::Unbounded => true,
        };
        let before_end = match &self.end {
            Bound::Included(e) => key <= e.as_slice(),
            Bound::Excluded(e) => key < e.as_slice(),
            Bound::Unbounded => true,
        };
        after_start && before_end
    }
}

/// The smallest key greater than every key starting with `prefix`, if there is one.
fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut next = prefix.to_vec();
    while let Some(last) = next.pop() {
        if last < u8::MAX {
            next.push(last + 1);
            return Some(next);
        }
    }
    None
}

/// Whether a compare-and-swap found what it expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Swap {
    Done,
    /// The current value was not the expected one; nothing was written.
    Conflict,
}

/// A key-value pair as returned by scans.
pub type Entry = (Vec<u8>, Vec<u8>);

/// The operations Escape needs from storage: point reads and writes, ordered range scans,
/// atomic batches, compare-and-swap and an explicit durability barrier.
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Applies every write of the batch atomically (readers see all or none of them).
    fn apply(&self, batch: Batch) -> Result<(), StoreError>;

    /// Sets `key` to `new` (deleting it for `None`) only if its value is `expected` (absent for `None`).
    fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<Swap, StoreError>;

    /// Up to `limit` entries of `range`, in key order or reversed.
    fn scan(&self, range: &Range, order: Order, limit: usize) -> Result<Vec<Entry>, StoreError>;

    /// Blocks until every write applied before the call is durable. Call it off the async runtime.
    fn flush(&self) -> Result<(), StoreError>;

    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let mut batch = Batch::default();
        batch.put(key, value);
        self.apply(batch)
    }

    fn delete(&self, key: &[u8]) -> Result<(), StoreError> {
        let mut batch = Batch::default();
        batch.delete(key);
        self.apply(batch)
    }

    /// Every entry under `prefix`, in key order, at most `limit`.
    fn scan_prefix(&self, prefix: &[u8], limit: usize) -> Result<Vec<Entry>, StoreError> {
        self.scan(&Range::prefix(prefix), Order::Ascending, limit)
    }
}
