//! The server's one typed configuration: defaults, then `<data>/escape.toml`, then flags.
//! Validated before anything starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Where the embedded default keeps everything when no `--data` is given.
pub const DEFAULT_DATA_DIR: &str = "escape-data";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";

#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub limits: Limits,
    pub vetting: Vetting,
    pub oidc: Oidc,
    /// The master key that opens the data keys; outside the data dir (see [`crate::seal`]).
    pub master_key: crate::seal::MasterKeyOptions,
}

/// OpenID Connect providers applicants may log in with to prove their claims.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Oidc {
    pub providers: Vec<OidcProvider>,
    /// Where providers send the browser back; default
    /// `https://<enrollment address>/enroll/v1/oidc/callback`. Register it at each provider.
    pub redirect_url: Option<String>,
}

/// One identity provider, as registered for this deployment.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OidcProvider {
    /// How admins and applicants name it (`escape enroll verify --provider NAME`).
    pub name: String,
    /// The issuer URL; discovery is read from `<issuer>/.well-known/openid-configuration`.
    /// HTTPS, except on loopback addresses.
    pub issuer: String,
    pub client_id: String,
    #[serde(default)]
    pub client_secret: String,
    /// Read the secret from this environment variable instead of the file.
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// Which organisations this provider may vouch for, by verified email domain.
    #[serde(default)]
    pub organisations: Vec<OrganisationRule>,
}

impl std::fmt::Debug for OidcProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcProvider")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// A verified email under one of `email_domains` proves membership of `organisation`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OrganisationRule {
    pub organisation: String,
    #[serde(default)]
    pub country: Option<String>,
    pub email_domains: Vec<String>,
}

impl Oidc {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut names = std::collections::HashSet::new();
        for p in &self.providers {
            if p.name.is_empty()
                || !p
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(ConfigError::Invalid(format!(
                    "oidc provider name {:?}: letters, digits, '-', '_'",
                    p.name
                )));
            }
            if !names.insert(p.name.clone()) {
                return Err(ConfigError::Invalid(format!(
                    "oidc provider {} is configured twice",
                    p.name
                )));
            }
            let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
                .iter()
                .any(|prefix| p.issuer.starts_with(prefix));
            if !p.issuer.starts_with("https://") && !loopback {
                return Err(ConfigError::Invalid(format!(
                    "oidc provider {}: the issuer must use https (plain http only on loopback)",
                    p.name
                )));
            }
        }
        Ok(())
    }
}

/// How the deployment admits members.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Vetting {
    /// Vouches an application needs before an admin may approve it; at least one of them from
    /// an organisation other than the applicant's.
    pub sponsors_required: u32,
    /// Whether active members (not only admins) may invite.
    pub members_may_invite: bool,
    pub invite_default_days: u32,
    pub invite_max_days: u32,
    /// Lifetime of member certificates issued at approval and renewal.
    pub member_cert_days: u32,
    /// Where the enrollment listener (server-authenticated TLS only) listens.
    pub enroll_listen: SocketAddr,
    /// The address given to applicants in invitations, if not `enroll_listen`.
    pub enroll_public: Option<String>,
    /// Organisations whose applicants must prove their identity at an OpenID provider that
    /// may vouch for the organisation before an admin can approve them.
    pub require_verified: Vec<String>,
}

pub const DEFAULT_ENROLL_LISTEN: &str = "127.0.0.1:8444";

impl Default for Vetting {
    fn default() -> Self {
        Self {
            sponsors_required: 2,
            members_may_invite: false,
            invite_default_days: 7,
            invite_max_days: 30,
            member_cert_days: 90,
            enroll_listen: SocketAddr::from(([127, 0, 0, 1], 8444)),
            enroll_public: None,
            require_verified: Vec::new(),
        }
    }
}

