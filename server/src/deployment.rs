//! A deployment on disk: the layout of the data dir, `init`, and issuing member profiles.
//!
//! ```text
//! <data>/escape.toml           optional settings (listen address, limits)
//! <data>/pki/ca.pem  ca.key    the deployment CA (key 0600)
//! <data>/pki/server.pem .key   the listener's certificate
//! <data>/store/                the embedded store
//! <data>/profiles/*.escape-profile   client profiles written by init / add-member (0600)
//! <data>/init.incomplete       present only while `init` runs (see [`init`])
//! ```

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use escape_certs::{Ca, Validity};
use escape_proto::profile::{PROFILE_EXTENSION, PROFILE_FORMAT};
use escape_proto::{Attributes, Member, MemberId, ProfileBundle};

use crate::disk::sync_dir;
use crate::registry::Registry;
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum DeploymentError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} already holds a deployment; refusing to overwrite it")]
    AlreadyInitialised(PathBuf),
    #[error("{0} holds no deployment; run `escape-server init --data {0}` first")]
    NotInitialised(PathBuf),
    #[error(
        "{0} is not empty but holds no deployment; point --data at an empty or initialised dir (escape.toml alone is fine)"
    )]
    NotEmpty(PathBuf),
    #[error("another init of {0} is running")]
    InitRunning(PathBuf),
    #[error(
        "an `escape-server init` of {0} was cut off before it completed; run it again with the same options (it starts over)"
    )]
    InitCutOff(PathBuf),
    #[error(transparent)]
    Cert(#[from] escape_certs::CertError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Seal(#[from] crate::seal::SealError),
    #[error("invalid member: {0}")]
    Member(String),
}

/// The name of the marker an init in progress keeps in the data dir.
const INIT_MARKER: &str = "init.incomplete";

/// Options of `escape-server init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The deployment's name, shown in the CA's subject.
    pub name: String,
    /// DNS names and IP addresses the server certificate is valid for. The first is the name
    /// profiles check the server against.
    pub hosts: Vec<String>,
    /// The address written into profiles (`host:port`).
    pub public_address: String,
    /// The operator's settings file (`escape.toml`) as it should read once the deployment
    /// exists, if init changes it: written before init marks the deployment complete, so an
    /// init cut off midway never leaves a deployment serving on other settings than asked.
    pub settings: Option<String>,
    /// Which command creates the deployment, written into the marker of an init in progress.
    pub by: InitBy,
}

/// Who began an init. A first start redoes only an init it began itself: an operator's
/// `escape-server init` was given hosts, a name and an address that a start does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InitBy {
    /// `escape-server init`, with the operator's options.
    #[default]
    Operator,
    /// The first start of the server on an empty dir, with the defaults.
    FirstStart,
}

impl InitBy {
    /// How the marker's first line, and messages to the operator, name it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Operator => "init",
            Self::FirstStart => "first start",
        }
    }

    fn marker_text(self) -> String {
        format!(
            "{}\nthe deployment is being created, or its creation was cut off: the next {} starts over\n",
            self.label(),
            self.label()
        )
    }
}

impl Default for InitOptions {
    fn default() -> Self {
        Self {
            name: "Escape".into(),
            hosts: vec!["localhost".into(), "127.0.0.1".into()],
            public_address: crate::config::DEFAULT_LISTEN.into(),
            settings: None,
            by: InitBy::Operator,
        }
    }
}

/// What `init` made.
#[derive(Debug, Clone)]
pub struct Initialised {
    pub admin: Member,
    pub admin_profile: PathBuf,
}

