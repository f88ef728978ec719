//! An in-memory [`Store`] for unit tests: the same semantics as the embedded store, no durability.

use std::collections::BTreeMap;
use std::sync::RwLock;

use super::{Batch, Entry, Order, Range, Store, StoreError, Swap, Write};

#[derive(Debug, Default)]
pub struct MemoryStore {
    map: RwLock<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

fn poisoned() -> StoreError {
    StoreError::Backend("memory store lock poisoned".into())
}

impl Store for MemoryStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.map.read().map_err(|_| poisoned())?.get(key).cloned())
    }

    fn apply(&self, batch: Batch) -> Result<(), StoreError> {
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
        Ok(())
    }
}
