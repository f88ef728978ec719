//! Who is on the other end of a connection, and who that is *now*.
//!
//! The TLS layer proves possession of a certificate from the deployment CA and yields a
//! [`PeerIdentity`]: the member id read from the certificate. A [`Principal`] is that member as
//! the registry knows it at the moment of the request: current attributes, current status.
//! Only active members become principals.

use std::sync::Arc;

use escape_proto::{ErrorCode, Member, MemberId, MemberStatus};

use crate::error::ApiError;
use crate::registry::Registry;

/// Attached to every request of a TLS connection by the listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerIdentity {
    Member(MemberId),
    /// The certificate chains to the CA but names no member (no or several member URIs).
    Unidentified(String),
    /// No certificate: only the enrollment listener admits such peers.
    Anonymous,
}

/// When the connection's client certificate expires; attached beside [`PeerIdentity`] so
/// policies can treat a certificate about to expire differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertificateExpiry(pub time::OffsetDateTime);

/// An active member, resolved from the registry for the current request or delivery.
///
/// Cheap to clone (the record is shared): every decision hands one to what it authorises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    member: Arc<Member>,
    cert_not_after: Option<time::OffsetDateTime>,
}

impl Principal {
    /// Resolves the member behind a peer identity; refuses unknown and inactive members.
    pub fn resolve(registry: &Registry, identity: &PeerIdentity) -> Result<Self, ApiError> {
        match identity {
            PeerIdentity::Member(id) => Self::resolve_id(registry, id),
            PeerIdentity::Unidentified(why) => Err(ApiError::new(
                ErrorCode::UnknownMember,
                format!("the client certificate identifies no member: {why}"),
            )),
            PeerIdentity::Anonymous => Err(ApiError::new(
                ErrorCode::UnknownMember,
                "this needs a member certificate",
            )),
        }
    }

    pub fn resolve_id(registry: &Registry, id: &MemberId) -> Result<Self, ApiError> {
        let Some(member) = registry.get(id)? else {
            return Err(ApiError::new(
                ErrorCode::UnknownMember,
                "this certificate's member is not registered in this deployment",
            ));
        };
        if member.status != MemberStatus::Active {
            return Err(ApiError::new(
                ErrorCode::MemberInactive,
                format!(
                    "member {} is {:?}; ask a deployment admin",
                    member.id, member.status
                ),
            ));
        }
        Ok(Self {
            member: Arc::new(member),
            cert_not_after: None,
        })
    }

    /// The principal as seen through the certificate it connected with.
    pub fn with_certificate_expiry(mut self, not_after: Option<time::OffsetDateTime>) -> Self {
        self.cert_not_after = not_after;
        self
    }

    pub fn cert_not_after(&self) -> Option<time::OffsetDateTime> {
        self.cert_not_after
    }

    /// Whole days until the certificate expires; a large number when unknown.
    pub fn cert_days_left(&self) -> i64 {
        self.cert_not_after
            .map_or(9999, |t| (t - time::OffsetDateTime::now_utc()).whole_days())
    }

    pub fn id(&self) -> &MemberId {
        &self.member.id
    }

    pub fn member(&self) -> &Member {
        &self.member
    }
}
