//! The shared harness of the end-to-end tests: a real deployment in a temporary data dir, a
//! real server on 127.0.0.1 with an ephemeral port, real members with real certificates, and
//! raw TLS probes for what a hostile or broken client would send.
#![forbid(unsafe_code)]

pub mod identity_providers;
pub mod server_log;
pub mod taxii_tools;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use escape_certs::{Ca, Validity};
use escape_client::{Channel, Client, Profile};
use escape_proto::frame::ServerMessage;
use escape_proto::{
    Attributes, Member, MemberId, MemberStatus, ProfileBundle, RoomName, ServerFrame,
};
use escape_server::RunningServer;
use escape_server::config::{Config, Limits, Oidc, Vetting};
use escape_server::deployment::{self, InitOptions, Layout};
use escape_server::registry::Registry;
use escape_server::seal::{MasterKey, MasterKeyOptions, SealedStore};
use escape_server::store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long any single wait in a test may take before the test fails instead of hanging.
pub const WAIT: Duration = Duration::from_secs(10);

/// Awaits `future`, failing the test after [`WAIT`].
pub async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {WAIT:?} waiting for {what}"),
    }
}

/// A vetted analyst of `organisation` (country EE, sector national-cert, clearance 1), declaring
/// `clients` for TLP:AMBER.
pub fn attributes(organisation: &str, clients: &[&str]) -> Attributes {
    Attributes {
        organisation: organisation.into(),
        country: "EE".into(),
        sector: "national-cert".into(),
        role: "analyst".into(),
        clearance: 1,
        vetting: "vetted".into(),
        clients: clients.iter().map(|c| (*c).to_owned()).collect(),
    }
}

/// A deployment in a temporary dir and, while started, its server.
#[derive(Debug)]
pub struct TestDeployment {
    dir: tempfile::TempDir,
    /// Where the master key lives: another temporary dir, as in production it is outside the data dir.
    keys: tempfile::TempDir,
    layout: Layout,
    members: HashMap<String, Profile>,
    server: Option<RunningServer>,
    addr: Option<SocketAddr>,
    enroll_addr: Option<SocketAddr>,
    pub limits: Limits,
    pub vetting: Vetting,
    pub oidc: Oidc,
}

