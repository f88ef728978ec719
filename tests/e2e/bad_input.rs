//! Bad input gets a coded error and loses nothing; a slow reader is cut off, not buffered.

use std::time::Duration;

use escape_client::{Channel, ClientError};
use escape_e2e::{TestDeployment, events, next_frame, within};
use escape_proto::room::HistoryQuery;
use escape_proto::{Body, ClientFrame, ErrorCode, RoomName, ServerFrame};

fn ops() -> RoomName {
    RoomName::parse("ops").expect("room")
}

async fn expect_error(channel: &mut Channel, code: ErrorCode, id: Option<&str>) {
    let frame = next_frame(channel).await;
    match frame.frame {
        ServerFrame::Error { code: got, message } => {
            assert_eq!(got, code, "{message}");
            assert!(!message.is_empty());
            assert_eq!(frame.id.as_deref(), id);
        }
        other => panic!("expected error {code}, got {other:?}"),
    }
}

async fn still_usable(channel: &mut Channel) {
    let id = channel.request(ClientFrame::Ping).await.expect("ping");
    assert_eq!(
        within("pong", channel.answer(&id)).await.expect("pong"),
        ServerFrame::Pong
    );
}

#[tokio::test]
async fn malformed_unknown_and_oversized_frames_get_error_frames_and_the_connection_stays_usable() {
    let mut d = TestDeployment::new();
    d.limits.max_frame_bytes = 4096;
    d.limits.max_body_bytes = 1024;
    d.limits.hard_max_frame_bytes = 64 * 1024;
    d.start().await;
    d.client("admin")
        .await
        .create_room(ops(), String::new())
        .await
        .expect("create");
    let mut bystander = d.channel("admin").await;
    bystander.subscribe(&ops(), None).await.expect("subscribe");
    let mut c = d.channel("admin").await;

    c.send_text("{this is not json".into())
        .await
        .expect("write");
    expect_error(&mut c, ErrorCode::MalformedJson, None).await;
    still_usable(&mut c).await;

    c.send_text(r#"{"v":1,"id":"u1","type":"launch_missiles"}"#.into())
        .await
        .expect("write");
    expect_error(&mut c, ErrorCode::UnknownFrameType, Some("u1")).await;

    c.send_text(r#"{"v":99,"id":"v1","type":"ping"}"#.into())
        .await
        .expect("write");
    expect_error(&mut c, ErrorCode::UnsupportedVersion, Some("v1")).await;

    c.send_text(r#"{"v":1,"id":"f1","type":"send","room":"ops"}"#.into())
        .await
        .expect("write");
    expect_error(&mut c, ErrorCode::InvalidFrame, Some("f1")).await;

    let oversized = format!(
        r#"{{"v":1,"id":"big","type":"ping","pad":"{}"}}"#,
        "x".repeat(8000)
    );
    c.send_text(oversized).await.expect("write");
    expect_error(&mut c, ErrorCode::TooLarge, None).await;
    still_usable(&mut c).await;

    let err = c
        .send(&ops(), "big-body", Body::text("y".repeat(2000)))
        .await
        .expect_err("body too large");
    assert!(
        matches!(
            err,
            ClientError::Server {
                code: ErrorCode::TooLarge,
                ..
            }
        ),
        "{err:?}"
    );
    let err = c
        .send(&ops(), "empty", Body::text("   "))
        .await
        .expect_err("empty body");
    assert!(
        matches!(
            err,
            ClientError::Server {
                code: ErrorCode::InvalidRequest,
                ..
            }
        ),
        "{err:?}"
    );
    still_usable(&mut c).await;

    // A well-formed message after all that goes through, and nothing else was stored.
    let ack = c
        .send(&ops(), "ok", Body::text("fine"))
        .await
        .expect("send");
    assert_eq!(ack.seq, 1);
    assert_eq!(events(&mut bystander, 1).await[0].seq, 1);
    let page = d
        .client("admin")
        .await
        .history(&ops(), &HistoryQuery::default())
        .await
        .expect("history");
    assert_eq!(page.messages.len(), 1);

    // Beyond the hard limit the protocol gives up on the socket: the server says too_large and
    // closes with 1009 when the socket still takes it (the peer may also see a reset, as the
    // unread rest of the frame is discarded); either way it serves others.
    c.send_text("z".repeat(100 * 1024)).await.ok();
    let end = within("close", async {
        loop {
            match c.next().await {
                Ok(Some(frame)) => match frame.frame {
                    ServerFrame::Error { code, .. } => assert_eq!(code, ErrorCode::TooLarge),
                    other => panic!("unexpected {other:?}"),
                },
                other => return other,
            }
        }
    })
    .await;
    match &end {
        Err(ClientError::Closed(Some(reason))) if reason == "too_large" => {}
        Err(ClientError::Closed(_)) | Ok(None) => {
            eprintln!("hard limit: connection ended ({end:?})")
        }
        other => panic!("expected the connection to end, got {other:?}"),
    }
    still_usable(&mut bystander).await;
    let ack = bystander
        .send(&ops(), "after", Body::text("still here"))
        .await
        .expect("send");
    assert_eq!(ack.seq, 2);
}

#[tokio::test]
async fn bad_http_requests_get_coded_json_errors() {
    let mut d = TestDeployment::new();
    d.start().await;
    let (http, base) = d.http("admin").await;

    let cases = [
        (
            http.post(format!("{base}/v1/rooms"))
                .body("{not json")
                .header("content-type", "application/json"),
            400,
        ),
        (
            http.post(format!("{base}/v1/rooms"))
                .json(&serde_json::json!({"name": "../etc"})),
            400,
        ),
        (http.post(format!("{base}/v1/rooms/..%2Fetc/join")), 400),
        (
            http.get(format!("{base}/v1/rooms/ops/messages?limit=many")),
            400,
        ),
        (http.get(format!("{base}/v1/nothing-here")), 400),
        (
            http.post(format!("{base}/v1/rooms"))
                .header("content-type", "application/json")
                .body(format!(
                    r#"{{"name":"x","topic":"{}"}}"#,
                    "t".repeat(100 * 1024)
                )),
            413,
        ),
    ];
    for (request, status) in cases {
        let response = request.send().await.expect("answer");
        assert_eq!(response.status().as_u16(), status);
        let body: escape_proto::ErrorBody = response.json().await.expect("coded JSON error");
        assert!(!body.message.is_empty());
    }
}

#[tokio::test]
async fn a_reader_that_does_not_read_is_disconnected_and_resumes_later_without_loss() {
    let mut d = TestDeployment::new();
    d.limits.send_queue_frames = 4;
    d.limits.slow_consumer_ms = 300;
    // This test floods on purpose; flood control is tested in flood.rs.
    d.limits.sends_per_second = 100_000;
    d.limits.send_burst = 100_000;
    d.limits.frames_per_second = 100_000;
    d.start().await;
    d.client("admin")
        .await
        .create_room(ops(), String::new())
        .await
        .expect("create");
    let client = d.client("admin").await;

    // A socket with a tiny receive window that is then never read.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let tcp = socket.connect(d.addr()).await.expect("connect");
    let mut slow = Channel::over(&client, tcp).await.expect("channel");
    slow.subscribe(&ops(), None).await.expect("subscribe");

    const TOTAL: u64 = 400;
    let mut sender = d.channel("admin").await;
    let text = "s".repeat(8 * 1024);
    for i in 1..=TOTAL {
        sender
            .send(&ops(), &i.to_string(), Body::text(text.clone()))
            .await
            .expect("send never blocks on a slow reader");
    }
    // Give the server time to notice, then read: the stream ends with slow_consumer (if the
    // goodbye fit in the socket) or just ends; it does not carry all 400 events.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut last = 0;
    let mut told = false;
    while let Ok(Some(frame)) = within("slow reader drain", slow.next()).await {
        match frame.frame {
            ServerFrame::Event(e) => last = e.seq,
            ServerFrame::Error { code, .. } => {
                assert_eq!(code, ErrorCode::SlowConsumer);
                told = true;
            }
            _ => {}
        }
    }
    assert!(
        last < TOTAL,
        "the slow reader was cut off (it got {last} of {TOTAL})"
    );
    eprintln!("slow reader cut off after #{last}; told why: {told}");

    // It resumes from its last sequence and gets the rest, exactly.
    let mut resumed = d.channel("admin").await;
    resumed.subscribe(&ops(), Some(last)).await.expect("resume");
    let rest = events(&mut resumed, (TOTAL - last) as usize).await;
    assert_eq!(rest.first().map(|e| e.seq), Some(last + 1));
    assert_eq!(rest.last().map(|e| e.seq), Some(TOTAL));
}
