//! Invitations: an admin (or, where the deployment allows it, any member) vouches that a person
//! may apply. The code is shown once; the store keeps only its hash, and using it is a
//! compare-and-swap, so a code admits exactly one application.

use std::sync::Arc;

use escape_proto::vetting::{CreateInvite, Invite, InviteCode, base32_encode};
use escape_proto::{ErrorCode, MemberId};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use super::{random, sha256_hex};
use crate::config::Vetting;
use crate::error::ApiError;
use crate::gate::{Authorized, action};
use crate::store::{Store, Swap, keys, value};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InviteRecord {
    pub sponsor: MemberId,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// The application that used it.
    pub used_by: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Invites {
    store: Arc<dyn Store>,
    settings: Vetting,
}

impl Invites {
    pub fn new(store: Arc<dyn Store>, settings: Vetting) -> Self {
        Self { store, settings }
    }

    pub fn create(
        &self,
        auth: &Authorized<action::CreateInvite>,
        request: &CreateInvite,
        pin: [u8; 32],
        enroll_address: String,
    ) -> Result<Invite, ApiError> {
        let max = i64::from(self.settings.invite_max_days) * 86_400;
        let secs = match request.expires_in_secs {
            None => i64::from(self.settings.invite_default_days) * 86_400,
            Some(s) => i64::try_from(s).unwrap_or(i64::MAX),
        };
        if !(1..=max).contains(&secs) {
            return Err(ApiError::invalid(format!(
                "an invitation lasts from 1 second to {} days",
                self.settings.invite_max_days
            )));
        }
        let now = OffsetDateTime::now_utc();
        let code = InviteCode {
            secret: base32_encode(&random::<20>()?),
            pin,
        };
        let sponsor = auth.principal().member();
        let record = InviteRecord {
            sponsor: sponsor.id.clone(),
            created_at: now,
            expires_at: now + Duration::seconds(secs),
            used_by: None,
        };
        self.store.put(
            &keys::invite(&sha256_hex(code.secret.as_bytes())),
            &value::encode(&record)?,
        )?;
        tracing::info!(sponsor = %sponsor.id, expires_at = %record.expires_at, "invitation created");
        Ok(Invite {
            code: code.to_string(),
            sponsor: sponsor.id.clone(),
            sponsor_name: sponsor.name.clone(),
            expires_at: record.expires_at,
            enroll_address,
        })
    }

    /// Marks the invitation behind `code` as used by `application`, exactly once.
    pub fn consume(&self, code: &str, application: &str) -> Result<InviteRecord, ApiError> {
        let secret = InviteCode::parse(code)
            .map(|c| c.secret)
            .unwrap_or_else(|_| code.trim().to_owned());
        let key = keys::invite(&sha256_hex(secret.as_bytes()));
        let invalid = |why: &str| ApiError::new(ErrorCode::InviteInvalid, why);
        let Some(current) = self.store.get(&key)? else {
            return Err(invalid(
                "this invitation code is not valid; ask your sponsor for a new one",
            ));
        };
        let record: InviteRecord = value::decode(&key, &current)?;
        if record.used_by.is_some() {
            return Err(invalid("this invitation code has already been used"));
        }
        if record.expires_at <= OffsetDateTime::now_utc() {
            return Err(invalid(
                "this invitation code has expired; ask your sponsor for a new one",
            ));
        }
        let used = InviteRecord {
            used_by: Some(application.to_owned()),
            ..record
        };
        match self
            .store
            .compare_and_swap(&key, Some(&current), Some(&value::encode(&used)?))?
        {
            Swap::Done => Ok(used),
            Swap::Conflict => Err(invalid("this invitation code has already been used")),
        }
    }
}
