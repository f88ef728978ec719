//! mosquitto as a peer: MQTT 3.1.1 over mutual TLS, the client's certificate name used as its
//! user name, and an ACL file giving each room's user that room's topic only, so every publish
//! and every delivery passes an access check (the closest equivalent of Escape's gate).
//!
//! The client speaks the few packets the workload needs (CONNECT, SUBSCRIBE, PUBLISH at QoS 0),
//! written here so that the load generator's own cost is the same kind of work for every system.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::bail;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::process::{self, Guard};
use crate::pki::PeerPki;

type Stream = TlsStream<TcpStream>;

pub fn start(dir: &Path, pki: &PeerPki, rooms: usize) -> anyhow::Result<(Guard, SocketAddr)> {
    let mut acl = String::new();
    for room in 0..rooms {
        acl.push_str(&format!(
            "user room-{room}\ntopic readwrite rooms/{room}\n\n"
        ));
    }
    let acl_file = dir.join("acl");
    std::fs::write(&acl_file, acl)?;
    let config = |port: u16| {
        format!(
            "per_listener_settings false\nuser root\nallow_anonymous false\nacl_file {acl}\npersistence false\n\
             log_dest stderr\nlog_type error\nlog_type warning\nset_tcp_nodelay true\nmax_connections -1\n\
             listener {port} 127.0.0.1\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\n\
             require_certificate true\nuse_identity_as_username true\n",
            acl = acl_file.display(),
            ca = pki.ca.display(),
            cert = pki.server_cert.display(),
            key = pki.server_key.display(),
        )
    };
    process::Daemon {
        program: "mosquitto",
        name: "mosquitto",
        config: &config,
        args: &|conf| vec!["-c".into(), conf.into()],
    }
    .start(dir)
}

fn topic(room: usize) -> String {
    format!("rooms/{room}")
}

fn remaining_length(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            return;
        }
    }
}

fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(first);
    remaining_length(body.len(), &mut out);
    out.extend_from_slice(body);
    out
}

fn string(s: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Reads one packet: (first byte, body).
async fn read_packet(
    reader: &mut BufReader<ReadHalf<Stream>>,
    body: &mut Vec<u8>,
) -> anyhow::Result<Option<u8>> {
    let first = match reader.read_u8().await {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let (mut length, mut shift) = (0usize, 0);
    loop {
        let byte = reader.read_u8().await?;
        length |= usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 21 {
            bail!("malformed remaining length");
        }
    }
    body.resize(length, 0);
    reader.read_exact(body).await?;
    Ok(Some(first))
}

async fn session(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    client_id: &str,
) -> anyhow::Result<(BufReader<ReadHalf<Stream>>, WriteHalf<Stream>)> {
    let stream = super::tls::connect(addr, tls).await?;
    let (read, mut write) = tokio::io::split(stream);
    let mut reader = BufReader::new(read);
    // CONNECT: protocol "MQTT" level 4, clean session, no keep-alive (runs are bounded).
    let mut body = Vec::new();
    string("MQTT", &mut body);
    body.extend_from_slice(&[4, 0x02, 0, 0]);
    string(client_id, &mut body);
    write.write_all(&packet(0x10, &body)).await?;
    write.flush().await?;
    let mut answer = Vec::new();
    match read_packet(&mut reader, &mut answer).await? {
        Some(0x20) if answer.get(1) == Some(&0) => Ok((reader, write)),
        other => bail!("CONNECT refused: {other:?} {answer:?}"),
    }
}

#[derive(Debug)]
pub struct Sub {
    reader: BufReader<ReadHalf<Stream>>,
    _write: WriteHalf<Stream>,
}

pub async fn subscriber(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    room: usize,
    client_id: &str,
) -> anyhow::Result<Sub> {
    let (mut reader, mut write) = session(addr, tls, client_id).await?;
    let mut body = vec![0, 1];
    string(&topic(room), &mut body);
    body.push(0);
    write.write_all(&packet(0x82, &body)).await?;
    write.flush().await?;
    let mut answer = Vec::new();
    match read_packet(&mut reader, &mut answer).await? {
        Some(0x90) if answer.get(2).is_some_and(|code| *code != 0x80) => Ok(Sub {
            reader,
            _write: write,
        }),
        other => bail!("SUBSCRIBE refused: {other:?} {answer:?}"),
    }
}

impl Sub {
    pub async fn run(mut self, mut on: impl FnMut(&[u8])) -> anyhow::Result<()> {
        let mut body = Vec::new();
        while let Some(first) = read_packet(&mut self.reader, &mut body).await? {
            if first >> 4 == 3 {
                let topic_len = usize::from(u16::from_be_bytes([
                    body.first().copied().unwrap_or(0),
                    body.get(1).copied().unwrap_or(0),
                ]));
                on(body.get(2 + topic_len..).unwrap_or_default());
            }
        }
        Ok(())
    }
}

#[derive(Debug)]
pub struct Pub {
    _reader: BufReader<ReadHalf<Stream>>,
    write: WriteHalf<Stream>,
    topic: String,
}

pub async fn publisher(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    room: usize,
    client_id: &str,
) -> anyhow::Result<Pub> {
    let (reader, write) = session(addr, tls, client_id).await?;
    Ok(Pub {
        _reader: reader,
        write,
        topic: topic(room),
    })
}

impl Pub {
    pub async fn publish(&mut self, payload: &[u8]) -> anyhow::Result<()> {
        let mut body = Vec::with_capacity(payload.len() + self.topic.len() + 2);
        string(&self.topic, &mut body);
        body.extend_from_slice(payload);
        self.write.write_all(&packet(0x30, &body)).await?;
        self.write.flush().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_lengths_are_mqtt_varints() {
        let encode = |n| {
            let mut out = Vec::new();
            remaining_length(n, &mut out);
            out
        };
        assert_eq!(encode(0), [0]);
        assert_eq!(encode(127), [0x7f]);
        assert_eq!(encode(128), [0x80, 0x01]);
        assert_eq!(encode(16_383), [0xff, 0x7f]);
        assert_eq!(encode(2_097_152), [0x80, 0x80, 0x80, 0x01]);
    }
}
