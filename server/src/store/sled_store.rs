//! The embedded default [`Store`]: sled under the data dir. The only file that imports sled.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Batch, Entry, Order, Range, Store, StoreError, Swap, Write};

#[derive(Debug)]
pub struct SledStore {
    db: sled::Db,
    /// sled's log file, opened a second time to sync it; see [`Store::flush`] below.
    log: File,
    /// The folder of sled's blobs: records too large for the log (above a quarter of a
    /// segment, 128 KiB), each written to a file of its own that the log points to.
    blobs: PathBuf,
    /// Blob files synced already (each is written once, then only removed).
    synced_blobs: Mutex<HashSet<OsString>>,
    /// Set once a flush failed. The kernel reports a lost write once, to whichever sync comes
    /// first, so a later sync that succeeds proves nothing about it: from then on every flush
    /// fails, until the store is opened again (the server stops; see `rooms::commit`).
    failed: AtomicBool,
}

/// The file under the data dir where sled keeps its log.
const LOG_FILE: &str = "db";
/// The file where sled keeps the settings it was created with.
const CONF_FILE: &str = "conf";
/// The folder under the data dir where sled keeps its blobs.
const BLOBS_DIR: &str = "blobs";

fn sync_error(what: &str) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |e| StoreError::Backend(format!("syncing sled's {what}: {e}"))
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
        match Self::open_once(dir) {
            // Only once sled has the lock and failed: before, the unfinished snapshot could be
            // one another process is writing while it opens.
            Err(Refused::Other(e)) if remove_unfinished_snapshots(dir)? > 0 => {
                tracing::warn!(error = %e, "opening again without the unfinished snapshot");
                Self::open_once(dir).map_err(StoreError::from)
            }
            opened => opened.map_err(StoreError::from),
        }
    }

    fn open_once(dir: &Path) -> Result<Self, Refused> {
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
                    let writable =
                        |name: &str| File::options().read(true).write(true).open(dir.join(name));
                    let log = writable(LOG_FILE)
                        .map_err(sync_error("log at open"))
                        .map_err(Refused::Other)?;
                    // sled writes its settings file and makes its files and folders without
                    // syncing them or the store's folder.
                    writable(CONF_FILE)
                        .and_then(|conf| conf.sync_all())
                        .and_then(|()| crate::disk::sync_dir(dir))
                        .map_err(sync_error("files at open"))
                        .map_err(Refused::Other)?;
                    return Ok(Self {
                        db,
                        log,
                        blobs: dir.join(BLOBS_DIR),
                        synced_blobs: Mutex::new(HashSet::new()),
                        failed: AtomicBool::new(false),
                    });
                }
                Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                    if attempts == 100 {
                        return Err(Refused::Locked(backend(sled::Error::Io(e))));
                    }
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => return Err(Refused::Other(backend(e))),
            }
        }
    }
}

/// Why one attempt to open failed: another holder of sled's lock, or anything else.
enum Refused {
    Locked(StoreError),
    Other(StoreError),
}

impl From<Refused> for StoreError {
    fn from(refused: Refused) -> Self {
        match refused {
            Refused::Locked(e) | Refused::Other(e) => e,
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
    ///
    /// Records too large for the log went to blob files, which sled never syncs: they are
    /// synced before the log that points to them.
    fn flush(&self) -> Result<(), StoreError> {
        if self.failed.load(Ordering::Acquire) {
            return Err(StoreError::Backend(
                "an earlier flush failed: nothing is durable until the store is opened again"
                    .into(),
            ));
        }
        let flushed = self.flush_now();
        if flushed.is_err() {
            self.failed.store(true, Ordering::Release);
        }
        flushed
    }
}

impl SledStore {
    fn flush_now(&self) -> Result<(), StoreError> {
        // Listed before sled's flush: a blob there belongs to a record reserved already, which
        // the flush waits for, so it is whole once the flush returns.
        let before = self.blob_names()?;
        self.db.flush().map_err(backend)?;
        self.sync_blobs(&before)?;
        self.log.sync_data().map_err(sync_error("log"))
    }
}

/// sled writes a snapshot to `snap.<lsn>.generating`, syncs it and renames it to `snap.<lsn>`;
/// one still named so was never finished (a kill or a power cut while opening), yet sled takes
/// it for a snapshot when it opens and refuses a torn one. Nothing refers to it: removed.
/// Returns how many were.
fn remove_unfinished_snapshots(dir: &Path) -> Result<usize, StoreError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => {
            return Err(StoreError::Backend(format!(
                "reading {}: {e}",
                dir.display()
            )));
        }
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            tracing::warn!(file = %name, "removing a snapshot the store never finished writing");
            std::fs::remove_file(entry.path())
                .map_err(|e| StoreError::Backend(format!("removing {name}: {e}")))?;
            removed += 1;
        }
    }
    Ok(removed)
}

