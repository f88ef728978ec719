//! Threat indicators: validation, TLP 2.0 enforced on every path with two (and more)
//! organisations, relabelling, correlation, sightings, STIX export and import.

use escape_client::{Client, ClientError};
use escape_e2e::{TestDeployment, next_frame};
use escape_proto::indicator::{IndicatorDraft, IndicatorRecord, ShareIndicators, ShareOutcome};
use escape_proto::room::{CreateRoom, HistoryQuery};
use escape_proto::tlp::Tlp;
use escape_proto::{Body, ErrorCode, RoomName, ServerFrame};

fn room(name: &str) -> RoomName {
    RoomName::parse(name).expect("room")
}

fn draft(value: &str, tlp: &str) -> IndicatorDraft {
    IndicatorDraft {
        value: value.into(),
        tlp: tlp.into(),
        ..IndicatorDraft::default()
    }
}

async fn share(client: &Client, room: &RoomName, drafts: Vec<IndicatorDraft>) -> Vec<ShareOutcome> {
    client
        .share_indicators(room, &ShareIndicators { indicators: drafts })
        .await
        .expect("share")
        .outcomes
}

fn code(err: &ClientError) -> Option<ErrorCode> {
    match err {
        ClientError::Server { code, .. } => Some(*code),
        _ => None,
    }
}

fn labels(records: &[IndicatorRecord]) -> Vec<Tlp> {
    let mut labels: Vec<Tlp> = records.iter().map(|r| r.indicator.tlp).collect();
    labels.sort();
    labels
}

/// A room that takes every label, with the given members joined.
async fn intel_room(d: &TestDeployment, owner: &str, members: &[&str]) -> RoomName {
    let r = room("intel");
    let mut request = CreateRoom::new(r.clone(), "");
    request.tlp_max = Some("RED".into());
    d.client(owner)
        .await
        .create_room_with(&request)
        .await
        .expect("room");
    for m in members {
        d.client(m).await.join(&r).await.expect("join");
    }
    r
}

