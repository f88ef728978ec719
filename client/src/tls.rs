//! The client's TLS: trust only the deployment CA (never the system roots) and present the
//! member certificate.

use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::ClientError;
use crate::profile::Profile;

fn bad(what: &str, e: impl std::fmt::Display) -> ClientError {
    ClientError::BadProfile(format!("{what}: {e}"))
}

pub fn client_config(profile: &Profile) -> Result<ClientConfig, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(profile.ca_pem.as_bytes()) {
        roots
            .add(ca.map_err(|e| bad("CA certificate", e))?)
            .map_err(|e| bad("CA certificate", e))?;
    }
    if roots.is_empty() {
        return Err(bad("CA certificate", "none found"));
    }
    let certs = CertificateDer::pem_slice_iter(profile.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("member certificate", e))?;
    let key = PrivateKeyDer::from_pem_slice(profile.key_pem.as_bytes())
        .map_err(|e| bad("private key", e))?;
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| bad("TLS versions", e))?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .map_err(|e| bad("member certificate and key", e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
