//! The master identity: where it lives, how it is protected, how it is replaced.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::secrecy::{ExposeSecret, SecretString};

use super::SealError;

/// The environment variable holding the passphrase that protects the master key file.
pub const PASSPHRASE_ENV: &str = "ESCAPE_MASTER_PASSPHRASE";

/// What an encrypted (passphrase-protected) key file starts with: the age header.
const AGE_HEADER: &[u8] = b"age-encryption.org/v1";

/// Where the master key is and, if it is protected, the passphrase that opens it.
#[derive(Clone)]
pub struct MasterKeyOptions {
    pub path: PathBuf,
    /// When set, a key file this server creates is encrypted with it (age scrypt), and a
    /// protected key file is opened with it.
    pub passphrase: Option<SecretString>,
}

impl std::fmt::Debug for MasterKeyOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKeyOptions")
            .field("path", &self.path)
            .field("passphrase", &self.passphrase.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl MasterKeyOptions {
    /// The key file at `path`, with the passphrase from [`PASSPHRASE_ENV`] if it is set.
    pub fn from_env(path: PathBuf) -> Self {
        let passphrase = std::env::var(PASSPHRASE_ENV)
            .ok()
            .filter(|p| !p.is_empty())
            .map(SecretString::from);
        Self { path, passphrase }
    }
}

/// The default key file for a data dir: beside it, never inside, so that copying or backing up
/// the data dir does not copy the key. `./escape-data` → `./escape-data.master-key`.
pub fn default_master_key_path(data_dir: &Path) -> PathBuf {
    let absolute = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let name = absolute
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "escape-data".into());
    absolute.with_file_name(format!("{name}.master-key"))
}

/// The server's master identity. Data keys are wrapped to its recipient.
pub struct MasterKey {
    identity: age::x25519::Identity,
    options: MasterKeyOptions,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey")
            .field("path", &self.options.path)
            .field("recipient", &self.identity.to_public().to_string())
            .finish_non_exhaustive()
    }
}

impl MasterKey {
    /// Reads the key file, or creates it (mode 0600) if it does not exist yet. Returns whether
    /// it was created, so the caller can say where.
    pub fn load_or_create(options: &MasterKeyOptions) -> Result<(Self, bool), SealError> {
        if options.path.exists() {
            return Ok((Self::load(options)?, false));
        }
        let key = Self {
            identity: age::x25519::Identity::generate(),
            options: options.clone(),
        };
        key.write(&options.path)?;
        Ok((key, true))
    }

    /// Reads an existing key file.
    pub fn load(options: &MasterKeyOptions) -> Result<Self, SealError> {
        let bytes = std::fs::read(&options.path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => error(
                &options.path,
                "not found; the store opens only with the key it was sealed with \
                 (give its path with --master-key or ESCAPE_MASTER_KEY)",
            ),
            _ => error(&options.path, e),
        })?;
        Ok(Self {
            identity: parse(&options.path, &bytes, options.passphrase.as_ref())?,
            options: options.clone(),
        })
    }

    /// A fresh identity that will live at the same path, protected the same way.
    pub fn generate_successor(&self) -> Self {
        Self {
            identity: age::x25519::Identity::generate(),
            options: self.options.clone(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.options.path
    }

    /// Whether the file is (or will be) protected by a passphrase.
    pub fn is_protected(&self) -> bool {
        self.options.passphrase.is_some()
    }

    pub fn identity(&self) -> &age::x25519::Identity {
        &self.identity
    }

    pub fn recipient(&self) -> age::x25519::Recipient {
        self.identity.to_public()
    }

    /// The file a rotation writes before the data keys are re-wrapped; if the server stops
    /// between the two steps, the next start finds the new key here.
    pub fn pending_path(&self) -> PathBuf {
        pending_path(&self.options.path)
    }

    /// Writes this identity to `path` (mode 0600, through a temporary file and a rename).
    pub fn write(&self, path: &Path) -> Result<(), SealError> {
        let text = format!(
            "# Escape master key: opens this deployment's data keys. Keep it outside the data dir.\n\
             # public key: {}\n{}\n",
            self.recipient(),
            self.identity.to_string().expose_secret()
        );
        let contents = match &self.options.passphrase {
            Some(passphrase) => {
                let recipient = age::scrypt::Recipient::new(passphrase.clone());
                age::encrypt(&recipient, text.as_bytes()).map_err(|e| error(path, e))?
            }
            None => text.into_bytes(),
        };
        crate::deployment::write_private_bytes(path, &contents).map_err(|e| error(path, e))
    }
}

/// Where a rotation parks the successor key.
pub(crate) fn pending_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".next");
    path.with_file_name(name)
}

