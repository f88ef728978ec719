//! Vetting: invitations, applications, sponsor vouches, admin decisions, the member lifecycle
//! and the directory. The HTTP bodies of `/v1/invites`, `/v1/applications`, `/v1/admin/*`,
//! `/v1/directory` on the main listener and `/enroll/v1/*` on the enrollment listener.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::member::{Attributes, MemberId, MemberStatus, Published};

/// `POST /v1/invites`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateInvite {
    /// How long the code stays usable; the server caps it (default 7 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_secs: Option<u64>,
}

/// A new invitation. `code` is shown once: the server keeps only its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    /// `esc1-<secret>-<CA pin>`: the secret admits one application; the pin (SHA-256 of the
    /// deployment CA) lets the applicant trust the enrollment listener before it has the CA.
    pub code: String,
    pub sponsor: MemberId,
    pub sponsor_name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// Where applicants enroll (`host:port` of the enrollment listener).
    pub enroll_address: String,
}

/// What an applicant says about themselves. Self-declared until verified.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub name: String,
    pub email: String,
    pub organisation: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
    pub sector: String,
    pub role: String,
}

/// `POST /enroll/v1/applications`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitApplication {
    /// The secret part of the invitation code (or the whole code).
    pub invite: String,
    pub claims: Claims,
    /// A PKCS#10 request for the key the applicant generated; only its key is used.
    pub csr_pem: String,
    /// The applicant's age X25519 recipient (`age1...`).
    pub age_recipient: String,
}

/// The answer to a submission. `poll_token` is the applicant's only way to read the decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplicationReceipt {
    pub id: String,
    pub poll_token: String,
    pub status: ApplicationStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplicationStatus {
    Pending,
    Approved,
    Rejected,
}

/// `GET /enroll/v1/applications/{id}` (with the poll token as bearer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollmentStatus {
    pub id: String,
    pub status: ApplicationStatus,
    pub vouches: u32,
    pub vouches_needed: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Present once approved: everything the applicant needs to build its profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Credentials>,
}

/// A certificate for the applicant's own key, and where to use it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub member_id: MemberId,
    pub cert_pem: String,
    pub ca_pem: String,
    /// The main listener, `host:port`.
    pub server: String,
    pub server_name: String,
}

/// A sponsor's word for an applicant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vouch {
    pub sponsor: MemberId,
    pub sponsor_name: String,
    /// The sponsor's organisation when vouching.
    pub organisation: String,
    pub comment: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// `POST /v1/applications/{id}/vouch`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VouchRequest {
    #[serde(default)]
    pub comment: String,
}

/// An admin's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub by: MemberId,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub approved: bool,
    #[serde(default)]
    pub reason: String,
}

/// An application as sponsors and admins see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Application {
    pub id: String,
    pub status: ApplicationStatus,
    /// Self-declared.
    pub claims: Claims,
    pub invited_by: MemberId,
    #[serde(with = "time::serde::rfc3339")]
    pub submitted_at: OffsetDateTime,
    pub vouches: Vec<Vouch>,
    pub vouches_needed: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// Set on approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_id: Option<MemberId>,
    /// Claims proven by a login at an identity provider, as opposed to the self-declared ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<VerifiedClaims>,
}

/// What an OpenID Connect login proved about an applicant. Every field comes from an ID token
/// whose signature, issuer, audience, expiry and nonce were checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedClaims {
    /// The provider's name in the server's configuration.
    pub provider: String,
    pub issuer: String,
    pub subject: String,
    /// Present only when the provider marked it verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The organisation the provider may vouch for with this email domain (server configuration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organisation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// `POST /enroll/v1/applications/{id}/oidc/{provider}`: where to log in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OidcStart {
    pub authorization_url: String,
}

/// `GET /v1/admin/applications`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplicationList {
    pub applications: Vec<Application>,
}

/// Attribute values an admin sets; absent fields keep their current (or claimed) value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributeUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organisation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clearance: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vetting: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<bool>,
    /// The organisations this member's organisation serves (TLP:AMBER reaches them);
    /// `clients=A;B` on the command line, empty to clear.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clients: Option<Vec<String>>,
}

impl AttributeUpdate {
    /// Parses `key=value` pairs as the CLI takes them (`--attr country=EE`).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut update = Self::default();
        for pair in pairs {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("{pair:?} is not key=value"))?;
            let value = value.trim().to_owned();
            match key.trim() {
                "name" => update.name = Some(value),
                "organisation" | "org" => update.organisation = Some(value),
                "country" => update.country = Some(value),
                "sector" => update.sector = Some(value),
                "role" => update.role = Some(value),
                "vetting" => update.vetting = Some(value),
                "clients" => {
                    update.clients = Some(
                        value
                            .split(';')
                            .map(|c| c.trim().to_owned())
                            .filter(|c| !c.is_empty())
                            .collect(),
                    )
                }
                "clearance" => {
                    update.clearance = Some(
                        value
                            .parse()
                            .map_err(|_| "clearance is a number 0-255".to_owned())?,
                    )
                }
                "admin" => {
                    update.admin = Some(
                        value
                            .parse()
                            .map_err(|_| "admin is true or false".to_owned())?,
                    )
                }
                other => {
                    return Err(format!(
                        "unknown attribute {other:?}; known: name, organisation, country, sector, role, clearance, vetting, admin, clients"
                    ));
                }
            }
        }
        Ok(update)
    }
}

