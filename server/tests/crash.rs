//! Crash safety: the server process is killed with SIGKILL while members send, then started
//! again on the same data. Every message the server acknowledged is there exactly once, under
//! the sequence it was acknowledged with; sequences have no gaps; a follower resumes from the
//! last message it saw and gets the rest in order; a sender retrying an unanswered message
//! under the same id stores it at most once.
//!
//! (A process kill keeps what the kernel already holds; losing power is a different test that
//! needs a machine to switch off. The acknowledgement waits for the store's flush either way.)

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use escape_client::{Channel, Client, ClientError, Profile, new_client_msg_id};
use escape_proto::room::{CreateRoom, HistoryQuery};
use escape_proto::{Body, ProfileBundle, RoomName, ServerFrame};

const SENDERS: usize = 4;
/// Acknowledged messages to wait for before the kill (bounded in count).
const ACKED_BEFORE_KILL: usize = 200;
const STEP: Duration = Duration::from_secs(30);

fn admin(cwd: &std::path::Path, addr: &str) -> Profile {
    let bundle: ProfileBundle = serde_json::from_str(
        &std::fs::read_to_string(cwd.join("escape-data/profiles/admin.escape-profile"))
            .expect("admin profile"),
    )
    .expect("json");
    let mut profile = Profile::from_bundle(bundle).expect("profile");
    profile.server = addr.to_owned();
    profile
}

/// Everything stored in `room`, oldest first.
async fn all_events(client: &Client, room: &RoomName) -> Vec<escape_proto::Event> {
    let mut events = Vec::new();
    let mut after = 0;
    loop {
        let page = client
            .history(
                room,
                &HistoryQuery {
                    after: Some(after),
                    limit: Some(500),
                    ..HistoryQuery::default()
                },
            )
            .await
            .expect("history");
        let Some(last) = page.messages.last() else {
            break;
        };
        after = last.seq;
        let more = page.more;
        events.extend(page.messages);
        if !more {
            break;
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_sigkill_exactly_once() {
    escape_server::tls::install_provider();
    let cwd = tempfile::tempdir().expect("tempdir");
    // One member sends from four connections as fast as acknowledgements come back.
    common::configure(
        cwd.path(),
        "[limits]\nsends_per_second = 1000000\nsend_burst = 1000000\nframes_per_second = 1000000\n",
    );
    let (mut child, addr) = common::start(cwd.path());
    let client = Client::new(admin(cwd.path(), &addr)).await.expect("client");
    let room = RoomName::parse("crash").expect("room");
    client
        .create_room_with(&CreateRoom::new(room.clone(), "killed mid-flight"))
        .await
        .expect("create room");

    // A follower, subscribed from the start, records what it saw.
    let seen: Arc<Mutex<Vec<u64>>> = Arc::default();
    let follower = {
        let (client, room, seen) = (client.clone(), room.clone(), seen.clone());
        tokio::spawn(async move {
            let mut channel = Channel::connect(&client).await.expect("follow");
            channel.subscribe(&room, Some(0)).await.expect("subscribe");
            while let Ok(Some(message)) = channel.next().await {
                if let ServerFrame::Event(event) = message.frame {
                    seen.lock().expect("seen").push(event.seq);
                }
            }
        })
    };

    // Senders send one message at a time and record each acknowledgement; the last message
    // each had in flight when the server died is kept to retry.
    let acked: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let mut senders = Vec::new();
    for n in 0..SENDERS {
        let (client, room, acked) = (client.clone(), room.clone(), acked.clone());
        senders.push(tokio::spawn(async move {
            let mut channel = Channel::connect(&client).await.expect("sender");
            for i in 0.. {
                let id = new_client_msg_id();
                let body = Body::text(format!("sender {n} message {i}"));
                match channel.send(&room, &id, body.clone()).await {
                    Ok(ack) => {
                        acked.lock().expect("acked").insert(id, ack.seq);
                    }
                    Err(ClientError::Closed(_) | ClientError::Protocol(_))
                    | Err(ClientError::Server { .. }) => {
                        eprintln!("sender {n} stopped after {i} messages");
                        return Some((id, body));
                    }
                    Err(e) => panic!("sender {n}: {e}"),
                }
            }
            None
        }));
    }
    let deadline = Instant::now() + STEP;
    while acked.lock().expect("acked").len() < ACKED_BEFORE_KILL {
        assert!(
            Instant::now() < deadline,
            "the senders did not get going: {} acknowledged",
            acked.lock().expect("acked").len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.0.kill().expect("SIGKILL");
    child.0.wait().expect("reaped");
    let mut in_flight = Vec::new();
    for sender in senders {
        if let Some(unanswered) = tokio::time::timeout(STEP, sender)
            .await
            .expect("sender ended")
            .expect("sender task")
        {
            in_flight.push(unanswered);
        }
    }
    let _ = tokio::time::timeout(STEP, follower).await;
    let acked = acked.lock().expect("acked").clone();
    let seen_before = seen.lock().expect("seen").clone();
    eprintln!(
        "killed after {} acknowledged messages; {} in flight; the follower had seen {}",
        acked.len(),
        in_flight.len(),
        seen_before.len()
    );

    // Same data, same port: profiles and clients find it where it was.
    let (mut child, addr2) = common::start_on(cwd.path(), &addr);
    assert_eq!(addr2, addr);
    let client = Client::new(admin(cwd.path(), &addr)).await.expect("client");
    let events = all_events(&client, &room).await;
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "sequences from 1 without gaps"
    );
    let mut stored: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for event in &events {
        stored
            .entry(event.client_msg_id.as_str())
            .or_default()
            .push(event.seq);
    }
    for (id, seq) in &acked {
        assert_eq!(
            stored.get(id.as_str()),
            Some(&vec![*seq]),
            "acknowledged message {id} must be stored once, as #{seq}"
        );
    }
    assert!(stored.values().all(|s| s.len() == 1), "no message twice");

    // Retrying what was in flight stores each at most once (already stored: the same seq).
    let mut channel = Channel::connect(&client).await.expect("sender again");
    for (id, body) in &in_flight {
        let ack = channel.send(&room, id, body.clone()).await.expect("retry");
        match stored.get(id.as_str()) {
            Some(seqs) => assert!(ack.duplicate && seqs == &vec![ack.seq], "{id}"),
            None => assert!(!ack.duplicate),
        }
    }
    channel.close().await;

    // The follower resumes after the last message it saw and gets the rest, in order.
    let last_seen = seen_before.iter().copied().max().unwrap_or(0);
    assert!(
        seen_before.windows(2).all(|w| w[1] == w[0] + 1),
        "live delivery had no gaps before the kill"
    );
    let head = all_events(&client, &room).await.len() as u64;
    let mut channel = Channel::connect(&client).await.expect("resume");
    channel
        .subscribe(&room, Some(last_seen))
        .await
        .expect("resubscribe");
    let mut resumed = Vec::new();
    while resumed.last().copied().unwrap_or(last_seen) < head {
        match tokio::time::timeout(STEP, channel.next()).await {
            Ok(Ok(Some(message))) => {
                if let ServerFrame::Event(event) = message.frame {
                    resumed.push(event.seq);
                }
            }
            other => panic!("resuming after #{last_seen}: {other:?}"),
        }
    }
    assert_eq!(resumed, ((last_seen + 1)..=head).collect::<Vec<_>>());
    eprintln!(
        "after restart: {head} messages stored, {} acknowledged ones all present once, 0 lost; resumed from #{last_seen}",
        acked.len()
    );
    channel.close().await;
    assert!(common::terminate(&mut child).success());
}
