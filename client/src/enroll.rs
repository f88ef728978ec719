//! Enrolling: from an invitation to a ready profile, with the private keys generated here and
//! never sent anywhere.
//!
//! The applicant has no CA yet, so the enrollment listener is trusted through the pin in the
//! invitation code: the SHA-256 of the deployment CA. The server sends its CA after its own
//! certificate; the client accepts the connection only if one of them matches the pin and the
//! server certificate verifies against it for the name dialled. The credentials returned on
//! approval are accepted only with that same CA.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use escape_proto::ErrorCode;
use escape_proto::vetting::{
    ApplicationReceipt, ApplicationStatus, Claims, EnrollmentStatus, InviteCode, OidcStart,
    SubmitApplication,
};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::{Deserialize, Serialize};

use crate::api::server_error;
use crate::error::ClientError;
use crate::profile::{Profile, ProfileStore};

/// Accepts a server only through the CA whose certificate hashes to the pin.
#[derive(Debug)]
struct PinnedCa {
    pin: [u8; 32],
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| escape_certs::fingerprint(c).is_ok_and(|f| f == self.pin))
            .ok_or_else(|| {
                rustls::Error::General(
                    "the server did not present the deployment CA named in the invitation".into(),
                )
            })?;
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?
            .verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// An HTTP client for the enrollment listener at `server`, trusting only the pinned CA.
fn enroll_http(server: &str, pin: [u8; 32]) -> Result<(reqwest::Client, String), ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ClientError::BadProfile(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCa { pin, provider }))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .map_err(|e| ClientError::BadProfile(e.to_string()))?;
    Ok((http, format!("https://{server}")))
}

/// Sends a request to the enrollment listener and reads the JSON answer or the coded error.
async fn call<T: serde::de::DeserializeOwned>(
    server: &str,
    request: reqwest::RequestBuilder,
) -> Result<T, ClientError> {
    let response = request
        .send()
        .await
        .map_err(|e| connect_error(server, &e))?;
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| connect_error(server, &e))?;
    if !status.is_success() {
        return Err(server_error(status.as_u16(), &bytes));
    }
    serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(e.to_string()))
}

/// An enrollment in progress, kept under `<config>/enrollments/<id>/`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pending {
    pub id: String,
    /// The enrollment listener, `host:port`.
    pub server: String,
    /// The CA pin, hex.
    pub pin: String,
    pub poll_token: String,
    /// The profile name to create on approval.
    pub profile: String,
}

/// What became of an enrollment when asked.
#[derive(Debug)]
pub enum Outcome {
    Waiting(EnrollmentStatus),
    Rejected(EnrollmentStatus),
    /// The profile was written.
    Approved(Profile),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ClientError + '_ {
    move |source| ClientError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn enrollments_dir(store: &ProfileStore) -> PathBuf {
    store.root().join("enrollments")
}

/// Generates the keys, submits the application, and records it locally.
pub async fn apply(
    store: &ProfileStore,
    server: &str,
    invite: &str,
    claims: Claims,
    profile: &str,
) -> Result<Pending, ClientError> {
    let code = InviteCode::parse(invite).map_err(ClientError::BadProfile)?;
    if store.names()?.iter().any(|n| n == profile) {
        return Err(ClientError::BadProfile(format!(
            "a profile named {profile} exists already; choose another with --profile-name"
        )));
    }
    let (csr_pem, key_pem) = escape_certs::signing_request(&claims.name)
        .map_err(|e| ClientError::BadProfile(e.to_string()))?;
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let (http, base) = enroll_http(server, code.pin)?;
    let request = SubmitApplication {
        invite: code.secret.clone(),
        claims,
        csr_pem,
        age_recipient: recipient,
    };
    let receipt: ApplicationReceipt = call(
        server,
        http.post(format!("{base}/enroll/v1/applications"))
            .json(&request),
    )
    .await?;
    let pending = Pending {
        id: receipt.id,
        server: server.to_owned(),
        pin: escape_certs::hex_encode(&code.pin),
        poll_token: receipt.poll_token,
        profile: profile.to_owned(),
    };
    let dir = enrollments_dir(store).join(&pending.id);
    crate::profile::create_private_dir(&dir)?;
    crate::profile::write_file(&dir.join("key.pem"), &key_pem, 0o600)?;
    let secret = age::secrecy::ExposeSecret::expose_secret(&identity.to_string()).to_owned();
    crate::profile::write_file(&dir.join("age.key"), &format!("{secret}\n"), 0o600)?;
    let toml = toml::to_string(&pending).map_err(|e| ClientError::Protocol(e.to_string()))?;
    crate::profile::write_file(&dir.join("enrollment.toml"), &toml, 0o600)?;
    Ok(pending)
}

/// Enrollments still waiting for a decision.
pub fn pending(store: &ProfileStore) -> Result<Vec<Pending>, ClientError> {
    let dir = enrollments_dir(store);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(&dir)(e)),
    };
    let mut out = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path().join("enrollment.toml");
        if let Ok(text) = std::fs::read_to_string(&path) {
            let pending: Pending = toml::from_str(&text)
                .map_err(|e| ClientError::BadProfile(format!("{}: {e}", path.display())))?;
            out.push(pending);
        }
    }
    Ok(out)
}

