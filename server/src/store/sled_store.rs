//! The embedded default [`Store`]: sled under the data dir. The only file that imports sled.

use std::fs::File;
use std::path::Path;

use super::{Batch, Entry, Order, Range, Store, StoreError, Swap, Write};

#[derive(Debug)]
pub struct SledStore {
    db: sled::Db,
    /// sled's log file, opened a second time to sync it; see [`Store::flush`] below.
    log: File,
}

/// The file under the data dir where sled keeps its log.
const LOG_FILE: &str = "db";

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
                Ok(db) => {
                    // Writable, because some systems refuse to sync a file opened only to read.
                    let log = File::options()
                        .read(true)
                        .write(true)
                        .open(dir.join(LOG_FILE))
                        .map_err(|e| StoreError::Backend(format!("opening sled's log: {e}")))?;
                    return Ok(Self { db, log });
                }
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

    /// sled's own flush writes its log buffer and waits for the kernel to write those pages
    /// out (`sync_file_range` on Linux), which neither empties the disk's volatile cache nor
    /// records a grown file's new length; sled syncs the file fully only on its periodic flush,
    /// half a second apart. A power cut could take back messages already acknowledged, so the
    /// flush then syncs the log file itself: one `fdatasync` per group commit, which is the
    /// cost the durable benchmark compares with the disk's raw rate.
    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(backend)?;
        self.log
            .sync_data()
            .map_err(|e| StoreError::Backend(format!("syncing sled's log: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    /// The file a flush syncs must be the one sled writes its log to; were sled to keep its
    /// log elsewhere, flushes would sync a file nothing writes and acknowledge too early.
    #[test]
    fn a_flush_syncs_the_file_that_holds_the_written_values() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SledStore::open(dir.path()).expect("open");
        let value: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
        store.put(b"marker", &value).expect("put");
        store.flush().expect("flush");

        let on_disk = std::fs::read(dir.path().join(LOG_FILE)).expect("read the log");
        assert!(
            on_disk.windows(value.len()).any(|w| w == value.as_slice()),
            "the flushed value is not in the synced file"
        );
        let synced = store.log.metadata().expect("metadata of the synced handle");
        let written = std::fs::metadata(dir.path().join(LOG_FILE)).expect("metadata");
        assert_eq!((synced.dev(), synced.ino()), (written.dev(), written.ino()));
    }
}
