//! What an attacker with a socket, or with a valid certificate, would try next: connections
//! that never finish their handshake, one host taking every connection, oversized headers,
//! claims about someone else inside a payload, requests replayed. Each gets a clear answer
//! (or a closed connection) and costs nothing to anyone else.

use std::time::{Duration, Instant};

use escape_client::Channel;
use escape_e2e::{Probe, TestDeployment, probe, probe_over, server_log, tls_config};
use escape_proto::indicator::ShareIndicators;
use escape_proto::room::{CreateRoom, HistoryQuery};
use escape_proto::{Body, RoomName, ServerFrame};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Reads until the server closes the connection; returns how long that took (None if it did not
/// close within `within`).
async fn closed_within(tcp: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 64];
    loop {
        match tokio::time::timeout(within.saturating_sub(started.elapsed()), tcp.read(&mut buf))
            .await
        {
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connections_time_out_and_one_address_cannot_take_them_all() {
    let mut d = TestDeployment::new();
    d.limits.handshake_timeout_ms = 600;
    d.limits.connections_per_address = 8;
    d.start().await;

    // Eight connections that never send a byte: the address's whole share.
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(TcpStream::connect(d.addr()).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The ninth is closed at once, before any TLS work.
    let mut ninth = TcpStream::connect(d.addr()).await.expect("connect");
    let closed = closed_within(&mut ninth, Duration::from_millis(400))
        .await
        .expect("the ninth connection from the same address is closed at once");
    eprintln!("over the per-address limit: closed after {closed:?}");

    // The silent ones are closed when the handshake time runs out.
    for tcp in &mut idle {
        let after = closed_within(tcp, Duration::from_secs(5))
            .await
            .expect("a half-open connection is closed by the handshake timeout");
        assert!(after < Duration::from_secs(3), "{after:?}");
    }
    // Their slots are free again: a member gets in.
    let me = d
        .client("admin")
        .await
        .me()
        .await
        .expect("served after the flood");
    assert_eq!(me.name, "admin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_open_connections_faster_than_its_rate() {
    let mut d = TestDeployment::new();
    d.limits.handshakes_per_second_per_address = 1;
    d.limits.handshake_burst_per_address = 10;
    d.start().await;
    let log = server_log::capture();
    let admin = d.profile("admin");
    let tls = || {
        tls_config(
            &admin.ca_pem,
            Some((&admin.cert_pem, &admin.key_pem)),
            &[&rustls::version::TLS13],
        )
    };

    // The burst: ten new connections within the second are served.
    for n in 0..10 {
        match probe(d.addr(), tls()).await {
            Probe::Answered(status) => assert!(status.contains("200"), "{n}: {status}"),
            Probe::Refused(why) => panic!("connection {n} of the burst refused: {why}"),
        }
    }
    // The eleventh is closed at once, before any TLS work, and the log says why.
    let mut eleventh = TcpStream::connect(d.addr()).await.expect("connect");
    let peer = eleventh.local_addr().expect("local address");
    let closed = closed_within(&mut eleventh, Duration::from_millis(400))
        .await
        .expect("the connection over the rate is closed at once");
    eprintln!("over the per-address rate: closed after {closed:?}");
    let lines = log.lines_of(peer).await;
    assert!(
        lines
            .iter()
            .any(|l| l.contains("too many new connections from this address")),
        "{lines:?}"
    );

    // Another address has its own bucket.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.2:0".parse().expect("address"))
        .expect("bind to another loopback address");
    let other = socket.connect(d.addr()).await.expect("connect");
    match probe_over(other, tls()).await {
        Probe::Answered(status) => assert!(status.contains("200"), "{status}"),
        Probe::Refused(why) => panic!("another address was refused: {why}"),
    }

    // The bucket refills at the rate: a second later the first address is served again.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    match probe(d.addr(), tls()).await {
        Probe::Answered(status) => assert!(status.contains("200"), "{status}"),
        Probe::Refused(why) => panic!("refused after the bucket refilled: {why}"),
    }
}

#[tokio::test]
async fn oversized_headers_are_refused_and_the_server_keeps_serving() {
    let mut d = TestDeployment::new();
    d.start().await;
    let client = d.client("admin").await;
    let (http, base) = d.http("admin").await;
    let response = http
        .get(format!("{base}/v1/me"))
        .header("x-padding", "a".repeat(128 * 1024))
        .send()
        .await;
    match response {
        Ok(response) => assert_eq!(response.status().as_u16(), 431),
        // Closing the connection is the other allowed answer to a header flood.
        Err(e) => eprintln!("oversized header: connection closed ({e})"),
    }
    assert_eq!(client.me().await.expect("still serving").name, "admin");
}

#[tokio::test]
async fn claims_about_someone_else_inside_payloads_gain_nothing() {
    let mut d = TestDeployment::new();
    let mallory = d.add_member("mallory", "ORG-M");
    let bob = d.add_member("bob", "ORG-B");
    d.start().await;
    let room = RoomName::parse("ops").expect("room");
    let admin = d.client("admin").await;
    let mut create = CreateRoom::new(room.clone(), "claims");
    create.tlp_max = Some("GREEN".into());
    admin.create_room_with(&create).await.expect("room");
    let m = d.client("mallory").await;
    m.join(&room).await.expect("join");

    // A send frame dressed up with another member's identity, in the frame and in the body.
    let mut channel = d.channel("mallory").await;
    let forged = serde_json::json!({
        "v": 1, "id": "1", "type": "send", "room": "ops", "client_msg_id": "forged-1",
        "sender": bob.as_str(), "sender_name": "bob", "sender_organisation": "ORG-B",
        "body": {"kind": "text", "text": "wire the money", "sender": bob.as_str(),
                 "sender_organisation": "ORG-B"}
    });
    channel.send_text(forged.to_string()).await.expect("send");
    let answer = loop {
        let message = channel.next().await.expect("frame").expect("open");
        if message.id.as_deref() == Some("1") {
            break message.frame;
        }
    };
    // Whether refused or stored, nothing is stored in Bob's name.
    let page = admin
        .history(&room, &HistoryQuery::default())
        .await
        .expect("history");
    for event in &page.messages {
        assert_eq!(event.sender, mallory, "{event:?}");
        assert_eq!(event.sender_organisation, "ORG-M");
    }
    if matches!(answer, ServerFrame::Ack { .. }) {
        // The extra fields were ignored: stored once, as Mallory's.
        assert_eq!(page.messages.len(), 1);
    }
    eprintln!("forged send answered with {answer:?}");

    // An indicator claiming another source organisation is stamped with the sharer's.
    let draft = serde_json::json!({"indicators": [{
        "value": "198.51.100.23", "tlp": "GREEN",
        "source_organisation": "ORG-B", "sharer": bob.as_str()
    }]});
    let shared: Result<ShareIndicators, _> = serde_json::from_value(draft);
    let accepted = shared.is_ok();
    if let Ok(request) = shared {
        m.share_indicators(&room, &request).await.expect("share");
    }
    let list = admin.indicators(&room).await.expect("list");
    assert_eq!(list.len(), usize::from(accepted));
    for record in list {
        assert_eq!(record.indicator.source_organisation, "ORG-M");
        assert_eq!(record.indicator.sharer, mallory);
    }
}

#[tokio::test]
async fn a_replayed_send_is_stored_once() {
    let mut d = TestDeployment::new();
    d.start().await;
    let room = RoomName::parse("ops").expect("room");
    let admin = d.client("admin").await;
    admin
        .create_room_with(&CreateRoom::new(room.clone(), "replay"))
        .await
        .expect("room");
    let frame = escape_proto::ClientRequest::new(
        "1",
        escape_proto::ClientFrame::Send {
            room: room.clone(),
            client_msg_id: "captured-once".into(),
            body: Body::text("move to the backup channel"),
        },
    )
    .encode();
    let mut acks = Vec::new();
    // The same bytes, three times, over three connections.
    for _ in 0..3 {
        let mut channel: Channel = d.channel("admin").await;
        channel.send_text(frame.clone()).await.expect("send");
        loop {
            let message = channel.next().await.expect("frame").expect("open");
            if let ServerFrame::Ack { seq, duplicate, .. } = message.frame {
                acks.push((seq, duplicate));
                break;
            }
        }
        channel.close().await;
    }
    assert_eq!(acks, vec![(1, false), (1, true), (1, true)]);
    let page = admin
        .history(&room, &HistoryQuery::default())
        .await
        .expect("history");
    assert_eq!(page.messages.len(), 1);
}