/// Asks the server about `pending`; on approval writes the profile (key, certificate, CA, age
/// identity) and forgets the enrollment.
pub async fn poll(store: &ProfileStore, pending: &Pending) -> Result<Outcome, ClientError> {
    let pin = pin_of(pending)?;
    let (http, base) = enroll_http(&pending.server, pin)?;
    let answer: EnrollmentStatus = call(
        &pending.server,
        http.get(format!("{base}/enroll/v1/applications/{}", pending.id))
            .bearer_auth(&pending.poll_token),
    )
    .await?;
    match answer.status {
        ApplicationStatus::Pending => Ok(Outcome::Waiting(answer)),
        ApplicationStatus::Rejected => {
            forget(store, &pending.id)?;
            Ok(Outcome::Rejected(answer))
        }
        ApplicationStatus::Approved => {
            let Some(credentials) = answer.credentials else {
                return Err(ClientError::Protocol("approved without credentials".into()));
            };
            let ca = escape_certs::cert_der_from_pem(&credentials.ca_pem)
                .map_err(|e| ClientError::Protocol(e.to_string()))?;
            if escape_certs::fingerprint(&ca).ok() != Some(pin) {
                return Err(ClientError::Server {
                    status: 0,
                    code: ErrorCode::Forbidden,
                    message: "the CA in the credentials is not the one the invitation named; refusing them".into(),
                });
            }
            let dir = enrollments_dir(store).join(&pending.id);
            let read = |file: &str| {
                let path = dir.join(file);
                std::fs::read_to_string(&path).map_err(io(&path))
            };
            let profile = Profile {
                name: pending.profile.clone(),
                member_id: credentials.member_id,
                server: credentials.server,
                server_name: credentials.server_name,
                ca_pem: credentials.ca_pem,
                cert_pem: credentials.cert_pem,
                key_pem: read("key.pem")?,
                age_identity: Some(read("age.key")?),
            };
            store.save(&profile)?;
            forget(store, &pending.id)?;
            Ok(Outcome::Approved(profile))
        }
    }
}

/// Starts proving the application's claims at identity provider `provider`; returns the URL
/// the applicant opens in a browser to log in.
pub async fn start_verification(pending: &Pending, provider: &str) -> Result<String, ClientError> {
    let (http, base) = enroll_http(&pending.server, pin_of(pending)?)?;
    let url = format!(
        "{base}/enroll/v1/applications/{}/oidc/{provider}",
        pending.id
    );
    let start: OidcStart = call(
        &pending.server,
        http.post(url).bearer_auth(&pending.poll_token),
    )
    .await?;
    Ok(start.authorization_url)
}

/// The identity providers the deployment trusts.
pub async fn providers(pending: &Pending) -> Result<Vec<String>, ClientError> {
    let (http, base) = enroll_http(&pending.server, pin_of(pending)?)?;
    call(
        &pending.server,
        http.get(format!("{base}/enroll/v1/oidc/providers")),
    )
    .await
}

fn pin_of(pending: &Pending) -> Result<[u8; 32], ClientError> {
    escape_certs::hex_decode(&pending.pin)
        .and_then(|p| p.try_into().ok())
        .ok_or_else(|| ClientError::BadProfile("the enrollment record's pin is damaged".into()))
}

fn forget(store: &ProfileStore, id: &str) -> Result<(), ClientError> {
    let dir = enrollments_dir(store).join(id);
    std::fs::remove_dir_all(&dir).map_err(io(&dir))
}

fn connect_error(server: &str, e: &reqwest::Error) -> ClientError {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    ClientError::Connect {
        server: server.to_owned(),
        message,
    }
}
