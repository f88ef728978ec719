//! The attribute-based policy, end to end: a members × rooms × actions table against the real
//! server, every policy-governed action denied to a member the policy excludes, access lost and
//! regained mid-stream without reconnecting, validation, dry runs, and who may edit what.

use escape_client::{Channel, ClientError};
use escape_e2e::{TestDeployment, events, next_frame};
use escape_proto::room::{CreateRoom, HistoryQuery};
use escape_proto::vetting::{AttributeUpdate, DirectoryQuery, StatusChange};
use escape_proto::{Attributes, Body, ErrorCode, RoomName, ServerFrame};

fn room(name: &str) -> RoomName {
    RoomName::parse(name).expect("room")
}

fn attrs(organisation: &str, sector: &str, clearance: u8) -> Attributes {
    Attributes {
        organisation: organisation.into(),
        country: "EE".into(),
        sector: sector.into(),
        role: "analyst".into(),
        clearance,
        vetting: "vetted".into(),
        clients: Vec::new(),
    }
}

fn code(result: Result<impl std::fmt::Debug, ClientError>) -> Option<ErrorCode> {
    match result {
        Ok(_) => None,
        Err(ClientError::Server { code, .. }) => Some(code),
        Err(other) => panic!("unexpected {other:?}"),
    }
}

async fn template(d: &TestDeployment, name: &str) -> String {
    d.client("admin")
        .await
        .policy_templates()
        .await
        .expect("templates")
        .into_iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no template {name}"))
        .text
}

#[tokio::test]
async fn members_rooms_and_actions_follow_the_policy_table() {
    let mut d = TestDeployment::new();
    d.add_member_as("cert", attrs("CERT-EE", "national-cert", 2));
    d.add_member_as("grid", attrs("GridCo", "energy", 1));
    d.add_member_as("intern", attrs("GridCo", "energy", 0));
    d.add_member_as("police", attrs("Police", "law-enforcement", 2));
    d.start().await;
    let admin = d.client("admin").await;
    let rooms = [
        ("open", "open-community"),
        ("certs", "national-certs-only"),
        ("energy", "energy-sector-amber"),
        ("le", "law-enforcement-only"),
    ];
    for (name, policy) in rooms {
        admin
            .create_room(room(name), String::new())
            .await
            .expect("room");
        let text = template(&d, policy).await;
        admin
            .set_policy(Some(&room(name)), text)
            .await
            .expect("policy");
    }
    // member, room, allowed
    let table = [
        ("cert", "open", true),
        ("cert", "certs", true),
        ("cert", "energy", true),
        ("cert", "le", false),
        ("grid", "open", true),
        ("grid", "certs", false),
        ("grid", "energy", true),
        ("grid", "le", false),
        ("intern", "open", true),
        ("intern", "energy", false),
        ("intern", "certs", false),
        ("police", "le", true),
        ("police", "energy", false),
        ("police", "open", true),
    ];
    for (member, name, allowed) in table {
        let client = d.client(member).await;
        let joined = client.join(&room(name)).await;
        if allowed {
            joined.unwrap_or_else(|e| panic!("{member} should join {name}: {e}"));
            let mut channel = Channel::connect(&client).await.expect("channel");
            let ack = channel
                .send(
                    &room(name),
                    &format!("{member}-{name}"),
                    Body::text("hello"),
                )
                .await;
            ack.unwrap_or_else(|e| panic!("{member} should send to {name}: {e}"));
            client
                .history(&room(name), &HistoryQuery::default())
                .await
                .expect("history");
        } else {
            assert_eq!(
                code(joined),
                Some(ErrorCode::Forbidden),
                "{member} must not join {name}"
            );
        }
    }
}

