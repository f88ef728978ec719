//! Data keys: one per scope, created on first use, stored wrapped to the master identity.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use chacha20poly1305::{KeyInit, XChaCha20Poly1305};
use ring::rand::{SecureRandom, SystemRandom};

use super::{MasterKey, SealError};
use crate::store::{Batch, Range, Store, StoreError, Swap, keys};

/// Which data key seals a value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Members, applications, invites, policies, the audit log.
    Deployment,
    /// Everything one room holds, by room name.
    Room(Vec<u8>),
}

impl Scope {
    /// The scope of a store key.
    pub fn of(key: &[u8]) -> Self {
        match keys::room_scope(key) {
            Some(room) => Self::Room(room.to_vec()),
            None => Self::Deployment,
        }
    }

    fn label(&self) -> Vec<u8> {
        match self {
            Self::Deployment => b"deployment".to_vec(),
            Self::Room(room) => [b"room/".as_slice(), room].concat(),
        }
    }
}

/// The unwrapped data keys, loaded lazily and kept in memory for the server's lifetime.
pub struct DataKeys {
    store: Arc<dyn Store>,
    master: RwLock<age::x25519::Identity>,
    keys: RwLock<HashMap<Scope, Arc<DataKey>>>,
    random: SystemRandom,
}

/// One scope's data key, unwrapped.
pub struct DataKey {
    bytes: [u8; KEY_BYTES],
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey").finish_non_exhaustive()
    }
}

impl DataKey {
    /// XChaCha20-Poly1305 under this key: opens and seals under any nonce.
    pub fn cipher(&self) -> &XChaCha20Poly1305 {
        &self.cipher
    }

    /// The key XChaCha20-Poly1305 derives from this one for every nonce that starts with
    /// `prefix` (HChaCha20 of the key and the prefix). ChaCha20-Poly1305 under it, with four
    /// zero bytes and the nonce's last eight as its nonce, is XChaCha20-Poly1305 under this key
    /// byte for byte: the derivation is done once instead of for every value.
    pub(crate) fn subkey(&self, prefix: &[u8; 16]) -> [u8; KEY_BYTES] {
        chacha20::hchacha::<chacha20::cipher::consts::U10>((&self.bytes).into(), prefix.into())
            .into()
    }
}

impl std::fmt::Debug for DataKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKeys").finish_non_exhaustive()
    }
}

const KEY_BYTES: usize = 32;

impl DataKeys {
    /// Opens the deployment's data key (creating it in a fresh store), which proves `master`
    /// is the identity the keys were wrapped to.
    pub(super) fn open(store: Arc<dyn Store>, master: &MasterKey) -> Result<Self, SealError> {
        let keys = Self {
            store,
            master: RwLock::new(master.identity().clone()),
            keys: RwLock::new(HashMap::new()),
            random: SystemRandom::new(),
        };
        keys.key(&Scope::Deployment).map_err(|e| match e {
            StoreError::Corrupt { reason, .. } => SealError::WrongMasterKey {
                path: master.path().display().to_string(),
                reason,
            },
            other => SealError::Store(other),
        })?;
        Ok(keys)
    }

    /// The data key of `scope`, created and stored on first use.
    pub fn key(&self, scope: &Scope) -> Result<Arc<DataKey>, StoreError> {
        if let Some(key) = self.keys.read().map_err(poisoned)?.get(scope) {
            return Ok(key.clone());
        }
        let store_key = keys::data_key(&scope.label());
        // Held across wrap and store so that a rotation cannot slip in between and leave a key
        // wrapped to the old master identity.
        let master = self.master.read().map_err(poisoned)?;
        let key = match self.store.get(&store_key)? {
            Some(wrapped) => unwrap_key(&master, &store_key, &wrapped)?,
            None => {
                let mut fresh = [0u8; KEY_BYTES];
                self.random
                    .fill(&mut fresh)
                    .map_err(|_| StoreError::Backend("no randomness for a data key".into()))?;
                let wrapped = wrap_key(&master.to_public(), &fresh)?;
                match self
                    .store
                    .compare_and_swap(&store_key, None, Some(&wrapped))?
                {
                    Swap::Done => fresh,
                    // Another request created it first: use theirs.
                    Swap::Conflict => {
                        let stored = self.store.get(&store_key)?.ok_or_else(|| {
                            StoreError::Backend("data key vanished while created".into())
                        })?;
                        unwrap_key(&master, &store_key, &stored)?
                    }
                }
            }
        };
        drop(master);
        let key = Arc::new(DataKey {
            cipher: XChaCha20Poly1305::new(&key.into()),
            bytes: key,
        });
        self.keys
            .write()
            .map_err(poisoned)?
            .insert(scope.clone(), key.clone());
        Ok(key)
    }

    /// Re-wraps every data key to `successor` in one atomic batch and makes it the identity
    /// used from now on. Values are untouched and readers never wait: the unwrapped keys in
    /// memory do not change. Returns how many keys were re-wrapped.
    pub fn rewrap(&self, successor: &MasterKey) -> Result<usize, StoreError> {
        // Exclusive for the whole re-wrap: no data key is created meanwhile.
        let mut master = self.master.write().map_err(poisoned)?;
        let range = Range::prefix(keys::DATA_KEY_PREFIX);
        let wrapped = self
            .store
            .scan(&range, crate::store::Order::Ascending, usize::MAX)?;
        let recipient = successor.recipient();
        let mut batch = Batch::default();
        for (store_key, value) in &wrapped {
            let key = unwrap_key(&master, store_key, value)?;
            batch.put(store_key.clone(), wrap_key(&recipient, &key)?);
        }
        self.store.apply(batch)?;
        self.store.flush()?;
        *master = successor.identity().clone();
        Ok(wrapped.len())
    }
}

fn wrap_key(
    recipient: &age::x25519::Recipient,
    key: &[u8; KEY_BYTES],
) -> Result<Vec<u8>, StoreError> {
    age::encrypt(recipient, key)
        .map_err(|e| StoreError::Backend(format!("wrapping a data key: {e}")))
}

fn unwrap_key(
    master: &age::x25519::Identity,
    store_key: &[u8],
    wrapped: &[u8],
) -> Result<[u8; KEY_BYTES], StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        key: String::from_utf8_lossy(store_key).into_owned(),
        reason,
    };
    let key = age::decrypt(master, wrapped).map_err(|e| corrupt(e.to_string()))?;
    key.try_into()
        .map_err(|_| corrupt("a data key is 32 bytes".into()))
}

fn poisoned<T>(_: T) -> StoreError {
    StoreError::Backend("data key lock poisoned".into())
}
