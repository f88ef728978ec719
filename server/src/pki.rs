//! The running deployment's PKI: issuing member certificates, remembering every serial issued,
//! revoking them, and the listener configurations that follow the revocation list.
//!
//! Invariant: the main listener's TLS configuration always carries the current revocation
//! list. [`Pki::revoke_member`] writes the revocation, regenerates the list (also written to
//! `pki/crl.pem` for other tools), and swaps the configuration; the next handshake uses it.

use std::sync::{Arc, RwLock};

use escape_certs::{Ca, Revoked, SignedCert, Validity};
use escape_proto::MemberId;
use rustls::ServerConfig;
use rustls_pki_types::CertificateRevocationListDer;
use rustls_pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::deployment::{DeploymentError, Layout};
use crate::store::{Batch, Store, StoreError, keys, value};
use crate::tls::TlsError;

/// A certificate the CA issued, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IssuedRecord {
    pub member: MemberId,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
}

/// A revocation, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RevokedRecord {
    member: MemberId,
    #[serde(with = "time::serde::rfc3339")]
    revoked_at: OffsetDateTime,
}

/// Records that `serial` was issued to `member` (so revoking the member can name it).
pub fn record_issued(
    store: &dyn Store,
    member: &MemberId,
    serial: &str,
    not_after: OffsetDateTime,
) -> Result<(), StoreError> {
    let record = IssuedRecord {
        member: member.clone(),
        not_after,
        issued_at: OffsetDateTime::now_utc(),
    };
    let mut batch = Batch::default();
    batch
        .put(keys::issued_cert(serial), value::encode(&record)?)
        .put(keys::member_cert(member, serial), value::encode(&record)?);
    store.apply(batch)
}

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error(transparent)]
    Deployment(#[from] DeploymentError),
    #[error(transparent)]
    Cert(#[from] escape_certs::CertError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("lock poisoned")]
    Poisoned,
}

pub struct Pki {
    ca: Ca,
    layout: Layout,
    store: Arc<dyn Store>,
    server_cert_pem: String,
    server_key_pem: String,
    main_tls: RwLock<Arc<ServerConfig>>,
    /// Serialises revocations so that two never race on the list's number.
    revoking: std::sync::Mutex<()>,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").finish_non_exhaustive()
    }
}

impl Pki {
    /// Loads the CA, rebuilds the revocation list from the store and prepares both listeners.
    pub fn load(layout: &Layout, store: Arc<dyn Store>) -> Result<Self, PkiError> {
        let ca = layout.ca()?;
        let server_cert_pem = layout.read(&layout.server_cert())?;
        let server_key_pem = layout.read(&layout.server_key())?;
        let placeholder =
            crate::tls::enroll_config(ca.cert_pem(), &server_cert_pem, &server_key_pem)?;
        let pki = Self {
            ca,
            layout: layout.clone(),
            store,
            server_cert_pem,
            server_key_pem,
            main_tls: RwLock::new(Arc::new(placeholder)),
            revoking: std::sync::Mutex::new(()),
        };
        pki.publish_revocations()?;
        Ok(pki)
    }

    pub fn ca_pem(&self) -> &str {
        self.ca.cert_pem()
    }

    pub fn ca_fingerprint(&self) -> Result<[u8; 32], PkiError> {
        Ok(self.ca.fingerprint()?)
    }

    /// The main listener's configuration as of now (mutual TLS, current revocation list).
    pub fn main_tls(&self) -> Arc<ServerConfig> {
        match self.main_tls.read() {
            Ok(config) => config.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The enrollment listener's configuration: server-authenticated only, and it sends the CA
    /// in its chain so applicants can check it against the pin in their invitation.
    pub fn enroll_tls(&self) -> Result<Arc<ServerConfig>, PkiError> {
        Ok(Arc::new(crate::tls::enroll_config(
            self.ca.cert_pem(),
            &self.server_cert_pem,
            &self.server_key_pem,
        )?))
    }

    /// Issues a member certificate for the key in `csr_pem` and records its serial.
    pub fn sign_member_request(
        &self,
        csr_pem: &str,
        member: &MemberId,
        display_name: &str,
        days: u32,
    ) -> Result<SignedCert, PkiError> {
        let signed = self.ca.sign_member_request(
            csr_pem,
            member,
            display_name,
            Validity::days_from_now(i64::from(days)),
        )?;
        record_issued(
            self.store.as_ref(),
            member,
            &signed.serial,
            signed.not_after,
        )?;
        Ok(signed)
    }

    /// Puts every certificate ever issued to `member` on the revocation list and makes the
    /// listener use it. Returns how many certificates were revoked.
    pub fn revoke_member(&self, member: &MemberId) -> Result<usize, PkiError> {
        let _guard = self.revoking.lock().map_err(|_| PkiError::Poisoned)?;
        let issued = self
            .store
            .scan_prefix(&keys::member_certs_prefix(member), usize::MAX)?;
        let now = OffsetDateTime::now_utc();
        let record = value::encode(&RevokedRecord {
            member: member.clone(),
            revoked_at: now,
        })?;
        let mut batch = Batch::default();
        for (key, _) in &issued {
            let serial = String::from_utf8_lossy(&key[keys::member_certs_prefix(member).len()..])
                .into_owned();
            batch.put(keys::revoked_cert(&serial), record.clone());
        }
        self.store.apply(batch)?;
        self.store.flush()?;
        self.publish_revocations()?;
        Ok(issued.len())
    }

    /// Regenerates the list from the store, writes `pki/crl.pem`, swaps the listener config.
    fn publish_revocations(&self) -> Result<(), PkiError> {
        let mut revoked = Vec::new();
        for (key, bytes) in self.store.scan_prefix(keys::REVOKED_PREFIX, usize::MAX)? {
            let record: RevokedRecord = value::decode(&key, &bytes)?;
            revoked.push(Revoked {
                serial: String::from_utf8_lossy(&key[keys::REVOKED_PREFIX.len()..]).into_owned(),
                revoked_at: record.revoked_at,
            });
        }
        let number = self.next_crl_number()?;
        let crl_pem = self.ca.revocation_list(&revoked, number, 30)?;
        crate::deployment::write_public(&self.layout.crl(), &crl_pem)?;
        let crl =
            CertificateRevocationListDer::from_pem_slice(crl_pem.as_bytes()).map_err(|e| {
                TlsError::Pem {
                    what: "the revocation list",
                    message: e.to_string(),
                }
            })?;
        let config = crate::tls::server_config(
            self.ca.cert_pem(),
            &self.server_cert_pem,
            &self.server_key_pem,
            vec![crl],
        )?;
        *self.main_tls.write().map_err(|_| PkiError::Poisoned)? = Arc::new(config);
        tracing::info!(revoked = revoked.len(), number, "revocation list published");
        Ok(())
    }

    fn next_crl_number(&self) -> Result<u64, PkiError> {
        let key = keys::CRL_NUMBER;
        let current: u64 = match self.store.get(key)? {
            Some(bytes) => value::decode(key, &bytes)?,
            None => 0,
        };
        self.store.put(key, &value::encode(&(current + 1))?)?;
        // Before the list carrying it is published: a number must never go back (RFC 5280).
        self.store.flush()?;
        Ok(current + 1)
    }
}
