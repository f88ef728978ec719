//! The cost of one policy decision, uncached and cached: `cargo bench -p escape-server --bench policy`.
//!
//! Prints one JSON object per case (what BENCHMARKS.md quotes). Runs a fixed number of
//! iterations so it finishes in seconds; the figures are per decision on one core.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use escape_proto::{Attributes, Member, MemberId, RoomName};
use escape_server::gate::ActionKind;
use escape_server::policy::{PolicyEngine, ROOM_TEMPLATES, RoomAttributes, Target};
use escape_server::store::MemoryStore;

const ITERATIONS: u32 = 20_000;

fn main() {
    let engine = PolicyEngine::load(Arc::new(MemoryStore::new())).expect("engine");
    let room = RoomName::parse("energy").expect("room");
    let energy = ROOM_TEMPLATES
        .iter()
        .find(|(name, _, _)| *name == "energy-sector-amber")
        .map(|(_, _, text)| *text)
        .expect("template");
    let admin = MemberId::parse("admin").expect("id");
    engine.set(Some(&room), energy, &admin).expect("policy");
    let mut member = Member::new(MemberId::parse("grid").expect("id"), "grid");
    member.attributes = Attributes {
        organisation: "GridCo".into(),
        country: "EE".into(),
        sector: "energy".into(),
        role: "analyst".into(),
        clearance: 1,
        vetting: "vetted".into(),
        clients: Vec::new(),
    };
    let target = Target::Room(RoomAttributes {
        name: room.clone(),
        classification: 0,
        tlp_max: "AMBER".into(),
        owner_organisation: "CERT-EE".into(),
        tags: Vec::new(),
    });
    let deployment = engine.deployment_set().expect("deployment set");
    let room_set = engine.room_set(&room).expect("room set");

    // Uncached: a full Cedar evaluation (entities, request, authorizer) every time.
    let started = Instant::now();
    for _ in 0..ITERATIONS {
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
        assert!(black_box(allowed));
    }
    report("policy decision, uncached", started, ITERATIONS);

    // Cached: what a delivery pays once the member's decision for the room is known.
    engine
        .decide(&member, ActionKind::Deliver, &target, "event", 9999)
        .expect("permit");
    let started = Instant::now();
    for _ in 0..ITERATIONS {
        engine
            .decide(
                black_box(&member),
                ActionKind::Deliver,
                &target,
                "event",
                9999,
            )
            .expect("permit");
    }
    report("policy decision, cached", started, ITERATIONS);
    let (hits, misses) = engine.cache().stats();
    println!("{{\"case\":\"cache\",\"hits\":{hits},\"misses\":{misses}}}");
}

fn report(case: &str, started: Instant, iterations: u32) {
    let elapsed = started.elapsed();
    let per = elapsed / iterations;
    let per_second = f64::from(iterations) / elapsed.as_secs_f64();
    println!(
        "{{\"case\":\"{case}\",\"iterations\":{iterations},\"ns_per_decision\":{},\"decisions_per_second\":{per_second:.0}}}",
        per.as_nanos()
    );
}
