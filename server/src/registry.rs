//! The member registry: who belongs to the deployment, with what attributes and status.
//! The source of truth the gate reads on every decision.

use std::sync::Arc;

use escape_proto::{Member, MemberId};

use crate::store::{Store, StoreError, keys, value};

#[derive(Debug, Clone)]
pub struct Registry {
    store: Arc<dyn Store>,
}

impl Registry {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    pub fn get(&self, id: &MemberId) -> Result<Option<Member>, StoreError> {
        let key = keys::member(id);
        self.store
            .get(&key)?
            .map(|bytes| value::decode(&key, &bytes))
            .transpose()
    }

    /// Adds or replaces a member record.
    pub fn put(&self, member: &Member) -> Result<(), StoreError> {
        self.store
            .put(&keys::member(&member.id), &value::encode(member)?)
    }

    pub fn all(&self) -> Result<Vec<Member>, StoreError> {
        self.store
            .scan_prefix(keys::MEMBER_PREFIX, usize::MAX)?
            .into_iter()
            .map(|(k, v)| value::decode(&k, &v))
            .collect()
    }
}
