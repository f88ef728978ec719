//! A store that seals every value on the way in and opens it on the way out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use chacha20poly1305::aead::{Aead, Payload};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use super::{DataKeys, MasterKey, Scope, SealError};
use crate::store::{Batch, Entry, Order, Range, Store, StoreError, Swap, Write, keys};

/// The format of a sealed value: this version byte, a 24-byte nonce never used before under
/// the data key (see [`Nonces`]), then the XChaCha20-Poly1305 ciphertext and tag. The store
/// key is the associated data.
const VERSION: u8 = 1;
const NONCE_BYTES: usize = 24;
/// The random part of a nonce; the rest counts.
const NONCE_PREFIX_BYTES: usize = 16;
/// Poly1305's tag, after the ciphertext.
const TAG_BYTES: usize = 16;

/// Unique nonces without a system call for each: random bytes drawn once, when the store is
/// opened, then a counter. Drawing all 24 bytes for every value cost a `getrandom` call per
/// write, a few per cent of the server's time under a stream of messages.
///
/// Invariant: two nonces under one data key repeat only if two openings of the store drew the
/// same 128 random bits (about 2^-128 for any pair of openings), or one opening sealed 2^64
/// values. XChaCha20's 192-bit nonce is what leaves room for both parts.
#[derive(Debug)]
struct Nonces {
    prefix: [u8; NONCE_PREFIX_BYTES],
    counter: AtomicU64,
}

impl Nonces {
    fn new(random: &SystemRandom) -> Result<Self, StoreError> {
        let mut prefix = [0u8; NONCE_PREFIX_BYTES];
        random
            .fill(&mut prefix)
            .map_err(|_| StoreError::Backend("no randomness for nonces".into()))?;
        Ok(Self {
            prefix,
            counter: AtomicU64::new(0),
        })
    }

    fn next(&self) -> [u8; NONCE_BYTES] {
        let count = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut nonce = [0u8; NONCE_BYTES];
        nonce[..NONCE_PREFIX_BYTES].copy_from_slice(&self.prefix);
        nonce[NONCE_PREFIX_BYTES..].copy_from_slice(&count.to_be_bytes());
        nonce
    }
}

/// Opened values kept in memory, so that a value read again (a member record on every
/// delivery, an event by every subscriber) is not decrypted again. An entry is used only if the
/// stored ciphertext is byte for byte the one it was opened from; since every write seals with a
/// fresh nonce, a changed value never matches and nothing needs invalidating.
const CACHE_ENTRIES: usize = 8192;
/// Values larger than this are not cached.
const CACHE_VALUE_BYTES: usize = 4 * 1024;

/// Two generations of entries: when the current one is full it becomes the previous one, so
/// what is still read survives a turn and the whole stays bounded.
#[derive(Debug, Default)]
struct Opened {
    current: HashMap<Vec<u8>, Arc<OpenedValue>>,
    previous: HashMap<Vec<u8>, Arc<OpenedValue>>,
}

/// A ciphertext as stored, and what it opened to.
type OpenedValue = (Vec<u8>, Vec<u8>);

impl Opened {
    fn get(&mut self, key: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if let Some(entry) = self.current.get(key) {
            return (entry.0 == sealed).then(|| entry.1.clone());
        }
        let entry = self.previous.remove(key)?;
        if entry.0 != sealed {
            return None;
        }
        let plain = entry.1.clone();
        self.insert(key.to_vec(), entry);
        Some(plain)
    }

