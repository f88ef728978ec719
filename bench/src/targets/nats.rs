//! nats-server as a peer: TLS with client certificates verified, no per-message check. It is the
//! fan-out ceiling: what a broker does when it checks nothing once the connection is up.
//!
//! NATS speaks first in plain text (its INFO line), then the client starts TLS on the same
//! connection; after that CONNECT, SUB and PUB are text lines and MSG carries each delivery.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::process::{self, Guard};
use crate::pki::PeerPki;

type Stream = TlsStream<TcpStream>;

pub fn start(dir: &Path, pki: &PeerPki) -> anyhow::Result<(Guard, SocketAddr)> {
    let config = |port: u16| {
        format!(
            "listen: \"127.0.0.1:{port}\"\nmax_connections: 1000000\n\
             tls {{\n  cert_file: \"{cert}\"\n  key_file: \"{key}\"\n  ca_file: \"{ca}\"\n  verify: true\n  timeout: 5\n}}\n",
            cert = pki.server_cert.display(),
            key = pki.server_key.display(),
            ca = pki.ca.display(),
        )
    };
    process::Daemon {
        program: "nats-server",
        name: "nats",
        config: &config,
        args: &|conf| vec!["-c".into(), conf.into()],
    }
    .start(dir)
}

fn subject(room: usize) -> String {
    format!("rooms.{room}")
}

/// Reads the plain-text INFO line one byte at a time, so nothing of the TLS handshake that
/// follows is consumed.
async fn read_info(tcp: &mut TcpStream) -> anyhow::Result<()> {
    let mut line = Vec::new();
    loop {
        let byte = tcp.read_u8().await?;
        line.push(byte);
        if byte == b'\n' {
            break;
        }
        if line.len() > 64 * 1024 {
            bail!("INFO line too long");
        }
    }
    if !line.starts_with(b"INFO ") {
        bail!("expected INFO, got {}", String::from_utf8_lossy(&line));
    }
    Ok(())
}

async fn session(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
) -> anyhow::Result<(BufReader<ReadHalf<Stream>>, WriteHalf<Stream>)> {
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    read_info(&mut tcp).await?;
    let stream = super::tls::over(tcp, tls).await?;
    let (read, mut write) = tokio::io::split(stream);
    let mut reader = BufReader::new(read);
    write
        .write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"tls_required\":true,\"name\":\"escape-load\"}\r\nPING\r\n")
        .await?;
    write.flush().await?;
    expect_pong(&mut reader).await?;
    Ok((reader, write))
}

async fn expect_pong(reader: &mut BufReader<ReadHalf<Stream>>) -> anyhow::Result<()> {
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            bail!("closed before PONG");
        }
        match line.trim_end() {
            "PONG" => return Ok(()),
            "+OK" => {}
            other if other.starts_with("INFO") => {}
            other => bail!("expected PONG, got {other}"),
        }
    }
}

#[derive(Debug)]
pub struct Sub {
    reader: BufReader<ReadHalf<Stream>>,
    write: WriteHalf<Stream>,
}

pub async fn subscriber(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    room: usize,
) -> anyhow::Result<Sub> {
    let (mut reader, mut write) = session(addr, tls).await?;
    // The PING after SUB returns once the server has processed the subscription.
    write
        .write_all(format!("SUB {} 1\r\nPING\r\n", subject(room)).as_bytes())
        .await?;
    write.flush().await?;
    expect_pong(&mut reader).await?;
    Ok(Sub { reader, write })
}

impl Sub {
    pub async fn run(mut self, mut on: impl FnMut(&[u8])) -> anyhow::Result<()> {
        let mut line = String::new();
        let mut payload = Vec::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            if let Some(rest) = line.strip_prefix("MSG ") {
                let size: usize = rest
                    .split_whitespace()
                    .last()
                    .and_then(|n| n.parse().ok())
                    .context("MSG without a size")?;
                payload.resize(size + 2, 0);
                self.reader.read_exact(&mut payload).await?;
                on(&payload[..size]);
            } else if line.starts_with("PING") {
                self.write.write_all(b"PONG\r\n").await?;
                self.write.flush().await?;
            } else if line.starts_with("-ERR") {
                bail!("server error: {}", line.trim_end());
            }
        }
    }
}

#[derive(Debug)]
pub struct Pub {
    _reader: BufReader<ReadHalf<Stream>>,
    write: WriteHalf<Stream>,
    subject: String,
}

pub async fn publisher(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    room: usize,
) -> anyhow::Result<Pub> {
    let (reader, write) = session(addr, tls).await?;
    Ok(Pub {
        _reader: reader,
        write,
        subject: subject(room),
    })
}

impl Pub {
    pub async fn publish(&mut self, payload: &[u8]) -> anyhow::Result<()> {
        let mut frame = format!("PUB {} {}\r\n", self.subject, payload.len()).into_bytes();
        frame.extend_from_slice(payload);
        frame.extend_from_slice(b"\r\n");
        self.write.write_all(&frame).await?;
        self.write.flush().await?;
        Ok(())
    }
}
