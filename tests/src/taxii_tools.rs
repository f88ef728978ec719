//! The reference TAXII 2.1 client (`taxii2-client`) and STIX 2.1 validator (`stix2-validator`)
//! from PyPI, in `tests/taxii/.venv`, installed by `tests/taxii/install.sh` the first time a
//! test needs them. Driven through `tests/taxii/check.py`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

fn taxii_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("taxii")
}

static INSTALL: Mutex<bool> = Mutex::new(false);

fn python() -> PathBuf {
    let mut done = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    let python = taxii_dir().join(".venv/bin/python");
    if !*done {
        let status = Command::new("bash")
            .arg(taxii_dir().join("install.sh"))
            .status()
            .expect("run tests/taxii/install.sh (needs python3)");
        assert!(status.success(), "tests/taxii/install.sh failed");
        *done = true;
    }
    python
}

/// Runs `check.py` with `args`; returns its JSON output.
pub fn check(args: &[&str]) -> serde_json::Value {
    let output = Command::new(python())
        .arg(taxii_dir().join("check.py"))
        .args(args)
        // These would make the client trust the system's roots instead of the CA it is given.
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE")
        .output()
        .expect("run check.py");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "check.py {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("check.py output {stdout}: {e}"))
}

/// The member's certificate, key and the CA as files, for the Python tools.
#[derive(Debug)]
pub struct PemFiles {
    _dir: tempfile::TempDir,
    pub ca: String,
    pub cert: String,
    pub key: String,
}

impl PemFiles {
    pub fn new(profile: &escape_client::Profile) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write pem");
            path.display().to_string()
        };
        Self {
            ca: write("ca.pem", &profile.ca_pem),
            cert: write("cert.pem", &profile.cert_pem),
            key: write("key.pem", &profile.key_pem),
            _dir: dir,
        }
    }
}

impl PemFiles {
    /// `[ca, cert, key]`, for `check.py`. Taking them through `&self` keeps the files alive as
    /// long as the caller holds this value (a closure using only the fields would not).
    pub fn paths(&self) -> [String; 3] {
        [self.ca.clone(), self.cert.clone(), self.key.clone()]
    }
}

/// Validates a bundle file with the OASIS validator.
pub fn validate(path: &Path) -> serde_json::Value {
    check(&["validate", &path.display().to_string()])
}
