//! A screen's worth of state for the rendering and behaviour tests: two joined rooms (AMBER and
//! RED), one not joined, messages of every kind, an indicator, a file and an alert.

use escape_proto::alert::{Alert, Severity};
use escape_proto::file::FileInfo;
use escape_proto::indicator::{Indicator, IndicatorRecord, ObservableType};
use escape_proto::room::{HistoryPage, RoomSummary};
use escape_proto::tlp::Tlp;
use escape_proto::{Body, Event, Member, MemberId, RoomName};
use time::macros::datetime;

use super::app::{App, Connection, Update};
use super::theme::Theme;

pub fn room(name: &str) -> RoomName {
    RoomName::parse(name).expect("room name")
}

pub fn member(id: &str, name: &str, organisation: &str) -> Member {
    let mut m = Member::new(MemberId::parse(id).expect("member id"), name);
    m.attributes.organisation = organisation.into();
    m
}

pub fn summary(name: &str, tlp: Tlp, joined: bool, head: u64, unread: u64) -> RoomSummary {
    RoomSummary {
        name: room(name),
        topic: format!("{name} topic"),
        members: 4,
        joined,
        head,
        unread,
        tlp_max: Some(tlp),
        classification: 0,
    }
}

pub fn event(room_name: &str, seq: u64, sender: &Member, body: Body) -> Event {
    Event {
        room: room(room_name),
        seq,
        sender: sender.id.clone(),
        sender_name: sender.name.clone(),
        sender_organisation: sender.attributes.organisation.clone(),
        sent_at: datetime!(2026-11-23 09:41:00 UTC),
        client_msg_id: format!("c-{seq}"),
        body,
    }
}

pub fn indicator(tlp: Tlp, value: &str, sharer: &Member) -> Indicator {
    Indicator {
        tlp,
        kind: ObservableType::Ipv4,
        value: value.into(),
        id: "indicator--0b5a6a0e-8b7e-4d37-9a4c-4c3a0f1b2d11".into(),
        confidence: 80,
        valid_from: datetime!(2026-11-23 09:00:00 UTC),
        valid_until: None,
        description: "C2 server".into(),
        tags: Vec::new(),
        kill_chain_phase: None,
        sharer: sharer.id.clone(),
        source_organisation: sharer.attributes.organisation.clone(),
        source_clients: Vec::new(),
        created: datetime!(2026-11-23 09:00:00 UTC),
        modified: datetime!(2026-11-23 09:00:00 UTC),
        forwarded_from: None,
    }
}

pub fn alert(id: &str, from: &Member) -> Alert {
    Alert {
        tlp: Tlp::Amber,
        severity: Severity::High,
        id: id.into(),
        text: "Ransomware campaign against grid operators: patch VPN gateways".into(),
        sender: from.id.clone(),
        sender_name: from.name.clone(),
        sender_organisation: from.attributes.organisation.clone(),
        to: "sector=energy".into(),
        sent_at: datetime!(2026-11-23 09:30:00 UTC),
    }
}

/// Ana (CERT-EE) reading `ops`, where Bo (NCSC-FI) has written, shared and uploaded.
pub fn app(theme: Theme, columns: u16, rows: u16) -> App {
    let ana = member("m-ana", "Ana Tamm", "CERT-EE");
    let bo = member("m-bo", "Bo Lind", "NCSC-FI");
    let mut app = App::new("127.0.0.1:8443".into(), theme);
    app.resize(columns, rows);
    app.apply(Update::Me(ana.clone()));
    app.apply(Update::Connection(Connection::Online));
    app.apply(Update::Rooms(vec![
        summary("ops", Tlp::Amber, true, 4, 0),
        summary("watch", Tlp::Red, true, 7, 3),
        summary("lobby", Tlp::Clear, false, 12, 0),
    ]));
    let shared = indicator(Tlp::Amber, "198.51.100.7", &bo);
    app.apply(Update::History(HistoryPage {
        room: room("ops"),
        messages: vec![
            event(
                "ops",
                1,
                &bo,
                Body::text("Seeing beacons to 198.51.100.7 since 08:00"),
            ),
            event("ops", 2, &ana, Body::reply(1, "Same here, blocking it")),
            event("ops", 3, &bo, Body::Indicator(Box::new(shared.clone()))),
            event(
                "ops",
                4,
                &bo,
                Body::File {
                    file_id: "f-42".into(),
                    name: "pcap-summary.pdf".into(),
                    size: 1_572_864,
                    generation: 1,
                },
            ),
        ],
        more: false,
    }));
    app.apply(Update::Indicators(
        room("ops"),
        vec![IndicatorRecord {
            room: room("ops"),
            seq: 3,
            indicator: shared,
            sightings: 1,
        }],
    ));
    app.apply(Update::Files(
        room("ops"),
        vec![FileInfo {
            id: "f-42".into(),
            room: room("ops"),
            name: "pcap-summary.pdf".into(),
            size: 1_572_864,
            generation: 1,
            sender: bo.id.clone(),
            sender_name: bo.name.clone(),
            shared_at: datetime!(2026-11-23 09:41:00 UTC),
        }],
    ));
    // Joined rooms are listed first, by name: ops is selected, watch keeps its unread count.
    assert_eq!(
        app.selected_room().map(|r| r.name().to_string()),
        Some("ops".into())
    );
    app.take_effects();
    app
}

pub fn key(code: crossterm::event::KeyCode) -> crossterm::event::KeyEvent {
    crossterm::event::KeyEvent::new(code, crossterm::event::KeyModifiers::NONE)
}

pub fn ctrl(c: char) -> crossterm::event::KeyEvent {
    crossterm::event::KeyEvent::new(
        crossterm::event::KeyCode::Char(c),
        crossterm::event::KeyModifiers::CONTROL,
    )
}

/// Types `text` and presses Enter.
pub fn type_line(app: &mut App, text: &str) {
    for c in text.chars() {
        app.on_key(key(crossterm::event::KeyCode::Char(c)));
    }
    app.on_key(key(crossterm::event::KeyCode::Enter));
}
