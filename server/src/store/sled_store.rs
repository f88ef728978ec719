//! The embedded default [`Store`]: sled under the data dir. The only file that imports sled.

use std::path::Path;

use super::{Batch, Entry, Order, Range, Store, StoreError, Swap, Write};

#[derive(Debug)]
pub struct SledStore {
    db: sled::Db,
}

fn backend(e: sled::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// The store's page cache. With sled's default (1 GiB) a server's resident set grows with its data
/// until it holds a gigabyte of pages: the long soak grew 5 MB a minute at 50 messages a second.
/// Recent events are served from each room's window, so the store's reads need far less.
const CACHE_BYTES: u64 = 16 * 1024 * 1024;

impl SledStore {
    /// Opens (or creates) the store in `dir`. sled keeps its own write-ahead log there, so writes
    /// that were flushed survive a crash.
    ///
    /// sled releases its file lock only when its background flusher lets go of the database, a
    /// moment after the last handle is dropped; a reopen in the same process (a restart, or an
    /// offline tool right after a stop) waits up to two seconds for that instead of failing.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let mut attempts = 0;
        loop {
            let opened = sled::Config::new()
                .path(dir)
                .mode(sled::Mode::HighThroughput)
                .cache_capacity(CACHE_BYTES)
                .open();
            match opened {
                Ok(db) => return Ok(Self { db }),
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock") && attempts < 100 =>
                {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => return Err(backend(e)),
            }
        }
    }
}

impl Store for SledStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get(key).map_err(backend)?.map(|v| v.to_vec()))
    }

    /// An in-order batch is written one key at a time. sled logs every write under a sequence
    /// number taken when it is made and recovers its log up to the first gap, so after a crash
    /// it holds a prefix of the writes, as [`Batch::in_order`] promises.
    fn apply(&self, batch: Batch) -> Result<(), StoreError> {
        if batch.is_in_order() {
            for write in batch.into_writes() {
                match write {
                    Write::Put(k, v) => self.db.insert(k, v).map(drop),
                    Write::Delete(k) => self.db.remove(k).map(drop),
                }
                .map_err(backend)?;
            }
            return Ok(());
        }
        let mut sled_batch = sled::Batch::default();
        for write in batch.into_writes() {
            match write {
                Write::Put(k, v) => sled_batch.insert(k, v),
                Write::Delete(k) => sled_batch.remove(k),
            }
        }
        self.db.apply_batch(sled_batch).map_err(backend)
    }

    fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<Swap, StoreError> {
        match self
            .db
            .compare_and_swap(key, expected, new)
            .map_err(backend)?
        {
            Ok(()) => Ok(Swap::Done),
            Err(_) => Ok(Swap::Conflict),
        }
    }

    fn scan(&self, range: &Range, order: Order, limit: usize) -> Result<Vec<Entry>, StoreError> {
        let iter = self
            .db
            .range::<Vec<u8>, _>((range.start.clone(), range.end.clone()));
        let pick = |r: sled::Result<(sled::IVec, sled::IVec)>| {
            r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(backend)
        };
        match order {
            Order::Ascending => iter.take(limit).map(pick).collect(),
            Order::Descending => iter.rev().take(limit).map(pick).collect(),
        }
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(|_| ()).map_err(backend)
    }
}
