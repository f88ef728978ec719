//! The `escape-server` binary as an operator runs it: the embedded default creates a deployment
//! in ./escape-data on first start, serves mutual TLS, stops cleanly on SIGTERM, and keeps its
//! data for the next start.

mod common;

use std::sync::Arc;

use common::{configure, escape_server, start, terminate};

use escape_proto::ProfileBundle;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET /v1/me` over mutual TLS with the admin profile; returns the HTTP status line and body.
async fn whoami(addr: &str, profile: &ProfileBundle) -> (String, String) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(profile.ca_pem.as_bytes()).expect("ca"))
        .expect("root");
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![CertificateDer::from_pem_slice(profile.cert_pem.as_bytes()).expect("cert")],
            PrivateKeyDer::from_pem_slice(profile.key_pem.as_bytes()).expect("key"),
        )
        .expect("config");
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from(profile.server_name.clone()).expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("handshake");
    tls.write_all(b"GET /v1/me HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut response = String::new();
    tls.read_to_string(&mut response).await.expect("read");
    let status = response.lines().next().unwrap_or_default().to_owned();
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    (status, body)
}

#[tokio::test]
async fn the_embedded_default_creates_serves_stops_and_restarts() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let (mut child, addr) = start(cwd.path());
    let profile_path = cwd.path().join("escape-data/profiles/admin.escape-profile");
    let profile: ProfileBundle = serde_json::from_str(
        &std::fs::read_to_string(&profile_path).expect("admin profile written"),
    )
    .expect("profile parses");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&profile_path)
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the profile holds a private key: owner-only"
        );
        let mode = std::fs::metadata(cwd.path().join("escape-data/pki/ca.key"))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the CA key is owner-only");
        // Written like the keys (a synced temporary file renamed into place), readable by all.
        let mode = std::fs::metadata(cwd.path().join("escape-data/pki/ca.pem"))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644, "the CA certificate is public");
        let left: Vec<_> = std::fs::read_dir(cwd.path().join("escape-data/pki"))
            .expect("pki")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "temporary files left: {left:?}");
    }
    let (status, body) = whoami(&addr, &profile).await;
    assert!(status.contains("200"), "{status}");
    assert!(body.contains(profile.member_id.as_str()), "{body}");
    assert!(terminate(&mut child).success(), "clean exit on SIGTERM");

    // The second start finds the deployment and the same admin still works.
    let (mut child, addr) = start(cwd.path());
    let (status, _) = whoami(&addr, &profile).await;
    assert!(status.contains("200"), "{status}");
    assert!(terminate(&mut child).success());

    // Offline, the audit log of both runs verifies.
    let (verified, out) = offline(cwd.path(), &["audit", "verify"]);
    assert!(verified, "{out}");
    assert!(
        out.contains("intact") && out.contains("signed checkpoints"),
        "{out}"
    );

    // The master key sits beside the data dir, owner-only; rotating it offline re-wraps the
    // data keys, after which the old key opens nothing and the new one serves as before.
    let key = cwd.path().join("escape-data.master-key");
    let old_key = std::fs::read(&key).expect("master key beside the data dir");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).expect("stat").permissions().mode();
        assert_eq!(mode & 0o077, 0, "the master key is owner-only");
    }
    let (rotated, out) = offline(cwd.path(), &["keys", "rotate"]);
    assert!(rotated, "{out}");
    assert!(out.contains("data keys re-wrapped"), "{out}");
    assert_ne!(std::fs::read(&key).expect("new key"), old_key);
    let old_path = cwd.path().join("old.master-key");
    std::fs::write(&old_path, &old_key).expect("keep old key");
    let (opened, out) = offline(
        cwd.path(),
        &["audit", "verify", "--master-key", "old.master-key"],
    );
    assert!(!opened, "the old master key must not open the store: {out}");
    assert!(out.contains("do not open"), "{out}");
    let (mut child, addr) = start(cwd.path());
    let (status, _) = whoami(&addr, &profile).await;
    assert!(status.contains("200"), "{status}");
    assert!(terminate(&mut child).success());
}

/// Runs an offline command in `cwd`; returns whether it succeeded and what it printed.
fn offline(cwd: &std::path::Path, args: &[&str]) -> (bool, String) {
    let output = escape_server(cwd).args(args).output().expect("run");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), printed)
}

#[test]
fn init_refuses_to_overwrite_a_deployment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("d");
    let run = || {
        escape_server(dir.path())
            .args(["init", "--data"])
            .arg(&data)
            .args(["--host", "escape.example.org"])
            .output()
            .expect("run")
    };
    let first = run();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let second = run();
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("already holds a deployment"));
}

#[test]
fn init_adds_the_listen_address_to_the_operators_settings_or_stops_before_creating_anything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let init = |data: &std::path::Path| {
        offline(
            dir.path(),
            &[
                "init",
                "--data",
                data.to_str().expect("path"),
                "--listen",
                "127.0.0.1:9555",
            ],
        )
    };

    // What the operator wrote before the first start is kept, after the address.
    let data = dir.path().join("kept");
    std::fs::create_dir(&data).expect("dir");
    std::fs::write(
        data.join("escape.toml"),
        "[limits]\nmax_frame_bytes = 65536\n",
    )
    .expect("write");
    let (created, out) = init(&data);
    assert!(created, "{out}");
    assert_eq!(
        std::fs::read_to_string(data.join("escape.toml")).expect("read"),
        "listen = \"127.0.0.1:9555\"\n[limits]\nmax_frame_bytes = 65536\n"
    );

    // A settings file that cannot be read (here a folder) stops init before it creates the
    // master key or any of the deployment.
    let data = dir.path().join("unreadable");
    std::fs::create_dir_all(data.join("escape.toml")).expect("dir");
    let (created, out) = init(&data);
    assert!(!created, "{out}");
    assert!(out.contains("escape.toml"), "{out}");
    let names: Vec<_> = std::fs::read_dir(&data)
        .expect("list")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, ["escape.toml"], "nothing created beside it");
    assert!(!dir.path().join("unreadable.master-key").exists());
}

/// Starts the binary in `cwd` expecting it to refuse; returns what it printed.
fn refused_start(cwd: &std::path::Path) -> String {
    let mut child = escape_server(cwd)
        .env("ESCAPE_LISTEN", "127.0.0.1:0")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let started = std::time::Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > std::time::Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("escape-server started where it should have refused");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let output = child.wait_with_output().expect("output");
    assert!(!output.status.success());
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn admin_profile(cwd: &std::path::Path) -> ProfileBundle {
    let path = cwd.join("escape-data/profiles/admin.escape-profile");
    serde_json::from_str(&std::fs::read_to_string(path).expect("admin profile")).expect("parses")
}

#[tokio::test]
async fn a_first_start_cut_off_midway_is_started_over_and_other_leftovers_are_refused() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let data = cwd.path().join("escape-data");
    configure(cwd.path(), "");
    let settings = std::fs::read_to_string(data.join("escape.toml")).expect("settings");
    // What an init cut off early leaves: its first file, and the marker it wrote before it.
    std::fs::create_dir(data.join("pki")).expect("pki");
    std::fs::write(data.join("pki/server.key"), "half a key").expect("leftover");

    // Without the marker, files the server did not make are never taken over or removed.
    let out = refused_start(cwd.path());
    assert!(out.contains("holds no deployment"), "{out}");
    assert!(data.join("pki/server.key").exists());

    std::fs::write(data.join("init.incomplete"), "first start\n").expect("marker");
    let (mut child, addr) = start(cwd.path());
    let first = admin_profile(cwd.path());
    let (status, _) = whoami(&addr, &first).await;
    assert!(status.contains("200"), "{status}");
    assert!(
        !data.join("init.incomplete").exists(),
        "complete: marker gone"
    );
    let kept = std::fs::read_to_string(data.join("escape.toml")).expect("settings");
    assert!(
        kept.ends_with(&settings),
        "the operator's settings are kept: {kept}"
    );
    assert!(terminate(&mut child).success());

    // Cut off late: everything made but the marker not yet removed. That deployment was never
    // complete, so it is made anew: a new CA and admin, and the earlier profile is no longer one.
    std::fs::write(data.join("init.incomplete"), "first start\n").expect("marker");
    let (mut child, addr) = start(cwd.path());
    let second = admin_profile(cwd.path());
    assert_ne!(second.member_id, first.member_id);
    assert_ne!(second.ca_pem, first.ca_pem);
    let (status, body) = whoami(&addr, &second).await;
    assert!(status.contains("200"), "{status}");
    assert!(body.contains(second.member_id.as_str()), "{body}");
    assert!(terminate(&mut child).success());
}

#[test]
fn an_init_cut_off_is_started_over_by_init_and_never_redone_by_a_start_with_other_options() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("escape-data");
    let init = || {
        offline(
            dir.path(),
            &[
                "init",
                "--data",
                data.to_str().expect("path"),
                "--host",
                "escape.example.org",
            ],
        )
    };
    // A crash just before init removed its marker leaves all of the deployment and the marker:
    // simulated by an init that completed, with the marker put back.
    let (created, out) = init();
    assert!(created, "{out}");
    let first = std::fs::read_to_string(data.join("pki/ca.pem")).expect("ca");
    std::fs::write(data.join("init.incomplete"), "init\n").expect("marker");

    // Nothing takes it for a deployment, and a start does not redo the operator's init with its
    // own defaults (the certificate would name localhost, not escape.example.org).
    let (ok, out) = offline(dir.path(), &["audit", "verify"]);
    assert!(!ok, "{out}");
    assert!(out.contains("holds no deployment"), "{out}");
    let out = refused_start(dir.path());
    assert!(out.contains("was cut off"), "{out}");
    assert!(out.contains("run it again"), "{out}");
    assert!(data.join("init.incomplete").exists());

    let (created, out) = init();
    assert!(created, "{out}");
    assert!(out.contains("an earlier init was cut off"), "{out}");
    assert!(!data.join("init.incomplete").exists());
    let second = std::fs::read_to_string(data.join("pki/ca.pem")).expect("ca");
    assert_ne!(first, second, "a new CA");
    let (verified, out) = offline(dir.path(), &["audit", "verify"]);
    assert!(verified, "{out}");

    // Files init did not make, with no marker, are refused by init too, and kept.
    let other = dir.path().join("other");
    std::fs::create_dir_all(other.join("store")).expect("dir");
    std::fs::write(other.join("store/notes.txt"), "mine").expect("file");
    let (created, out) = offline(
        dir.path(),
        &["init", "--data", other.to_str().expect("path")],
    );
    assert!(!created, "{out}");
    assert!(out.contains("is not empty"), "{out}");
    assert!(other.join("store/notes.txt").exists());
    assert!(!dir.path().join("other.master-key").exists(), "no key made");
}
