//! The everyday channel features: threads, edits, redactions, mentions, read markers and
//! unread counts, search within what a member may read, and room settings.

use escape_client::ClientError;
use escape_e2e::{TestDeployment, events, next_frame};
use escape_proto::indicator::{IndicatorDraft, ShareIndicators};
use escape_proto::room::{HistoryQuery, RoomSettings};
use escape_proto::{Body, ErrorCode, RoomName, ServerFrame};

fn room(name: &str) -> RoomName {
    RoomName::parse(name).expect("room")
}

fn code(err: &ClientError) -> Option<ErrorCode> {
    match err {
        ClientError::Server { code, .. } => Some(*code),
        _ => None,
    }
}

#[tokio::test]
async fn threads_edits_redactions_and_mentions() {
    let mut d = TestDeployment::new();
    let _ana = d.add_member_as("ana", escape_e2e::attributes("CERT-A", &[]));
    let bob = d.add_member_as("bob", escape_e2e::attributes("CERT-B", &[]));
    let eve = d.add_member_as("eve", escape_e2e::attributes("CERT-E", &[]));
    d.start().await;
    let ops = room("ops");
    let ana_client = d.client("ana").await;
    ana_client
        .create_room(ops.clone(), String::new())
        .await
        .expect("room");
    d.client("bob").await.join(&ops).await.expect("join");

    // Bob listens for mentions on a channel subscribed to nothing.
    let mut bob_live = d.channel("bob").await;
    let mut ana = d.channel("ana").await;
    let root = ana
        .send(&ops, "root", Body::text("phishing wave against ministries"))
        .await
        .expect("root");
    let reply = ana
        .send(
            &ops,
            "reply",
            Body::Text {
                text: "same kit as last month".into(),
                reply_to: Some(root.seq),
                mentions: vec![bob.clone()],
            },
        )
        .await
        .expect("reply");
    match next_frame(&mut bob_live).await.frame {
        ServerFrame::Mention {
            room, seq, excerpt, ..
        } => {
            assert_eq!((room, seq), (ops.clone(), reply.seq));
            assert!(excerpt.contains("same kit"));
        }
        other => panic!("expected a mention, got {other:?}"),
    }
    // A reply to nothing, or a mention of someone outside the room, is refused.
    let err = ana
        .send(&ops, "bad-reply", Body::reply(999, "x"))
        .await
        .expect_err("no parent");
    assert_eq!(code(&err), Some(ErrorCode::InvalidRequest), "{err:?}");
    let err = ana
        .send(
            &ops,
            "bad-mention",
            Body::Text {
                text: "x".into(),
                reply_to: None,
                mentions: vec![eve.clone()],
            },
        )
        .await
        .expect_err("eve is not in the room");
    assert_eq!(code(&err), Some(ErrorCode::InvalidRequest), "{err:?}");

    // Edits: the sender only; the original stays.
    let edit = ana
        .send(
            &ops,
            "edit",
            Body::Edit {
                target: reply.seq,
                text: "same kit as in March".into(),
            },
        )
        .await
        .expect("edit");
    let mut bob_channel = d.channel("bob").await;
    let err = bob_channel
        .send(
            &ops,
            "bob-edit",
            Body::Edit {
                target: root.seq,
                text: "not mine".into(),
            },
        )
        .await
        .expect_err("not the sender");
    assert_eq!(code(&err), Some(ErrorCode::Forbidden), "{err:?}");

    // Redactions: not by Bob (neither sender nor room admin); by Ana, for everyone, with the
    // reason in the audit log and not the content.
    let bob_client = d.client("bob").await;
    let err = bob_client
        .redact(&ops, root.seq, "spam".into())
        .await
        .expect_err("not Bob's");
    assert_eq!(code(&err), Some(ErrorCode::Forbidden), "{err:?}");
    ana_client
        .redact(&ops, root.seq, "posted in the wrong room".into())
        .await
        .expect("redact");
    let page = bob_client
        .history(&ops, &HistoryQuery::default())
        .await
        .expect("history");
    let bodies: Vec<&Body> = page.messages.iter().map(|m| &m.body).collect();
    assert_eq!(bodies[0], &Body::Redacted);
    assert!(matches!(bodies[1], Body::Text { reply_to: Some(r), .. } if *r == root.seq));
    assert!(matches!(bodies[2], Body::Edit { target, .. } if *target == reply.seq));
    assert!(matches!(bodies[3], Body::Redaction { target } if *target == root.seq));
    assert_eq!(page.messages[2].seq, edit.seq);
    // Removing a message removes its edits too.
    ana_client
        .redact(&ops, reply.seq, "superseded".into())
        .await
        .expect("redact reply");
    let page = bob_client
        .history(&ops, &HistoryQuery::default())
        .await
        .expect("history");
    assert_eq!(page.messages[1].body, Body::Redacted);
    assert_eq!(
        page.messages[2].body,
        Body::Redacted,
        "the edit went with it"
    );
    let audit = d.client("admin").await.audit(0, 1000).await.expect("audit");
    let entry = audit
        .iter()
        .find(|e| e.action == "message.redact")
        .expect("recorded");
    assert!(entry.detail.contains("wrong room"));
    assert!(!audit.iter().any(|e| e.detail.contains("phishing wave")));
    let found = bob_client.search("kit", None).await.expect("search");
    assert!(found.is_empty(), "removed words are not found: {found:?}");
    // A live subscription replaying the room (from the server's window of recent events, which
    // the redactions rewrote) gets the removed bodies too, never the words.
    let mut replay = d.channel("bob").await;
    replay.subscribe(&ops, Some(0)).await.expect("subscribe");
    let replayed = events(&mut replay, page.messages.len()).await;
    assert_eq!(
        replayed.iter().map(|e| e.seq).collect::<Vec<_>>(),
        page.messages.iter().map(|e| e.seq).collect::<Vec<_>>()
    );
    for (live, stored) in replayed.iter().zip(&page.messages) {
        assert_eq!(live.body, stored.body, "#{}", live.seq);
    }
    assert_eq!(replayed[0].body, Body::Redacted);
    assert_eq!(replayed[1].body, Body::Redacted);
}