/// The paths of one data dir.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.root.join("pki/ca.pem")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.root.join("pki/ca.key")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.root.join("pki/server.pem")
    }
    pub fn server_key(&self) -> PathBuf {
        self.root.join("pki/server.key")
    }
    pub fn crl(&self) -> PathBuf {
        self.root.join("pki/crl.pem")
    }
    pub fn store(&self) -> PathBuf {
        self.root.join("store")
    }
    /// Shared files: ciphertext only (age), one folder per room.
    pub fn files(&self) -> PathBuf {
        self.root.join("files")
    }

    pub fn profiles(&self) -> PathBuf {
        self.root.join("profiles")
    }
    /// Where `init` records the address and server name that profiles carry.
    fn public(&self) -> PathBuf {
        self.root.join("pki/public")
    }

    /// Written first by `init` and removed last: while it is there, whatever else the data dir
    /// holds is the leftover of an init that was cut off, never a deployment.
    pub fn init_marker(&self) -> PathBuf {
        self.root.join(INIT_MARKER)
    }

    /// A deployment that `init` completed: its CA, and no sign of an init cut off midway.
    pub fn is_initialised(&self) -> bool {
        self.ca_cert().exists() && !self.init_marker().exists()
    }

    /// Who began an init that stopped before it completed (a power cut, a kill), if one did.
    /// A marker that cannot be read counts as the operator's: a start then refuses to redo it.
    pub fn interrupted_init(&self) -> Option<InitBy> {
        match fs::read_to_string(self.init_marker()) {
            Ok(text) if text.lines().next() == Some(InitBy::FirstStart.label()) => {
                Some(InitBy::FirstStart)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Ok(_) | Err(_) => Some(InitBy::Operator),
        }
    }

    /// Whether init may create a deployment here: refused where one exists or where the dir
    /// holds anything but the operator's settings file (init never takes over, or clears, files
    /// it did not make). Returns who began a cut-off init, whose leftovers init clears.
    pub fn check_ready_for_init(&self) -> Result<Option<InitBy>, DeploymentError> {
        if self.is_initialised() {
            return Err(DeploymentError::AlreadyInitialised(self.root.clone()));
        }
        if let Some(by) = self.interrupted_init() {
            return Ok(Some(by));
        }
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&self.root)(e)),
        };
        for entry in entries {
            let name = entry.map_err(io_err(&self.root))?.file_name();
            // A marker whose writing was cut off leaves only its temporary file.
            let precedes_init = name == crate::config::CONFIG_FILE
                || name.to_str() == Some(&format!("{INIT_MARKER}.tmp"));
            if !precedes_init {
                return Err(DeploymentError::NotEmpty(self.root.clone()));
            }
        }
        Ok(None)
    }

    pub fn read(&self, path: &Path) -> Result<String, DeploymentError> {
        fs::read_to_string(path).map_err(|source| DeploymentError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    pub fn ca(&self) -> Result<Ca, DeploymentError> {
        if !self.is_initialised() {
            return Err(DeploymentError::NotInitialised(self.root.clone()));
        }
        Ok(Ca::from_pem(
            &self.read(&self.ca_cert())?,
            &self.read(&self.ca_key())?,
        )?)
    }

    /// The `server` and `server_name` fields profiles carry.
    pub fn public_address(&self) -> Result<(String, String), DeploymentError> {
        let text = self.read(&self.public())?;
        let mut lines = text.lines();
        match (lines.next(), lines.next()) {
            (Some(address), Some(name)) => Ok((address.to_owned(), name.to_owned())),
            _ => Err(DeploymentError::Member(format!(
                "{} is damaged",
                self.public().display()
            ))),
        }
    }
}

/// Creates a deployment in `dir`: CA, server certificate, store, and the first admin with its
/// profile. Refuses a dir that holds a deployment, or anything but the operator's settings file.
///
/// All or nothing: a marker file is written (and synced) before any of the deployment and
/// removed after all of it, so a crash at any point leaves a dir that no command takes for a
/// deployment. The next `init` (or, for one it began, the next first start) removes what the
/// cut-off one made, keeping the operator's settings file and the master key, and starts over.
/// One init runs at a time in a dir: a second one at once is refused, so it can never clear a
/// deployment the first has just completed.
pub fn init(
    dir: &Path,
    options: &InitOptions,
    master: &crate::seal::MasterKey,
) -> Result<Initialised, DeploymentError> {
    let layout = Layout::new(dir);
    if options.hosts.is_empty() {
        return Err(DeploymentError::Member(
            "at least one --host is needed".into(),
        ));
    }
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let _one_at_a_time = lock(dir)?;
    if layout.check_ready_for_init()?.is_some() {
        tracing::warn!(data = %dir.display(), "an earlier init was cut off; starting it over");
        clear_leftovers(&layout)?;
    }
    write_public(&layout.init_marker(), &options.by.marker_text())?;
    create_private_dir(&dir.join("pki"))?;
    create_private_dir(&layout.profiles())?;
    let ca = Ca::generate(
        &options.name,
        Validity::days_from_now(escape_certs::CA_DAYS),
    )?;
    let server = ca.issue_server(
        &options.hosts,
        Validity::days_from_now(escape_certs::SERVER_DAYS),
    )?;
    write_private(&layout.server_key(), &server.key_pem)?;
    write_public(&layout.server_cert(), &server.cert_pem)?;
    write_public(
        &layout.public(),
        &format!("{}\n{}\n", options.public_address, options.hosts[0]),
    )?;
    let store = crate::seal::open(&layout.store(), master)?;
    let registry = Registry::new(store.clone());
    let mut admin = Member::new(new_member_id(), "admin");
    admin.admin = true;
    admin.attributes = Attributes {
        organisation: options.name.clone(),
        role: "admin".into(),
        vetting: "founding".into(),
        ..Attributes::default()
    };
    write_private(&layout.ca_key(), ca.key_pem())?;
    write_public(&layout.ca_cert(), ca.cert_pem())?;
    let admin_profile = add_member_with(&layout, &ca, &registry, admin.clone(), "admin")?;
    store.flush()?;
    if let Some(settings) = &options.settings {
        write_settings(&dir.join(crate::config::CONFIG_FILE), settings)?;
    }
    // The folders made above (pki, profiles, the store's) are names in the data dir, and the
    // data dir a name in its parent: all must be on disk before the marker's removal is.
    sync_dir(dir).map_err(io_err(dir))?;
    crate::disk::sync_parent(dir).map_err(io_err(dir))?;
    let marker = layout.init_marker();
    fs::remove_file(&marker).map_err(io_err(&marker))?;
    sync_dir(dir).map_err(io_err(dir))?;
    Ok(Initialised {
        admin,
        admin_profile,
    })
}

/// An exclusive lock on the data dir itself, held while init runs; refused, not waited for.
fn lock(dir: &Path) -> Result<fs::File, DeploymentError> {
    let handle = fs::File::open(dir).map_err(io_err(dir))?;
    match handle.try_lock() {
        Ok(()) => Ok(handle),
        Err(fs::TryLockError::WouldBlock) => Err(DeploymentError::InitRunning(dir.to_path_buf())),
        Err(fs::TryLockError::Error(e)) => Err(io_err(dir)(e)),
    }
}

/// Removes what a cut-off init made in the data dir. The operator's settings file stays, and so
/// does the master key (outside the data dir): the next init seals the new store with it.
fn clear_leftovers(layout: &Layout) -> Result<(), DeploymentError> {
    for folder in [layout.root.join("pki"), layout.profiles(), layout.store()] {
        match fs::remove_dir_all(&folder) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&folder)(e)),
        }
    }
    Ok(())
}

