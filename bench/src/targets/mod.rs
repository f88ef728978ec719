//! The systems under test, started from their real binaries with configurations written here,
//! and the clients the workloads drive them with. Each system has its own module; this one
//! dispatches between them so that a workload is written once for all.

pub mod escape;
pub mod mosquitto;
pub mod nats;
pub mod nginx;
pub mod process;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::pki::PeerPki;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum System {
    Escape,
    Mosquitto,
    Nats,
    Nginx,
}

impl System {
    pub fn name(self) -> &'static str {
        match self {
            Self::Escape => "escape",
            Self::Mosquitto => "mosquitto",
            Self::Nats => "nats",
            Self::Nginx => "nginx",
        }
    }

    /// The program to look for; `None` for Escape, which is built with the load generator.
    fn program(self) -> Option<&'static str> {
        match self {
            Self::Escape => None,
            Self::Mosquitto => Some("mosquitto"),
            Self::Nats => Some("nats-server"),
            Self::Nginx => Some("nginx"),
        }
    }

    /// Why this system cannot run here, if it cannot.
    pub fn missing(self) -> Option<String> {
        let program = self.program()?;
        match process::find_program(program) {
            Some(_) => None,
            None => Some(format!(
                "{program} is not installed (bench/install.sh installs it)"
            )),
        }
    }

    /// The version the installed program reports, for the results.
    pub fn version(self, server_bin: &std::path::Path) -> String {
        let args: &[&str] = match self {
            Self::Mosquitto => &["-h"],
            Self::Nginx => &["-v"],
            Self::Escape | Self::Nats => &["--version"],
        };
        let program = match self.program() {
            Some(name) => process::find_program(name).unwrap_or_else(|| name.to_owned()),
            None => server_bin.display().to_string(),
        };
        std::process::Command::new(program)
            .args(args)
            .output()
            .map(|o| {
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                );
                text.lines().next().unwrap_or_default().trim().to_owned()
            })
            .unwrap_or_else(|e| format!("unknown ({e})"))
    }
}

/// Where servers are started from.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The `escape-server` binary.
    pub server_bin: PathBuf,
    /// A folder on the disk under test: data folders and configurations go below it.
    pub work: PathBuf,
}

#[derive(Debug)]
enum Link {
    Escape(escape::Link),
    Peer(PeerPki),
}

/// A started system, stopped when dropped.
#[derive(Debug)]
pub struct Server {
    pub system: System,
    pub addr: SocketAddr,
    link: Link,
    guard: process::Guard,
    pub dir: tempfile::TempDir,
}

impl Server {
    /// Starts `system` with `rooms` rooms (topics, subjects) prepared.
    pub async fn start(system: System, setup: &Setup, rooms: usize) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&setup.work)?;
        let dir = tempfile::Builder::new()
            .prefix(system.name())
            .tempdir_in(&setup.work)?;
        let (guard, addr, link) = match system {
            System::Escape => {
                let (guard, addr, link) =
                    escape::start(&setup.server_bin, dir.path(), rooms).await?;
                (guard, addr, Link::Escape(link))
            }
            peer => {
                let pki = PeerPki::create(dir.path(), rooms.max(1))?;
                let (guard, addr) = match peer {
                    System::Mosquitto => mosquitto::start(dir.path(), &pki, rooms.max(1))?,
                    System::Nats => nats::start(dir.path(), &pki)?,
                    _ => nginx::start(dir.path(), &pki)?,
                };
                (guard, addr, Link::Peer(pki))
            }
        };
        Ok(Self {
            system,
            addr,
            link,
            guard,
            dir,
        })
    }

    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// A client of `room` following it, subscribed (confirmed by the server) when this returns.
    pub async fn subscriber(&self, room: usize, n: usize) -> anyhow::Result<Subscriber> {
        Ok(match (&self.link, self.system) {
            (Link::Escape(link), _) => {
                Subscriber::Escape(Box::new(escape::subscriber(link, room).await?))
            }
            (Link::Peer(pki), System::Mosquitto) => Subscriber::Mqtt(
                mosquitto::subscriber(self.addr, pki.client(room)?, room, &format!("s{n}")).await?,
            ),
            (Link::Peer(pki), System::Nats) => {
                Subscriber::Nats(nats::subscriber(self.addr, pki.client(room)?, room).await?)
            }
            _ => anyhow::bail!("{} has no rooms", self.system.name()),
        })
    }

    /// A client sending into `room`.
    pub async fn publisher(&self, room: usize) -> anyhow::Result<Publisher> {
        Ok(match (&self.link, self.system) {
            (Link::Escape(link), _) => Publisher::Escape(escape::publisher(link, room).await?),
            (Link::Peer(pki), System::Mosquitto) => Publisher::Mqtt(
                mosquitto::publisher(self.addr, pki.client(room)?, room, &format!("p{room}"))
                    .await?,
            ),
            (Link::Peer(pki), System::Nats) => {
                Publisher::Nats(nats::publisher(self.addr, pki.client(room)?, room).await?)
            }
            _ => anyhow::bail!("{} has no rooms", self.system.name()),
        })
    }

    /// The TLS client for full handshakes (no resumption) and the request sent after each.
    /// The status line expected back is the third element.
    #[allow(clippy::type_complexity)]
    pub fn handshake_client(
        &self,
    ) -> anyhow::Result<(Arc<rustls::ClientConfig>, &'static [u8], &'static [u8])> {
        match &self.link {
            // The member's own record: the lightest authenticated request (the listener has
            // verified the certificate, the member is looked up and the gate asked).
            Link::Escape(link) => Ok((
                link.fresh_tls.clone(),
                b"GET /v1/me HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                b"HTTP/1.1 200",
            )),
            Link::Peer(pki) => Ok((
                pki.client(0)?,
                b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                b"HTTP/1.1 204",
            )),
        }
    }

    /// The Escape deployment's API client (durable-send workload).
    pub fn escape(&self) -> anyhow::Result<&escape::Link> {
        match &self.link {
            Link::Escape(link) => Ok(link),
            Link::Peer(_) => None.context("not an Escape server"),
        }
    }
}

#[derive(Debug)]
pub enum Subscriber {
    /// Boxed: a WebSocket session is much larger than the other clients.
    Escape(Box<escape::Sub>),
    Mqtt(mosquitto::Sub),
    Nats(nats::Sub),
}

impl Subscriber {
    /// Hands every delivery (the frame as received) to `on` until the connection ends.
    pub async fn run(self, on: impl FnMut(&[u8])) -> anyhow::Result<()> {
        match self {
            Self::Escape(s) => s.run(on).await,
            Self::Mqtt(s) => s.run(on).await,
            Self::Nats(s) => s.run(on).await,
        }
    }
}

#[derive(Debug)]
pub enum Publisher {
    Escape(escape::Pub),
    Mqtt(mosquitto::Pub),
    Nats(nats::Pub),
}

impl Publisher {
    pub async fn publish(&mut self, payload: &[u8]) -> anyhow::Result<()> {
        match self {
            Self::Escape(p) => p.publish(payload).await,
            Self::Mqtt(p) => p.publish(payload).await,
            Self::Nats(p) => p.publish(payload).await,
        }
    }

    /// An error the server answered a send with (Escape acknowledges every send).
    pub fn refused(&self) -> Option<String> {
        match self {
            Self::Escape(p) => p.error(),
            _ => None,
        }
    }
}