impl SledStore {
    fn blob_names(&self) -> Result<HashSet<OsString>, StoreError> {
        match std::fs::read_dir(&self.blobs) {
            Ok(entries) => entries
                .map(|entry| entry.map(|e| e.file_name()))
                .collect::<Result<_, _>>()
                .map_err(sync_error("blobs")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HashSet::new()),
            Err(e) => Err(sync_error("blobs")(e)),
        }
    }

    /// Syncs every blob not synced yet, then their folder. One written since `before` may be
    /// unfinished (for a record after the flush): it is synced now and again next time.
    fn sync_blobs(&self, before: &HashSet<OsString>) -> Result<(), StoreError> {
        let now = self.blob_names()?;
        let mut synced = self
            .synced_blobs
            .lock()
            .map_err(|_| StoreError::Backend("the list of synced blobs is poisoned".into()))?;
        // sled removes a blob once nothing points to it.
        synced.retain(|name| now.contains(name));
        let fresh: Vec<&OsString> = now.iter().filter(|n| !synced.contains(*n)).collect();
        if fresh.is_empty() {
            return Ok(());
        }
        for name in &fresh {
            match File::open(self.blobs.join(name)) {
                Ok(file) => file.sync_data().map_err(sync_error("blobs"))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(sync_error("blobs")(e)),
            }
        }
        crate::disk::sync_dir(&self.blobs).map_err(sync_error("blobs folder"))?;
        synced.extend(fresh.into_iter().filter(|n| before.contains(*n)).cloned());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    /// A store in `dir` holding `k = v`, flushed.
    fn holding_one_value(dir: &Path) -> SledStore {
        let store = SledStore::open(dir).expect("open");
        store.put(b"k", b"v").expect("put");
        store.flush().expect("a healthy flush");
        store
    }

    /// A failed sync is reported once; the flushes after it must not succeed on the strength
    /// of a sync that no longer knows about the lost write.
    #[test]
    fn after_a_failed_flush_every_flush_fails() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = holding_one_value(dir.path());
        // What a failed sync leaves (a disk error cannot be arranged here).
        store.failed.store(true, Ordering::Release);
        store.put(b"k", b"w").expect("put");
        assert!(store.flush().is_err());
        assert!(store.flush().is_err(), "still failing");
        drop(store);
        let reopened = SledStore::open(dir.path()).expect("reopen");
        reopened
            .flush()
            .expect("a store opened again starts afresh");
    }

    /// A snapshot left half-written by a kill while the store opened must not keep it from
    /// opening again.
    #[test]
    fn an_unfinished_snapshot_does_not_keep_the_store_from_opening() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(holding_one_value(dir.path()));
        std::fs::write(
            dir.path().join("snap.7FFFFFFFFFFFFFFF.generating"),
            b"torn by a power cut",
        )
        .expect("write");
        let store = SledStore::open(dir.path()).expect("reopen");
        assert_eq!(store.get(b"k").expect("get"), Some(b"v".to_vec()));
    }

    /// A record too large for the log goes to a blob file of its own; it must be among the files
    /// a flush synced, or a power cut could leave the log pointing at nothing.
    #[test]
    fn a_flush_syncs_the_blobs_of_large_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SledStore::open(dir.path()).expect("open");
        store.put(b"large", &vec![7u8; 512 * 1024]).expect("put");
        store.flush().expect("flush");
        let blobs = store.blob_names().expect("blobs");
        assert!(!blobs.is_empty(), "a 512 KiB value is written as a blob");
        let synced = store.synced_blobs.lock().expect("lock");
        assert!(
            blobs.iter().all(|b| synced.contains(b)),
            "{blobs:?} vs {synced:?}"
        );
    }

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
