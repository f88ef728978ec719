//! Micro-benchmarks of the hot paths, with criterion: `cargo bench -p escape-bench --bench micro`.
//!
//! - `policy`: one decision of the gate's Cedar layer, uncached and cached (what every delivery asks).
//! - `deliveries`: what a subscription does for each event it owes a recipient (read from the room
//!   log in batches, the whole per-recipient check, the frame), with the check and without it (the
//!   server has no such switch; it shows what the check costs), on the in-memory store plain and
//!   sealed at rest, for a live reader (events in the room's window of recent events, frames
//!   encoded once and shared) and for a reader catching up on a backlog (read from the store).
//! - `frames`: encoding an event frame, decoding a client's send frame.
//! - `seal`: writing and reading one 256-byte value through the sealed store (XChaCha20-Poly1305).
//! - `commit`: the acked-message path on disk (sled under a temporary folder, sealed as the server
//!   runs it): one message appended and waited durable, and 64 appended together and waited on
//!   once (group commit: one flush for all).
//! - `store`: sled alone, 64 appends of a message's two writes then one flush, as atomic batches
//!   and as in-order ones (what the room log uses), while another thread flushes as the committer
//!   does: why appends are not atomic batches.
//!
//! `escape-load all --criterion target/criterion` reads the estimates into the results.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use escape_proto::frame::ServerMessage;
use escape_proto::message::Body;
use escape_proto::room::CreateRoom;
use escape_proto::{
    Attributes, ClientFrame, ClientRequest, Member, MemberId, RoomName, ServerFrame,
};
use escape_server::config::Limits;
use escape_server::gate::{ActionKind, Authorized, Deployment, Gate, action};
use escape_server::identity::Principal;
use escape_server::policy::{PolicyEngine, ROOM_TEMPLATES, RoomAttributes, Target};
use escape_server::registry::Registry;
use escape_server::rooms::Rooms;
use escape_server::seal::{MasterKey, MasterKeyOptions, SealedStore};
use escape_server::store::{Batch, EpochStore, MemoryStore, SledStore, Store};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn energy_template() -> &'static str {
    ROOM_TEMPLATES
        .iter()
        .find(|(name, _, _)| *name == "energy-sector-amber")
        .map(|(_, _, text)| *text)
        .expect("template")
}

fn analyst(id: &MemberId) -> Member {
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
    member
}

fn sealed(inner: Arc<dyn Store>, keys: &tempfile::TempDir) -> Arc<dyn Store> {
    let (master, _) = MasterKey::load_or_create(&MasterKeyOptions {
        path: keys.path().join("master-key"),
        passphrase: None,
    })
    .expect("master key");
    Arc::new(SealedStore::new(inner, &master).expect("sealed"))
}

/// A member in a room governed by the energy-sector template, over `store`.
struct Room {
    registry: Registry,
    gate: Gate,
    rooms: Rooms,
    id: MemberId,
    room: RoomName,
    send: Authorized<action::Send>,
    _committer: tokio::task::JoinHandle<()>,
}

fn room(store: Arc<dyn Store>) -> Room {
    // As the server runs it: writes that decide access are counted, so a subscription keeps
    // what it read of the member, the room and the membership until one happens.
    let counted = EpochStore::new(store);
    let epoch = counted.epoch();
    let store: Arc<dyn Store> = Arc::new(counted);
    let registry = Registry::new(store.clone());
    let id = MemberId::parse("grid").expect("id");
    registry.put(&analyst(&id)).expect("member");
    let policy = Arc::new(PolicyEngine::load(store.clone()).expect("policy"));
    let gate = Gate::new(store.clone(), policy.clone()).with_epoch(epoch);
    let (rooms, committer) = Rooms::new(store, Limits::default());
    let principal = Principal::resolve_id(&registry, &id).expect("principal");
    let room = RoomName::parse("energy").expect("room");
    let create = gate
        .authorize::<action::CreateRoom>(&principal, Deployment)
        .expect("create");
    rooms
        .create(&create, CreateRoom::new(room.clone(), "bench"))
        .expect("room");
    policy
        .set(Some(&room), energy_template(), &id)
        .expect("room policy");
    let send = gate
        .authorize::<action::Send>(&principal, room.clone())
        .expect("send");
    Room {
        registry,
        gate,
        rooms,
        id,
        room,
        send,
        _committer: committer,
    }
}

