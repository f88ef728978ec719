//! Vetting: how people become members and stop being members.
//!
//! - [`invites`]: single-use, expiring invitation codes naming their sponsor.
//! - [`applications`]: submission on the enrollment listener, vouches, admin decisions,
//!   certificate issuance for the applicant's own key.
//! - [`members`]: the lifecycle (suspend, reinstate, revoke, attribute changes) and renewal.
//! - [`directory`]: who's who, showing only what each member publishes.
//! - [`oidc`]: proving claims by a login at an OpenID provider.

pub mod applications;
pub mod directory;
pub mod invites;
pub mod members;
pub mod oidc;

/// Random bytes from the operating system.
pub(crate) fn random<const N: usize>() -> Result<[u8; N], crate::error::ApiError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; N];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| crate::error::ApiError::internal(&"the system random source failed"))?;
    Ok(bytes)
}

/// SHA-256 as lower-case hex: how secrets (invitation codes, poll tokens) are kept.
pub fn sha256_hex(data: &[u8]) -> String {
    escape_certs::hex_encode(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
}
