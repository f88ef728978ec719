//! Resuming after a disconnect: exactly the missed events, none twice, no gap at the seam
//! between backlog and live delivery.

use std::ops::ControlFlow;
use std::time::Duration;

use escape_client::tail::{Tail, TailEvent};
use escape_e2e::{TestDeployment, events, within};
use escape_proto::{Body, RoomName};

fn ops() -> RoomName {
    RoomName::parse("ops").expect("room")
}

#[tokio::test]
async fn a_client_that_drops_and_resumes_receives_exactly_the_missed_messages() {
    let mut d = TestDeployment::new();
    d.add_member("alice", "CERT-A");
    d.add_member("bob", "CERT-B");
    d.start().await;
    d.client("alice")
        .await
        .create_room(ops(), String::new())
        .await
        .expect("create");
    d.client("bob").await.join(&ops()).await.expect("join");
    let mut alice = d.channel("alice").await;

    let mut bob = d.channel("bob").await;
    bob.subscribe(&ops(), None).await.expect("subscribe");
    for i in 1..=3 {
        alice
            .send(&ops(), &format!("m{i}"), Body::text(format!("m{i}")))
            .await
            .expect("send");
    }
    let seen = events(&mut bob, 3).await;
    let last = seen.last().expect("events").seq;
    bob.close().await;

    for i in 4..=8 {
        alice
            .send(&ops(), &format!("m{i}"), Body::text(format!("m{i}")))
            .await
            .expect("send");
    }
    let mut bob = d.channel("bob").await;
    let head = bob.subscribe(&ops(), Some(last)).await.expect("resume");
    assert_eq!(head, 8);
    let missed = events(&mut bob, 5).await;
    assert_eq!(
        missed.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![4, 5, 6, 7, 8]
    );
    // Then live events follow, and nothing of the backlog comes again.
    alice
        .send(&ops(), "m9", Body::text("m9"))
        .await
        .expect("send");
    let live = events(&mut bob, 1).await;
    assert_eq!(live[0].seq, 9);
}

#[tokio::test]
async fn subscribing_while_messages_are_being_sent_leaves_no_gap_and_no_duplicate() {
    let mut d = TestDeployment::new();
    // Sends as fast as it can on purpose; flood control is tested in flood.rs.
    d.limits.sends_per_second = 100_000;
    d.limits.send_burst = 100_000;
    d.limits.frames_per_second = 100_000;
    d.add_member("alice", "CERT-A");
    d.add_member("bob", "CERT-B");
    d.start().await;
    d.client("alice")
        .await
        .create_room(ops(), String::new())
        .await
        .expect("create");
    d.client("bob").await.join(&ops()).await.expect("join");
    const TOTAL: u64 = 300;

    let mut alice = d.channel("alice").await;
    let sender = tokio::spawn(async move {
        for i in 1..=TOTAL {
            alice
                .send(&ops(), &format!("m{i}"), Body::text(format!("m{i}")))
                .await
                .expect("send");
        }
    });
    // Subscribe from the start while the sender is mid-stream: backlog and live overlap.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut bob = d.channel("bob").await;
    bob.subscribe(&ops(), Some(0)).await.expect("subscribe");
    let seen = within("all events", events(&mut bob, TOTAL as usize)).await;
    within("sender", sender).await.expect("sender task");
    assert_eq!(
        seen.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=TOTAL).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn tail_reconnects_after_a_server_restart_and_resumes_without_gaps() {
    let mut d = TestDeployment::new();
    d.start().await;
    let admin = d.client("admin").await;
    admin
        .create_room(ops(), String::new())
        .await
        .expect("create");
    let mut sender = d.channel("admin").await;
    sender
        .send(&ops(), "1", Body::text("one"))
        .await
        .expect("send");

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let tail_client = d.client("admin").await;
    let tail = tokio::spawn(async move {
        let mut tail = Tail::new(tail_client, ops(), Some(0))
            .with_backoff(Duration::from_millis(50), Duration::from_millis(200));
        tail.run(|event| {
            let done = matches!(&event, TailEvent::Event(e) if e.seq == 4);
            let _ = tx.send(event);
            if done {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .await
    });
    let mut seqs = Vec::new();
    let mut disconnects = 0;
    // Wait for the first event, restart the server under the tail, send more.
    loop {
        match within("tail event", rx.recv()).await.expect("tail alive") {
            TailEvent::Event(e) => {
                seqs.push(e.seq);
                break;
            }
            TailEvent::Disconnected { .. } => disconnects += 1,
            TailEvent::Connected { .. } | TailEvent::Alert(_) | TailEvent::Mention { .. } => {}
        }
    }
    sender.close().await;
    d.restart().await;
    let mut sender = d.channel("admin").await;
    for i in 2..=4 {
        sender
            .send(&ops(), &i.to_string(), Body::text(format!("m{i}")))
            .await
            .expect("send");
    }
    while let Some(event) = within("tail event", rx.recv()).await {
        match event {
            TailEvent::Event(e) => seqs.push(e.seq),
            TailEvent::Disconnected { .. } => disconnects += 1,
            TailEvent::Connected { .. } | TailEvent::Alert(_) | TailEvent::Mention { .. } => {}
        }
    }
    within("tail end", tail)
        .await
        .expect("task")
        .expect("tail ok");
    assert_eq!(seqs, vec![1, 2, 3, 4]);
    assert!(disconnects >= 1, "the restart was noticed");
}
