//! OpenID providers for the tests, run with Node.js on 127.0.0.1: the real `oidc-provider`
//! package and a misbehaving provider (`tests/oidc/*.mjs`). Their packages are installed from
//! the committed lock file by `tests/oidc/install.sh` the first time a test needs them.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

fn oidc_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("oidc")
}

static INSTALL: Mutex<bool> = Mutex::new(false);

/// Installs the Node packages once per test process (tests run in parallel; one installs).
fn ensure_installed() {
    let mut done = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    if *done || oidc_dir().join("node_modules/oidc-provider").exists() {
        *done = true;
        return;
    }
    let status = Command::new("bash")
        .arg(oidc_dir().join("install.sh"))
        .status()
        .expect("run tests/oidc/install.sh (needs node and npm)");
    assert!(status.success(), "tests/oidc/install.sh failed");
    *done = true;
}

/// A provider process; killed when dropped.
#[derive(Debug)]
pub struct IdentityProvider {
    child: Child,
    /// The issuer (real provider) or the base URL under which each mode is an issuer (rogue).
    pub url: String,
}

impl Drop for IdentityProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(script: &str, env: &[(&str, &str)]) -> IdentityProvider {
    ensure_installed();
    let mut child = Command::new("node")
        .arg(oidc_dir().join(script))
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start node");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("{script} did not start"));
    let url = line
        .strip_prefix("listening ")
        .unwrap_or_else(|| panic!("{script} printed {line:?}"))
        .to_owned();
    IdentityProvider { child, url }
}

/// The real provider with one client and one account.
pub fn real(
    redirect_uri: &str,
    client_id: &str,
    client_secret: &str,
    email: &str,
    name: &str,
) -> IdentityProvider {
    start(
        "provider.mjs",
        &[
            ("REDIRECT_URI", redirect_uri),
            ("CLIENT_ID", client_id),
            ("CLIENT_SECRET", client_secret),
            ("ACCOUNT_ID", "test-account"),
            ("ACCOUNT_EMAIL", email),
            ("ACCOUNT_NAME", name),
        ],
    )
}

/// The misbehaving provider; its issuers are `<url>/<mode>`.
pub fn rogue() -> IdentityProvider {
    start("rogue.mjs", &[])
}

/// Plays the applicant's browser: follows redirects from `start` (keeping cookies) until one
/// points under `until`, and returns that URL without visiting it.
pub async fn browse(start: &str, until: &str) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http");
    let mut cookies: Vec<(String, String)> = Vec::new();
    let mut url = reqwest::Url::parse(start).expect("start URL");
    for _ in 0..20 {
        let cookie = cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let response = http
            .get(url.clone())
            .header("cookie", cookie)
            .send()
            .await
            .expect("provider answers");
        for set in response.headers().get_all("set-cookie") {
            let Some((name, rest)) = set.to_str().unwrap_or_default().split_once('=') else {
                continue;
            };
            let value = rest.split(';').next().unwrap_or_default().to_owned();
            cookies.retain(|(k, _)| k != name);
            if !value.is_empty() {
                cookies.push((name.to_owned(), value));
            }
        }
        let status = response.status();
        let Some(location) = response
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
        else {
            let body = response.text().await.unwrap_or_default();
            panic!("the provider stopped at {url} with {status}: {body}");
        };
        let next = url.join(location).expect("location");
        if next.as_str().starts_with(until) {
            return next.to_string();
        }
        url = next;
    }
    panic!("too many redirects");
}