/// `POST /v1/admin/applications/{id}/approve`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approve {
    #[serde(default)]
    pub attributes: AttributeUpdate,
}

/// `POST /v1/admin/applications/{id}/reject`, and the reason of suspensions and revocations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    pub reason: String,
}

/// One recorded change of a member: who made it, when, what changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberChange {
    /// The member version this change produced.
    pub version: u64,
    pub by: MemberId,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Human-readable, one entry per changed field: `country: DE -> EE`.
    pub changes: Vec<String>,
    #[serde(default)]
    pub reason: String,
}

/// `GET /v1/admin/members/{id}/history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberHistory {
    pub member: MemberId,
    pub changes: Vec<MemberChange>,
}

/// `GET /v1/admin/members`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberList {
    pub members: Vec<crate::member::Member>,
}

/// `POST /v1/renew`: a new certificate for the caller, for the key in the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Renew {
    pub csr_pem: String,
}

/// The renewed certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Renewed {
    pub cert_pem: String,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
}

/// Query of `GET /v1/directory`; filters combine with AND and compare case-insensitively.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organisation: Option<String>,
}

/// One member in the directory: only what that member publishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryEntry {
    pub id: MemberId,
    pub name: String,
    pub organisation: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// `GET /v1/directory`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Directory {
    pub members: Vec<DirectoryEntry>,
}

/// `PUT /v1/me/published`.
pub type PublishRequest = Published;

/// Status changes an admin makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusChange {
    Suspend,
    Reinstate,
    Revoke,
}

impl StatusChange {
    pub fn target(self) -> MemberStatus {
        match self {
            Self::Suspend => MemberStatus::Suspended,
            Self::Reinstate => MemberStatus::Active,
            Self::Revoke => MemberStatus::Revoked,
        }
    }
}

/// Convenience: claims with attributes as an admin would first see them.
impl From<&Claims> for Attributes {
    fn from(claims: &Claims) -> Self {
        Self {
            organisation: claims.organisation.clone(),
            country: claims.country.to_uppercase(),
            sector: claims.sector.clone(),
            role: claims.role.clone(),
            clearance: 0,
            vetting: "vetted".into(),
            clients: Vec::new(),
        }
    }
}

/// An invitation code: `esc1-<secret>-<pin>`, both parts lower-case base32. The secret admits
/// one application; the pin is the SHA-256 of the deployment CA certificate.
#[derive(Clone, PartialEq, Eq)]
pub struct InviteCode {
    pub secret: String,
    pub pin: [u8; 32],
}

impl std::fmt::Debug for InviteCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InviteCode")
            .field("secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl InviteCode {
    pub fn parse(code: &str) -> Result<Self, String> {
        let bad = || "an invitation code looks like esc1-<secret>-<pin>; copy it whole".to_owned();
        let mut parts = code.trim().split('-');
        let (Some("esc1"), Some(secret), Some(pin), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        if secret.len() < 16 || base32_decode(secret).is_none() {
            return Err(bad());
        }
        let pin: [u8; 32] = base32_decode(pin)
            .and_then(|p| p.try_into().ok())
            .ok_or_else(bad)?;
        Ok(Self {
            secret: secret.to_owned(),
            pin,
        })
    }
}

impl std::fmt::Display for InviteCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "esc1-{}-{}", self.secret, base32_encode(&self.pin))
    }
}

const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// RFC 4648 base32, lower case, no padding: easy to read aloud and to paste.
pub fn base32_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(BASE32[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(BASE32[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

pub fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let value = BASE32.iter().position(|&b| b == c.to_ascii_lowercase())? as u32;
        buffer = (buffer << 5) | value;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invite_codes_round_trip_and_reject_garbage() {
        let code = InviteCode {
            secret: base32_encode(&[7; 20]),
            pin: [42; 32],
        };
        let text = code.to_string();
        assert!(text.starts_with("esc1-"));
        assert_eq!(InviteCode::parse(&text), Ok(code));
        for bad in [
            "",
            "esc1",
            "esc2-aaaaaaaaaaaaaaaa-aa",
            "esc1-short-aa",
            "esc1-aaaaaaaaaaaaaaaa-!!",
            &format!("{text}-x"),
        ] {
            assert!(InviteCode::parse(bad).is_err(), "{bad}");
        }
        for n in 0..12 {
            let bytes: Vec<u8> = (0..n).map(|i| (i * 37) as u8).collect();
            assert_eq!(base32_decode(&base32_encode(&bytes)), Some(bytes));
        }
    }

    #[test]
    fn attribute_pairs() {
        let update = AttributeUpdate::from_pairs(["country=EE", "clearance=2", "org=CERT-EE"])
            .expect("parse");
        assert_eq!(update.country.as_deref(), Some("EE"));
        assert_eq!(update.clearance, Some(2));
        assert_eq!(update.organisation.as_deref(), Some("CERT-EE"));
        assert!(AttributeUpdate::from_pairs(["colour=blue"]).is_err());
        assert!(AttributeUpdate::from_pairs(["clearance=high"]).is_err());
        assert!(AttributeUpdate::from_pairs(["country"]).is_err());
    }
}