#[tokio::test]
async fn indicators_are_validated_normalised_and_reported_one_by_one() {
    let mut d = TestDeployment::new();
    d.add_member_as("ana", escape_e2e::attributes("CERT-A", &[]));
    d.start().await;
    let r = intel_room(&d, "ana", &[]).await;
    let ana = d.client("ana").await;
    let outcomes = share(
        &ana,
        &r,
        vec![
            draft("hxxps://Evil.Example[.]org/drop", "amber"),
            draft("300.1.1.1", "GREEN"),
            draft("198.51.100[.]7", "TLP:CLEAR"),
            draft("evil.example", "orange"),
            IndicatorDraft {
                confidence: Some(150),
                ..draft("CVE-2024-3094", "GREEN")
            },
        ],
    )
    .await;
    assert_eq!(outcomes.len(), 5);
    match &outcomes[0] {
        ShareOutcome::Accepted { indicator, .. } => {
            assert_eq!(indicator.value, "https://evil.example.org/drop");
            assert_eq!(indicator.tlp, Tlp::Amber);
            assert_eq!(indicator.source_organisation, "CERT-A");
        }
        other => panic!("{other:?}"),
    }
    let rejected_field = |i: usize| match &outcomes[i] {
        ShareOutcome::Rejected { index, error, .. } => {
            assert_eq!(*index, i);
            error.field.clone()
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(
        rejected_field(1),
        "type",
        "300.1.1.1 is no address of any type"
    );
    assert_eq!(rejected_field(3), "tlp");
    assert_eq!(rejected_field(4), "confidence");

    // The label comes first in the JSON and in the room's channel.
    let records = ana.indicators(&r).await.expect("list");
    assert_eq!(records.len(), 2);
    let json = serde_json::to_string(&records[0].indicator).expect("json");
    assert!(json.starts_with("{\"tlp\":\"TLP:AMBER\""), "{json}");
    let page = ana
        .history(&r, &HistoryQuery::default())
        .await
        .expect("history");
    assert!(matches!(&page.messages[0].body, Body::Indicator(i) if i.tlp == Tlp::Amber));

    // The typed frame shares over the WebSocket too, with the same checks and report.
    let mut channel = d.channel("ana").await;
    let report = channel
        .share_indicators(
            &r,
            vec![
                draft("phish[@]evil.example", "GREEN"),
                draft("nope", "GREEN"),
            ],
        )
        .await
        .expect("frame");
    assert!(matches!(
        &report.outcomes[0],
        ShareOutcome::Accepted { indicator, .. } if indicator.value == "phish@evil.example"
    ));
    assert!(matches!(&report.outcomes[1], ShareOutcome::Rejected { .. }));

    // A plain message cannot smuggle an unchecked indicator.
    let forged = channel
        .send(&r, "forged", page.messages[0].body.clone())
        .await
        .expect_err("indicators go through the indicator API");
    assert_eq!(code(&forged), Some(ErrorCode::InvalidRequest), "{forged:?}");

    // A room admits labels up to its own ceiling.
    let amber_room = room("amber-room");
    ana.create_room(amber_room.clone(), String::new())
        .await
        .expect("room");
    let outcomes = share(&ana, &amber_room, vec![draft("evil.example", "RED")]).await;
    assert!(
        matches!(&outcomes[0], ShareOutcome::Rejected { error, .. } if error.field == "tlp"),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn tlp_decides_who_reads_each_label_on_every_read_path() {
    let mut d = TestDeployment::new();
    d.add_member_as("ana", escape_e2e::attributes("CERT-A", &["MINISTRY-A"]));
    d.add_member_as("ari", escape_e2e::attributes("CERT-A", &[]));
    d.add_member_as("bob", escape_e2e::attributes("CERT-B", &[]));
    d.add_member_as("min", escape_e2e::attributes("MINISTRY-A", &[]));
    d.add_member_as("cat", escape_e2e::attributes("CERT-C", &[]));
    d.start().await;
    let r = intel_room(&d, "ana", &["ari", "bob", "min"]).await;

    // Bob listens live while Ana shares one indicator per label.
    let mut bob_live = d.channel("bob").await;
    bob_live.subscribe(&r, None).await.expect("subscribe");
    let ana = d.client("ana").await;
    let values = [
        ("198.51.100.1", "CLEAR"),
        ("198.51.100.2", "GREEN"),
        ("198.51.100.3", "AMBER"),
        ("198.51.100.4", "AMBER+STRICT"),
        ("198.51.100.5", "RED"),
    ];
    let drafts = values.iter().map(|(v, t)| draft(v, t)).collect();
    let outcomes = share(&ana, &r, drafts).await;
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, ShareOutcome::Accepted { .. }))
    );
    ana.share_indicators(
        &r,
        &ShareIndicators {
            indicators: vec![draft("198.51.100.9", "GREEN")],
        },
    )
    .await
    .expect("marker");

    // Cat joins after everything was shared.
    d.client("cat").await.join(&r).await.expect("join");

    use Tlp::*;
    let expected = [
        ("ana", vec![Red, AmberStrict, Amber, Green, Clear]),
        ("ari", vec![Red, AmberStrict, Amber, Green, Clear]),
        ("min", vec![Red, Amber, Green, Clear]),
        ("bob", vec![Red, Green, Clear]),
        ("cat", vec![Green, Clear]),
    ];
    for (who, mut want) in expected {
        let client = d.client(who).await;
        // Listing (without the marker), history, and search all agree.
        let listed: Vec<IndicatorRecord> = client
            .indicators(&r)
            .await
            .expect("list")
            .into_iter()
            .filter(|x| x.indicator.value != "198.51.100.9")
            .collect();
        want.sort();
        assert_eq!(labels(&listed), want, "{who}: list");
        let page = client
            .history(&r, &HistoryQuery::default())
            .await
            .expect("history");
        let mut in_history: Vec<Tlp> = page
            .messages
            .iter()
            .filter_map(|m| match &m.body {
                Body::Indicator(i) if i.value != "198.51.100.9" => Some(i.tlp),
                _ => None,
            })
            .collect();
        in_history.sort();
        assert_eq!(in_history, want, "{who}: history");
        for (value, label) in values {
            let found = client.search_indicators(value, None).await.expect("search");
            let visible = want.contains(&Tlp::parse(label).expect("label"));
            assert_eq!(found.len(), usize::from(visible), "{who}: search {label}");
        }
    }

    // Live delivery followed the same rule: Bob got CLEAR, GREEN, RED and the marker only.
    let mut live = Vec::new();
    while live.last() != Some(&"198.51.100.9".to_owned()) {
        if let ServerFrame::Event(event) = next_frame(&mut bob_live).await.frame
            && let Body::Indicator(i) = event.body
        {
            live.push(i.value);
        }
    }
    assert_eq!(
        live,
        [
            "198.51.100.1",
            "198.51.100.2",
            "198.51.100.5",
            "198.51.100.9"
        ]
    );
}

#[tokio::test]
async fn tlp_red_cannot_leave_its_room_by_any_path() {
    let mut d = TestDeployment::new();
    d.add_member_as("ana", escape_e2e::attributes("CERT-A", &[]));
    d.add_member_as("ari", escape_e2e::attributes("CERT-A", &[]));
    d.add_member_as("cat", escape_e2e::attributes("CERT-C", &[]));
    d.start().await;
    let r = intel_room(&d, "ana", &["ari"]).await;
    let elsewhere = room("elsewhere");
    let mut request = CreateRoom::new(elsewhere.clone(), "");
    request.tlp_max = Some("RED".into());
    let ari = d.client("ari").await;
    ari.create_room_with(&request).await.expect("room");
    let ana = d.client("ana").await;
    ana.join(&elsewhere).await.expect("join");

    let outcomes = share(&ana, &r, vec![draft("red.example", "RED")]).await;
    let ShareOutcome::Accepted { seq, .. } = outcomes[0] else {
        panic!("{outcomes:?}");
    };
    // Forwarding, by the sharer or by another member who may read it: refused.
    for client in [&ana, &ari] {
        let err = client
            .forward(&r, seq, &elsewhere)
            .await
            .expect_err("RED stays");
        assert_eq!(code(&err), Some(ErrorCode::Forbidden), "{err:?}");
    }
    // Export: not in the bundle, even for the sharer.
    let bundle = ana.export_stix(&r).await.expect("export");
    assert!(!bundle.to_string().contains("red.example"), "{bundle}");
    // A later joiner sees it nowhere; searching from another room finds nothing.
    let cat = d.client("cat").await;
    cat.join(&r).await.expect("join");
    assert!(cat.indicators(&r).await.expect("list").is_empty());
    assert!(
        cat.search_indicators("red.example", None)
            .await
            .expect("search")
            .is_empty()
    );
    let page = cat
        .history(&r, &HistoryQuery::default())
        .await
        .expect("history");
    assert!(
        !page
            .messages
            .iter()
            .any(|m| matches!(m.body, Body::Indicator(_)))
    );
    let err = cat
        .sight(&r, seq, &Default::default())
        .await
        .expect_err("unseen");
    assert_eq!(code(&err), Some(ErrorCode::NotFound), "{err:?}");
    // Someone who left and rejoins is a later joiner too.
    ari.leave(&r).await.expect("leave");
    ari.join(&r).await.expect("rejoin");
    assert!(ari.indicators(&r).await.expect("list").is_empty());
    // Only the sharer could widen it; nobody else can relabel.
    let err = ari
        .relabel(&r, seq, "GREEN")
        .await
        .expect_err("not the sharer");
    assert!(
        matches!(code(&err), Some(ErrorCode::Forbidden | ErrorCode::NotFound)),
        "{err:?}"
    );
}

#[tokio::test]
async fn only_the_sharer_relabels_and_a_wider_label_reaches_more_members() {
    let mut d = TestDeployment::new();
    d.add_member_as("ana", escape_e2e::attributes("CERT-A", &[]));
    d.add_member_as("ari", escape_e2e::attributes("CERT-A", &[]));
    d.add_member_as("bob", escape_e2e::attributes("CERT-B", &[]));
    d.add_member_as("late", escape_e2e::attributes("CERT-L", &[]));
    d.start().await;
    let r = intel_room(&d, "ana", &["ari", "bob"]).await;
    let ana = d.client("ana").await;
    let outcomes = share(&ana, &r, vec![draft("strict.example", "AMBER+STRICT")]).await;
    let ShareOutcome::Accepted { seq, indicator, .. } = &outcomes[0] else {
        panic!("{outcomes:?}");
    };
    let bob = d.client("bob").await;
    assert!(bob.indicators(&r).await.expect("list").is_empty());
    let ari = d.client("ari").await;
    let err = ari
        .relabel(&r, *seq, "CLEAR")
        .await
        .expect_err("not the sharer");
    assert_eq!(code(&err), Some(ErrorCode::Forbidden), "{err:?}");

    let relabelled = ana.relabel(&r, *seq, "GREEN").await.expect("relabel");
    assert_eq!(
        relabelled.indicator.id, indicator.id,
        "a new version of the same object"
    );
    assert!(relabelled.indicator.modified > indicator.modified);
    let seen = bob.indicators(&r).await.expect("list");
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|r| r.indicator.tlp == Tlp::Green),
        "{seen:?}"
    );
    // Relabelling starts from the newest version.
    let stale = ana
        .relabel(&r, *seq, "CLEAR")
        .await
        .expect_err("old version");
    assert_eq!(code(&stale), Some(ErrorCode::Conflict), "{stale:?}");

    // Narrowing governs every version: after GREEN -> RED, Bob (a member when it became RED)
    // still reads it, but no version leaves by any path.
    let red = ana
        .relabel(&r, relabelled.seq, "RED")
        .await
        .expect("narrow");
    let elsewhere = room("elsewhere");
    bob.create_room(elsewhere.clone(), String::new())
        .await
        .expect("room");
    let err = bob
        .forward(&r, relabelled.seq, &elsewhere)
        .await
        .expect_err("superseded and now RED");
    assert!(
        matches!(code(&err), Some(ErrorCode::Conflict | ErrorCode::Forbidden)),
        "{err:?}"
    );
    let err = bob.forward(&r, red.seq, &elsewhere).await.expect_err("RED");
    assert_eq!(code(&err), Some(ErrorCode::Forbidden), "{err:?}");
    let bundle = ana.export_stix(&r).await.expect("export");
    assert!(!bundle.to_string().contains("strict.example"), "{bundle}");
    let seen = bob.indicators(&r).await.expect("list");
    assert!(seen.iter().all(|r| r.indicator.tlp == Tlp::Red), "{seen:?}");
    // A member who joins now sees no version at all.
    let late = d.client("late").await;
    late.join(&r).await.expect("join");
    assert!(late.indicators(&r).await.expect("list").is_empty());
    assert!(
        late.search_indicators("strict.example", None)
            .await
            .expect("search")
            .is_empty()
    );
}

