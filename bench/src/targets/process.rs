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

/// A peer daemon to start: the program, the configuration it reads, how to call it.
pub struct Daemon<'a> {
    /// The installed program's name (looked up with [`find_program`]).
    pub program: &'a str,
    /// Names `NAME.conf` and `NAME.log` in the folder.
    pub name: &'a str,
    /// The configuration for a loopback port.
    pub config: &'a dyn Fn(u16) -> String,
    /// The arguments, given the configuration file's path.
    pub args: &'a dyn Fn(&str) -> Vec<String>,
}

impl std::fmt::Debug for Daemon<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("program", &self.program)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Daemon<'_> {
    /// Writes the configuration for a free port, starts the program in `dir` (its output in the
    /// log), and waits until it listens. A port taken by someone else between the probe and the
    /// daemon's bind makes the daemon exit; that is retried on another port.
    pub fn start(&self, dir: &Path) -> anyhow::Result<(Guard, SocketAddr)> {
        let program = find_program(self.program)
            .with_context(|| format!("{} is not installed", self.program))?;
        let conf = dir.join(format!("{}.conf", self.name));
        let log = dir.join(format!("{}.log", self.name));
        let conf_path = conf.to_str().context("configuration path")?;
        let mut last = None;
        for _ in 0..3 {
            let port = free_port()?;
            std::fs::write(&conf, (self.config)(port))?;
            let out = std::fs::File::create(&log)?;
            let mut command = Command::new(&program);
            command
                .args((self.args)(conf_path))
                .current_dir(dir)
                .stdin(Stdio::null())
                .stdout(out.try_clone()?)
                .stderr(out);
            let mut guard = spawn_command(&mut command)?;
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            match wait_listening(&mut guard, addr, &log) {
                Ok(()) => return Ok((guard, addr)),
                Err(e) => last = Some(e.context(format!("starting {}", self.program))),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("{} did not start", self.program)))
    }
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