impl TestDeployment {
    /// A fresh deployment with its admin (profile name `admin`). Not started yet.
    pub fn new() -> Self {
        escape_server::tls::install_provider();
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = tempfile::tempdir().expect("tempdir");
        let options = InitOptions {
            public_address: "127.0.0.1:0".into(),
            ..InitOptions::default()
        };
        let (master, _) = MasterKey::load_or_create(&MasterKeyOptions {
            path: keys.path().join("master-key"),
            passphrase: None,
        })
        .expect("master key");
        let done = deployment::init(dir.path(), &options, &master).expect("init");
        let bundle: ProfileBundle = serde_json::from_str(
            &std::fs::read_to_string(&done.admin_profile).expect("read profile"),
        )
        .expect("profile json");
        let mut members = HashMap::new();
        members.insert(
            "admin".to_owned(),
            Profile::from_bundle(bundle).expect("profile"),
        );
        Self {
            layout: Layout::new(dir.path()),
            dir,
            keys,
            members,
            server: None,
            addr: None,
            enroll_addr: None,
            limits: Limits::default(),
            vetting: Config::ephemeral(Path::new(".")).vetting,
            oidc: Oidc::default(),
        }
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The master key file (outside the data dir).
    pub fn master_key(&self) -> MasterKeyOptions {
        MasterKeyOptions {
            path: self.keys.path().join("master-key"),
            passphrase: None,
        }
    }

    /// The deployment's store, opened as the server opens it (the server must be stopped).
    pub fn open_store(&self) -> Arc<SealedStore> {
        escape_server::seal::open_deployment(
            self.dir.path(),
            &self.layout.store(),
            &self.master_key(),
        )
        .expect("open store")
        .0
    }

    pub fn ca(&self) -> Ca {
        self.layout.ca().expect("ca")
    }

    /// Registers an active member of `organisation` (the server must be stopped).
    pub fn add_member(&mut self, name: &str, organisation: &str) -> MemberId {
        self.add_member_with_status(name, organisation, MemberStatus::Active)
    }

    /// Registers an active member with the given attributes (the server must be stopped).
    pub fn add_member_as(&mut self, name: &str, attributes: Attributes) -> MemberId {
        self.register(name, MemberStatus::Active, attributes)
    }

    pub fn add_member_with_status(
        &mut self,
        name: &str,
        organisation: &str,
        status: MemberStatus,
    ) -> MemberId {
        let attributes = Attributes {
            organisation: organisation.to_owned(),
            country: "DE".into(),
            sector: "government".into(),
            role: "analyst".into(),
            clearance: 1,
            vetting: "vetted".into(),
            clients: Vec::new(),
        };
        self.register(name, status, attributes)
    }

    fn register(&mut self, name: &str, status: MemberStatus, attributes: Attributes) -> MemberId {
        assert!(self.server.is_none(), "add members before start()");
        let store = self.open_store();
        let mut member = Member::new(deployment::new_member_id(), name);
        member.status = status;
        member.attributes = attributes;
        let path = deployment::add_member_with(
            &self.layout,
            &self.ca(),
            &Registry::new(store.clone()),
            member.clone(),
            name,
        )
        .expect("add member");
        store.flush().expect("flush");
        let bundle: ProfileBundle =
            serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("json");
        self.members.insert(
            name.to_owned(),
            Profile::from_bundle(bundle).expect("profile"),
        );
        member.id
    }

    pub async fn start(&mut self) {
        self.start_layered(|| Box::new(|store| store)).await;
    }

    /// Starts the server with its store wrapped by what `layer` makes (one per attempt to start).
    pub async fn start_layered(&mut self, layer: impl Fn() -> escape_server::StoreLayer) {
        assert!(self.server.is_none(), "already started");
        let mut config = Config::ephemeral(self.dir.path());
        config.master_key = self.master_key();
        if let Some(addr) = self.addr {
            // A restart keeps its port so that profiles and reconnecting clients still reach it.
            config.listen = addr;
        }
        config.limits = self.limits.clone();
        config.vetting = self.vetting.clone();
        config.oidc = self.oidc.clone();
        if let Some(enroll) = self.enroll_addr {
            config.vetting.enroll_listen = enroll;
        }
        // On a restart another process may briefly hold the old port: retry for a while.
        let mut attempts = 0;
        let server = loop {
            match escape_server::start_layered(config.clone(), layer()).await {
                Ok(server) => break server,
                Err(escape_server::StartError::Listen { .. }) if attempts < 100 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("server does not start: {e}"),
            }
        };
        self.enroll_addr = Some(server.enroll_addr());
        self.addr = Some(server.local_addr());
        self.server = Some(server);
    }

    /// Whether the server's store failed to flush (the server then stops by itself).
    pub fn store_failed(&self) -> bool {
        self.server
            .as_ref()
            .expect("server started")
            .store_failed()
            .is_cancelled()
    }

    /// Waits until a server that stopped by itself has finished stopping.
    pub async fn stopped(&mut self) {
        if let Some(server) = self.server.take() {
            within("the server stopping by itself", server.stopped()).await;
        }
    }

    /// Graceful stop: what the server acknowledged is flushed; the data dir can be reopened.
    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            within("server shutdown", server.shutdown()).await;
        }
    }

    pub async fn restart(&mut self) {
        self.stop().await;
        self.start().await;
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr.expect("server started")
    }

    /// The enrollment listener (no client certificate).
    pub fn enroll_addr(&self) -> SocketAddr {
        self.enroll_addr.expect("server started")
    }

    /// The profile of a member, pointing at the running server.
    pub fn profile(&self, name: &str) -> Profile {
        let mut profile = self
            .members
            .get(name)
            .unwrap_or_else(|| panic!("no member {name}"))
            .clone();
        profile.server = self.addr().to_string();
        profile
    }

    /// A profile holding another certificate and key for `name`'s connection details.
    pub fn profile_with_cert(&self, name: &str, cert_pem: String, key_pem: String) -> Profile {
        Profile {
            cert_pem,
            key_pem,
            ..self.profile(name)
        }
    }

    pub async fn client(&self, name: &str) -> Client {
        Client::new(self.profile(name)).await.expect("client")
    }

    /// A plain HTTP client with `name`'s certificate, and the base URL: for requests the
    /// library client would never send (malformed, oversized, hand-made).
    pub async fn http(&self, name: &str) -> (reqwest::Client, String) {
        let client = self.client(name).await;
        let tls = escape_client::tls::client_config(client.profile()).expect("tls");
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .resolve("localhost", self.addr())
            .build()
            .expect("http");
        (http, client.base_url().to_owned())
    }

    pub async fn channel(&self, name: &str) -> Channel {
        within(
            "WebSocket connect",
            Channel::connect(&self.client(name).await),
        )
        .await
        .expect("channel connects")
    }

    /// The room `name`, created by the admin of the started deployment (and joined by them).
    pub async fn admin_creates(&self, name: &str) -> RoomName {
        let room = RoomName::parse(name).expect("room name");
        self.client("admin")
            .await
            .create_room(room.clone(), String::new())
            .await
            .expect("create room");
        room
    }
}

