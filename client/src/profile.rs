//! Profiles stored in the user's config dir, one folder per profile:
//!
//! ```text
//! $ESCAPE_CONFIG_DIR (or $XDG_CONFIG_HOME/escape, or ~/.config/escape)
//!   default                 the name of the default profile
//!   profiles/<name>/profile.toml   server address, server name, member id
//!   profiles/<name>/ca.pem         the deployment CA, the only root trusted
//!   profiles/<name>/cert.pem       the member's certificate
//!   profiles/<name>/key.pem        its private key, mode 0600
//! ```
//!
//! Separate PEM files let other tools (curl, openssl) use the same identity.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use escape_proto::profile::PROFILE_FORMAT;
use escape_proto::{MemberId, ProfileBundle};
use serde::{Deserialize, Serialize};

use crate::error::ClientError;

/// A usable profile: where the server is and who we are to it.
#[derive(Clone, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    pub member_id: MemberId,
    pub server: String,
    pub server_name: String,
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    /// The age identity that opens the room keys sealed to this member (file encryption).
    pub age_identity: Option<String>,
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profile")
            .field("name", &self.name)
            .field("member_id", &self.member_id)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl Profile {
    /// Reads a bundle as written by the server.
    pub fn from_bundle(bundle: ProfileBundle) -> Result<Self, ClientError> {
        if bundle.format != PROFILE_FORMAT {
            return Err(ClientError::BadProfile(format!(
                "profile format {} is not supported by this client (it reads {PROFILE_FORMAT}); upgrade escape",
                bundle.format
            )));
        }
        Ok(Self {
            name: bundle.name,
            member_id: bundle.member_id,
            server: bundle.server,
            server_name: bundle.server_name,
            ca_pem: bundle.ca_pem,
            cert_pem: bundle.cert_pem,
            key_pem: bundle.key_pem,
            age_identity: bundle.age_identity,
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct ProfileToml {
    member_id: MemberId,
    server: String,
    server_name: String,
}

/// The profiles of one user.
#[derive(Debug, Clone)]
pub struct ProfileStore {
    root: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ClientError + '_ {
    move |source| ClientError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl ProfileStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// `$ESCAPE_CONFIG_DIR`, else `$XDG_CONFIG_HOME/escape`, else `~/.config/escape`.
    pub fn from_env() -> Result<Self, ClientError> {
        if let Some(dir) = std::env::var_os("ESCAPE_CONFIG_DIR") {
            return Ok(Self::new(dir));
        }
        if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
            return Ok(Self::new(PathBuf::from(dir).join("escape")));
        }
        match std::env::var_os("HOME") {
            Some(home) => Ok(Self::new(PathBuf::from(home).join(".config/escape"))),
            None => Err(ClientError::BadProfile(
                "cannot find a config dir: set ESCAPE_CONFIG_DIR or HOME".into(),
            )),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join("profiles").join(name)
    }

    /// Imports a bundle file under `name` (default: the bundle's own name). The first imported
    /// profile becomes the default.
    pub fn import(
        &self,
        file: &Path,
        name: Option<&str>,
        server: Option<&str>,
    ) -> Result<Profile, ClientError> {
        let text = fs::read_to_string(file).map_err(io(file))?;
        let bundle: ProfileBundle = serde_json::from_str(&text).map_err(|e| {
            ClientError::BadProfile(format!("{} is not an Escape profile: {e}", file.display()))
        })?;
        let mut profile = Profile::from_bundle(bundle)?;
        if let Some(name) = name {
            profile.name = name.to_owned();
        }
        if let Some(server) = server {
            profile.server = server.to_owned();
        }
        self.save(&profile)?;
        Ok(profile)
    }

    /// Writes a profile; the key file is created with mode 0600.
    pub fn save(&self, profile: &Profile) -> Result<(), ClientError> {
        valid_name(&profile.name)?;
        // Check the material before storing it, so a broken bundle fails at import, not later.
        crate::tls::client_config(profile)?;
        let dir = self.dir(&profile.name);
        create_private_dir(&dir)?;
        let toml = toml::to_string(&ProfileToml {
            member_id: profile.member_id.clone(),
            server: profile.server.clone(),
            server_name: profile.server_name.clone(),
        })
        .map_err(|e| ClientError::BadProfile(e.to_string()))?;
        write_file(&dir.join("profile.toml"), &toml, 0o644)?;
        write_file(&dir.join("ca.pem"), &profile.ca_pem, 0o644)?;
        write_file(&dir.join("cert.pem"), &profile.cert_pem, 0o644)?;
        write_file(&dir.join("key.pem"), &profile.key_pem, 0o600)?;
        if let Some(identity) = &profile.age_identity {
            write_file(&dir.join("age.key"), identity, 0o600)?;
        }
        if self.default_name()?.is_none() {
            self.set_default(&profile.name)?;
        }
        Ok(())
    }

    /// Points a profile at another server address (the deployment moved, or a port changed).
    pub fn set_server(&self, name: &str, server: &str) -> Result<Profile, ClientError> {
        let mut profile = self.load(Some(name))?;
        profile.server = server.to_owned();
        self.save(&profile)?;
        Ok(profile)
    }

    /// Replaces a profile's certificate, and its key when a new one was made (renewal).
    pub fn replace_certificate(
        &self,
        name: &str,
        cert_pem: &str,
        key_pem: Option<&str>,
    ) -> Result<(), ClientError> {
        let dir = self.dir(name);
        if let Some(key) = key_pem {
            write_file(&dir.join("key.pem"), key, 0o600)?;
        }
        write_file(&dir.join("cert.pem"), cert_pem, 0o644)
    }

    pub fn set_default(&self, name: &str) -> Result<(), ClientError> {
        if !self.dir(name).join("profile.toml").exists() {
            return Err(ClientError::NoSuchProfile(name.to_owned()));
        }
        let path = self.root.join("default");
        write_file(&path, &format!("{name}\n"), 0o644)
    }

    pub fn default_name(&self) -> Result<Option<String>, ClientError> {
        let path = self.root.join("default");
        match fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text.trim().to_owned()).filter(|s| !s.is_empty())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }

    pub fn names(&self) -> Result<Vec<String>, ClientError> {
        let dir = self.root.join("profiles");
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&dir)(e)),
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().join("profile.toml").exists())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Loads `name`, or the default profile.
    pub fn load(&self, name: Option<&str>) -> Result<Profile, ClientError> {
        let name = match name {
            Some(name) => name.to_owned(),
            None => self.default_name()?.ok_or(ClientError::NoProfile)?,
        };
        let dir = self.dir(&name);
        if !dir.join("profile.toml").exists() {
            return Err(ClientError::NoSuchProfile(name));
        }
        let read = |file: &str| {
            let path = dir.join(file);
            fs::read_to_string(&path).map_err(io(&path))
        };
        let meta: ProfileToml = toml::from_str(&read("profile.toml")?).map_err(|e| {
            ClientError::BadProfile(format!("{}: {e}", dir.join("profile.toml").display()))
        })?;
        Ok(Profile {
            name,
            member_id: meta.member_id,
            server: meta.server,
            server_name: meta.server_name,
            ca_pem: read("ca.pem")?,
            cert_pem: read("cert.pem")?,
            key_pem: read("key.pem")?,
            age_identity: match fs::read_to_string(dir.join("age.key")) {
                Ok(text) => Some(text),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(io(&dir.join("age.key"))(e)),
            },
        })
    }
}

fn valid_name(name: &str) -> Result<(), ClientError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(ClientError::BadProfile(format!(
            "profile name {name:?}: use letters, digits, '-', '_' or '.'"
        )))
    }
}

pub(crate) fn create_private_dir(path: &Path) -> Result<(), ClientError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path).map_err(io(path))
}

pub(crate) fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), ClientError> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(io(path))?;
    // An existing file keeps its old mode on open; set it explicitly.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io(path))?;
    }
    file.write_all(contents.as_bytes()).map_err(io(path))
}