fn parse(
    path: &Path,
    bytes: &[u8],
    passphrase: Option<&SecretString>,
) -> Result<age::x25519::Identity, SealError> {
    let text = if bytes.starts_with(AGE_HEADER) {
        let Some(passphrase) = passphrase else {
            return Err(error(
                path,
                format!("the file is protected by a passphrase; set {PASSPHRASE_ENV}"),
            ));
        };
        let identity = age::scrypt::Identity::new(passphrase.clone());
        let decryptor = age::Decryptor::new(bytes).map_err(|e| error(path, e))?;
        let mut reader = decryptor
            .decrypt(std::iter::once(&identity as &dyn age::Identity))
            .map_err(|e| error(path, format!("wrong passphrase or damaged file ({e})")))?;
        let mut text = String::new();
        reader
            .read_to_string(&mut text)
            .map_err(|e| error(path, e))?;
        text
    } else {
        String::from_utf8(bytes.to_vec()).map_err(|_| error(path, "not a key file"))?
    };
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .ok_or_else(|| error(path, "no AGE-SECRET-KEY line"))?;
    age::x25519::Identity::from_str(line).map_err(|e| error(path, e))
}

fn error(path: &Path, reason: impl std::fmt::Display) -> SealError {
    SealError::MasterKey {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_key_sits_beside_the_data_dir() {
        let path = default_master_key_path(Path::new("/srv/escape-data"));
        assert_eq!(path, Path::new("/srv/escape-data.master-key"));
        assert!(!path.starts_with("/srv/escape-data/"));
    }

    #[test]
    fn plain_key_files_round_trip_and_garbage_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let options = MasterKeyOptions {
            path: dir.path().join("k"),
            passphrase: None,
        };
        let (created, fresh) = MasterKey::load_or_create(&options).expect("create");
        assert!(fresh);
        let (loaded, fresh) = MasterKey::load_or_create(&options).expect("load");
        assert!(!fresh);
        assert_eq!(
            created.recipient().to_string(),
            loaded.recipient().to_string()
        );
        std::fs::write(&options.path, "hello").expect("write");
        assert!(MasterKey::load(&options).is_err());
    }

    #[test]
    fn protected_key_files_need_the_passphrase() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("k");
        let options = MasterKeyOptions {
            path: path.clone(),
            passphrase: Some(SecretString::from("correct horse".to_owned())),
        };
        let (created, _) = MasterKey::load_or_create(&options).expect("create");
        let bytes = std::fs::read(&path).expect("read");
        assert!(bytes.starts_with(AGE_HEADER), "the file is encrypted");
        let without = MasterKeyOptions {
            path: path.clone(),
            passphrase: None,
        };
        let err = MasterKey::load(&without).expect_err("needs the passphrase");
        assert!(err.to_string().contains(PASSPHRASE_ENV), "{err}");
        let wrong = MasterKeyOptions {
            path: path.clone(),
            passphrase: Some(SecretString::from("wrong".to_owned())),
        };
        assert!(MasterKey::load(&wrong).is_err());
        let loaded = MasterKey::load(&options).expect("opens");
        assert_eq!(
            created.recipient().to_string(),
            loaded.recipient().to_string()
        );
    }
}
