//! Members: the vetted experts and admins of a deployment.

use serde::{Deserialize, Serialize};

/// A member's stable identifier. It is carried in the member's certificate as the SAN URI
/// `urn:escape:member:<id>`, so renaming a member or changing its organisation never changes who it is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MemberId(String);

/// The URI scheme prefix under which a member id sits in a certificate's subject alternative names.
pub const MEMBER_URI_PREFIX: &str = "urn:escape:member:";

impl MemberId {
    /// Accepts ids of 1 to 64 characters from `[A-Za-z0-9-_]`, the alphabet of UUIDs and of
    /// readable ids such as `admin`; anything else could not be put safely into a URI or a store key.
    pub fn parse(s: &str) -> Result<Self, MemberIdError> {
        if s.is_empty() || s.len() > 64 {
            return Err(MemberIdError);
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(MemberIdError);
        }
        Ok(Self(s.to_owned()))
    }

    /// Reads the id out of a certificate SAN URI.
    pub fn from_uri(uri: &str) -> Result<Self, MemberIdError> {
        uri.strip_prefix(MEMBER_URI_PREFIX)
            .ok_or(MemberIdError)
            .and_then(Self::parse)
    }

    /// The SAN URI that carries this id in a certificate.
    pub fn to_uri(&self) -> String {
        format!("{MEMBER_URI_PREFIX}{}", self.0)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for MemberId {
    type Err = MemberIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl std::fmt::Display for MemberId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(&self.0)
    }
}

/// The reason a string is not a member id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a member id is 1 to 64 characters of letters, digits, '-' or '_'")]
pub struct MemberIdError;

/// Whether a member may act at all. Only `Active` members pass the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberStatus {
    Active,
    /// Temporarily barred by an admin; may be reinstated.
    Suspended,
    /// Permanently barred; its certificates are revoked.
    Revoked,
}

/// The attributes the access policy decides on. Admins fix them when they approve a member.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attributes {
    /// The member's organisation, for example a national CERT.
    pub organisation: String,
    /// ISO 3166-1 alpha-2 country code.
    pub country: String,
    /// Sector the member works in (government, energy, finance, law-enforcement, ...).
    pub sector: String,
    /// Role within the organisation (analyst, cert-lead, regulator, ...).
    pub role: String,
    /// Clearance level; higher sees more. 0 is none.
    pub clearance: u8,
    /// How far vetting has gone (for example `applicant`, `vetted`, `founding`).
    pub vetting: String,
    /// Organisations this member's organisation serves as clients (a national CERT's
    /// constituents): how far TLP:AMBER may reach.
    #[serde(default)]
    pub clients: Vec<String>,
}

/// A member as the server reports it (`GET /v1/me`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: MemberId,
    pub name: String,
    #[serde(default)]
    pub email: String,
    pub status: MemberStatus,
    /// Deployment admins vet and manage members.
    pub admin: bool,
    pub attributes: Attributes,
    /// Incremented by every change of status or attributes, so decisions and caches can tell
    /// which record they saw.
    #[serde(default = "first_version")]
    pub version: u64,
    /// What the member shows in the directory.
    #[serde(default)]
    pub published: Published,
    /// The member's age X25519 recipient (`age1...`), registered at enrollment: files are
    /// encrypted to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_recipient: Option<String>,
}

fn first_version() -> u64 {
    1
}

impl Member {
    /// An active, non-admin member with empty attributes, version 1.
    pub fn new(id: MemberId, name: impl Into<String>) -> Self {
        Self {
            id,
            name: name.into(),
            email: String::new(),
            status: MemberStatus::Active,
            admin: false,
            attributes: Attributes::default(),
            version: 1,
            published: Published::default(),
            age_recipient: None,
        }
    }
}

/// Which attributes a member shows in the directory. Name and organisation are always shown to
/// those allowed to read the directory: a vetted community knows who is in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Published {
    pub email: bool,
    pub country: bool,
    pub sector: bool,
    pub role: bool,
}

impl Default for Published {
    fn default() -> Self {
        Self {
            email: false,
            country: true,
            sector: true,
            role: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_id_round_trips_through_uri() {
        let id = MemberId::parse("3f1c1a6e-2b7d-4a57-9e3b-1f4f0b7e9a11").expect("valid");
        assert_eq!(MemberId::from_uri(&id.to_uri()), Ok(id));
    }

    #[test]
    fn member_id_rejects_unsafe_text() {
        for bad in ["", "a/b", "a b", "é", &"x".repeat(65)] {
            assert!(MemberId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(MemberId::from_uri("https://example.org/admin").is_err());
    }
}
