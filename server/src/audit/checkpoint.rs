//! Signed checkpoints: the server's own key vouches for "the log had N entries ending in H".

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::store::StoreError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub count: u64,
    pub head: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// ECDSA P-256 SHA-256 (ASN.1 DER), hex, over [`Checkpoint::message`].
    pub signature: String,
}

impl Checkpoint {
    /// The exact bytes signed.
    pub fn message(count: u64, head: &str, at: OffsetDateTime) -> Vec<u8> {
        format!(
            "escape audit checkpoint\n{count}\n{head}\n{}",
            at.unix_timestamp()
        )
        .into_bytes()
    }
}

/// Signs with the server's private key (the listener's, PKCS#8 PEM).
pub struct Signer {
    key: ring::signature::EcdsaKeyPair,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").finish_non_exhaustive()
    }
}

impl Signer {
    pub fn from_pem(key_pem: &str) -> Result<Self, StoreError> {
        use rustls_pki_types::pem::PemObject;
        let der = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| StoreError::Backend(format!("server key: {e}")))?;
        let key = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            der.secret_pkcs8_der(),
            &ring::rand::SystemRandom::new(),
        )
        .map_err(|e| StoreError::Backend(format!("server key: {e}")))?;
        Ok(Self { key })
    }

    pub fn sign(&self, count: u64, head: &str) -> Result<Checkpoint, StoreError> {
        let at = OffsetDateTime::now_utc();
        let signature = self
            .key
            .sign(
                &ring::rand::SystemRandom::new(),
                &Checkpoint::message(count, head, at),
            )
            .map_err(|e| StoreError::Backend(format!("signing: {e}")))?;
        Ok(Checkpoint {
            count,
            head: head.to_owned(),
            at,
            signature: escape_certs::hex_encode(signature.as_ref()),
        })
    }
}