    fn insert(&mut self, key: Vec<u8>, entry: Arc<OpenedValue>) {
        if self.current.len() >= CACHE_ENTRIES / 2 {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(key, entry);
    }
}

/// How often a compare-and-swap retries when another writer re-sealed the same value meanwhile.
const SWAP_ATTEMPTS: usize = 8;

/// The keys this opening of the store seals with, one per scope: every nonce it draws starts
/// with the same random prefix, so each value's XChaCha20-Poly1305 is ChaCha20-Poly1305 under
/// one subkey per scope (see [`super::DataKey::subkey`]), derived on first use. Deriving it for
/// every value, and the portable Poly1305 it came with, were most of the cost of sealing a
/// message.
#[derive(Default)]
struct Sealers {
    deployment: OnceLock<Arc<LessSafeKey>>,
    /// By room name, so that finding one takes no allocation.
    rooms: RwLock<HashMap<Vec<u8>, Arc<LessSafeKey>>>,
}

impl std::fmt::Debug for Sealers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealers").finish_non_exhaustive()
    }
}

/// The ChaCha20-Poly1305 nonce that goes with an XChaCha20-Poly1305 nonce under its subkey.
fn inner_nonce(nonce: &[u8; NONCE_BYTES]) -> Nonce {
    let mut inner = [0u8; 12];
    inner[4..].copy_from_slice(&nonce[NONCE_PREFIX_BYTES..]);
    Nonce::assume_unique_for_key(inner)
}

/// Seals values under their scope's data key; see the module docs of [`crate::seal`].
#[derive(Debug)]
pub struct SealedStore {
    inner: Arc<dyn Store>,
    keys: DataKeys,
    nonces: Nonces,
    sealers: Sealers,
    opened: Mutex<Opened>,
}

impl SealedStore {
    /// Wraps `inner`; fails if `master` is not the identity its data keys were wrapped to.
    pub fn new(inner: Arc<dyn Store>, master: &MasterKey) -> Result<Self, SealError> {
        Ok(Self {
            keys: DataKeys::open(inner.clone(), master)?,
            inner,
            nonces: Nonces::new(&SystemRandom::new())?,
            sealers: Sealers::default(),
            opened: Mutex::new(Opened::default()),
        })
    }

    pub fn data_keys(&self) -> &DataKeys {
        &self.keys
    }

    /// The store underneath, holding only ciphertext (for tests that look at raw bytes).
    pub fn raw(&self) -> &Arc<dyn Store> {
        &self.inner
    }