fn policy(c: &mut Criterion) {
    let engine = PolicyEngine::load(Arc::new(MemoryStore::new())).expect("engine");
    let room = RoomName::parse("energy").expect("room");
    let admin = MemberId::parse("admin").expect("id");
    engine
        .set(Some(&room), energy_template(), &admin)
        .expect("policy");
    let member = analyst(&MemberId::parse("grid").expect("id"));
    let target = Target::Room(RoomAttributes {
        name: room.clone(),
        classification: 0,
        tlp_max: "AMBER".into(),
        owner_organisation: "CERT-EE".into(),
        tags: Vec::new(),
    });
    let deployment = engine.deployment_set().expect("deployment set");
    let room_set = engine.room_set(&room).expect("room set");
    let mut group = c.benchmark_group("policy");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decision uncached", |b| {
        b.iter(|| {
            let allowed = engine
                .evaluate(
                    black_box(&member),
                    "deliver",
                    &target,
                    "event",
                    &deployment,
                    Some(&room_set),
                )
                .expect("evaluate");
            assert!(allowed);
        })
    });
    group.bench_function("decision cached", |b| {
        b.iter(|| {
            engine
                .decide(
                    black_box(&member),
                    ActionKind::Deliver,
                    &target,
                    "event",
                    9999,
                )
                .expect("permit")
        })
    });
    group.finish();
}

const EVENTS: u64 = 10_000;
/// The newest events, which a live reader reads (well inside the room's window).
const LIVE: u64 = 256;
const READ_BATCH: usize = 128;

fn deliveries(c: &mut Criterion) {
    let rt = runtime();
    let keys = tempfile::tempdir().expect("tempdir");
    let mut group = c.benchmark_group("deliveries");
    group.sample_size(10);
    for (label, store) in [
        ("plain", Arc::new(MemoryStore::new()) as Arc<dyn Store>),
        ("sealed", sealed(Arc::new(MemoryStore::new()), &keys)),
    ] {
        let r = rt.block_on(async {
            let r = room(store);
            let body = "x".repeat(200);
            for i in 0..EVENTS {
                r.rooms
                    .append(&r.send, format!("bench-{i}"), Body::text(body.clone()))
                    .expect("append");
            }
            r.rooms.durable(&r.room, EVENTS).await.expect("durable");
            r
        });
        let expiry = Some(time::OffsetDateTime::now_utc() + time::Duration::days(90));
        // As `ws::subscription` does it, for one recipient.
        let deliver = |from: u64, to: u64, check: bool| {
            let mut delivered = 0u64;
            let mut next = from;
            let mut deliveries = None;
            while next <= to {
                let events = r
                    .rooms
                    .read_range(&r.room, next, to, READ_BATCH)
                    .expect("read");
                if check && !deliveries.as_ref().is_some_and(|d| r.gate.still_current(d)) {
                    deliveries = Some(
                        r.gate
                            .deliveries(&r.registry, &r.id, expiry, &r.room)
                            .expect("recipient"),
                    );
                }
                for event in events {
                    next = event.seq + 1;
                    if let Some(deliveries) = &deliveries
                        && !r.gate.admit(deliveries, &event).expect("decision")
                    {
                        continue;
                    }
                    black_box(event.frame());
                    delivered += 1;
                }
            }
            assert_eq!(delivered, to + 1 - from);
        };
        let backlog = EVENTS - LIVE;
        for (reader, from, to) in [("live", EVENTS - LIVE + 1, EVENTS), ("backlog", 1, backlog)] {
            group.throughput(Throughput::Elements(to + 1 - from));
            for (case, check) in [("check off", false), ("check on", true)] {
                group.bench_function(format!("{label} store, {reader}, {case}"), |b| {
                    b.iter(|| deliver(from, to, check))
                });
            }
        }
    }
    group.finish();
}

