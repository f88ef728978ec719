//! An in-memory [`Store`] for unit tests: the same semantics as the embedded store, no durability,
//! and the faults a test needs to arrange (a write cut off half-way, a write racing a read).

use std::collections::BTreeMap;
use std::sync::{Mutex, RwLock};

use super::{Batch, Entry, Order, Range, Store, StoreError, Swap, Write};

#[derive(Debug, Default)]
pub struct MemoryStore {
    map: RwLock<BTreeMap<Vec<u8>, Vec<u8>>>,
    faults: Mutex<Faults>,
}

/// Faults a test arranged; each happens once.
#[derive(Default)]
struct Faults {
    cut_next_in_order_batch: bool,
    fail_next_flush: bool,
    after_next_get: Option<Box<dyn FnOnce() + Send>>,
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faults")
            .field("cut_next_in_order_batch", &self.cut_next_in_order_batch)
            .field("fail_next_flush", &self.fail_next_flush)
            .field("after_next_get", &self.after_next_get.is_some())
            .finish()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next in-order batch stops with an error after its first write, as a full disk would.
    pub fn cut_next_in_order_batch(&self) {
        if let Ok(mut faults) = self.faults.lock() {
            faults.cut_next_in_order_batch = true;
        }
    }

    /// The next flush fails, as a disk reporting a write error would.
    pub fn fail_next_flush(&self) {
        if let Ok(mut faults) = self.faults.lock() {
            faults.fail_next_flush = true;
        }
    }

    /// Runs `then` once the next read has taken its value and before it returns, as a write
    /// racing that read would.
    pub fn after_next_get(&self, then: impl FnOnce() + Send + 'static) {
        if let Ok(mut faults) = self.faults.lock() {
            faults.after_next_get = Some(Box::new(then));
        }
    }
}

fn poisoned() -> StoreError {
    StoreError::Backend("memory store lock poisoned".into())
}

impl Store for MemoryStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let value = self.map.read().map_err(|_| poisoned())?.get(key).cloned();
        let racing = self
            .faults
            .lock()
            .map_err(|_| poisoned())?
            .after_next_get
            .take();
        if let Some(racing) = racing {
            racing();
        }
        Ok(value)
    }

    fn apply(&self, batch: Batch) -> Result<(), StoreError> {
        let cut = batch.is_in_order()
            && std::mem::take(
                &mut self
                    .faults
                    .lock()
                    .map_err(|_| poisoned())?
                    .cut_next_in_order_batch,
            );
        let mut map = self.map.write().map_err(|_| poisoned())?;
        for write in batch.into_writes() {
            match write {
                Write::Put(k, v) => {
                    map.insert(k, v);
                }
                Write::Delete(k) => {
                    map.remove(&k);
                }
            }
            if cut {
                return Err(StoreError::Backend("no space left on device".into()));
            }
        }
        Ok(())
    }

    fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<Swap, StoreError> {
        let mut map = self.map.write().map_err(|_| poisoned())?;
        if map.get(key).map(Vec::as_slice) != expected {
            return Ok(Swap::Conflict);
        }
        match new {
            Some(v) => map.insert(key.to_vec(), v.to_vec()),
            None => map.remove(key),
        };
        Ok(Swap::Done)
    }

    fn scan(&self, range: &Range, order: Order, limit: usize) -> Result<Vec<Entry>, StoreError> {
        let map = self.map.read().map_err(|_| poisoned())?;
        let iter = map.range::<Vec<u8>, _>((range.start.clone(), range.end.clone()));
        let pick = |(k, v): (&Vec<u8>, &Vec<u8>)| (k.clone(), v.clone());
        Ok(match order {
            Order::Ascending => iter.take(limit).map(pick).collect(),
            Order::Descending => iter.rev().take(limit).map(pick).collect(),
        })
    }

    fn flush(&self) -> Result<(), StoreError> {
        let fail = std::mem::take(&mut self.faults.lock().map_err(|_| poisoned())?.fail_next_flush);
        if fail {
            return Err(StoreError::Backend("input/output error".into()));
        }
        Ok(())
    }
}
