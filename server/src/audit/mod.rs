//! The audit log: append-only and hash-chained, with signed checkpoints.
//!
//! Every entry commits to the previous one: `hash = SHA-256(seq, time, actor, action, subject,
//! detail, previous hash)`. Changing, deleting or reordering an entry breaks the chain at that
//! point, and [`verify`] names the first bad entry. Periodically and at shutdown the server signs
//! a checkpoint (entry count and head hash) with its own key, so even a rewrite of the whole chain
//! from some point on is caught: its head no longer matches what the server signed.
//!
//! Denials are recorded too, but at most [`DENIALS_PER_MINUTE`] a minute, so a flood of refused
//! requests cannot fill the disk; the number skipped is recorded with the next one that is kept.

mod checkpoint;
mod verify;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use escape_proto::MemberId;
use time::OffsetDateTime;

pub use checkpoint::{Checkpoint, Signer};
pub use verify::{Finding, verify};

use crate::store::{Order, Range, Store, StoreError, keys, value};

/// Denials recorded per minute at most.
pub const DENIALS_PER_MINUTE: u32 = 60;

/// One audit entry (the wire type admins read is the stored type).
pub type Entry = escape_proto::audit::AuditEntry;

/// The hash an entry must carry, given its contents and `prev`.
pub fn compute_hash(entry: &Entry) -> String {
    let canonical = serde_json::json!([
        entry.seq,
        entry.at.unix_timestamp_nanos().to_string(),
        entry.actor.as_ref().map(MemberId::as_str),
        entry.action,
        entry.subject,
        entry.detail,
        entry.prev,
    ]);
    crate::vetting::sha256_hex(canonical.to_string().as_bytes())
}

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

struct Head {
    seq: u64,
    hash: String,
    /// Entries since the last checkpoint.
    unsigned: u64,
}

struct DenialBudget {
    window: Instant,
    used: u32,
    skipped: u64,
}

pub struct AuditLog {
    store: Arc<dyn Store>,
    head: Mutex<Head>,
    denials: Mutex<DenialBudget>,
    signer: Option<Signer>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens the log, continuing the chain from the last stored entry.
    pub fn open(store: Arc<dyn Store>, signer: Option<Signer>) -> Result<Self, StoreError> {
        let last = store
            .scan(&Range::prefix(keys::AUDIT_PREFIX), Order::Descending, 1)?
            .into_iter()
            .next()
            .map(|(k, v)| value::decode::<Entry>(&k, &v))
            .transpose()?;
        let head = match last {
            Some(entry) => Head {
                seq: entry.seq,
                hash: entry.hash,
                unsigned: 1,
            },
            None => Head {
                seq: 0,
                hash: GENESIS.to_owned(),
                unsigned: 0,
            },
        };
        Ok(Self {
            store,
            head: Mutex::new(head),
            denials: Mutex::new(DenialBudget {
                window: Instant::now(),
                used: 0,
                skipped: 0,
            }),
            signer,
        })
    }

    /// Appends an entry. Failures are logged, never passed on: an action that already happened
    /// is not undone because its record could not be written, but the operator is told.
    pub fn record(
        &self,
        actor: Option<&MemberId>,
        action: &str,
        subject: &str,
        detail: impl Into<String>,
    ) {
        if let Err(e) = self.append(actor, action, subject, detail.into()) {
            tracing::error!(error = %e, action, subject, "audit entry could not be written");
        }
    }

    fn append(
        &self,
        actor: Option<&MemberId>,
        action: &str,
        subject: &str,
        detail: String,
    ) -> Result<Entry, StoreError> {
        let mut head = self
            .head
            .lock()
            .map_err(|_| StoreError::Backend("audit lock poisoned".into()))?;
        let mut entry = Entry {
            seq: head.seq + 1,
            at: OffsetDateTime::now_utc(),
            actor: actor.cloned(),
            action: action.to_owned(),
            subject: subject.to_owned(),
            detail,
            prev: head.hash.clone(),
            hash: String::new(),
        };
        entry.hash = compute_hash(&entry);
        self.store
            .put(&keys::audit(entry.seq), &value::encode(&entry)?)?;
        head.seq = entry.seq;
        head.hash = entry.hash.clone();
        head.unsigned += 1;
        Ok(entry)
    }

