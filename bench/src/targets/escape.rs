//! Escape as a system under test: the real `escape-server` binary on a fresh deployment, limits
//! raised so that only capacity (not the per-member rate limits) bounds the load, and clients
//! speaking the real-time frames over mutual TLS.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use escape_client::{Client, Profile};
use escape_proto::room::CreateRoom;
use escape_proto::{Body, ClientFrame, ClientRequest, ProfileBundle, RoomName};
use futures_util::SinkExt;
use futures_util::stream::{SplitSink, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use super::process::{self, Guard};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Limits of the benchmark deployment: the defaults protect a shared server from one member;
/// here every client is the same member on the same address, and the point is to find capacity.
const CONFIG: &str = "[vetting]\nenroll_listen = \"127.0.0.1:0\"\n\n[limits]\n\
connections_per_member = 1000000\nconnections_per_address = 1000000\n\
handshakes_per_second_per_address = 1000000\nhandshake_burst_per_address = 1000000\n\
sends_per_second = 1000000\nsend_burst = 1000000\nframes_per_second = 1000000\n";

/// How clients reach the deployment: its admin identity (every benchmark client uses it).
#[derive(Debug)]
pub struct Link {
    pub client: Client,
    ws_url: String,
    tls: Arc<rustls::ClientConfig>,
    /// The same identity with session resumption off: every connection a full handshake.
    pub fresh_tls: Arc<rustls::ClientConfig>,
}

pub fn room_name(room: usize) -> anyhow::Result<RoomName> {
    RoomName::parse(&format!("bench-{room}")).context("room name")
}

/// Starts the server binary in `dir` (first start: a new CA and admin) and creates `rooms` rooms.
pub async fn start(
    bin: &Path,
    dir: &Path,
    rooms: usize,
) -> anyhow::Result<(Guard, SocketAddr, Link)> {
    let data = dir.join("escape-data");
    std::fs::create_dir_all(&data)?;
    std::fs::write(data.join("escape.toml"), CONFIG)?;
    let log = dir.join("escape-server.log");
    let program = bin.to_str().context("server path")?;
    let mut guard = {
        let out = std::fs::File::create(&log)?;
        let mut command = std::process::Command::new(program);
        command
            .current_dir(dir)
            .env("ESCAPE_LISTEN", "127.0.0.1:0")
            .env_remove("ESCAPE_DATA")
            .env_remove("ESCAPE_MASTER_KEY")
            .env_remove("ESCAPE_MASTER_PASSPHRASE")
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        process::spawn_command(&mut command)?
    };
    let until = Instant::now() + Duration::from_secs(30);
    let addr: SocketAddr = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(rest) = text
            .lines()
            .find_map(|l| l.strip_prefix("escape-server listening on "))
        {
            break rest
                .split_whitespace()
                .next()
                .context("address")?
                .parse()
                .context("address")?;
        }
        if let Ok(Some(status)) = guard.child_mut().try_wait() {
            bail!("escape-server exited with {status}: {text}");
        }
        if Instant::now() > until {
            bail!("escape-server did not start: {text}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let bundle: ProfileBundle = serde_json::from_str(&std::fs::read_to_string(
        data.join("profiles/admin.escape-profile"),
    )?)?;
    let mut profile = Profile::from_bundle(bundle)?;
    profile.server = addr.to_string();
    let client = Client::new(profile.clone()).await?;
    for room in 0..rooms {
        client
            .create_room_with(&CreateRoom::new(room_name(room)?, "benchmark"))
            .await
            .context("creating a room")?;
    }
    let tls = Arc::new(escape_client::tls::client_config(&profile)?);
    let mut fresh = escape_client::tls::client_config(&profile)?;
    fresh.resumption = rustls::client::Resumption::disabled();
    let ws_url = format!(
        "{}/v1/ws",
        client.base_url().replacen("https://", "wss://", 1)
    );
    let link = Link {
        client,
        ws_url,
        tls,
        fresh_tls: Arc::new(fresh),
    };
    Ok((guard, addr, link))
}

async fn connect(link: &Link) -> anyhow::Result<Ws> {
    let tcp = TcpStream::connect(link.client.addr()).await?;
    tcp.set_nodelay(true)?;
    let (ws, _) = tokio_tungstenite::client_async_tls_with_config(
        link.ws_url.as_str(),
        tcp,
        Some(escape_client::channel::websocket_config()),
        Some(Connector::Rustls(link.tls.clone())),
    )
    .await
    .context("WebSocket over mutual TLS")?;
    Ok(ws)
}

fn encode(id: u64, frame: ClientFrame) -> anyhow::Result<Message> {
    let text = serde_json::to_string(&ClientRequest::new(id.to_string(), frame))?;
    Ok(Message::Text(text.into()))
}

/// A session following one room.
#[derive(Debug)]
pub struct Sub {
    ws: Ws,
}

pub async fn subscriber(link: &Link, room: usize) -> anyhow::Result<Sub> {
    let mut ws = connect(link).await?;
    let room = room_name(room)?;
    ws.send(encode(0, ClientFrame::Subscribe { room, since: None })?)
        .await?;
    while let Some(frame) = ws.next().await {
        if let Message::Text(text) = frame? {
            if text.contains("\"type\":\"subscribed\"") {
                return Ok(Sub { ws });
            }
            if text.contains("\"type\":\"error\"") {
                bail!("subscribe refused: {}", text.as_str());
            }
        }
    }
    bail!("closed before the subscription was confirmed")
}

impl Sub {
    /// Hands every event frame to `on` until the session ends.
    pub async fn run(mut self, mut on: impl FnMut(&[u8])) -> anyhow::Result<()> {
        while let Some(frame) = self.ws.next().await {
            match frame? {
                Message::Text(text) => on(text.as_bytes()),
                Message::Close(reason) => bail!("closed by the server: {reason:?}"),
                _ => {}
            }
        }
        Ok(())
    }
}

/// What a publisher's acknowledgements said, kept by the task that reads them.
#[derive(Debug, Default)]
pub struct AckBook {
    /// Send time of every unacknowledged request, by request id.
    pending: Mutex<HashMap<u64, u64>>,
    /// Time from send to ack, in nanoseconds, of every ack.
    pub latencies: Mutex<Vec<u64>>,
    pub acks: AtomicU64,
    pub error: Mutex<Option<String>>,
    /// Woken at every ack (for senders keeping a window of requests in flight).
    pub acked: Notify,
}

impl AckBook {
    fn answered(&self, text: &str) {
        let id = text
            .split_once("\"id\":\"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .and_then(|(id, _)| id.parse::<u64>().ok());
        let sent = id.and_then(|id| self.pending.lock().ok()?.remove(&id));
        if text.contains("\"type\":\"ack\"") {
            self.acks.fetch_add(1, Ordering::Relaxed);
            if let (Some(sent), Ok(mut latencies)) = (sent, self.latencies.lock()) {
                latencies.push(crate::clock::now_ns().saturating_sub(sent));
            }
        } else if text.contains("\"type\":\"error\"")
            && let Ok(mut slot) = self.error.lock()
        {
            slot.get_or_insert_with(|| text.to_owned());
        }
        self.acked.notify_waiters();
    }
}

/// A session sending into one room; its acks are read by a task of its own.
#[derive(Debug)]
pub struct Pub {
    sink: SplitSink<Ws, Message>,
    room: RoomName,
    next: u64,
    /// Makes client message ids unique across publishers and runs (the server deduplicates them).
    prefix: String,
    pub book: Arc<AckBook>,
    /// Reads the acks; stopped with the publisher so that its session closes too.
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Pub {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

pub async fn publisher(link: &Link, room: usize) -> anyhow::Result<Pub> {
    let ws = connect(link).await?;
    let (sink, mut stream) = ws.split();
    let book = Arc::new(AckBook::default());
    let book_reader = book.clone();
    let reader = tokio::spawn(async move {
        while let Some(Ok(frame)) = stream.next().await {
            if let Message::Text(text) = frame {
                book_reader.answered(text.as_str());
            }
        }
        if let Ok(mut slot) = book_reader.error.lock() {
            slot.get_or_insert_with(|| "the server closed the session".into());
        }
        book_reader.acked.notify_waiters();
    });
    Ok(Pub {
        sink,
        room: room_name(room)?,
        next: 0,
        prefix: escape_client::new_client_msg_id(),
        book,
        reader,
    })
}

impl Pub {
    pub async fn publish(&mut self, payload: &[u8]) -> anyhow::Result<()> {
        self.next += 1;
        let text = String::from_utf8_lossy(payload).into_owned();
        let frame = encode(
            self.next,
            ClientFrame::Send {
                room: self.room.clone(),
                client_msg_id: format!("{}-{}", self.prefix, self.next),
                body: Body::text(text),
            },
        )?;
        if let Ok(mut pending) = self.book.pending.lock() {
            pending.insert(self.next, crate::clock::now_ns());
        }
        self.sink.send(frame).await?;
        Ok(())
    }

    /// Requests sent and not yet answered.
    pub fn in_flight(&self) -> u64 {
        self.book
            .pending
            .lock()
            .map(|p| p.len() as u64)
            .unwrap_or(0)
    }

    pub fn error(&self) -> Option<String> {
        self.book.error.lock().ok().and_then(|e| e.clone())
    }
}