/// A fresh member id.
pub fn new_member_id() -> MemberId {
    // A UUID's text always parses as a member id.
    MemberId::parse(&uuid::Uuid::new_v4().to_string()).unwrap_or_else(|_| unreachable!())
}

/// Registers `member` and writes its profile as `<profiles>/<file_stem>.escape-profile`.
pub fn add_member_with(
    layout: &Layout,
    ca: &Ca,
    registry: &Registry,
    mut member: Member,
    file_stem: &str,
) -> Result<PathBuf, DeploymentError> {
    if file_stem.is_empty()
        || !file_stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(DeploymentError::Member(format!(
            "profile name {file_stem:?} must be letters, digits, '-' or '_'"
        )));
    }
    let path = layout
        .profiles()
        .join(format!("{file_stem}.{PROFILE_EXTENSION}"));
    if path.exists() {
        return Err(DeploymentError::Member(format!(
            "{} exists; choose another name (it holds someone's key)",
            path.display()
        )));
    }
    // The member's file key: made here because an operator-registered member did not enroll
    // with a key of its own. It travels only inside the (0600) profile bundle.
    let age_identity = age::x25519::Identity::generate();
    member.age_recipient = Some(age_identity.to_public().to_string());
    let (mut bundle, serial, not_after) = issue_profile(layout, ca, &member, file_stem)?;
    bundle.age_identity =
        Some(age::secrecy::ExposeSecret::expose_secret(&age_identity.to_string()).to_owned());
    // Registered by the operator at the console: the member's own id stands for "by".
    registry.create(
        &member,
        &member.id,
        "registered offline by the deployment operator",
    )?;
    crate::pki::record_issued(registry.store(), &member.id, &serial, not_after)?;
    let json = serde_json::to_string_pretty(&bundle)
        .map_err(|e| DeploymentError::Member(e.to_string()))?;
    write_private(&path, &json)?;
    Ok(path)
}

