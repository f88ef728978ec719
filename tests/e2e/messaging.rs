//! Rooms and messages between members.

use escape_client::ClientError;
use escape_e2e::{TestDeployment, events, next_frame, within};
use escape_proto::room::HistoryQuery;
use escape_proto::{Body, ClientFrame, ErrorCode, RoomName, ServerFrame};

fn room(name: &str) -> RoomName {
    RoomName::parse(name).expect("room name")
}

#[tokio::test]
async fn two_members_exchange_messages_in_order_with_sequences_and_acks() {
    let mut d = TestDeployment::new();
    d.add_member("alice", "CERT-A");
    d.add_member("bob", "CERT-B");
    d.start().await;
    let ops = room("ops");
    let created = d
        .client("alice")
        .await
        .create_room(ops.clone(), "incident".into())
        .await
        .expect("create");
    assert!(created.joined);
    assert_eq!(created.head, 0);
    let joined = d.client("bob").await.join(&ops).await.expect("join");
    assert_eq!(joined.members, 2);

    let mut alice = d.channel("alice").await;
    let mut bob = d.channel("bob").await;
    assert_eq!(alice.subscribe(&ops, None).await.expect("subscribe"), 0);
    assert_eq!(bob.subscribe(&ops, None).await.expect("subscribe"), 0);

    let mut acked = Vec::new();
    for i in 0..3 {
        acked.push(
            alice
                .send(
                    &ops,
                    &format!("a{i}"),
                    Body::text(format!("from alice {i}")),
                )
                .await
                .expect("send"),
        );
        acked.push(
            bob.send(&ops, &format!("b{i}"), Body::text(format!("from bob {i}")))
                .await
                .expect("send"),
        );
    }
    let seqs: Vec<u64> = acked.iter().map(|a| a.seq).collect();
    assert_eq!(
        seqs,
        vec![1, 2, 3, 4, 5, 6],
        "acks carry the room's sequence"
    );
    assert!(acked.iter().all(|a| !a.duplicate));

    let seen_by_alice = events(&mut alice, 6).await;
    let seen_by_bob = events(&mut bob, 6).await;
    assert_eq!(
        seen_by_alice, seen_by_bob,
        "every member sees the same stream"
    );
    let texts: Vec<String> = seen_by_bob
        .iter()
        .map(|e| match &e.body {
            Body::Text { text, .. } => text.clone(),
            other => panic!("unexpected body {other:?}"),
        })
        .collect();
    assert_eq!(
        texts,
        [
            "from alice 0",
            "from bob 0",
            "from alice 1",
            "from bob 1",
            "from alice 2",
            "from bob 2"
        ]
    );
    assert_eq!(seen_by_bob.iter().map(|e| e.seq).collect::<Vec<_>>(), seqs);
    assert_eq!(seen_by_bob[0].sender_name, "alice");
    assert_eq!(seen_by_bob[1].sender_name, "bob");

    let rooms = d.client("bob").await.rooms().await.expect("rooms");
    assert_eq!(rooms.len(), 1);
    assert_eq!(
        (rooms[0].head, rooms[0].members, rooms[0].joined),
        (6, 2, true)
    );
}

