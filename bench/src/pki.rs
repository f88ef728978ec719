//! Certificates for the peers: one CA, a server certificate for 127.0.0.1, and one client
//! certificate per room. They come from Escape's own issuing code, so every system measured
//! uses the same keys (ECDSA P-256) and the handshakes compare like for like.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use escape_certs::{Ca, Validity};
use escape_client::Profile;
use escape_proto::MemberId;

/// The peers' PKI, written under a folder for their configuration files to name.
#[derive(Debug)]
pub struct PeerPki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    ca_pem: String,
    /// (certificate, key) PEM of the client of room `i`, whose common name is `room-i`.
    rooms: Vec<(String, String)>,
}

impl PeerPki {
    pub fn create(dir: &Path, rooms: usize) -> anyhow::Result<Self> {
        let validity = Validity::days_from_now(2);
        let ca = Ca::generate("bench-peers", validity).context("CA")?;
        let server = ca
            .issue_server(&["127.0.0.1".into(), "localhost".into()], validity)
            .context("server certificate")?;
        let mut clients = Vec::with_capacity(rooms);
        for room in 0..rooms {
            let name = format!("room-{room}");
            let member = MemberId::parse(&name).context("client name")?;
            let issued = ca
                .issue_member(&member, &name, validity)
                .context("client certificate")?;
            clients.push((issued.cert_pem, issued.key_pem));
        }
        let write = |name: &str, pem: &str| -> anyhow::Result<PathBuf> {
            let path = dir.join(name);
            std::fs::write(&path, pem).with_context(|| format!("{}", path.display()))?;
            Ok(path)
        };
        Ok(Self {
            ca: write("ca.pem", ca.cert_pem())?,
            server_cert: write("server.pem", &server.cert_pem)?,
            server_key: write("server.key", &server.key_pem)?,
            ca_pem: ca.cert_pem().to_owned(),
            rooms: clients,
        })
    }

    /// The TLS client of room `room`: trusts the peers' CA, presents that room's certificate,
    /// resumes no session (every connection is a full handshake).
    pub fn client(&self, room: usize) -> anyhow::Result<Arc<rustls::ClientConfig>> {
        let (cert, key) = &self.rooms[room % self.rooms.len().max(1)];
        let profile = Profile {
            name: format!("room-{room}"),
            member_id: MemberId::parse("bench").context("id")?,
            server: "127.0.0.1:1".into(),
            server_name: "127.0.0.1".into(),
            ca_pem: self.ca_pem.clone(),
            cert_pem: cert.clone(),
            key_pem: key.clone(),
            age_identity: None,
        };
        let mut config = escape_client::tls::client_config(&profile)?;
        config.alpn_protocols.clear();
        config.resumption = rustls::client::Resumption::disabled();
        Ok(Arc::new(config))
    }
}