/// Issues a certificate for `member` and wraps it in a profile bundle; also returns the
/// certificate's serial and expiry for the record of issued certificates.
pub fn issue_profile(
    layout: &Layout,
    ca: &Ca,
    member: &Member,
    name: &str,
) -> Result<(ProfileBundle, String, time::OffsetDateTime), DeploymentError> {
    let issued = ca.issue_member(
        &member.id,
        &member.name,
        Validity::days_from_now(escape_certs::MEMBER_DAYS),
    )?;
    let (server, server_name) = layout.public_address()?;
    let bundle = ProfileBundle {
        format: PROFILE_FORMAT,
        name: name.to_owned(),
        member_id: member.id.clone(),
        server,
        server_name,
        ca_pem: ca.cert_pem().to_owned(),
        cert_pem: issued.cert_pem,
        key_pem: issued.key_pem,
        age_identity: None,
    };
    Ok((bundle, issued.serial, issued.not_after))
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DeploymentError + '_ {
    move |source| DeploymentError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn create_private_dir(path: &Path) -> Result<(), DeploymentError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path).map_err(io_err(path))
}

/// Writes a secret: created with mode 0600 from the start, never world-readable for an instant.
pub fn write_private(path: &Path, contents: &str) -> Result<(), DeploymentError> {
    write_private_bytes(path, contents.as_bytes())
}

/// Writes a secret atomically: a 0600 temporary file beside `path`, synced, then renamed over
/// it, so a crash leaves either the old secret or the new one, never half of one.
pub fn write_private_bytes(path: &Path, contents: &[u8]) -> Result<(), DeploymentError> {
    write_atomically(path, contents, 0o600)
}

/// Writes a certificate or an address the same way, readable by all: an empty `ca.pem` left by
/// a power cut would keep the server from starting, and a half-written marker would be none.
pub fn write_public(path: &Path, contents: &str) -> Result<(), DeploymentError> {
    write_atomically(path, contents.as_bytes(), 0o644)
}

/// Writes an operator's settings file (`escape.toml`) the same way, keeping the mode the
/// operator gave it (readable by all when it is new): rewritten in place, a power cut could
/// leave it empty or half written, and the server would start on other settings than the
/// operator's, or not at all. A symbolic link stays one: the file it points to is replaced.
pub fn write_settings(path: &Path, contents: &str) -> Result<(), DeploymentError> {
    let is_link = fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    let resolved;
    let path = if is_link {
        resolved = fs::canonicalize(path).map_err(io_err(path))?;
        resolved.as_path()
    } else {
        path
    };
    let mode = match fs::metadata(path) {
        #[cfg(unix)]
        Ok(metadata) => std::os::unix::fs::PermissionsExt::mode(&metadata.permissions()) & 0o7777,
        #[cfg(not(unix))]
        Ok(_) => 0o644,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0o644,
        Err(e) => return Err(io_err(path)(e)),
    };
    write_atomically(path, contents.as_bytes(), mode)
}

