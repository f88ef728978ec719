//! The `escape-server` binary as a child process: started in a folder on an ephemeral port,
//! stopped with SIGTERM, or killed.
// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running server, killed when dropped so that a failing test leaves no process behind.
pub struct ServerProcess(pub Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Writes `escape.toml` into `cwd/escape-data` before the first start: the enrollment listener
/// on an ephemeral port (tests never take fixed ports), plus `extra` settings.
pub fn configure(cwd: &std::path::Path, extra: &str) {
    let data = cwd.join("escape-data");
    std::fs::create_dir_all(&data).expect("data dir");
    std::fs::write(
        data.join("escape.toml"),
        format!("[vetting]\nenroll_listen = \"127.0.0.1:0\"\n\n{extra}"),
    )
    .expect("escape.toml");
}

/// Starts the binary with no data flag in `cwd` (first start: a new deployment).
pub fn start(cwd: &std::path::Path) -> (ServerProcess, String) {
    if !cwd.join("escape-data").exists() {
        configure(cwd, "");
    }
    start_on(cwd, "127.0.0.1:0")
}

/// Starts the binary in `cwd` listening on `listen`; a port just freed is retried for a while.
pub fn start_on(cwd: &std::path::Path, listen: &str) -> (ServerProcess, String) {
    for _ in 0..20 {
        if let Some(started) = try_start(cwd, listen) {
            return started;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("escape-server did not start listening on {listen}");
}

/// The binary run in `cwd` on its defaults there: none of the caller's environment chooses
/// another data dir or master key.
pub fn escape_server(cwd: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_escape-server"));
    command
        .current_dir(cwd)
        .env_remove("ESCAPE_DATA")
        .env_remove("ESCAPE_MASTER_KEY")
        .env_remove("ESCAPE_MASTER_PASSPHRASE");
    command
}

fn try_start(cwd: &std::path::Path, listen: &str) -> Option<(ServerProcess, String)> {
    let mut child = escape_server(cwd)
        .env("ESCAPE_LISTEN", listen)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn escape-server");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    loop {
        let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) else {
            // Exited (the port was still taken) or silent: not started.
            let _ = child.kill();
            let _ = child.wait();
            return None;
        };
        if let Some(rest) = line.strip_prefix("escape-server listening on ") {
            let addr = rest.split_whitespace().next().expect("address").to_owned();
            return Some((ServerProcess(child), addr));
        }
    }
}

pub fn terminate(server: &mut ServerProcess) -> std::process::ExitStatus {
    let child = &mut server.0;
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    for _ in 0..200 {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("escape-server did not stop on SIGTERM");
}
