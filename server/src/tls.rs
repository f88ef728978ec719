//! The listener's TLS configuration: TLS 1.3, or TLS 1.2 with ECDHE and AEAD suites only (the
//! only TLS 1.2 suites the crypto provider has), and a client certificate that chains to the
//! deployment CA, is within its validity period and carries the `clientAuth` usage. Anything
//! else fails the handshake before a byte of HTTP is read.

use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what}: {message}")]
    Pem { what: &'static str, message: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// The one crypto provider of the whole tree.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Installs the process-wide provider so that any library asking for the default finds ours.
/// Safe to call more than once.
pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub fn certs_from_pem(
    what: &'static str,
    pem: &str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what,
            message: "no certificate found".into(),
        });
    }
    Ok(certs)
}

pub fn key_from_pem(what: &'static str, pem: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| TlsError::Pem {
        what,
        message: e.to_string(),
    })
}

/// Builds the main listener's configuration: mutual TLS against the deployment CA, refusing
/// end-entity certificates the revocation lists name.
///
/// Session resumption is off on purpose: a resumed TLS session restores the peer certificate
/// without verifying it again, so a certificate revoked or expired since the first handshake
/// would keep working. Every connection does a full handshake against the current list.
pub fn server_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> Result<ServerConfig, TlsError> {
    let provider = provider();
    let mut roots = RootCertStore::empty();
    for ca in certs_from_pem("the CA certificate", ca_pem)? {
        roots.add(ca)?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .with_crls(crls)
        .only_check_end_entity_revocation()
        .build()?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            certs_from_pem("the server certificate", cert_pem)?,
            key_from_pem("the server key", key_pem)?,
        )?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // The server picks the suite by its own order (AEAD only; AES-256-GCM first), not a
    // client that prefers a weaker one.
    config.ignore_client_order = true;
    // No 0-RTT: early data could be replayed.
    config.max_early_data_size = 0;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// The enrollment listener's configuration: no client certificate (applicants have none yet),
/// and the CA sent after the server certificate so the applicant can match its pin.
pub fn enroll_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<ServerConfig, TlsError> {
    let mut chain = certs_from_pem("the server certificate", cert_pem)?;
    chain.extend(certs_from_pem("the CA certificate", ca_pem)?);
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key_from_pem("the server key", key_pem)?)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.ignore_client_order = true;
    config.max_early_data_size = 0;
    Ok(config)
}
