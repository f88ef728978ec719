//! Flood control: per-member limits on sends, joins and alerts with a clear error and when to
//! retry, a cap on sessions per member, and an idle timeout for quiet sessions.

use std::time::Duration;

use escape_client::{Channel, ClientError};
use escape_e2e::{TestDeployment, next_frame};
use escape_proto::{Body, ErrorCode, RoomName, ServerFrame};

fn code(err: &ClientError) -> Option<ErrorCode> {
    match err {
        ClientError::Server { code, .. } => Some(*code),
        _ => None,
    }
}

#[tokio::test]
async fn sends_and_joins_beyond_the_limits_are_refused_with_when_to_retry() {
    let mut d = TestDeployment::new();
    d.add_member("ana", "CERT-A");
    d.limits.sends_per_second = 1;
    d.limits.send_burst = 3;
    d.limits.joins_per_minute = 2;
    d.start().await;
    let admin = d.client("admin").await;
    for name in ["r1", "r2", "r3"] {
        admin
            .create_room(RoomName::parse(name).expect("room"), String::new())
            .await
            .expect("room");
    }
    let r1 = RoomName::parse("r1").expect("room");
    let ana = d.client("ana").await;
    ana.join(&r1).await.expect("first join");
    ana.join(&RoomName::parse("r2").expect("room"))
        .await
        .expect("second join");
    let err = ana
        .join(&RoomName::parse("r3").expect("room"))
        .await
        .expect_err("third join in a minute");
    assert_eq!(code(&err), Some(ErrorCode::RateLimited), "{err:?}");
    assert!(err.to_string().contains("retry in"), "{err}");

    let mut channel = d.channel("ana").await;
    for i in 0..3 {
        channel
            .send(&r1, &format!("m{i}"), Body::text("burst"))
            .await
            .expect("within the burst");
    }
    let err = channel
        .send(&r1, "m3", Body::text("one too many"))
        .await
        .expect_err("limited");
    assert_eq!(code(&err), Some(ErrorCode::RateLimited), "{err:?}");
    // Nothing was stored for the refused send; after a pause the same id goes through.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let ack = channel
        .send(&r1, "m3", Body::text("one too many"))
        .await
        .expect("after the pause");
    assert_eq!(ack.seq, 4);
    assert!(!ack.duplicate);
}

#[tokio::test]
async fn sessions_per_member_are_capped_and_quiet_sessions_time_out() {
    let mut d = TestDeployment::new();
    d.limits.connections_per_member = 2;
    d.limits.idle_timeout_ms = 400;
    d.start().await;
    let client = d.client("admin").await;
    let first = Channel::connect(&client).await.expect("first");
    let _second = Channel::connect(&client).await.expect("second");
    let third = Channel::connect(&client).await;
    assert!(third.is_err(), "a third session is refused");

    // The first session says nothing: it is closed with a reason.
    let mut first = first;
    match next_frame(&mut first).await.frame {
        ServerFrame::Error { code, .. } => assert_eq!(code, ErrorCode::IdleTimeout),
        other => panic!("expected the idle timeout, got {other:?}"),
    }
    // With one session gone, a new one is accepted again.
    tokio::time::sleep(Duration::from_millis(100)).await;
    Channel::connect(&client).await.expect("room for another");
}

#[tokio::test]
async fn one_connection_cannot_flood_frames() {
    let mut d = TestDeployment::new();
    d.limits.frames_per_second = 5;
    d.start().await;
    let mut channel = d.channel("admin").await;
    for _ in 0..8 {
        channel
            .request(escape_proto::ClientFrame::Ping)
            .await
            .expect("write");
    }
    let mut pongs = 0;
    let mut limited = 0;
    for _ in 0..8 {
        match next_frame(&mut channel).await.frame {
            ServerFrame::Pong => pongs += 1,
            ServerFrame::Error { code, .. } => {
                assert_eq!(code, ErrorCode::RateLimited);
                limited += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((pongs, limited), (5, 3));
}

#[tokio::test]
async fn alerts_and_shares_are_limited_and_http_says_when_to_retry() {
    let mut d = TestDeployment::new();
    d.limits.alerts_per_minute = 1;
    d.limits.sends_per_second = 1;
    d.limits.send_burst = 2;
    d.start().await;
    let admin = d.client("admin").await;
    let room = RoomName::parse("shares").expect("room");
    admin
        .create_room(room.clone(), String::new())
        .await
        .expect("room");

    // Alerts: dry runs count too (each reveals how many members match a condition).
    let alert = |dry_run| escape_proto::alert::SendAlert {
        to: "sector=energy".into(),
        tlp: "GREEN".into(),
        severity: escape_proto::alert::Severity::High,
        text: "patch now".into(),
        dry_run,
    };
    admin.send_alert(&alert(true)).await.expect("first alert");
    let err = admin
        .send_alert(&alert(true))
        .await
        .expect_err("second alert in a minute");
    assert_eq!(code(&err), Some(ErrorCode::RateLimited), "{err:?}");

    // A share costs one send (and one more per hundred indicators): the third share in a
    // burst of two waits.
    let share = |value: &str| escape_proto::indicator::ShareIndicators {
        indicators: vec![escape_proto::indicator::IndicatorDraft {
            value: value.into(),
            tlp: "GREEN".into(),
            ..Default::default()
        }],
    };
    for value in ["198.51.100.7", "198.51.100.8"] {
        admin
            .share_indicators(&room, &share(value))
            .await
            .expect("within the burst");
    }
    let err = admin
        .share_indicators(&room, &share("198.51.100.9"))
        .await
        .expect_err("over the burst");
    assert_eq!(code(&err), Some(ErrorCode::RateLimited), "{err:?}");

    // Over HTTP the refusal is a 429 with Retry-After in whole seconds.
    let (http, base) = d.http("admin").await;
    let response = http
        .post(format!("{base}/v1/alerts"))
        .json(&alert(true))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 429);
    let retry: u64 = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&retry), "retry after {retry} s");
}