/// Whether `needle` occurs in `haystack`: how tests look for words in stored bytes.
pub fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

impl Default for TestDeployment {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestDeployment {
    fn drop(&mut self) {
        if let Some(server) = &self.server {
            server.shutdown_token().cancel();
        }
    }
}

/// A certificate for `member` from `ca`, valid as given.
pub fn member_cert(ca: &Ca, member: &MemberId, validity: Validity) -> (String, String) {
    let issued = ca.issue_member(member, "test", validity).expect("issue");
    (issued.cert_pem, issued.key_pem)
}

/// What happened when a raw client tried the listener.
#[derive(Debug)]
pub enum Probe {
    /// The server answered HTTP with this status line.
    Answered(String),
    /// The TLS layer refused: handshake or first read failed with this error.
    Refused(String),
}

/// Connects with `config`, asks `GET /v1/me` and reports the first answer or the refusal. With
/// TLS 1.3 a server's refusal of the client certificate arrives after the client's handshake
/// completed, on the first read: the probe reads, so both cases are caught.
pub async fn probe(addr: SocketAddr, config: rustls::ClientConfig) -> Probe {
    probe_from(addr, config).await.1
}

/// [`probe`], also returning the probe's own address (the `peer` the server logs it under).
pub async fn probe_from(addr: SocketAddr, config: rustls::ClientConfig) -> (SocketAddr, Probe) {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .expect("tcp connect");
    let local = tcp.local_addr().expect("local address");
    (local, probe_over(tcp, config).await)
}

/// [`probe`] over a connection the test opened itself (from another local address, say).
pub async fn probe_over(tcp: tokio::net::TcpStream, config: rustls::ClientConfig) -> Probe {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = match within("TLS handshake", connector.connect(name, tcp)).await {
        Ok(tls) => tls,
        Err(e) => return Probe::Refused(e.to_string()),
    };
    let request = b"GET /v1/me HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    if let Err(e) = tls.write_all(request).await {
        return Probe::Refused(e.to_string());
    }
    let mut response = Vec::new();
    match within("response", tls.read_to_end(&mut response)).await {
        Ok(_) if !response.is_empty() => {
            let text = String::from_utf8_lossy(&response);
            Probe::Answered(text.lines().next().unwrap_or_default().to_owned())
        }
        Ok(_) => Probe::Refused("connection closed without an answer".into()),
        Err(e) => Probe::Refused(e.to_string()),
    }
}

/// Connects with `config`: the handshake must be refused, and the server must log the refusal
/// under this connection's address with a reason containing `logged`, as an operator reads it.
pub async fn assert_refused(
    addr: SocketAddr,
    config: rustls::ClientConfig,
    what: &str,
    logged: &str,
) {
    let log = server_log::capture();
    let (peer, probe) = probe_from(addr, config).await;
    match probe {
        Probe::Refused(reason) => eprintln!("{what}: refused ({reason})"),
        Probe::Answered(status) => {
            panic!("{what}: expected a TLS refusal, got an HTTP answer {status:?}")
        }
    }
    let lines = log.lines_of(peer).await;
    eprintln!("{what}: logged {lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("TLS handshake refused") && l.contains(logged)),
        "{what}: the server's log for {peer} must give the reason ({logged:?}); it has {lines:?}"
    );
}

/// A client TLS configuration trusting `ca_pem`, presenting `cert` if given.
pub fn tls_config(
    ca_pem: &str,
    cert: Option<(&str, &str)>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> rustls::ClientConfig {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(ca.expect("ca pem")).expect("add root");
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .expect("versions")
    .with_root_certificates(roots);
    let mut config = match cert {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .expect("cert pem"),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key pem"),
            )
            .expect("client auth"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

/// Reads frames until one matches, failing after [`WAIT`]. Frames before it are returned too.
pub async fn next_frame(channel: &mut Channel) -> ServerMessage {
    within("a frame", channel.next())
        .await
        .expect("read frame")
        .expect("connection open")
}

/// Collects `n` events of any room, skipping other frames.
pub async fn events(channel: &mut Channel, n: usize) -> Vec<escape_proto::Event> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        if let ServerFrame::Event(event) = next_frame(channel).await.frame {
            out.push(event);
        }
    }
    out
}