#[tokio::test]
async fn the_same_value_is_correlated_across_readable_rooms_and_sightings_count() {
    let mut d = TestDeployment::new();
    d.add_member_as("ana", escape_e2e::attributes("CERT-A", &[]));
    d.add_member_as("bob", escape_e2e::attributes("CERT-B", &[]));
    d.start().await;
    let ana = d.client("ana").await;
    let bob = d.client("bob").await;
    for name in ["one", "two"] {
        ana.create_room(room(name), String::new())
            .await
            .expect("room");
    }
    bob.join(&room("two")).await.expect("join");

    share(&ana, &room("one"), vec![draft("c2.example", "GREEN")]).await;
    let outcomes = share(&ana, &room("two"), vec![draft("C2[.]example", "GREEN")]).await;
    match &outcomes[0] {
        ShareOutcome::Accepted { seen_in, .. } => assert_eq!(seen_in, &[room("one")]),
        other => panic!("{other:?}"),
    }
    // Bob cannot read room one: his share is told of nothing there.
    let outcomes = share(&bob, &room("two"), vec![draft("c2.example", "GREEN")]).await;
    match &outcomes[0] {
        ShareOutcome::Accepted { seen_in, seq, .. } => {
            assert!(seen_in.is_empty(), "{seen_in:?}");
            for _ in 0..2 {
                let count = bob
                    .sight(&room("two"), *seq, &Default::default())
                    .await
                    .expect("sight");
                assert_eq!(count, 1, "one sighting per member");
            }
        }
        other => panic!("{other:?}"),
    }
    let found = ana
        .search_indicators("c2.example", None)
        .await
        .expect("search");
    assert_eq!(found.len(), 3, "{found:?}");
    assert_eq!(found.iter().map(|r| r.sightings).sum::<u64>(), 1);
    let found = bob
        .search_indicators("c2.example", None)
        .await
        .expect("search");
    assert_eq!(found.len(), 2, "only room two: {found:?}");
}