fn frames(c: &mut Criterion) {
    let rt = runtime();
    let r = rt.block_on(async { room(Arc::new(MemoryStore::new())) });
    let appended = r
        .rooms
        .append(&r.send, "m-1".into(), Body::text("x".repeat(200)))
        .expect("append");
    let event = rt
        .block_on(async {
            r.rooms.durable(&r.room, appended.seq).await?;
            r.rooms.event(&r.room, appended.seq)
        })
        .expect("event")
        .expect("stored");
    let send = serde_json::to_string(&ClientRequest::new(
        "7",
        ClientFrame::Send {
            room: r.room.clone(),
            client_msg_id: "c-1".into(),
            body: Body::text("x".repeat(200)),
        },
    ))
    .expect("encode");
    let mut group = c.benchmark_group("frames");
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode event (200-byte text)", |b| {
        b.iter(|| ServerMessage::new(None, ServerFrame::Event(black_box(event.clone()))).encode())
    });
    group.bench_function("decode send (200-byte text)", |b| {
        b.iter(|| ClientRequest::decode(black_box(&send)).expect("decode"))
    });
    group.finish();
}

fn seal(c: &mut Criterion) {
    let keys = tempfile::tempdir().expect("tempdir");
    let store = sealed(Arc::new(MemoryStore::new()), &keys);
    let value = vec![0x42u8; 256];
    const KEYS: u64 = 50_000;
    for i in 0..KEYS {
        store
            .put(format!("bench/{i:08}").as_bytes(), &value)
            .expect("put");
    }
    let mut group = c.benchmark_group("seal");
    group.throughput(Throughput::Elements(1));
    let mut i = 0u64;
    group.bench_function("put 256 bytes", |b| {
        b.iter(|| {
            i += 1;
            store
                .put(
                    format!("bench/{:08}", i % KEYS).as_bytes(),
                    black_box(&value),
                )
                .expect("put")
        })
    });
    // Keys read in turn, more than the opened-value cache holds: every read decrypts.
    let mut j = 0u64;
    group.bench_function("get 256 bytes", |b| {
        b.iter(|| {
            j = (j + 7919) % KEYS;
            store
                .get(format!("bench/{j:08}").as_bytes())
                .expect("get")
                .expect("present")
        })
    });
    group.finish();
}

fn commit(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let disk: Arc<dyn Store> = Arc::new(SledStore::open(&dir.path().join("db")).expect("sled"));
    let store = sealed(disk, &dir);
    let r = rt.block_on(async { room(store) });
    let body = Body::text("x".repeat(200));
    let mut n = 0u64;
    let mut group = c.benchmark_group("commit");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(4));
    for batch in [1u64, 64] {
        group.throughput(Throughput::Elements(batch));
        let name = if batch == 1 {
            "one acked message, one flush".to_owned()
        } else {
            format!("{batch} acked messages, one group flush")
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut last = 0;
                for _ in 0..batch {
                    n += 1;
                    last = r
                        .rooms
                        .append(&r.send, format!("c-{n}"), body.clone())
                        .expect("append")
                        .seq;
                }
                rt.block_on(r.rooms.durable(&r.room, last))
                    .expect("durable");
            })
        });
    }
    group.finish();
}

fn store(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir.path().join("db")).expect("sled"));
    // The committer's flushes, beside the appends as in the server.
    let stop = Arc::new(AtomicBool::new(false));
    let flusher = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                store.flush().expect("flush");
            }
        })
    };
    let message = vec![7u8; 400];
    let mut n = 0u64;
    let mut group = c.benchmark_group("store");
    group.sample_size(20);
    group.throughput(Throughput::Elements(64));
    for in_order in [false, true] {
        let name = if in_order {
            "64 appends, in-order batches, one flush"
        } else {
            "64 appends, atomic batches, one flush"
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                for _ in 0..64 {
                    n += 1;
                    let mut batch = if in_order {
                        Batch::in_order()
                    } else {
                        Batch::default()
                    };
                    batch
                        .put(format!("m/{n:016}"), message.clone())
                        .put(format!("c/{n}"), n.to_be_bytes().to_vec());
                    store.apply(batch).expect("apply");
                }
                store.flush().expect("flush");
            })
        });
    }
    group.finish();
    stop.store(true, Ordering::Relaxed);
    flusher.join().expect("flusher");
}

criterion_group! {
    name = micro;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = policy, deliveries, frames, seal, commit, store
}
criterion_main!(micro);