    /// Records a denial, within the per-minute budget.
    pub fn denial(&self, actor: &MemberId, action: &str, subject: &str, reason: &str) {
        let skipped = {
            let Ok(mut budget) = self.denials.lock() else {
                return;
            };
            if budget.window.elapsed().as_secs() >= 60 {
                budget.window = Instant::now();
                budget.used = 0;
            }
            if budget.used >= DENIALS_PER_MINUTE {
                budget.skipped += 1;
                return;
            }
            budget.used += 1;
            std::mem::take(&mut budget.skipped)
        };
        let detail = if skipped > 0 {
            format!("{reason} ({skipped} earlier denials not recorded: rate limit)")
        } else {
            reason.to_owned()
        };
        self.record(
            Some(actor),
            "access.denied",
            subject,
            format!("{action}: {detail}"),
        );
    }

    /// Signs a checkpoint of the current head if anything was appended since the last one.
    pub fn checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        let Some(signer) = &self.signer else {
            return Ok(None);
        };
        let mut head = self
            .head
            .lock()
            .map_err(|_| StoreError::Backend("audit lock poisoned".into()))?;
        if head.unsigned == 0 || head.seq == 0 {
            return Ok(None);
        }
        let checkpoint = signer.sign(head.seq, &head.hash)?;
        self.store.put(
            &keys::audit_checkpoint(head.seq),
            &value::encode(&checkpoint)?,
        )?;
        head.unsigned = 0;
        Ok(Some(checkpoint))
    }

    /// Entries with `seq > after`, oldest first, at most `limit`.
    pub fn read(&self, after: u64, limit: usize) -> Result<Vec<Entry>, StoreError> {
        let range = Range {
            start: std::ops::Bound::Excluded(keys::audit(after)),
            end: std::ops::Bound::Excluded(keys::audit(u64::MAX)),
        };
        self.store
            .scan(&range, Order::Ascending, limit)?
            .into_iter()
            .map(|(k, v)| value::decode(&k, &v))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn log() -> (Arc<dyn Store>, AuditLog, String) {
        let ca = escape_certs::Ca::generate("Test", escape_certs::Validity::days_from_now(1))
            .expect("ca");
        let server = ca
            .issue_server(
                &["localhost".into()],
                escape_certs::Validity::days_from_now(1),
            )
            .expect("server");
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let log = AuditLog::open(
            store.clone(),
            Some(Signer::from_pem(&server.key_pem).expect("signer")),
        )
        .expect("log");
        let admin = MemberId::parse("admin").expect("id");
        for i in 1..=5 {
            log.record(Some(&admin), "room.join", &format!("room-{i}"), "joined");
        }
        log.checkpoint().expect("checkpoint").expect("signed");
        (store, log, server.cert_pem)
    }

    fn entry(store: &dyn Store, seq: u64) -> Entry {
        let key = keys::audit(seq);
        value::decode(&key, &store.get(&key).expect("get").expect("present")).expect("decode")
    }

    fn put(store: &dyn Store, seq: u64, entry: &Entry) {
        store
            .put(&keys::audit(seq), &value::encode(entry).expect("encode"))
            .expect("put");
    }

    fn broken_at(store: &dyn Store, cert: &str) -> (u64, String) {
        match verify(store, cert).expect("verify") {
            Finding::Broken { seq, reason } => (seq, reason),
            intact => panic!("tampering went unnoticed: {intact:?}"),
        }
    }

    #[test]
    fn an_intact_log_verifies_and_continues_after_reopening() {
        let (store, _log, cert) = log();
        assert_eq!(
            verify(store.as_ref(), &cert).expect("verify"),
            Finding::Intact {
                entries: 5,
                checkpoints: 1
            }
        );
        let reopened = AuditLog::open(store.clone(), None).expect("reopen");
        reopened.record(None, "server.start", "", "");
        assert_eq!(
            verify(store.as_ref(), &cert).expect("verify"),
            Finding::Intact {
                entries: 6,
                checkpoints: 1
            }
        );
        assert_eq!(
            reopened
                .read(4, 10)
                .expect("read")
                .iter()
                .map(|e| e.seq)
                .collect::<Vec<_>>(),
            vec![5, 6]
        );
    }

    #[test]
    fn a_modified_entry_is_found() {
        let (store, _log, cert) = log();
        let mut e = entry(store.as_ref(), 3);
        e.detail = "nothing happened".into();
        put(store.as_ref(), 3, &e);
        let (seq, reason) = broken_at(store.as_ref(), &cert);
        assert_eq!(seq, 3);
        assert!(reason.contains("modified"), "{reason}");
    }

    #[test]
    fn a_deleted_entry_is_found() {
        let (store, _log, cert) = log();
        store.delete(&keys::audit(3)).expect("delete");
        let (seq, reason) = broken_at(store.as_ref(), &cert);
        assert_eq!(seq, 3);
        assert!(reason.contains("missing"), "{reason}");
    }

    #[test]
    fn reordered_entries_are_found() {
        let (store, _log, cert) = log();
        let (two, three) = (entry(store.as_ref(), 2), entry(store.as_ref(), 3));
        // Swapped as they are, and swapped with their numbers rewritten to fit the keys.
        put(store.as_ref(), 2, &three);
        put(store.as_ref(), 3, &two);
        assert_eq!(broken_at(store.as_ref(), &cert).0, 2);
        put(store.as_ref(), 2, &Entry { seq: 2, ..three });
        put(store.as_ref(), 3, &Entry { seq: 3, ..two });
        let (seq, reason) = broken_at(store.as_ref(), &cert);
        assert_eq!(seq, 2);
        assert!(reason.contains("reordered"), "{reason}");
    }

    #[test]
    fn a_consistent_rewrite_of_the_tail_is_caught_by_the_signed_checkpoint() {
        let (store, _log, cert) = log();
        let mut prev = entry(store.as_ref(), 3).hash;
        for seq in 4..=5 {
            let mut e = entry(store.as_ref(), seq);
            e.detail = "rewritten".into();
            e.prev = prev.clone();
            e.hash = compute_hash(&e);
            prev = e.hash.clone();
            put(store.as_ref(), seq, &e);
        }
        let (seq, reason) = broken_at(store.as_ref(), &cert);
        assert_eq!(seq, 5);
        assert!(reason.contains("rewritten"), "{reason}");
    }

    #[test]
    fn truncation_after_a_checkpoint_and_forged_checkpoints_are_caught() {
        let (store, _log, cert) = log();
        store.delete(&keys::audit(5)).expect("delete");
        let (seq, reason) = broken_at(store.as_ref(), &cert);
        assert_eq!(seq, 5);
        assert!(reason.contains("truncated"), "{reason}");

        let (store, _log, cert) = log();
        let key = keys::audit_checkpoint(5);
        let mut checkpoint: Checkpoint =
            value::decode(&key, &store.get(&key).expect("get").expect("present")).expect("decode");
        checkpoint.count = 4;
        store
            .put(
                &keys::audit_checkpoint(4),
                &value::encode(&checkpoint).expect("encode"),
            )
            .expect("put");
        assert!(broken_at(store.as_ref(), &cert).1.contains("signature"));
    }

    #[test]
    fn denials_are_rate_limited() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let log = AuditLog::open(store, None).expect("log");
        let who = MemberId::parse("m").expect("id");
        for _ in 0..(DENIALS_PER_MINUTE + 25) {
            log.denial(&who, "send", "ops", "forbidden");
        }
        let entries = log.read(0, usize::MAX).expect("read");
        assert_eq!(entries.len() as u32, DENIALS_PER_MINUTE);
    }
}