#[tokio::test]
async fn a_room_exports_as_a_stix_bundle_that_imports_elsewhere() {
    let mut d = TestDeployment::new();
    d.add_member_as("ana", escape_e2e::attributes("CERT-A", &[]));
    d.start().await;
    let r = intel_room(&d, "ana", &[]).await;
    let ana = d.client("ana").await;
    share(
        &ana,
        &r,
        vec![
            IndicatorDraft {
                confidence: Some(85),
                description: "phishing kit host".into(),
                kill_chain_phase: Some("delivery".into()),
                ..draft("kit.example", "AMBER")
            },
            draft("CVE-2021-44228", "CLEAR"),
            draft(&"ab".repeat(32), "GREEN"),
        ],
    )
    .await;
    let bundle = ana.export_stix(&r).await.expect("export");
    assert_eq!(bundle["type"], "bundle");
    let objects = bundle["objects"].as_array().expect("objects");
    let of_type = |t: &str| objects.iter().filter(|o| o["type"] == t).count();
    assert_eq!(of_type("indicator"), 2);
    assert_eq!(of_type("vulnerability"), 1);
    assert_eq!(of_type("identity"), 1);
    assert_eq!(of_type("marking-definition"), 3);
    let kit = objects
        .iter()
        .find(|o| o["pattern"] == "[domain-name:value = 'kit.example']")
        .expect("kit");
    assert_eq!(
        kit["object_marking_refs"][0],
        Tlp::Amber.marking_definition()
    );
    assert_eq!(kit["confidence"], 85);

    let other = room("other");
    ana.create_room(other.clone(), String::new())
        .await
        .expect("room");
    let report = ana
        .import_stix(&other, &bundle, None)
        .await
        .expect("import");
    assert_eq!(report.outcomes.len(), 3);
    assert!(
        report
            .outcomes
            .iter()
            .all(|o| matches!(o, ShareOutcome::Accepted { .. })),
        "{report:?}"
    );
    let imported = ana.indicators(&other).await.expect("list");
    assert_eq!(labels(&imported), [Tlp::Amber, Tlp::Green, Tlp::Clear]);
}