    /// This opening's sealing key for the scope of store key `key`.
    fn sealer(&self, key: &[u8]) -> Result<Arc<LessSafeKey>, StoreError> {
        let room = keys::room_scope(key);
        let kept = match room {
            None => self.sealers.deployment.get().cloned(),
            Some(room) => self
                .sealers
                .rooms
                .read()
                .map_err(|_| sealers_poisoned())?
                .get(room)
                .cloned(),
        };
        if let Some(sealer) = kept {
            return Ok(sealer);
        }
        let subkey = self.keys.key(&Scope::of(key))?.subkey(&self.nonces.prefix);
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, &subkey)
            .map_err(|_| StoreError::Backend("a sealing key was refused".into()))?;
        let sealer = Arc::new(LessSafeKey::new(unbound));
        match room {
            None => Ok(self.sealers.deployment.get_or_init(|| sealer).clone()),
            Some(room) => Ok(self
                .sealers
                .rooms
                .write()
                .map_err(|_| sealers_poisoned())?
                .entry(room.to_vec())
                .or_insert(sealer)
                .clone()),
        }
    }

    /// The format of [`VERSION`]: XChaCha20-Poly1305 under the scope's data key, made with this
    /// opening's subkey (see [`Sealers`]).
    fn seal(&self, key: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, StoreError> {
        if passes_through(key) {
            return Ok(plaintext.to_vec());
        }
        let sealer = self.sealer(key)?;
        let nonce = self.nonces.next();
        let mut sealed = Vec::with_capacity(1 + NONCE_BYTES + plaintext.len() + TAG_BYTES);
        sealed.push(VERSION);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(plaintext);
        let tag = sealer
            .seal_in_place_separate_tag(
                inner_nonce(&nonce),
                Aad::from(key),
                &mut sealed[1 + NONCE_BYTES..],
            )
            .map_err(|_| StoreError::Backend("sealing failed".into()))?;
        sealed.extend_from_slice(tag.as_ref());
        Ok(sealed)
    }

    /// Opens a value, from the cache when this exact ciphertext was opened before.
    fn open(&self, key: &[u8], sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        if sealed.len() > CACHE_VALUE_BYTES || passes_through(key) {
            return self.decrypt(key, sealed);
        }
        if let Ok(mut opened) = self.opened.lock()
            && let Some(plain) = opened.get(key, sealed)
        {
            return Ok(plain);
        }
        let plain = self.decrypt(key, sealed)?;
        if let Ok(mut opened) = self.opened.lock() {
            opened.insert(key.to_vec(), Arc::new((sealed.to_vec(), plain.clone())));
        }
        Ok(plain)
    }

    fn decrypt(&self, key: &[u8], sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        if passes_through(key) {
            return Ok(sealed.to_vec());
        }
        let corrupt = |reason: &str| StoreError::Corrupt {
            key: String::from_utf8_lossy(key).into_owned(),
            reason: reason.into(),
        };
        let (version, rest) = sealed.split_first().ok_or_else(|| corrupt("empty"))?;
        if *version != VERSION || rest.len() < NONCE_BYTES {
            return Err(corrupt("not a sealed value"));
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_BYTES);
        let nonce: &[u8; NONCE_BYTES] = nonce
            .try_into()
            .map_err(|_| corrupt("not a sealed value"))?;
        let refused = || corrupt("does not open: altered, moved, or sealed under another key");
        // Sealed by this opening: its subkey is kept.
        if nonce[..NONCE_PREFIX_BYTES] == self.nonces.prefix {
            let mut plain = ciphertext.to_vec();
            let len = self
                .sealer(key)?
                .open_in_place(inner_nonce(nonce), Aad::from(key), &mut plain)
                .map_err(|_| refused())?
                .len();
            plain.truncate(len);
            return Ok(plain);
        }
        self.keys
            .key(&Scope::of(key))?
            .cipher()
            .decrypt(
                nonce.into(),
                Payload {
                    msg: ciphertext,
                    aad: key,
                },
            )
            .map_err(|_| refused())
    }
}

fn sealers_poisoned() -> StoreError {
    StoreError::Backend("the sealing keys' lock is poisoned".into())
}

/// Wrapped data keys are stored as they are.
fn passes_through(key: &[u8]) -> bool {
    key.starts_with(keys::DATA_KEY_PREFIX)
}