#[tokio::test]
async fn every_policy_governed_action_is_denied_to_an_excluded_member() {
    let mut d = TestDeployment::new();
    d.add_member_as("ok", attrs("CERT-A", "national-cert", 2));
    d.add_member_as("banned", attrs("CERT-B", "national-cert", 2));
    d.vetting.members_may_invite = true;
    d.start().await;
    let admin = d.client("admin").await;
    admin
        .create_room(room("ops"), String::new())
        .await
        .expect("room");
    d.client("banned")
        .await
        .join(&room("ops"))
        .await
        .expect("joins before the ban");
    d.client("ok").await.join(&room("ops")).await.expect("join");
    let (invite_home, invite_store) = {
        let home = tempfile::tempdir().expect("tempdir");
        let store = escape_client::ProfileStore::new(home.path());
        (home, store)
    };
    let invite = admin.create_invite(None).await.expect("invite");
    let claims = escape_proto::vetting::Claims {
        name: "New".into(),
        email: "new@x.example".into(),
        organisation: "X".into(),
        country: "EE".into(),
        ..Default::default()
    };
    let pending = escape_client::enroll::apply(
        &invite_store,
        &invite.enroll_address,
        &invite.code,
        claims,
        "new",
    )
    .await
    .expect("application");
    let ban = format!(
        "{}\n@id(\"ban\")\nforbid(principal, action, resource) when {{ principal.organisation == \"CERT-B\" }};",
        template(&d, "deployment-default").await
    );
    admin
        .set_policy(None, ban)
        .await
        .expect("deployment policy");

    let banned = d.client("banned").await;
    let ok = d.client("ok").await;
    // Each policy-governed action, for the banned member and, as a control, for the other.
    assert_eq!(
        code(banned.rooms().await),
        Some(ErrorCode::Forbidden),
        "list_rooms"
    );
    assert!(ok.rooms().await.is_ok());
    assert_eq!(
        code(banned.create_room(room("mine"), String::new()).await),
        Some(ErrorCode::Forbidden),
        "create_room"
    );
    assert_eq!(
        code(banned.create_invite(None).await),
        Some(ErrorCode::Forbidden),
        "invite"
    );
    assert!(ok.create_invite(None).await.is_ok());
    assert_eq!(
        code(banned.directory(&DirectoryQuery::default()).await),
        Some(ErrorCode::Forbidden),
        "read_directory"
    );
    let csr =
        escape_certs::signing_request_for_key("banned", &d.profile("banned").key_pem).expect("csr");
    assert_eq!(
        code(banned.renew(csr).await),
        Some(ErrorCode::Forbidden),
        "manage_self"
    );
    assert_eq!(
        code(banned.vouch(&pending.id, String::new()).await),
        Some(ErrorCode::Forbidden),
        "vouch"
    );
    assert_eq!(
        code(banned.join(&room("ops")).await),
        Some(ErrorCode::Forbidden),
        "join"
    );
    assert_eq!(
        code(banned.history(&room("ops"), &HistoryQuery::default()).await),
        Some(ErrorCode::Forbidden),
        "read"
    );
    assert!(
        ok.history(&room("ops"), &HistoryQuery::default())
            .await
            .is_ok()
    );
    let mut channel = Channel::connect(&banned).await.expect("channel");
    assert_eq!(
        code(channel.subscribe(&room("ops"), None).await),
        Some(ErrorCode::Forbidden),
        "subscribe"
    );
    assert_eq!(
        code(channel.send(&room("ops"), "x", Body::text("x")).await),
        Some(ErrorCode::Forbidden),
        "send"
    );
    // Leaving is never prevented by a policy.
    banned.leave(&room("ops")).await.expect("leave");
    drop(invite_home);
}