impl Vetting {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.invite_default_days == 0 || self.invite_default_days > self.invite_max_days {
            return Err(ConfigError::Invalid(
                "vetting.invite_default_days must be above 0 and at most vetting.invite_max_days"
                    .into(),
            ));
        }
        if self.member_cert_days == 0 || self.member_cert_days > 825 {
            return Err(ConfigError::Invalid(
                "vetting.member_cert_days must be 1 to 825".into(),
            ));
        }
        Ok(())
    }
}

/// Bounds on what one peer can make the server hold or do. Every one is enforced with a coded
/// error, never by dropping input silently.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest WebSocket text frame answered with a `too_large` error frame; the connection stays up.
    pub max_frame_bytes: usize,
    /// Largest frame the socket reads at all; a larger one closes the connection (code 1009).
    pub hard_max_frame_bytes: usize,
    /// Largest message body.
    pub max_body_bytes: usize,
    /// Frames queued for one connection before the server waits on it.
    pub send_queue_frames: usize,
    /// How long a full send queue may stay full before the reader is cut off as too slow.
    pub slow_consumer_ms: u64,
    /// How long a TLS handshake may take.
    pub handshake_timeout_ms: u64,
    /// Connections one IP address may hold open at once (handshaking or established), so that
    /// one host cannot exhaust the server with half-open or idle connections. Organisations
    /// behind one NAT share it: keep it well above their members' sessions.
    pub connections_per_address: u32,
    /// New connections one IP address may open per second, with bursts of up to
    /// `handshake_burst_per_address`; past that a connection is closed before any TLS work, so
    /// that one host cannot spend the server's CPU on handshakes. The burst covers an
    /// organisation's members reconnecting together after a restart.
    pub handshakes_per_second_per_address: u32,
    pub handshake_burst_per_address: u32,
    /// How long a send waits for its message to become durable before reporting failure.
    pub durable_timeout_ms: u64,
    /// Largest page of history.
    pub history_page_max: u32,
    /// How long shutdown waits for connections to finish.
    pub shutdown_grace_ms: u64,
    /// Largest file (bytes of ciphertext).
    pub max_file_bytes: u64,
    /// Largest chunk of one upload request.
    pub file_chunk_bytes: u64,
    /// Bytes of files one member may have stored, over all rooms.
    pub member_quota_bytes: u64,
    /// Bytes of files one room may hold.
    pub room_quota_bytes: u64,
    /// Messages (and indicator shares) one member may send per second, over all connections,
    /// with bursts of up to `send_burst`.
    pub sends_per_second: u32,
    pub send_burst: u32,
    /// Room joins, and alerts, one member may make per minute.
    pub joins_per_minute: u32,
    pub alerts_per_minute: u32,
    /// WebSocket sessions one member may hold open at once.
    pub connections_per_member: usize,
    /// Frames one WebSocket connection may send in a second, whatever they are.
    pub frames_per_second: u32,
    /// A WebSocket session that sends nothing (not even a ping) for this long is closed.
    pub idle_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: 64 * 1024,
            hard_max_frame_bytes: 1024 * 1024,
            max_body_bytes: 16 * 1024,
            send_queue_frames: 256,
            slow_consumer_ms: 10_000,
            handshake_timeout_ms: 10_000,
            connections_per_address: 512,
            handshakes_per_second_per_address: 20,
            handshake_burst_per_address: 256,
            durable_timeout_ms: 10_000,
            history_page_max: 500,
            shutdown_grace_ms: 10_000,
            max_file_bytes: 2 * 1024 * 1024 * 1024,
            file_chunk_bytes: 4 * 1024 * 1024,
            member_quota_bytes: 20 * 1024 * 1024 * 1024,
            room_quota_bytes: 100 * 1024 * 1024 * 1024,
            sends_per_second: 20,
            send_burst: 60,
            joins_per_minute: 30,
            alerts_per_minute: 10,
            connections_per_member: 16,
            frames_per_second: 200,
            idle_timeout_ms: 300_000,
        }
    }
}

