//! A server under test as a child process in its own process group, stopped with everything it
//! started (nginx's workers) when dropped, so no run leaves a process behind.

use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

#[derive(Debug)]
pub struct Guard {
    child: Child,
}

impl Guard {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        // SIGTERM to the group first (nginx's master then stops its workers), then SIGKILL.
        kill("-TERM", &group);
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                kill("-KILL", &group);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        kill("-KILL", &group);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `program` in a new process group; its output goes to `log`.
pub fn spawn(program: &str, args: &[&str], cwd: &Path, log: &Path) -> anyhow::Result<Guard> {
    let out = std::fs::File::create(log).with_context(|| format!("{}", log.display()))?;
    let err = out.try_clone()?;
    let child = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    Ok(Guard { child })
}

/// Starts a prepared command in a new process group.
pub fn spawn_command(command: &mut Command) -> anyhow::Result<Guard> {
    let child = command
        .process_group(0)
        .spawn()
        .context("starting the server")?;
    Ok(Guard { child })
}

/// A loopback port free a moment ago, for servers that must be told theirs.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until `addr` accepts TCP connections, or the process exits, or 10 s pass.
pub fn wait_listening(guard: &mut Guard, addr: SocketAddr, log: &Path) -> anyhow::Result<()> {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = guard.child_mut().try_wait() {
            let output = std::fs::read_to_string(log).unwrap_or_default();
            bail!("exited with {status} before listening on {addr}: {output}");
        }
        if Instant::now() > until {
            bail!("not listening on {addr} after 10 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Where an installed program is, looking in PATH and the system folders Debian puts daemons in.
pub fn find_program(name: &str) -> Option<String> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/usr/bin", "/sbin"])
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
}

/// Signals a process group; quiet when it is already gone.
fn kill(signal: &str, group: &str) {
    let _ = Command::new("kill")
        .args([signal, "--", group])
        .stderr(Stdio::null())
        .status();
}