#[tokio::test]
async fn access_follows_attribute_and_policy_changes_mid_stream() {
    let mut d = TestDeployment::new();
    let grid = d.add_member_as("grid", attrs("GridCo", "energy", 1));
    let cert = d.add_member_as("cert", attrs("CERT-EE", "national-cert", 2));
    d.start().await;
    let admin = d.client("admin").await;
    let energy = room("energy");
    admin
        .create_room_with(&CreateRoom {
            tlp_max: Some("AMBER".into()),
            ..CreateRoom::new(energy.clone(), "")
        })
        .await
        .expect("room");
    admin
        .set_policy(Some(&energy), template(&d, "energy-sector-amber").await)
        .await
        .expect("policy");
    d.client("grid").await.join(&energy).await.expect("join");
    d.client("cert").await.join(&energy).await.expect("join");
    let mut listener = d.channel("grid").await;
    listener.subscribe(&energy, None).await.expect("subscribe");
    let mut sender = d.channel("cert").await;

    sender
        .send(&energy, "1", Body::text("before"))
        .await
        .expect("send");
    assert_eq!(events(&mut listener, 1).await[0].seq, 1);

    // The member's clearance drops: the very next message does not reach it.
    admin
        .update_attributes(
            &grid,
            AttributeUpdate::from_pairs(["clearance=0"]).expect("attrs"),
            "review".into(),
        )
        .await
        .expect("update");
    sender
        .send(&energy, "2", Body::text("withheld"))
        .await
        .expect("send");
    // Restored: the stream continues on the same connection, without the withheld message.
    admin
        .update_attributes(
            &grid,
            AttributeUpdate::from_pairs(["clearance=1"]).expect("attrs"),
            "cleared".into(),
        )
        .await
        .expect("update");
    sender
        .send(&energy, "3", Body::text("after"))
        .await
        .expect("send");
    assert_eq!(
        events(&mut listener, 1).await[0].seq,
        3,
        "message 2 was withheld, message 3 arrives"
    );

    // The sender's own clearance drops: its next send on the same connection is refused, and
    // allowed again once restored (the session decides on the member as it is now).
    for (clearance, expected) in [(0, Some(ErrorCode::Forbidden)), (2, None)] {
        admin
            .update_attributes(
                &cert,
                AttributeUpdate::from_pairs([format!("clearance={clearance}").as_str()])
                    .expect("attrs"),
                "review".into(),
            )
            .await
            .expect("update");
        let sent = sender
            .send(&energy, &format!("3-{clearance}"), Body::text("probe"))
            .await;
        assert_eq!(code(sent), expected, "clearance {clearance}");
    }
    assert_eq!(events(&mut listener, 1).await[0].seq, 4);

    // The room's policy changes to national CERTs only: the energy member stops receiving.
    admin
        .set_policy(Some(&energy), template(&d, "national-certs-only").await)
        .await
        .expect("policy");
    sender
        .send(&energy, "5", Body::text("certs only"))
        .await
        .expect("send");
    admin
        .set_policy(Some(&energy), template(&d, "energy-sector-amber").await)
        .await
        .expect("policy");
    sender
        .send(&energy, "6", Body::text("open again"))
        .await
        .expect("send");
    assert_eq!(
        events(&mut listener, 1).await[0].seq,
        6,
        "message 5 was withheld"
    );

    // Suspension ends the session outright.
    admin
        .set_status(&grid, StatusChange::Suspend, "test".into())
        .await
        .expect("suspend");
    match next_frame(&mut listener).await.frame {
        ServerFrame::Error { code, .. } => assert_eq!(code, ErrorCode::AccessRevoked),
        other => panic!("expected the session to end, got {other:?}"),
    }
}

