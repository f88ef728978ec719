//! Load and soak, bounded and on loopback only: 1,000 concurrent mutual-TLS WebSocket clients
//! follow ten rooms while messages flow for a fixed time. Nothing is lost (every follower gets
//! every message of its room, in order), and the server's memory (the real binary's resident
//! set, read from /proc) stays flat while the load runs.
//!
//! The test command runs 4 s of load. The same test is the long soak:
//! `ESCAPE_SOAK_SECONDS=600 cargo test --release -p escape-server --test soak -- --nocapture`
//! (`ESCAPE_SOAK_CLIENTS` changes the number of followers); followers ping as a real client does,
//! so that the idle timeout does not close them during a long run, and the memory check compares
//! the end with the reading half-way (the bounded caches fill during the first minutes).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use escape_client::{Channel, Client, Profile, new_client_msg_id};
use escape_proto::room::CreateRoom;
use escape_proto::{Body, ClientFrame, ProfileBundle, RoomName, ServerFrame};

const ROOMS: usize = 10;
/// Messages per second into each room.
const RATE: u64 = 5;
/// How long the followers have, after the load, to receive what is still on its way.
const DRAIN: Duration = Duration::from_secs(60);
/// How often the server's memory is read during the load.
const SAMPLE: Duration = Duration::from_millis(250);
/// A long run prints one reading per this much load and checks against its half-way reading.
const READING: Duration = Duration::from_secs(60);
/// How often a follower pings (a quiet client's keep-alive).
const PING: Duration = Duration::from_secs(30);

/// A number from the environment, or the default of the test command.
fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_clients_lose_nothing_and_memory_stays_flat() {
    escape_server::tls::install_provider();
    // How long messages flow, and how many clients follow.
    let load = Duration::from_secs(setting("ESCAPE_SOAK_SECONDS", 4));
    let clients = usize::try_from(setting("ESCAPE_SOAK_CLIENTS", 1000)).expect("a count");
    let cwd = tempfile::tempdir().expect("tempdir");
    let room_for = clients * 2 + 100;
    common::configure(
        cwd.path(),
        &format!(
            "[limits]\nconnections_per_member = {room_for}\nconnections_per_address = {room_for}\n\
             handshake_burst_per_address = {room_for}\n\
             sends_per_second = 100000\nsend_burst = 100000\n"
        ),
    );
    let (server, addr) = common::start(cwd.path());
    let pid = server.0.id();
    let bundle: ProfileBundle = serde_json::from_str(
        &std::fs::read_to_string(cwd.path().join("escape-data/profiles/admin.escape-profile"))
            .expect("profile"),
    )
    .expect("json");
    let mut profile = Profile::from_bundle(bundle).expect("profile");
    profile.server = addr.clone();
    let client = Client::new(profile).await.expect("client");
    let rooms: Vec<RoomName> = (0..ROOMS)
        .map(|i| RoomName::parse(&format!("soak-{i}")).expect("room"))
        .collect();
    for room in &rooms {
        client
            .create_room_with(&CreateRoom::new(room.clone(), "soak"))
            .await
            .expect("room");
    }
    let before = rss_kib(pid);

    // Connect and subscribe, fifty at a time; each follower counts what it receives and
    // checks the order.
    let started = Instant::now();
    let received: Vec<Arc<AtomicU64>> = (0..clients).map(|_| Arc::default()).collect();
    let mut followers = Vec::new();
    for batch in (0..clients).collect::<Vec<_>>().chunks(50) {
        let mut connecting = Vec::new();
        for &i in batch {
            let (client, room) = (client.clone(), rooms[i % ROOMS].clone());
            connecting.push(tokio::spawn(async move {
                let mut channel = Channel::connect(&client).await.expect("connect");
                channel.subscribe(&room, None).await.expect("subscribe");
                channel
            }));
        }
        for (&i, handle) in batch.iter().zip(connecting) {
            let mut channel = handle.await.expect("connected");
            let count = received[i].clone();
            followers.push(tokio::spawn(async move {
                let mut last = 0;
                let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING, PING);
                loop {
                    let message = tokio::select! {
                        message = channel.next() => message,
                        _ = ping.tick() => match channel.request(ClientFrame::Ping).await {
                            Ok(_) => continue,
                            Err(_) => break,
                        },
                    };
                    let Ok(Some(message)) = message else { break };
                    if let ServerFrame::Event(event) = message.frame {
                        assert_eq!(event.seq, last + 1, "in order, without gaps");
                        last = event.seq;
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
    }
    let connected_in = started.elapsed();
    let idle = rss_kib(pid);

    // Messages flow into every room at a fixed rate for a fixed time.
    let mut senders = Vec::new();
    for room in &rooms {
        let (client, room) = (client.clone(), room.clone());
        senders.push(tokio::spawn(async move {
            let mut channel = Channel::connect(&client).await.expect("sender");
            let mut sent = 0u64;
            let mut tick = tokio::time::interval(Duration::from_millis(1000 / RATE));
            let until = Instant::now() + load;
            while Instant::now() < until {
                tick.tick().await;
                channel
                    .send(
                        &room,
                        &new_client_msg_id(),
                        Body::text(format!("load {sent}")),
                    )
                    .await
                    .expect("acknowledged");
                sent += 1;
            }
            sent
        }));
    }
    let mut samples = Vec::new();
    let load_started = Instant::now();
    while load_started.elapsed() < load {
        tokio::time::sleep(SAMPLE).await;
        samples.push(rss_kib(pid));
    }
    let mut sent = Vec::new();
    for sender in senders {
        sent.push(sender.await.expect("sender"));
    }

    // Every follower gets every message of its room.
    let deadline = Instant::now() + DRAIN;
    loop {
        let missing: u64 = (0..clients)
            .map(|i| sent[i % ROOMS].saturating_sub(received[i].load(Ordering::Relaxed)))
            .sum();
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} deliveries missing after the load"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let delivered: u64 = received.iter().map(|r| r.load(Ordering::Relaxed)).sum();
    let expected: u64 = (0..clients).map(|i| sent[i % ROOMS]).sum();
    assert_eq!(delivered, expected, "nothing lost, nothing twice");

    // Flat: the resident set at the end of the load is within a quarter of where it stood once
    // the load was steady. A short run compares with its first reading; a long one with the
    // reading half-way, because the bounded caches (each room's window of recent events, the
    // store's page cache) fill during the first minutes, as they should.
    let first = samples.first().copied().unwrap_or(idle);
    let peak = samples.iter().copied().max().unwrap_or(idle);
    let last = samples.last().copied().unwrap_or(idle);
    let long = load >= READING;
    let steady = if long {
        samples.get(samples.len() / 2).copied().unwrap_or(first)
    } else {
        first
    };
    // One reading a minute in a long run, every one in a short one.
    let per_reading = (READING.as_millis() / SAMPLE.as_millis()) as usize;
    let readings: Vec<u64> = samples
        .iter()
        .copied()
        .step_by(if long { per_reading } else { 1 })
        .collect();
    eprintln!(
        "{clients} clients connected and subscribed in {connected_in:?}; server RSS {before} KiB before, \
         {idle} KiB with them idle ({} KiB per connection); during {load:?} of load: first {first}, \
         steady {steady}, peak {peak}, last {last} KiB (readings {readings:?}); {} messages sent, \
         {delivered} deliveries, 0 lost",
        idle.saturating_sub(before) / clients as u64,
        sent.iter().sum::<u64>()
    );
    assert!(
        last <= steady + steady / 4,
        "server memory grew under steady load: {readings:?} KiB"
    );
    for follower in followers {
        follower.abort();
    }
    drop(server);
}