#[tokio::test]
async fn read_markers_count_unread_and_search_stays_within_what_one_may_read() {
    let mut d = TestDeployment::new();
    d.add_member_as("ana", escape_e2e::attributes("CERT-A", &[]));
    d.add_member_as("bob", escape_e2e::attributes("CERT-B", &[]));
    d.start().await;
    let ana = d.client("ana").await;
    let bob = d.client("bob").await;
    for name in ["shared", "private"] {
        ana.create_room(room(name), String::new())
            .await
            .expect("room");
    }
    bob.join(&room("shared")).await.expect("join");
    let mut channel = d.channel("ana").await;
    for (i, text) in ["lateral movement seen", "beacon to c2", "LATERAL tools"]
        .iter()
        .enumerate()
    {
        channel
            .send(&room("shared"), &format!("s{i}"), Body::text(*text))
            .await
            .expect("send");
    }
    channel
        .send(
            &room("private"),
            "p",
            Body::text("lateral movement, internal only"),
        )
        .await
        .expect("send");
    ana.share_indicators(
        &room("shared"),
        &ShareIndicators {
            indicators: vec![IndicatorDraft {
                value: "lateral.example".into(),
                tlp: "AMBER".into(),
                ..Default::default()
            }],
        },
    )
    .await
    .expect("indicator");

    // Unread counts, then a read marker.
    let rooms = bob.rooms().await.expect("rooms");
    let shared = rooms
        .iter()
        .find(|r| r.name == room("shared"))
        .expect("shared");
    assert_eq!(shared.unread, 4);
    let after = bob.mark_read(&room("shared"), 2).await.expect("read");
    assert_eq!(after.unread, 2);
    let all = bob
        .mark_read(&room("shared"), u64::MAX)
        .await
        .expect("read");
    assert_eq!(all.unread, 0);

    // Search: Bob finds the two shared messages, not the private room, not the TLP:AMBER
    // indicator of another organisation.
    let found = bob.search("lateral", None).await.expect("search");
    let texts: Vec<String> = found
        .iter()
        .map(|e| match &e.body {
            Body::Text { text, .. } => text.clone(),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(found.iter().all(|e| e.room == room("shared")));
    let mine = ana.search("lateral", None).await.expect("search");
    assert_eq!(mine.len(), 4, "ana reads all four: {mine:?}");
    let err = bob.search("x", None).await.expect_err("too short");
    assert_eq!(code(&err), Some(ErrorCode::InvalidRequest), "{err:?}");
}

#[tokio::test]
async fn room_settings_history_for_joiners_and_invite_only() {
    let mut d = TestDeployment::new();
    d.add_member_as("ana", escape_e2e::attributes("CERT-A", &[]));
    let bob = d.add_member_as("bob", escape_e2e::attributes("CERT-B", &[]));
    d.add_member_as("cat", escape_e2e::attributes("CERT-C", &[]));
    d.start().await;
    let ana = d.client("ana").await;
    let ops = room("ops");
    ana.create_room(ops.clone(), String::new())
        .await
        .expect("room");
    let mut channel = d.channel("ana").await;
    channel
        .send(&ops, "before", Body::text("said before anyone joined"))
        .await
        .expect("send");
    let summary = ana
        .update_room_settings(
            &ops,
            &RoomSettings {
                topic: Some("incident 7".into()),
                history: Some("joined".into()),
                invite_only: Some(true),
                retention_days: Some(90),
            },
        )
        .await
        .expect("settings");
    assert_eq!(summary.topic, "incident 7");
    // Only the room's admin changes settings.
    let err = d
        .client("cat")
        .await
        .update_room_settings(&ops, &RoomSettings::default())
        .await
        .expect_err("not the admin");
    assert_eq!(code(&err), Some(ErrorCode::Forbidden), "{err:?}");

    // Invite-only: Bob cannot join until invited.
    let bob_client = d.client("bob").await;
    let err = bob_client.join(&ops).await.expect_err("not invited");
    assert_eq!(code(&err), Some(ErrorCode::Forbidden), "{err:?}");
    ana.invite_to_room(&ops, &bob).await.expect("invite");
    bob_client.join(&ops).await.expect("invited");
    channel
        .send(&ops, "after", Body::text("said after Bob joined"))
        .await
        .expect("send");

    // History for joiners is "joined": Bob sees only what came after he joined.
    let page = bob_client
        .history(&ops, &HistoryQuery::default())
        .await
        .expect("history");
    let texts: Vec<String> = page
        .messages
        .iter()
        .filter_map(|m| match &m.body {
            Body::Text { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(texts, ["said after Bob joined"]);
}

#[tokio::test]
async fn presence_and_typing_reach_only_those_who_may_read_the_room() {
    use escape_proto::ClientFrame;
    use escape_proto::room::PresenceStatus;
    let mut d = TestDeployment::new();
    d.add_member_as("ana", escape_e2e::attributes("CERT-A", &[]));
    d.add_member_as("bob", escape_e2e::attributes("CERT-B", &[]));
    d.add_member_as("cat", escape_e2e::attributes("CERT-C", &[]));
    d.add_member_as("eve", escape_e2e::attributes("CERT-E", &[]));
    d.start().await;
    let ops = room("ops");
    let ana = d.client("ana").await;
    ana.create_room(ops.clone(), String::new())
        .await
        .expect("room");
    for who in ["bob", "cat"] {
        d.client(who).await.join(&ops).await.expect("join");
    }
    let mut bob_live = d.channel("bob").await;
    let mut ana_live = d.channel("ana").await;
    let status = |people: &[escape_proto::room::Presence], name: &str| {
        people
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.status)
            .expect("listed")
    };
    let people = ana.presence(&ops).await.expect("presence");
    assert_eq!(status(&people, "bob"), PresenceStatus::Online);
    assert_eq!(status(&people, "cat"), PresenceStatus::Offline);
    assert!(
        people.iter().all(|p| p.name != "eve"),
        "eve is not in the room"
    );

    bob_live
        .request(ClientFrame::Presence {
            status: PresenceStatus::Away,
        })
        .await
        .expect("away");
    // The frame has no answer: ask until the change shows.
    let mut away = false;
    for _ in 0..50 {
        if status(&ana.presence(&ops).await.expect("presence"), "bob") == PresenceStatus::Away {
            away = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(away, "bob shows as away");
    let err = d
        .client("eve")
        .await
        .presence(&ops)
        .await
        .expect_err("not a reader");
    assert_eq!(code(&err), Some(ErrorCode::NotAMember), "{err:?}");

    // Ana types; Bob (online, a reader) is told.
    ana_live
        .request(ClientFrame::Typing { room: ops.clone() })
        .await
        .expect("typing");
    match next_frame(&mut bob_live).await.frame {
        ServerFrame::Typing { room, name, .. } => {
            assert_eq!(room, ops);
            assert_eq!(name, "ana");
        }
        other => panic!("expected typing, got {other:?}"),
    }
}

#[tokio::test]
async fn indicators_shared_over_the_channel_get_the_same_checks_and_report() {
    let mut d = TestDeployment::new();
    d.start().await;
    let intel = room("intel");
    d.client("admin")
        .await
        .create_room(intel.clone(), String::new())
        .await
        .expect("room");
    let mut channel = d.channel("admin").await;
    let report = channel
        .share_indicators(
            &intel,
            vec![
                IndicatorDraft {
                    value: "hxxp://evil[.]example/payload".into(),
                    tlp: "GREEN".into(),
                    ..Default::default()
                },
                IndicatorDraft {
                    value: "not an indicator at all".into(),
                    tlp: "GREEN".into(),
                    ..Default::default()
                },
            ],
        )
        .await
        .expect("report");
    let [accepted, rejected] = report.outcomes.as_slice() else {
        panic!("one outcome per draft: {report:?}");
    };
    let escape_proto::indicator::ShareOutcome::Accepted { seq, indicator, .. } = accepted else {
        panic!("the URL is accepted: {accepted:?}");
    };
    assert_eq!(indicator.value, "http://evil.example/payload", "refanged");
    assert!(
        matches!(
            rejected,
            escape_proto::indicator::ShareOutcome::Rejected { index: 1, .. }
        ),
        "{rejected:?}"
    );
    // Stored in the room's log like any share.
    let history = d
        .client("admin")
        .await
        .history(&intel, &HistoryQuery::default())
        .await
        .expect("history");
    assert!(history.messages.iter().any(|e| e.seq == *seq
        && matches!(&e.body, Body::Indicator(i) if i.value == "http://evil.example/payload")));
}