#[tokio::test]
async fn non_members_can_neither_send_nor_read_nor_subscribe() {
    let mut d = TestDeployment::new();
    d.add_member("alice", "CERT-A");
    d.add_member("mallory", "CERT-M");
    d.start().await;
    let ops = room("ops");
    d.client("alice")
        .await
        .create_room(ops.clone(), String::new())
        .await
        .expect("create");
    let mut alice = d.channel("alice").await;
    alice
        .send(&ops, "1", Body::text("secret"))
        .await
        .expect("send");

    let mallory = d.client("mallory").await;
    let err = mallory
        .history(&ops, &HistoryQuery::default())
        .await
        .expect_err("no history");
    assert!(
        matches!(
            err,
            ClientError::Server {
                status: 403,
                code: ErrorCode::NotAMember,
                ..
            }
        ),
        "{err:?}"
    );
    let mut channel = d.channel("mallory").await;
    let err = channel
        .subscribe(&ops, Some(0))
        .await
        .expect_err("no subscription");
    assert!(
        matches!(
            err,
            ClientError::Server {
                code: ErrorCode::NotAMember,
                ..
            }
        ),
        "{err:?}"
    );
    let err = channel
        .send(&ops, "x", Body::text("let me in"))
        .await
        .expect_err("no send");
    assert!(
        matches!(
            err,
            ClientError::Server {
                code: ErrorCode::NotAMember,
                ..
            }
        ),
        "{err:?}"
    );
    let err = mallory
        .leave(&ops)
        .await
        .expect_err("cannot leave what one never joined");
    assert!(
        matches!(
            err,
            ClientError::Server {
                code: ErrorCode::NotAMember,
                ..
            }
        ),
        "{err:?}"
    );
    let err = mallory
        .join(&room("nowhere"))
        .await
        .expect_err("no such room");
    assert!(
        matches!(
            err,
            ClientError::Server {
                status: 404,
                code: ErrorCode::RoomNotFound,
                ..
            }
        ),
        "{err:?}"
    );

    // Nothing of what mallory tried was stored.
    let page = d
        .client("alice")
        .await
        .history(&ops, &HistoryQuery::default())
        .await
        .expect("history");
    assert_eq!(page.messages.len(), 1);
}

#[tokio::test]
async fn a_member_who_leaves_stops_receiving_at_once() {
    let mut d = TestDeployment::new();
    d.add_member("alice", "CERT-A");
    d.add_member("bob", "CERT-B");
    d.start().await;
    let ops = room("ops");
    d.client("alice")
        .await
        .create_room(ops.clone(), String::new())
        .await
        .expect("create");
    d.client("bob").await.join(&ops).await.expect("join");
    let mut alice = d.channel("alice").await;
    let mut bob = d.channel("bob").await;
    bob.subscribe(&ops, None).await.expect("subscribe");
    alice
        .send(&ops, "1", Body::text("before"))
        .await
        .expect("send");
    assert_eq!(events(&mut bob, 1).await[0].seq, 1);

    d.client("bob").await.leave(&ops).await.expect("leave");
    alice
        .send(&ops, "2", Body::text("after"))
        .await
        .expect("send");
    // The next delivery is checked against bob's current membership: he gets an error, not the event.
    match next_frame(&mut bob).await.frame {
        ServerFrame::Error { code, .. } => assert_eq!(code, ErrorCode::NotAMember),
        other => panic!("expected the subscription to end, got {other:?}"),
    }
}

