//! The client profile bundle: one file that gives the `escape` client everything it needs to
//! reach a deployment as one member. The server writes it (`init`, later enrollment); the
//! client imports it. It holds a private key: whoever has the file is the member.

use serde::{Deserialize, Serialize};

use crate::member::MemberId;

/// The bundle format this crate reads and writes.
pub const PROFILE_FORMAT: u32 = 1;

/// The conventional file extension, so admins can tell profiles apart from other files.
pub const PROFILE_EXTENSION: &str = "escape-profile";

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileBundle {
    pub format: u32,
    /// The name the client stores the profile under unless told otherwise.
    pub name: String,
    pub member_id: MemberId,
    /// Where the server listens, `host:port`.
    pub server: String,
    /// The name the server's certificate is checked against (a DNS name or an IP address).
    pub server_name: String,
    /// The deployment CA: the only root the client trusts.
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    /// The member's age X25519 identity (`AGE-SECRET-KEY-1…`), which opens the room keys sealed
    /// to it. Present when the operator registered the member; enrolled members made their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_identity: Option<String>,
}

impl std::fmt::Debug for ProfileBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfileBundle")
            .field("name", &self.name)
            .field("member_id", &self.member_id)
            .field("server", &self.server)
            .field("server_name", &self.server_name)
            .field("key_pem", &"<redacted>")
            .field(
                "age_identity",
                &self.age_identity.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_the_key() {
        let bundle = ProfileBundle {
            format: PROFILE_FORMAT,
            name: "admin".into(),
            member_id: MemberId::parse("admin").expect("id"),
            server: "127.0.0.1:8443".into(),
            server_name: "localhost".into(),
            ca_pem: String::new(),
            cert_pem: String::new(),
            key_pem: "SECRET".into(),
            age_identity: Some("AGE-SECRET-KEY-1SECRET".into()),
        };
        assert!(!format!("{bundle:?}").contains("SECRET"));
    }
}
