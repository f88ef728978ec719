//! Deliveries per second through the server's delivery path, with the per-recipient policy check
//! and without it: `cargo bench -p escape-server --bench deliveries`.
//!
//! The path is what a subscription does for every event it owes a recipient: read the events
//! from the room's log in batches, ask the gate whether this recipient may see each one now (the
//! room's policy, then the event's own rules: history for joiners, TLP), and encode the event
//! frame for the socket. "Check off" runs the same loop without the gate call,
//! to show what the check costs; the server itself has no such switch. Socket writes are left
//! out (the load generator measures those end to end), and the store is the in-memory one so the
//! figure is the CPU cost, not the disk's: once plain, once sealed at rest (every value opened
//! with XChaCha20-Poly1305 on read) as the server runs it. Prints one JSON object per case.

use std::sync::Arc;
use std::time::Instant;

use escape_proto::frame::ServerMessage;
use escape_proto::message::Body;
use escape_proto::room::CreateRoom;
use escape_proto::{Attributes, Member, MemberId, RoomName, ServerFrame};
use escape_server::config::Limits;
use escape_server::gate::{Deployment, Gate, action};
use escape_server::identity::Principal;
use escape_server::policy::{PolicyEngine, ROOM_TEMPLATES};
use escape_server::registry::Registry;
use escape_server::rooms::Rooms;
use escape_server::seal::{MasterKey, MasterKeyOptions, SealedStore};
use escape_server::store::{MemoryStore, Store};

const EVENTS: u64 = 20_000;
const PASSES: u32 = 5;
const READ_BATCH: usize = 128;

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    // The in-memory store, plain, then sealed at rest as the server runs it.
    run_on("plain store", Arc::new(MemoryStore::new())).await;
    let keys = tempfile::tempdir().expect("tempdir");
    let (master, _) = MasterKey::load_or_create(&MasterKeyOptions {
        path: keys.path().join("master-key"),
        passphrase: None,
    })
    .expect("master key");
    let sealed = SealedStore::new(Arc::new(MemoryStore::new()), &master).expect("sealed");
    run_on("sealed store", Arc::new(sealed)).await;
}

async fn run_on(label: &str, store: Arc<dyn Store>) {
    let registry = Registry::new(store.clone());
    let id = MemberId::parse("grid").expect("id");
    let mut member = Member::new(id.clone(), "grid");
    member.attributes = Attributes {
        organisation: "GridCo".into(),
        country: "EE".into(),
        sector: "energy".into(),
        role: "analyst".into(),
        clearance: 1,
        vetting: "vetted".into(),
        clients: Vec::new(),
    };
    registry.put(&member).expect("member");
    let policy = Arc::new(PolicyEngine::load(store.clone()).expect("policy"));
    let gate = Gate::new(store.clone(), policy.clone());
    let (rooms, _committer) = Rooms::new(store.clone(), Limits::default());
    let principal = Principal::resolve_id(&registry, &id).expect("principal");

    let room = RoomName::parse("energy").expect("room");
    let create = gate
        .authorize::<action::CreateRoom>(&principal, Deployment)
        .expect("create");
    rooms
        .create(&create, CreateRoom::new(room.clone(), "bench"))
        .expect("room");
    let energy = ROOM_TEMPLATES
        .iter()
        .find(|(name, _, _)| *name == "energy-sector-amber")
        .map(|(_, _, text)| *text)
        .expect("template");
    policy.set(Some(&room), energy, &id).expect("room policy");

    let send = gate
        .authorize::<action::Send>(&principal, room.clone())
        .expect("send");
    let body = "x".repeat(200);
    for i in 0..EVENTS {
        rooms
            .append(&send, format!("bench-{i}"), Body::text(body.clone()))
            .expect("append");
    }
    rooms.durable(&room, EVENTS).await.expect("durable");

    let expiry = Some(time::OffsetDateTime::now_utc() + time::Duration::days(90));
    let deliver = |check: bool| -> usize {
        let mut delivered = 0;
        let mut bytes = 0;
        let mut next = 1;
        while next <= EVENTS {
            let events = rooms
                .read_range(&room, next, EVENTS, READ_BATCH)
                .expect("read");
            for event in events {
                next = event.seq + 1;
                if check {
                    let recipient = Principal::resolve_id(&registry, &id)
                        .expect("recipient")
                        .with_certificate_expiry(expiry);
                    if gate
                        .authorize_frame::<action::Deliver>(&recipient, room.clone(), "event")
                        .is_err()
                        || !gate.may_read_event(&recipient, &event).expect("label")
                    {
                        continue;
                    }
                }
                let frame = ServerMessage::new(None, ServerFrame::Event(event));
                bytes += serde_json::to_string(&frame).expect("encode").len();
                delivered += 1;
            }
        }
        assert!(bytes > 0);
        delivered
    };

    for (case, check) in [("check off", false), ("check on", true)] {
        // One untimed pass warms the allocator and, with the check on, the decision cache,
        // which is the state a busy room is in.
        deliver(check);
        let started = Instant::now();
        let mut delivered = 0;
        for _ in 0..PASSES {
            delivered += deliver(check);
        }
        assert_eq!(delivered, (EVENTS as usize) * PASSES as usize);
        let elapsed = started.elapsed();
        println!(
            "{{\"case\":\"deliveries, {label}, {case}\",\"deliveries\":{delivered},\"ns_per_delivery\":{},\"deliveries_per_second\":{:.0}}}",
            elapsed.as_nanos() / delivered as u128,
            delivered as f64 / elapsed.as_secs_f64()
        );
    }
}