#[tokio::test]
async fn room_names_are_unique_and_validated() {
    let mut d = TestDeployment::new();
    d.start().await;
    let admin = d.client("admin").await;
    admin
        .create_room(room("ops"), String::new())
        .await
        .expect("create");
    let err = admin
        .create_room(room("ops"), String::new())
        .await
        .expect_err("exists");
    assert!(
        matches!(
            err,
            ClientError::Server {
                status: 409,
                code: ErrorCode::RoomExists,
                ..
            }
        ),
        "{err:?}"
    );
    let err = admin
        .create_room(room("other"), "t".repeat(600))
        .await
        .expect_err("topic too long");
    assert!(
        matches!(err, ClientError::Server { status: 400, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn history_pages_by_sequence_before_after_and_limit() {
    let mut d = TestDeployment::new();
    d.start().await;
    let ops = room("ops");
    let admin = d.client("admin").await;
    admin
        .create_room(ops.clone(), String::new())
        .await
        .expect("create");
    let mut channel = d.channel("admin").await;
    for i in 1..=25 {
        channel
            .send(&ops, &i.to_string(), Body::text(format!("m{i}")))
            .await
            .expect("send");
    }
    let seqs = |page: &escape_proto::room::HistoryPage| {
        page.messages.iter().map(|m| m.seq).collect::<Vec<_>>()
    };

    let newest = admin
        .history(
            &ops,
            &HistoryQuery {
                limit: Some(10),
                ..Default::default()
            },
        )
        .await
        .expect("page");
    assert_eq!(seqs(&newest), (16..=25).collect::<Vec<_>>());
    assert!(newest.more);
    let older = admin
        .history(
            &ops,
            &HistoryQuery {
                before: Some(16),
                limit: Some(10),
                after: None,
            },
        )
        .await
        .expect("page");
    assert_eq!(seqs(&older), (6..=15).collect::<Vec<_>>());
    assert!(older.more);
    let oldest = admin
        .history(
            &ops,
            &HistoryQuery {
                before: Some(6),
                limit: Some(10),
                after: None,
            },
        )
        .await
        .expect("page");
    assert_eq!(seqs(&oldest), (1..=5).collect::<Vec<_>>());
    assert!(!oldest.more);

    let forward = admin
        .history(
            &ops,
            &HistoryQuery {
                after: Some(20),
                limit: Some(3),
                before: None,
            },
        )
        .await
        .expect("page");
    assert_eq!(seqs(&forward), vec![21, 22, 23]);
    assert!(forward.more);
    let window = admin
        .history(
            &ops,
            &HistoryQuery {
                after: Some(3),
                before: Some(7),
                limit: None,
            },
        )
        .await
        .expect("page");
    assert_eq!(seqs(&window), vec![4, 5, 6]);
    assert!(!window.more);
    let beyond = admin
        .history(
            &ops,
            &HistoryQuery {
                after: Some(25),
                ..Default::default()
            },
        )
        .await
        .expect("page");
    assert!(beyond.messages.is_empty() && !beyond.more);

    // Limits are clamped to the server's maximum page.
    let all = admin
        .history(
            &ops,
            &HistoryQuery {
                limit: Some(100_000),
                ..Default::default()
            },
        )
        .await
        .expect("page");
    assert_eq!(all.messages.len(), 25);
}

#[tokio::test]
async fn a_retried_send_with_the_same_client_message_id_is_stored_once() {
    let mut d = TestDeployment::new();
    d.start().await;
    let ops = room("ops");
    let admin = d.client("admin").await;
    admin
        .create_room(ops.clone(), String::new())
        .await
        .expect("create");
    let mut first = d.channel("admin").await;
    let ack = first
        .send(&ops, "retry-me", Body::text("once"))
        .await
        .expect("send");
    assert!(!ack.duplicate);
    // The retry comes over a new connection, as after a network failure.
    let mut second = d.channel("admin").await;
    let again = second
        .send(&ops, "retry-me", Body::text("once"))
        .await
        .expect("retry");
    assert_eq!(again.seq, ack.seq);
    assert!(again.duplicate);
    // Pipelined duplicates on one connection too.
    let ids: Vec<String> = {
        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.push(
                second
                    .request(ClientFrame::Send {
                        room: ops.clone(),
                        client_msg_id: "burst".into(),
                        body: Body::text("burst"),
                    })
                    .await
                    .expect("send"),
            );
        }
        ids
    };
    let mut burst_seqs = Vec::new();
    for id in &ids {
        match within("ack", second.answer(id)).await.expect("ack") {
            ServerFrame::Ack { seq, .. } => burst_seqs.push(seq),
            other => panic!("expected ack, got {other:?}"),
        }
    }
    assert!(
        burst_seqs.iter().all(|s| *s == burst_seqs[0]),
        "{burst_seqs:?}"
    );
    let page = admin
        .history(&ops, &HistoryQuery::default())
        .await
        .expect("history");
    assert_eq!(page.messages.len(), 2, "one message per client message id");
}

/// The client reads through a small buffer (`escape_client::channel::websocket_config`): events
/// several times its size, and several of them back to back, still arrive whole and in order.
#[tokio::test]
async fn events_larger_than_the_clients_read_buffer_arrive_whole() {
    let mut d = TestDeployment::new();
    d.start().await;
    let ops = d.admin_creates("ops").await;
    let mut reader = d.channel("admin").await;
    reader.subscribe(&ops, None).await.expect("subscribe");
    let mut writer = d.channel("admin").await;
    let texts: Vec<String> = (0..5u8)
        .map(|i| {
            (0..15 * 1024)
                .map(|n| char::from(b'a' + ((n + usize::from(i)) % 26) as u8))
                .collect()
        })
        .collect();
    for (i, text) in texts.iter().enumerate() {
        writer
            .send(&ops, &format!("big-{i}"), Body::text(text.clone()))
            .await
            .expect("ack");
    }
    let received = events(&mut reader, texts.len()).await;
    let bodies: Vec<Body> = received.into_iter().map(|e| e.body).collect();
    let sent: Vec<Body> = texts.into_iter().map(Body::text).collect();
    assert_eq!(bodies, sent);
}
