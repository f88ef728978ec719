//! The member registry: who belongs to the deployment, with what attributes and status.
//! The source of truth the gate reads on every decision.
//!
//! Every change after creation goes through [`Registry::update`], which bumps the member's
//! version and records who changed what, when and why, in the same atomic batch.

use std::sync::{Arc, Mutex};

use escape_proto::vetting::MemberChange;
use escape_proto::{Member, MemberId};
use time::OffsetDateTime;

use crate::store::{Batch, Store, StoreError, keys, value};

#[derive(Debug, Clone)]
pub struct Registry {
    store: Arc<dyn Store>,
    /// Serialises read-modify-write of member records.
    writing: Arc<Mutex<()>>,
}

impl Registry {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            writing: Arc::new(Mutex::new(())),
        }
    }

    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    pub fn get(&self, id: &MemberId) -> Result<Option<Member>, StoreError> {
        let key = keys::member(id);
        self.store
            .get(&key)?
            .map(|bytes| value::decode(&key, &bytes))
            .transpose()
    }

    /// Adds or replaces a member record as it is (creation, and tools that work offline).
    pub fn put(&self, member: &Member) -> Result<(), StoreError> {
        self.store
            .put(&keys::member(&member.id), &value::encode(member)?)
    }

    /// Creates a member and records who admitted it.
    pub fn create(&self, member: &Member, by: &MemberId, reason: &str) -> Result<(), StoreError> {
        let _guard = self.writing.lock().map_err(|_| poisoned())?;
        let change = MemberChange {
            version: member.version,
            by: by.clone(),
            at: OffsetDateTime::now_utc(),
            changes: vec!["created".into()],
            reason: reason.to_owned(),
        };
        let mut batch = Batch::default();
        batch
            .put(keys::member(&member.id), value::encode(member)?)
            .put(
                keys::member_change(&member.id, member.version),
                value::encode(&change)?,
            );
        self.store.apply(batch)
    }

    /// Applies `change` to the current record. When anything changed, the version goes up by
    /// one and the change is recorded with its author and reason. `None` if there is no such member.
    pub fn update(
        &self,
        id: &MemberId,
        by: &MemberId,
        reason: &str,
        change: impl FnOnce(&mut Member),
    ) -> Result<Option<Member>, StoreError> {
        self.update_with(id, by, reason, change, |_| Ok(()))
    }

    /// As [`Registry::update`], with `also` adding writes that must land in the same atomic
    /// batch as the change (the key rotations a suspension calls for). `also` runs only when
    /// something changed.
    pub fn update_with(
        &self,
        id: &MemberId,
        by: &MemberId,
        reason: &str,
        change: impl FnOnce(&mut Member),
        also: impl FnOnce(&mut Batch) -> Result<(), StoreError>,
    ) -> Result<Option<Member>, StoreError> {
        let _guard = self.writing.lock().map_err(|_| poisoned())?;
        let Some(old) = self.get(id)? else {
            return Ok(None);
        };
        let mut new = old.clone();
        change(&mut new);
        new.id = old.id.clone();
        let changes = describe_changes(&old, &new);
        if changes.is_empty() {
            return Ok(Some(old));
        }
        new.version = old.version + 1;
        let record = MemberChange {
            version: new.version,
            by: by.clone(),
            at: OffsetDateTime::now_utc(),
            changes,
            reason: reason.to_owned(),
        };
        let mut batch = Batch::default();
        batch.put(keys::member(id), value::encode(&new)?).put(
            keys::member_change(id, new.version),
            value::encode(&record)?,
        );
        also(&mut batch)?;
        self.store.apply(batch)?;
        Ok(Some(new))
    }

    /// Every recorded change of a member, oldest first.
    pub fn history(&self, id: &MemberId) -> Result<Vec<MemberChange>, StoreError> {
        self.store
            .scan_prefix(&keys::member_changes_prefix(id), usize::MAX)?
            .into_iter()
            .map(|(k, v)| value::decode(&k, &v))
            .collect()
    }

    pub fn all(&self) -> Result<Vec<Member>, StoreError> {
        self.store
            .scan_prefix(keys::MEMBER_PREFIX, usize::MAX)?
            .into_iter()
            .map(|(k, v)| value::decode(&k, &v))
            .collect()
    }
}

fn poisoned() -> StoreError {
    StoreError::Backend("registry lock poisoned".into())
}

/// One line per changed field, `field: old -> new`.
fn describe_changes(old: &Member, new: &Member) -> Vec<String> {
    let mut out = Vec::new();
    let mut field = |name: &str, a: String, b: String| {
        if a != b {
            out.push(format!("{name}: {a} -> {b}"));
        }
    };
    field("name", old.name.clone(), new.name.clone());
    field("email", old.email.clone(), new.email.clone());
    field(
        "status",
        format!("{:?}", old.status),
        format!("{:?}", new.status),
    );
    field("admin", old.admin.to_string(), new.admin.to_string());
    let (a, b) = (&old.attributes, &new.attributes);
    field(
        "organisation",
        a.organisation.clone(),
        b.organisation.clone(),
    );
    field("country", a.country.clone(), b.country.clone());
    field("sector", a.sector.clone(), b.sector.clone());
    field("role", a.role.clone(), b.role.clone());
    field(
        "clearance",
        a.clearance.to_string(),
        b.clearance.to_string(),
    );
    field("vetting", a.vetting.clone(), b.vetting.clone());
    field("clients", a.clients.join(";"), b.clients.join(";"));
    field(
        "published",
        format!("{:?}", old.published),
        format!("{:?}", new.published),
    );
    field(
        "age_recipient",
        old.age_recipient.clone().unwrap_or_default(),
        new.age_recipient.clone().unwrap_or_default(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use escape_proto::MemberStatus;

    #[test]
    fn updates_are_versioned_and_recorded() {
        let registry = Registry::new(Arc::new(MemoryStore::new()));
        let admin = MemberId::parse("admin").expect("id");
        let id = MemberId::parse("ana").expect("id");
        registry
            .create(&Member::new(id.clone(), "Ana"), &admin, "approved")
            .expect("create");
        let updated = registry
            .update(&id, &admin, "moved", |m| m.attributes.country = "EE".into())
            .expect("update")
            .expect("exists");
        assert_eq!(updated.version, 2);
        // No change, no new version.
        let same = registry
            .update(&id, &admin, "noop", |m| m.attributes.country = "EE".into())
            .expect("update")
            .expect("exists");
        assert_eq!(same.version, 2);
        registry
            .update(&id, &admin, "abuse", |m| m.status = MemberStatus::Suspended)
            .expect("update");
        let history = registry.history(&id).expect("history");
        assert_eq!(
            history.iter().map(|c| c.version).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(history[1].changes, vec!["country:  -> EE".to_owned()]);
        assert_eq!(
            history[2].changes,
            vec!["status: Active -> Suspended".to_owned()]
        );
        assert_eq!(history[2].reason, "abuse");
        assert!(
            registry
                .update(&MemberId::parse("ghost").expect("id"), &admin, "", |_| {})
                .expect("ok")
                .is_none()
        );
    }
}
