//! Encryption at rest: nothing a room or a member holds reaches the store in the clear.
//!
//! Three layers, each with one job:
//! - [`MasterKey`]: the server's age X25519 identity, kept in a file *outside* the data dir
//!   (optionally protected by a passphrase with age's scrypt). Without it a copy of the data dir
//!   is ciphertext and key names.
//! - [`DataKeys`]: one random 256-bit data key per scope (one per room, one for the deployment:
//!   members, applications, policies, the audit log), each stored wrapped with age to the master
//!   identity. Rotating the master key re-wraps these few keys and touches no value.
//! - [`SealedStore`]: a [`Store`](crate::store::Store) that seals every value with
//!   XChaCha20-Poly1305 under its scope's data key, binding the ciphertext to its store key (as
//!   associated data) so a value moved to another key does not open.
//!
//! Invariant: every store the server, its CLI and its tests open for a deployment is opened
//! with [`open`]; the only unsealed values are the wrapped data keys themselves.
//! Key names stay readable (room names, member ids, sequence numbers), so a copy of the data dir
//! tells which rooms exist and how busy they are, but not what anyone said, shared or is.

mod data_keys;
mod master;
mod sealed_store;

use std::path::Path;
use std::sync::{Arc, Mutex};

pub use data_keys::{DataKey, DataKeys, Scope};
pub use master::{MasterKey, MasterKeyOptions, PASSPHRASE_ENV, default_master_key_path};
pub use sealed_store::SealedStore;

use crate::store::{SledStore, Store, StoreError};

/// Why the sealed store could not be opened or a key could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    #[error("master key {path}: {reason}")]
    MasterKey { path: String, reason: String },
    #[error("the data keys do not open with master key {path}: {reason}")]
    WrongMasterKey { path: String, reason: String },
    #[error(
        "the master key {key} is inside the data dir {data}: keep it outside, or a copy of the data dir carries its own key"
    )]
    KeyInsideDataDir { key: String, data: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Opens the deployment store at `path`, sealed under `master`.
pub fn open(path: &Path, master: &MasterKey) -> Result<Arc<SealedStore>, SealError> {
    let inner: Arc<dyn Store> = Arc::new(SledStore::open(path)?);
    Ok(Arc::new(SealedStore::new(inner, master)?))
}

/// Refuses a key file inside the data dir (symbolic links and `..` resolved as far as the
/// paths exist).
pub fn check_outside(data_dir: &Path, key: &Path) -> Result<(), SealError> {
    let resolve = |p: &Path| {
        let absolute = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        if let Ok(real) = std::fs::canonicalize(&absolute) {
            return real;
        }
        // The key may not exist yet: resolve its folder and keep its name.
        match (absolute.parent(), absolute.file_name()) {
            (Some(dir), Some(name)) => std::fs::canonicalize(dir)
                .map(|d| d.join(name))
                .unwrap_or(absolute.clone()),
            _ => absolute,
        }
    };
    if resolve(key).starts_with(resolve(data_dir)) {
        return Err(SealError::KeyInsideDataDir {
            key: key.display().to_string(),
            data: data_dir.display().to_string(),
        });
    }
    Ok(())
}

/// Opens a deployment's store with the master key `options` name: refuses a key kept inside
/// the data dir, and finishes a rotation that stopped after the data keys were re-wrapped but
/// before the new key file replaced the old one.
pub fn open_deployment(
    data_dir: &Path,
    store_path: &Path,
    options: &MasterKeyOptions,
) -> Result<(Arc<SealedStore>, MasterKey), SealError> {
    check_outside(data_dir, &options.path)?;
    let master = MasterKey::load(options)?;
    let inner: Arc<dyn Store> = Arc::new(SledStore::open(store_path)?);
    match SealedStore::new(inner.clone(), &master) {
        Ok(store) => Ok((Arc::new(store), master)),
        Err(SealError::WrongMasterKey { path, reason }) => {
            let pending = master.pending_path();
            if !pending.exists() {
                return Err(SealError::WrongMasterKey { path, reason });
            }
            let successor = MasterKey::load(&MasterKeyOptions {
                path: pending.clone(),
                passphrase: options.passphrase.clone(),
            })?;
            let store = SealedStore::new(inner, &successor)?;
            rename_durably(&pending, &options.path).map_err(|e| SealError::MasterKey {
                path: options.path.display().to_string(),
                reason: format!("finishing an interrupted rotation: {e}"),
            })?;
            tracing::warn!(key = %options.path.display(), "finished an interrupted master key rotation");
            Ok((Arc::new(store), MasterKey::load(options)?))
        }
        Err(other) => Err(other),
    }
}

/// Renames the successor key over the key file, and syncs their folder so the rename survives
/// a power cut (opening would finish it again from the pending file, but need not).
fn rename_durably(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::rename(from, to)?;
    crate::disk::sync_parent(to)
}

/// The running server's sealed store and master key, so the key can be rotated while it serves.
#[derive(Debug)]
pub struct Sealing {
    store: Arc<SealedStore>,
    master: Mutex<MasterKey>,
}

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    /// How many data keys were re-wrapped.
    pub data_keys: usize,
    /// The new master key's public recipient.
    pub recipient: String,
}

