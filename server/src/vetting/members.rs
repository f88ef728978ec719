//! The member lifecycle: suspension and reinstatement, revocation (permanent: certificates on
//! the revocation list, sessions cut), attribute changes, renewal, and what a member publishes.

use std::sync::Arc;

use escape_proto::vetting::{AttributeUpdate, MemberChange, Renewed, StatusChange};
use escape_proto::{ErrorCode, Member, MemberStatus, Published};

use crate::error::ApiError;
use crate::gate::{Authorized, action};
use crate::pki::Pki;
use crate::registry::Registry;
use crate::sessions::Sessions;

#[derive(Debug, Clone)]
pub struct Members {
    registry: Registry,
    pki: Arc<Pki>,
    sessions: Arc<Sessions>,
    cert_days: u32,
}

impl Members {
    pub fn new(registry: Registry, pki: Arc<Pki>, sessions: Arc<Sessions>, cert_days: u32) -> Self {
        Self {
            registry,
            pki,
            sessions,
            cert_days,
        }
    }

    fn current(&self, auth: &Authorized<action::ManageMembers>) -> Result<Member, ApiError> {
        self.registry.get(auth.resource())?.ok_or_else(|| {
            ApiError::new(
                ErrorCode::NotFound,
                format!("there is no member {}", auth.resource()),
            )
        })
    }

    /// Suspends, reinstates or revokes. Suspension and revocation end every live session of the
    /// member at once; revocation also puts its certificates on the revocation list.
    pub fn set_status(
        &self,
        auth: &Authorized<action::ManageMembers>,
        change: StatusChange,
        reason: &str,
    ) -> Result<Member, ApiError> {
        let target = auth.resource();
        let admin = auth.principal().id();
        if reason.trim().is_empty() {
            return Err(ApiError::invalid("a status change needs a reason"));
        }
        if target == admin && change != StatusChange::Reinstate {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                "an admin cannot suspend or revoke themselves",
            ));
        }
        let current = self.current(auth)?;
        if current.status == MemberStatus::Revoked {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                "revocation is permanent; the person must apply again",
            ));
        }
        // The rooms' key rotations land in the same batch as the status: no crash can keep a
        // suspended member whose rooms still share files under a key it holds. Held until the
        // batch is applied, so no upload takes a generation in between.
        let keys_held = crate::files::key_lock()?;
        let store = self.registry.store();
        let member = self
            .registry
            .update_with(
                target,
                admin,
                reason,
                |m| m.status = change.target(),
                |batch| match change {
                    StatusChange::Reinstate => crate::files::mark_return(store, target, batch),
                    _ => crate::files::mark_departure(store, target, batch),
                },
            )?
            .ok_or_else(|| {
                ApiError::new(ErrorCode::NotFound, format!("there is no member {target}"))
            })?;
        drop(keys_held);
        if change == StatusChange::Revoke {
            let revoked = self
                .pki
                .revoke_member(target)
                .map_err(|e| ApiError::internal(&e))?;
            tracing::warn!(member = %target, certificates = revoked, by = %admin, "member revoked");
        }
        if change != StatusChange::Reinstate {
            let word = if change == StatusChange::Revoke {
                "revoked"
            } else {
                "suspended"
            };
            let cut = self.sessions.cut(
                target,
                ErrorCode::AccessRevoked,
                &format!("your membership was {word}: {reason}"),
            );
            tracing::warn!(member = %target, sessions = cut, by = %admin, "member {word}; sessions closed");
        }
        Ok(member)
    }

    pub fn update_attributes(
        &self,
        auth: &Authorized<action::ManageMembers>,
        update: &AttributeUpdate,
        reason: &str,
    ) -> Result<Member, ApiError> {
        let mut checked = self.current(auth)?;
        super::applications::apply_update(&mut checked, update)?;
        self.registry
            .update(auth.resource(), auth.principal().id(), reason, |m| {
                m.name = checked.name.clone();
                m.admin = checked.admin;
                m.attributes = checked.attributes.clone();
            })?
            .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such member"))
    }

    pub fn history(
        &self,
        auth: &Authorized<action::ManageMembers>,
    ) -> Result<Vec<MemberChange>, ApiError> {
        self.current(auth)?;
        Ok(self.registry.history(auth.resource())?)
    }

    pub fn list(
        &self,
        _auth: &Authorized<action::ManageApplications>,
    ) -> Result<Vec<Member>, ApiError> {
        let mut members = self.registry.all()?;
        members.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(members)
    }

    /// A new certificate for the caller, for the key in its request (the same key or a new one).
    pub fn renew(
        &self,
        auth: &Authorized<action::ManageSelf>,
        csr_pem: &str,
    ) -> Result<Renewed, ApiError> {
        let me = auth.principal().member();
        let signed = self
            .pki
            .sign_member_request(csr_pem, &me.id, &me.name, self.cert_days)
            .map_err(|e| ApiError::invalid(format!("csr_pem: {e}")))?;
        tracing::info!(member = %me.id, serial = %signed.serial, "certificate renewed");
        Ok(Renewed {
            cert_pem: signed.cert_pem,
            not_after: signed.not_after,
        })
    }

    pub fn publish(
        &self,
        auth: &Authorized<action::ManageSelf>,
        published: Published,
    ) -> Result<Member, ApiError> {
        let me = auth.principal().id();
        self.registry
            .update(me, me, "changed what the directory shows", |m| {
                m.published = published
            })?
            .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such member"))
    }
}
