//! What was acknowledged stays: across a graceful restart, with sequences continuing.

use escape_e2e::{TestDeployment, next_frame};
use escape_proto::room::HistoryQuery;
use escape_proto::{Body, ErrorCode, RoomName, ServerFrame};

#[tokio::test]
async fn a_message_acknowledged_before_the_server_stopped_is_there_after_restart() {
    let mut d = TestDeployment::new();
    d.start().await;
    let ops = RoomName::parse("ops").expect("room");
    d.client("admin")
        .await
        .create_room(ops.clone(), String::new())
        .await
        .expect("create");
    let mut channel = d.channel("admin").await;
    let ack = channel
        .send(&ops, "keep-me", Body::text("durable"))
        .await
        .expect("ack");
    channel.close().await;

    d.restart().await;
    let admin = d.client("admin").await;
    let page = admin
        .history(&ops, &HistoryQuery::default())
        .await
        .expect("history");
    assert_eq!(page.messages.len(), 1);
    assert_eq!(page.messages[0].seq, ack.seq);
    assert_eq!(page.messages[0].body, Body::text("durable"));

    // The sequence continues, and the old client message id is still known.
    let mut channel = d.channel("admin").await;
    let next = channel
        .send(&ops, "after-restart", Body::text("next"))
        .await
        .expect("ack");
    assert_eq!(next.seq, ack.seq + 1);
    let retry = channel
        .send(&ops, "keep-me", Body::text("durable"))
        .await
        .expect("ack");
    assert!(retry.duplicate);
    assert_eq!(retry.seq, ack.seq);
    assert_eq!(admin.rooms().await.expect("rooms")[0].head, next.seq);
}

#[tokio::test]
async fn shutdown_closes_websockets_with_a_reason() {
    let mut d = TestDeployment::new();
    d.start().await;
    let ops = RoomName::parse("ops").expect("room");
    d.client("admin")
        .await
        .create_room(ops.clone(), String::new())
        .await
        .expect("create");
    let mut channel = d.channel("admin").await;
    channel.subscribe(&ops, None).await.expect("subscribe");
    d.stop().await;
    match next_frame(&mut channel).await.frame {
        ServerFrame::Error { code, .. } => assert_eq!(code, ErrorCode::ShuttingDown),
        other => panic!("expected shutting_down, got {other:?}"),
    }
    let end = channel.next().await;
    assert!(
        matches!(end, Err(escape_client::ClientError::Closed(Some(ref reason))) if reason == "shutting_down"),
        "expected a close frame, got {end:?}"
    );
}