impl Sealing {
    pub fn new(store: Arc<SealedStore>, master: MasterKey) -> Self {
        Self {
            store,
            master: Mutex::new(master),
        }
    }

    /// Replaces the master key: the successor is written beside the key file first, every data
    /// key is re-wrapped to it in one atomic batch, then it replaces the old file. Readers never
    /// wait (the data keys they use are unchanged); a crash at any point leaves a key that opens
    /// the store (see [`open_deployment`]).
    pub fn rotate(&self) -> Result<Rotated, SealError> {
        let mut master = self.master.lock().map_err(|_| SealError::MasterKey {
            path: String::new(),
            reason: "master key lock poisoned".into(),
        })?;
        let successor = master.generate_successor();
        let pending = master.pending_path();
        successor.write(&pending)?;
        let data_keys = self.store.data_keys().rewrap(&successor)?;
        rename_durably(&pending, master.path()).map_err(|e| SealError::MasterKey {
            path: master.path().display().to_string(),
            reason: format!("replacing the key file: {e}"),
        })?;
        let recipient = successor.recipient().to_string();
        *master = successor;
        Ok(Rotated {
            data_keys,
            recipient,
        })
    }

    pub fn store(&self) -> &Arc<SealedStore> {
        &self.store
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rotation cut off after the data keys were re-wrapped, before the new key file
    /// replaced the old: the next open finds the new key and finishes the rotation.
    #[test]
    fn an_interrupted_rotation_is_finished_on_the_next_open() {
        let dir = tempfile::tempdir().expect("dir");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        let options = MasterKeyOptions {
            path: dir.path().join("master-key"),
            passphrase: None,
        };
        let (first, _) = MasterKey::load_or_create(&options).expect("key");
        let store_path = data.join("store");
        {
            let store = open(&store_path, &first).expect("open");
            store.put(b"msg/ops/1", b"kept").expect("put");
            // The first two steps of `Sealing::rotate`, then the process dies.
            let successor = first.generate_successor();
            successor.write(&first.pending_path()).expect("pending key");
            store.data_keys().rewrap(&successor).expect("rewrap");
            store.flush().expect("flush");
        }
        let (store, master) = open_deployment(&data, &store_path, &options).expect("recovers");
        assert_eq!(
            store.get(b"msg/ops/1").expect("get").as_deref(),
            Some(&b"kept"[..])
        );
        assert!(
            !master.pending_path().exists(),
            "the new key took the old one's place"
        );
        drop(store);
        // And from now on the key file alone opens the store.
        open_deployment(&data, &store_path, &options).expect("opens again");
    }
}
