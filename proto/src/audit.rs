//! The audit log as admins read it (`GET /v1/admin/audit`).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::member::MemberId;

/// One entry of the hash-chained audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Who acted; `None` for the server itself or an anonymous applicant.
    pub actor: Option<MemberId>,
    /// What happened, dotted: `room.join`, `member.revoke`, `policy.set`, `access.denied`, ...
    pub action: String,
    /// What it happened to: a room, a member id, an application id.
    pub subject: String,
    pub detail: String,
    /// The previous entry's hash (64 zeros for the first).
    pub prev: String,
    /// SHA-256 over this entry's fields and `prev`.
    pub hash: String,
}

/// Answer of `POST /v1/admin/keys/rotate`: the master key that seals the store was replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRotation {
    /// How many data keys (one per room, one for the deployment) were re-wrapped.
    pub data_keys: usize,
    /// The new master key's public age recipient.
    pub recipient: String,
}

/// Query of `GET /v1/admin/audit`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditQuery {
    /// Entries after this sequence (default 0: from the start).
    #[serde(default)]
    pub after: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}
