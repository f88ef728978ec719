//! What was acknowledged stays: across a graceful restart, with sequences continuing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use escape_client::ClientError;
use escape_e2e::{TestDeployment, contains_bytes, next_frame};
use escape_proto::room::HistoryQuery;
use escape_proto::{Body, ErrorCode, RoomName, ServerFrame};
use escape_server::store::{Batch, Entry, Order, Range, Store, StoreError, Swap};

#[tokio::test]
async fn a_message_acknowledged_before_the_server_stopped_is_there_after_restart() {
    let mut d = TestDeployment::new();
    d.start().await;
    let ops = d.admin_creates("ops").await;
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
    let ops = d.admin_creates("ops").await;
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

/// A disk that fails once told to: from then on every flush returns an error, as a sync does
/// after the kernel dropped a write. Reads and writes go to the real store underneath.
#[derive(Debug)]
struct FailingDisk {
    inner: Arc<dyn Store>,
    failing: Arc<AtomicBool>,
}

impl Store for FailingDisk {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key)
    }

    fn apply(&self, batch: Batch) -> Result<(), StoreError> {
        self.inner.apply(batch)
    }

    fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<Swap, StoreError> {
        self.inner.compare_and_swap(key, expected, new)
    }

    fn scan(&self, range: &Range, order: Order, limit: usize) -> Result<Vec<Entry>, StoreError> {
        self.inner.scan(range, order, limit)
    }

    fn flush(&self) -> Result<(), StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::Backend("the disk lost a write".into()));
        }
        self.inner.flush()
    }
}

/// Starts `d` on a disk that fails while `failing` is set.
async fn start_on(d: &mut TestDeployment, failing: &Arc<AtomicBool>) {
    let switch = failing.clone();
    d.start_layered(move || {
        let failing = switch.clone();
        Box::new(move |inner| Arc::new(FailingDisk { inner, failing }))
    })
    .await;
}

/// A started deployment whose disk fails once the returned switch is set, with a room `ops`
/// the admin created while the disk still worked.
async fn on_a_disk_that_will_fail() -> (TestDeployment, Arc<AtomicBool>, RoomName) {
    let mut d = TestDeployment::new();
    let failing = Arc::new(AtomicBool::new(false));
    start_on(&mut d, &failing).await;
    let ops = d.admin_creates("ops").await;
    (d, failing, ops)
}

#[tokio::test]
async fn a_message_whose_flush_failed_is_never_acknowledged_and_the_server_stops() {
    let (mut d, failing, ops) = on_a_disk_that_will_fail().await;
    let mut channel = d.channel("admin").await;
    channel
        .send(&ops, "before", Body::text("kept"))
        .await
        .expect("acknowledged while the disk works");

    failing.store(true, Ordering::SeqCst);
    // The sender hears why, unless the server, stopping at the same moment, closes the
    // connection first: either way no ack, and the client retries once it is back.
    match channel.send(&ops, "after", Body::text("maybe lost")).await {
        Err(ClientError::Server {
            code: ErrorCode::ShuttingDown,
            ..
        }) => {}
        Err(ClientError::Server { code, message, .. }) => {
            assert_eq!(code, ErrorCode::Internal);
            assert!(message.contains("store failed to write"), "{message}");
            assert!(
                message.contains("retry with the same client_msg_id"),
                "{message}"
            );
        }
        Err(ClientError::Closed(Some(reason))) if reason.contains("shutting_down") => {}
        other => panic!("a message whose flush failed was answered with {other:?}"),
    }
    assert!(d.store_failed());
    d.stopped().await;
}