#[tokio::test]
async fn policies_are_validated_tested_and_edited_only_by_those_allowed() {
    let mut d = TestDeployment::new();
    d.add_member_as("owner", attrs("CERT-A", "national-cert", 2));
    d.add_member_as("grid", attrs("GridCo", "energy", 1));
    d.start().await;
    let owner = d.client("owner").await;
    let grid = d.client("grid").await;
    owner
        .create_room(room("mine"), String::new())
        .await
        .expect("room");
    grid.join(&room("mine")).await.expect("join");

    // The room's creator administers its policy; other members do not, nor the deployment's.
    assert!(
        owner
            .policy(Some(&room("mine")))
            .await
            .expect("policy")
            .text
            .contains("open-community")
    );
    assert_eq!(
        code(grid.policy(Some(&room("mine"))).await),
        Some(ErrorCode::Forbidden)
    );
    assert_eq!(
        code(
            grid.set_policy(
                Some(&room("mine")),
                "permit(principal, action, resource);".into()
            )
            .await
        ),
        Some(ErrorCode::Forbidden)
    );
    assert_eq!(
        code(owner.policy(None).await),
        Some(ErrorCode::Forbidden),
        "the deployment policy is for admins"
    );

    // Invalid policies are refused with Cedar's diagnostics, and nothing changes.
    let err = owner
        .set_policy(
            Some(&room("mine")),
            "permit(principal, action, resource) when { principal.colour == \"red\" };".into(),
        )
        .await
        .expect_err("invalid");
    assert!(
        matches!(&err, ClientError::Server { status: 400, message, .. } if message.contains("colour")),
        "{err:?}"
    );
    let err = owner
        .set_policy(Some(&room("mine")), "permit(".into())
        .await
        .expect_err("syntax");
    assert!(
        matches!(&err, ClientError::Server { status: 400, .. }),
        "{err:?}"
    );
    assert_eq!(
        owner
            .policy(Some(&room("mine")))
            .await
            .expect("policy")
            .version,
        0
    );

    // A dry run names who would lose access, and changes nothing.
    let certs_only = template(&d, "national-certs-only").await;
    let impact = owner
        .test_policy(Some(&room("mine")), certs_only.clone())
        .await
        .expect("dry run");
    let grid_id = d.profile("grid").member_id;
    let change = impact
        .changes
        .iter()
        .find(|c| c.member == grid_id)
        .expect("grid is affected");
    assert!(change.loses.contains(&"read mine".to_owned()), "{change:?}");
    assert!(
        impact.changes.iter().all(|c| c.name != "owner"),
        "owner keeps access"
    );
    assert!(
        grid.history(&room("mine"), &HistoryQuery::default())
            .await
            .is_ok(),
        "nothing changed yet"
    );

    let doc = owner
        .set_policy(Some(&room("mine")), certs_only)
        .await
        .expect("set");
    assert_eq!(doc.version, 1);
    assert_eq!(
        code(grid.history(&room("mine"), &HistoryQuery::default()).await),
        Some(ErrorCode::Forbidden)
    );

    // Policies survive a restart.
    d.restart().await;
    let grid = d.client("grid").await;
    assert_eq!(
        code(grid.history(&room("mine"), &HistoryQuery::default()).await),
        Some(ErrorCode::Forbidden)
    );
}

#[tokio::test]
async fn the_directory_shows_each_reader_only_the_members_the_policy_lets_it_see() {
    let mut d = TestDeployment::new();
    d.add_member_as("cert", attrs("CERT-EE", "national-cert", 2));
    d.add_member_as("police", attrs("Police", "law-enforcement", 2));
    d.add_member_as("detective", attrs("Police", "law-enforcement", 2));
    d.start().await;
    let hide = format!(
        "{}\n@id(\"hide-law-enforcement\")\nforbid(principal, action == Action::\"see_member\", resource)\n  when {{ resource.sector == \"law-enforcement\" && principal.sector != \"law-enforcement\" }};",
        template(&d, "deployment-default").await
    );
    d.client("admin")
        .await
        .set_policy(None, hide)
        .await
        .expect("policy");
    let names = |dir: escape_proto::vetting::Directory| {
        dir.members.into_iter().map(|m| m.name).collect::<Vec<_>>()
    };
    let seen_by_cert = names(
        d.client("cert")
            .await
            .directory(&DirectoryQuery::default())
            .await
            .expect("directory"),
    );
    assert!(seen_by_cert.contains(&"cert".to_owned()));
    assert!(
        !seen_by_cert
            .iter()
            .any(|n| n == "police" || n == "detective"),
        "{seen_by_cert:?}"
    );
    let seen_by_police = names(
        d.client("police")
            .await
            .directory(&DirectoryQuery::default())
            .await
            .expect("directory"),
    );
    assert!(
        seen_by_police.contains(&"detective".to_owned())
            && seen_by_police.contains(&"cert".to_owned())
    );
}