impl Limits {
    pub fn slow_consumer(&self) -> Duration {
        Duration::from_millis(self.slow_consumer_ms)
    }
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
    pub fn durable_timeout(&self) -> Duration {
        Duration::from_millis(self.durable_timeout_ms)
    }
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }

    /// Rejects settings that contradict each other or would disable a bound.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |what: &str| Err(ConfigError::Invalid(what.to_owned()));
        if self.max_frame_bytes == 0 || self.max_frame_bytes > self.hard_max_frame_bytes {
            return bad(
                "limits.max_frame_bytes must be above 0 and at most limits.hard_max_frame_bytes",
            );
        }
        if self.max_body_bytes == 0 || self.max_body_bytes >= self.max_frame_bytes {
            return bad("limits.max_body_bytes must be above 0 and below limits.max_frame_bytes");
        }
        if self.send_queue_frames == 0 {
            return bad("limits.send_queue_frames must be above 0");
        }
        if self.connections_per_address == 0 {
            return bad("limits.connections_per_address must be above 0");
        }
        if self.handshakes_per_second_per_address == 0 || self.handshake_burst_per_address == 0 {
            return bad(
                "limits.handshakes_per_second_per_address and limits.handshake_burst_per_address must be above 0",
            );
        }
        if self.history_page_max == 0 {
            return bad("limits.history_page_max must be above 0");
        }
        Ok(())
    }
}

/// The optional file `<data>/escape.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    limits: Limits,
    vetting: Vetting,
    oidc: Oidc,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid configuration: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

pub const CONFIG_FILE: &str = "escape.toml";

impl Config {
    /// Builds the configuration for `data_dir`: the file's settings if it exists, and
    /// `listen` from the caller (a flag) over the file's.
    pub fn load(data_dir: &Path, listen: Option<SocketAddr>) -> Result<Self, ConfigError> {
        let path = data_dir.join(CONFIG_FILE);
        let file = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str::<FileConfig>(&text).map_err(|e| ConfigError::Parse {
                path: path.clone(),
                message: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => FileConfig::default(),
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        let default_listen: SocketAddr = DEFAULT_LISTEN
            .parse()
            .map_err(|_| ConfigError::Invalid("default listen address".into()))?;
        let config = Self {
            data_dir: data_dir.to_path_buf(),
            listen: listen.or(file.listen).unwrap_or(default_listen),
            limits: file.limits,
            vetting: file.vetting,
            oidc: file.oidc,
            master_key: crate::seal::MasterKeyOptions::from_env(
                crate::seal::default_master_key_path(data_dir),
            ),
        };
        config.limits.validate()?;
        config.vetting.validate()?;
        config.oidc.validate()?;
        Ok(config)
    }

    /// A configuration for tests and embedding: the given data dir, an ephemeral port on loopback.
    pub fn ephemeral(data_dir: &Path) -> Self {
        Self {
            data_dir: data_dir.to_path_buf(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            limits: Limits::default(),
            vetting: Vetting {
                enroll_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                ..Vetting::default()
            },
            oidc: Oidc::default(),
            master_key: crate::seal::MasterKeyOptions {
                path: crate::seal::default_master_key_path(data_dir),
                passphrase: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_overrides_defaults_and_flags_override_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "listen = \"127.0.0.1:9000\"\n[limits]\nmax_body_bytes = 1000\n",
        )
        .expect("write");
        let config = Config::load(dir.path(), None).expect("load");
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.limits.max_body_bytes, 1000);
        let flag = "127.0.0.1:9001".parse().expect("addr");
        assert_eq!(
            Config::load(dir.path(), Some(flag)).expect("load").listen,
            flag
        );
    }

    #[test]
    fn contradictory_limits_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "[limits]\nmax_body_bytes = 99999999\n",
        )
        .expect("write");
        assert!(matches!(
            Config::load(dir.path(), None),
            Err(ConfigError::Invalid(_))
        ));
        std::fs::write(dir.path().join(CONFIG_FILE), "[limits]\nmax_bodyy = 1\n").expect("write");
        assert!(matches!(
            Config::load(dir.path(), None),
            Err(ConfigError::Parse { .. })
        ));
    }
}