#[tokio::test]
async fn a_request_whose_write_could_not_be_flushed_says_so_and_the_server_stops() {
    let (mut d, failing, _) = on_a_disk_that_will_fail().await;
    let admin = d.client("admin").await;

    failing.store(true, Ordering::SeqCst);
    let second = RoomName::parse("second").expect("room");
    match admin.create_room(second, String::new()).await {
        Err(ClientError::Server { code, message, .. }) => {
            assert_eq!(code, ErrorCode::Internal);
            assert!(
                message.contains("applied but could not be written to disk"),
                "{message}"
            );
        }
        other => panic!("a write that could not be flushed was answered with {other:?}"),
    }
    assert!(d.store_failed());
    d.stopped().await;

    // Once the disk works again the server starts on it from what it holds, and writes.
    failing.store(false, Ordering::SeqCst);
    start_on(&mut d, &failing).await;
    let admin = d.client("admin").await;
    let third = RoomName::parse("third").expect("room");
    admin
        .create_room(third, String::new())
        .await
        .expect("a write once the disk works");
    let rooms = admin.rooms().await.expect("rooms");
    for name in ["ops", "third"] {
        assert!(rooms.iter().any(|r| r.name.as_str() == name), "{rooms:?}");
    }
    assert!(!d.store_failed());
}

/// A data dir an earlier release wrote, one value per message, serves as before: the history
/// reads, the sequence continues, a retry of an old client message id is still a duplicate, and
/// a redaction reaches an old message's words.
#[tokio::test]
async fn a_room_log_an_earlier_release_wrote_one_message_per_value_is_served_as_before() {
    use escape_server::store::{keys, value};

    let mut d = TestDeployment::new();
    d.start().await;
    let ops = d.admin_creates("ops").await;
    let mut channel = d.channel("admin").await;
    let mut acks = Vec::new();
    for (id, text) in [
        ("one", "first"),
        ("two", "second words"),
        ("three", "third"),
    ] {
        acks.push(channel.send(&ops, id, Body::text(text)).await.expect("ack"));
    }
    channel.close().await;
    d.stop().await;

    // Rewrite the room's log as an earlier release laid it out: each event its own value,
    // under its own sequence.
    let store = d.open_store();
    let runs = store
        .scan_prefix(&keys::messages_prefix(&ops), usize::MAX)
        .expect("scan");
    assert!(!runs.is_empty());
    let mut batch = Batch::in_order();
    let mut rewritten = 0;
    for (key, bytes) in runs {
        let events: Vec<escape_proto::Event> = if value::is_array(&bytes) {
            value::decode(&key, &bytes).expect("run")
        } else {
            vec![value::decode(&key, &bytes).expect("event")]
        };
        batch.delete(key);
        for event in events {
            batch.put(
                keys::message(&ops, event.seq),
                value::encode(&event).expect("encode"),
            );
            rewritten += 1;
        }
    }
    assert!(
        rewritten >= acks.len(),
        "every message rewritten ({rewritten})"
    );
    store.apply(batch).expect("rewrite");
    store.flush().expect("flush");
    drop(store);

    d.start().await;
    let admin = d.client("admin").await;
    let page = admin
        .history(&ops, &HistoryQuery::default())
        .await
        .expect("history");
    let texts: Vec<_> = page
        .messages
        .iter()
        .filter(|m| matches!(m.body, Body::Text { .. }))
        .map(|m| (m.seq, m.body.clone()))
        .collect();
    assert_eq!(
        texts,
        vec![
            (acks[0].seq, Body::text("first")),
            (acks[1].seq, Body::text("second words")),
            (acks[2].seq, Body::text("third")),
        ]
    );
    let mut channel = d.channel("admin").await;
    let next = channel
        .send(&ops, "four", Body::text("fourth"))
        .await
        .expect("ack");
    assert_eq!(next.seq, acks[2].seq + 1);
    let retry = channel
        .send(&ops, "two", Body::text("second words"))
        .await
        .expect("ack");
    assert!(retry.duplicate);
    assert_eq!(retry.seq, acks[1].seq);
    channel.close().await;

    admin
        .redact(&ops, acks[1].seq, "shared by mistake".into())
        .await
        .expect("redact an old message");
    let page = admin
        .history(&ops, &HistoryQuery::default())
        .await
        .expect("history");
    let old = page
        .messages
        .iter()
        .find(|m| m.seq == acks[1].seq)
        .expect("still listed");
    assert_eq!(old.body, Body::Redacted);
    d.stop().await;
    let store = d.open_store();
    let words = store
        .scan_prefix(&keys::messages_prefix(&ops), usize::MAX)
        .expect("scan")
        .iter()
        .any(|(_, bytes)| contains_bytes(bytes, b"second words"));
    assert!(!words, "the old message's words are gone from the store");
}