#[cfg_attr(not(unix), allow(unused_variables))]
fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<(), DeploymentError> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let temporary = path.with_file_name(name);
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    let mut file = options.open(&temporary).map_err(io_err(&temporary))?;
    // An existing file keeps its old mode on open: set it again.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io_err(&temporary))?;
    }
    file.write_all(contents).map_err(io_err(&temporary))?;
    file.sync_all().map_err(io_err(&temporary))?;
    fs::rename(&temporary, path).map_err(io_err(path))?;
    // The rename is durable only once the directory is: a key file that vanished after a power
    // cut could leave data wrapped to a key nobody has.
    crate::disk::sync_parent(path).map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).expect("stat").permissions().mode() & 0o777
    }

    #[cfg(unix)]
    #[test]
    fn settings_are_replaced_whole_and_keep_the_operators_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(crate::config::CONFIG_FILE);

        write_settings(&path, "listen = \"127.0.0.1:9443\"\n").expect("new file");
        assert_eq!(mode(&path), 0o644, "a new settings file is readable by all");

        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
        write_settings(&path, "listen = \"127.0.0.1:9444\"\n").expect("rewrite");
        assert_eq!(
            fs::read_to_string(&path).expect("read"),
            "listen = \"127.0.0.1:9444\"\n"
        );
        assert_eq!(mode(&path), 0o600, "the operator's mode is kept");
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("list")
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        assert_eq!(
            names,
            [crate::config::CONFIG_FILE],
            "no temporary file is left"
        );

        // An operator's link to a settings file kept elsewhere stays a link.
        let elsewhere = dir.path().join("kept-elsewhere.toml");
        fs::rename(&path, &elsewhere).expect("move");
        std::os::unix::fs::symlink(&elsewhere, &path).expect("link");
        write_settings(&path, "listen = \"127.0.0.1:9445\"\n").expect("through the link");
        assert!(
            fs::symlink_metadata(&path)
                .expect("stat")
                .file_type()
                .is_symlink()
        );
        assert_eq!(
            fs::read_to_string(&elsewhere).expect("read"),
            "listen = \"127.0.0.1:9445\"\n"
        );
        assert_eq!(mode(&elsewhere), 0o600);
    }

    fn master_key(dir: &Path) -> crate::seal::MasterKey {
        crate::seal::MasterKey::load_or_create(&crate::seal::MasterKeyOptions {
            path: dir.join("master-key"),
            passphrase: None,
        })
        .expect("master key")
        .0
    }

    #[test]
    fn an_init_that_stopped_partway_is_no_deployment_and_the_next_one_starts_over() {
        let keys = tempfile::tempdir().expect("tempdir");
        let master = master_key(keys.path());
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = Layout::new(dir.path());
        fs::write(dir.path().join(crate::config::CONFIG_FILE), "# mine\n").expect("settings");

        // Stops after the marker and the first folders: the host is no name a certificate takes.
        let bad = InitOptions {
            hosts: vec!["not a host name!".into()],
            ..InitOptions::default()
        };
        assert!(matches!(
            init(dir.path(), &bad, &master),
            Err(DeploymentError::Cert(_))
        ));
        assert!(dir.path().join("pki").exists(), "it had begun");
        assert!(!layout.is_initialised());
        assert_eq!(layout.interrupted_init(), Some(InitBy::Operator));
        assert!(matches!(
            layout.ca(),
            Err(DeploymentError::NotInitialised(_))
        ));

        // While another init holds the dir, a second one is refused and clears nothing.
        let held = lock(dir.path()).expect("lock");
        assert!(matches!(
            init(dir.path(), &InitOptions::default(), &master),
            Err(DeploymentError::InitRunning(_))
        ));
        assert!(dir.path().join("pki").exists());
        drop(held);

        let done = init(dir.path(), &InitOptions::default(), &master).expect("starts over");
        assert!(layout.is_initialised());
        assert_eq!(layout.interrupted_init(), None);
        assert!(done.admin_profile.exists());
        assert_eq!(
            fs::read_to_string(dir.path().join(crate::config::CONFIG_FILE)).expect("read"),
            "# mine\n",
            "the operator's settings are kept"
        );
        assert!(matches!(
            init(dir.path(), &InitOptions::default(), &master),
            Err(DeploymentError::AlreadyInitialised(_))
        ));
    }
}