impl Store for SealedStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner
            .get(key)?
            .map(|sealed| self.open(key, &sealed))
            .transpose()
    }

    fn apply(&self, batch: Batch) -> Result<(), StoreError> {
        let mut sealed = if batch.is_in_order() {
            Batch::in_order()
        } else {
            Batch::default()
        };
        for write in batch.into_writes() {
            match write {
                Write::Put(key, value) => {
                    let value = self.seal(&key, &value)?;
                    sealed.put(key, value);
                }
                Write::Delete(key) => {
                    sealed.delete(key);
                }
            }
        }
        self.inner.apply(sealed)
    }

    /// Sealing is randomised, so the expected plaintext is compared after opening the current
    /// value, and the swap is made against the exact ciphertext that was opened.
    fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<Swap, StoreError> {
        let new = new.map(|v| self.seal(key, v)).transpose()?;
        if expected.is_none() {
            // Absent is absent, sealed or not: the store's own swap decides, in one look.
            return self.inner.compare_and_swap(key, None, new.as_deref());
        }
        for _ in 0..SWAP_ATTEMPTS {
            let current = self.inner.get(key)?;
            let matches = match (&current, expected) {
                (None, None) => true,
                (Some(sealed), Some(expected)) => self.open(key, sealed)? == expected,
                _ => false,
            };
            if !matches {
                return Ok(Swap::Conflict);
            }
            match self
                .inner
                .compare_and_swap(key, current.as_deref(), new.as_deref())?
            {
                Swap::Done => return Ok(Swap::Done),
                // Changed between our read and the swap: look again.
                Swap::Conflict => continue,
            }
        }
        Ok(Swap::Conflict)
    }

    fn scan(&self, range: &Range, order: Order, limit: usize) -> Result<Vec<Entry>, StoreError> {
        self.inner
            .scan(range, order, limit)?
            .into_iter()
            .map(|(key, sealed)| {
                let value = self.open(&key, &sealed)?;
                Ok((key, value))
            })
            .collect()
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::MasterKeyOptions;
    use crate::store::MemoryStore;

    fn master(dir: &std::path::Path, name: &str) -> MasterKey {
        MasterKey::load_or_create(&MasterKeyOptions {
            path: dir.join(name),
            passphrase: None,
        })
        .expect("master")
        .0
    }

    #[test]
    fn values_are_ciphertext_underneath_and_plaintext_above() {
        let dir = tempfile::tempdir().expect("dir");
        let raw: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let sealed = SealedStore::new(raw.clone(), &master(dir.path(), "k")).expect("open");
        sealed
            .put(b"msg/ops/1", b"the secret indicator 198.51.100.7")
            .expect("put");
        sealed
            .put(b"member/m1", b"organisation CERT-X")
            .expect("put");
        assert_eq!(
            sealed.get(b"msg/ops/1").expect("get").as_deref(),
            Some(&b"the secret indicator 198.51.100.7"[..])
        );
        for (key, value) in raw.scan_prefix(b"", usize::MAX).expect("scan") {
            let text = String::from_utf8_lossy(&value);
            assert!(!text.contains("secret"), "{key:?} holds plaintext");
            assert!(!text.contains("CERT-X"), "{key:?} holds plaintext");
        }
        // Two rooms and the deployment each got their own data key.
        sealed.put(b"msg/intel/1", b"x").expect("put");
        let data_keys = raw.scan_prefix(keys::DATA_KEY_PREFIX, 10).expect("scan");
        assert_eq!(data_keys.len(), 3, "{data_keys:?}");
    }

    /// A nonce used twice under one key would let an observer of the data dir combine two
    /// ciphertexts; the counter restarts with every opening, so the random part must differ.
    #[test]
    fn nonces_never_repeat_within_an_opening_or_across_two() {
        let dir = tempfile::tempdir().expect("dir");
        let raw: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let key = master(dir.path(), "k");
        for opening in 0..2 {
            let sealed = SealedStore::new(raw.clone(), &key).expect("open");
            for i in 0..500 {
                sealed
                    .put(format!("msg/ops/{opening}-{i}").as_bytes(), b"same")
                    .expect("put");
            }
        }
        let nonces: std::collections::HashSet<Vec<u8>> = raw
            .scan_prefix(b"msg/ops/", usize::MAX)
            .expect("scan")
            .into_iter()
            .map(|(_, value)| value[1..1 + NONCE_BYTES].to_vec())
            .collect();
        assert_eq!(nonces.len(), 1000);
    }

    #[test]
    fn sealing_is_xchacha20_poly1305_under_the_scopes_data_key_byte_for_byte() {
        let dir = tempfile::tempdir().expect("dir");
        let raw: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let key = master(dir.path(), "k");
        let first = SealedStore::new(raw.clone(), &key).expect("open");
        // A room's scope and the deployment's.
        for (store_key, plain) in [
            (&b"msg/ops/1"[..], &b"the secret indicator 198.51.100.7"[..]),
            (b"member/m1", b"organisation CERT-X"),
        ] {
            first.put(store_key, plain).expect("put");
            let stored = raw.get(store_key).expect("get").expect("present");
            let nonce: [u8; NONCE_BYTES] = stored[1..1 + NONCE_BYTES].try_into().expect("nonce");
            let data_key = first.data_keys().key(&Scope::of(store_key)).expect("key");
            let reference = data_key
                .cipher()
                .encrypt(
                    (&nonce).into(),
                    Payload {
                        msg: plain,
                        aad: store_key,
                    },
                )
                .expect("reference seal");
            assert_eq!(stored[0], VERSION);
            assert_eq!(&stored[1 + NONCE_BYTES..], reference.as_slice());

            // Another opening of the store has another prefix: it opens the value the
            // long way, and refuses it altered.
            let second = SealedStore::new(raw.clone(), &key).expect("reopen");
            assert_eq!(second.get(store_key).expect("get").as_deref(), Some(plain));
            let mut altered = stored.clone();
            altered[1 + NONCE_BYTES] ^= 1;
            raw.put(store_key, &altered).expect("alter");
            let third = SealedStore::new(raw.clone(), &key).expect("reopen");
            assert!(matches!(
                third.get(store_key),
                Err(StoreError::Corrupt { .. })
            ));
        }
    }

    #[test]
    fn a_value_moved_to_another_key_or_altered_does_not_open() {
        let dir = tempfile::tempdir().expect("dir");
        let raw: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let sealed = SealedStore::new(raw.clone(), &master(dir.path(), "k")).expect("open");
        sealed.put(b"msg/ops/1", b"one").expect("put");
        let bytes = raw.get(b"msg/ops/1").expect("get").expect("present");
        raw.put(b"msg/ops/2", &bytes).expect("move");
        assert!(matches!(
            sealed.get(b"msg/ops/2"),
            Err(StoreError::Corrupt { .. })
        ));
        // Read once so the value is cached: the cache must not hide a change underneath.
        assert!(sealed.get(b"msg/ops/1").is_ok());
        let mut altered = bytes.clone();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        raw.put(b"msg/ops/1", &altered).expect("alter");
        assert!(matches!(
            sealed.get(b"msg/ops/1"),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn another_master_key_is_refused_and_rewrapping_hands_over() {
        let dir = tempfile::tempdir().expect("dir");
        let raw: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let first = master(dir.path(), "first");
        let sealed = SealedStore::new(raw.clone(), &first).expect("open");
        sealed.put(b"msg/ops/1", b"kept").expect("put");
        let second = master(dir.path(), "second");
        assert!(matches!(
            SealedStore::new(raw.clone(), &second),
            Err(SealError::WrongMasterKey { .. })
        ));
        assert_eq!(sealed.data_keys().rewrap(&second).expect("rewrap"), 2);
        // The running store keeps working; a fresh open needs the new key, not the old.
        assert_eq!(
            sealed.get(b"msg/ops/1").expect("get").as_deref(),
            Some(&b"kept"[..])
        );
        sealed.put(b"msg/new-room/1", b"after").expect("put");
        let reopened = SealedStore::new(raw.clone(), &second).expect("new key opens");
        assert_eq!(
            reopened.get(b"msg/new-room/1").expect("get").as_deref(),
            Some(&b"after"[..])
        );
        assert!(SealedStore::new(raw, &first).is_err(), "old key is useless");
    }

    #[test]
    fn compare_and_swap_compares_plaintext() {
        let dir = tempfile::tempdir().expect("dir");
        let raw: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let sealed = SealedStore::new(raw, &master(dir.path(), "k")).expect("open");
        assert_eq!(
            sealed
                .compare_and_swap(b"k", None, Some(b"a"))
                .expect("cas"),
            Swap::Done
        );
        assert_eq!(
            sealed
                .compare_and_swap(b"k", None, Some(b"b"))
                .expect("cas"),
            Swap::Conflict
        );
        assert_eq!(
            sealed
                .compare_and_swap(b"k", Some(b"a"), Some(b"b"))
                .expect("cas"),
            Swap::Done
        );
        assert_eq!(sealed.get(b"k").expect("get").as_deref(), Some(&b"b"[..]));
        assert_eq!(
            sealed
                .compare_and_swap(b"k", Some(b"b"), None)
                .expect("cas"),
            Swap::Done
        );
        assert_eq!(sealed.get(b"k").expect("get"), None);
    }
}
