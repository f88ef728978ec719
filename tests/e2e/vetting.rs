//! Vetting end to end: invitation → enrollment with locally generated keys → sponsor vouches →
//! admin approval → the new member connects; and every way this can be refused, plus the member
//! lifecycle (suspension, revocation with live cut-off and revocation list, renewal).

use std::time::{Duration, Instant};

use escape_client::enroll::{self, Outcome};
use escape_client::{Channel, Client, ClientError, Profile, ProfileStore};
use escape_e2e::{
    Probe, TestDeployment, assert_refused, events, next_frame, probe, tls_config, within,
};
use escape_proto::vetting::{
    ApplicationStatus, AttributeUpdate, Claims, DirectoryQuery, StatusChange,
};
use escape_proto::{Body, ErrorCode, MemberId, MemberStatus, RoomName, ServerFrame};

fn claims(name: &str, organisation: &str) -> Claims {
    Claims {
        name: name.into(),
        email: format!(
            "{}@{}.example",
            name.to_lowercase(),
            organisation.to_lowercase()
        ),
        organisation: organisation.into(),
        country: "ee".into(),
        sector: "government".into(),
        role: "analyst".into(),
    }
}

fn code(err: &ClientError) -> Option<ErrorCode> {
    match err {
        ClientError::Server { code, .. } => Some(*code),
        _ => None,
    }
}

/// A deployment with two sponsors from different organisations.
async fn deployment() -> TestDeployment {
    let mut d = TestDeployment::new();
    d.add_member("alice", "CERT-A");
    d.add_member("bob", "CERT-B");
    d.start().await;
    d
}

/// Applies as `name` of `organisation` with a fresh invitation from the admin; returns the
/// applicant's own profile store (its "machine") and the pending enrollment.
async fn apply(
    d: &TestDeployment,
    name: &str,
    organisation: &str,
) -> (tempfile::TempDir, ProfileStore, enroll::Pending) {
    let invite = d
        .client("admin")
        .await
        .create_invite(None)
        .await
        .expect("invite");
    assert_eq!(invite.enroll_address, d.enroll_addr().to_string());
    let home = tempfile::tempdir().expect("tempdir");
    let store = ProfileStore::new(home.path());
    let pending = enroll::apply(
        &store,
        &invite.enroll_address,
        &invite.code,
        claims(name, organisation),
        name,
    )
    .await
    .expect("application submitted");
    (home, store, pending)
}

/// The applicant's profile after approval, pointed at the running server.
async fn approved_profile(
    d: &TestDeployment,
    store: &ProfileStore,
    pending: &enroll::Pending,
) -> Profile {
    match enroll::poll(store, pending).await.expect("poll") {
        Outcome::Approved(mut profile) => {
            profile.server = d.addr().to_string();
            profile
        }
        other => panic!("expected approval, got {other:?}"),
    }
}

#[tokio::test]
async fn invite_enroll_vouch_approve_then_connect_and_chat() {
    let d = deployment().await;
    let (_home, store, pending) = apply(&d, "Ana", "CERT-EE").await;
    // The private keys stayed on the applicant's machine.
    let enrollment_dir = store.root().join("enrollments").join(&pending.id);
    assert!(enrollment_dir.join("key.pem").exists() && enrollment_dir.join("age.key").exists());

    match enroll::poll(&store, &pending).await.expect("poll") {
        Outcome::Waiting(status) => assert_eq!((status.vouches, status.vouches_needed), (0, 2)),
        other => panic!("expected pending, got {other:?}"),
    }
    let admin = d.client("admin").await;
    let err = admin
        .approve(&pending.id, AttributeUpdate::default())
        .await
        .expect_err("needs vouches");
    assert_eq!(code(&err), Some(ErrorCode::Precondition));

    d.client("alice")
        .await
        .vouch(&pending.id, "worked with her on an incident".into())
        .await
        .expect("vouch");
    let err = d
        .client("alice")
        .await
        .vouch(&pending.id, String::new())
        .await
        .expect_err("twice");
    assert_eq!(code(&err), Some(ErrorCode::Conflict));
    let app = d
        .client("bob")
        .await
        .vouch(&pending.id, String::new())
        .await
        .expect("vouch");
    assert_eq!(app.vouches.len(), 2);

    let listed = admin
        .applications(Some(ApplicationStatus::Pending))
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].claims.name, "Ana");
    let update = AttributeUpdate::from_pairs(["role=cert-lead", "clearance=2"]).expect("attrs");
    let app = admin.approve(&pending.id, update).await.expect("approve");
    assert_eq!(app.status, ApplicationStatus::Approved);
    let member_id = app.member_id.clone().expect("member id");
    let err = admin
        .reject(&pending.id, "too late".into())
        .await
        .expect_err("decided");
    assert_eq!(code(&err), Some(ErrorCode::Conflict));

    let profile = approved_profile(&d, &store, &pending).await;
    assert_eq!(profile.member_id, member_id);
    assert!(
        store.root().join("profiles/Ana/age.key").exists(),
        "age identity kept with the profile"
    );
    assert!(!enrollment_dir.exists(), "the enrollment record is gone");

    let ana = Client::new(profile).await.expect("client");
    let me = ana.me().await.expect("whoami");
    assert_eq!(me.name, "Ana");
    assert_eq!(me.attributes.role, "cert-lead");
    assert_eq!(me.attributes.clearance, 2);
    assert_eq!(me.attributes.country, "EE");
    assert!(
        me.age_recipient
            .as_deref()
            .is_some_and(|r| r.starts_with("age1"))
    );
    let history = admin.member_history(&member_id).await.expect("history");
    assert!(history.changes[0].reason.contains(&pending.id));

    let ops = RoomName::parse("ops").expect("room");
    d.client("alice")
        .await
        .create_room(ops.clone(), String::new())
        .await
        .expect("room");
    ana.join(&ops).await.expect("join");
    let mut alice = d.channel("alice").await;
    alice.subscribe(&ops, None).await.expect("subscribe");
    let mut channel = Channel::connect(&ana).await.expect("channel");
    channel
        .send(&ops, "hello", Body::text("hello from Ana"))
        .await
        .expect("send");
    let event = &events(&mut alice, 1).await[0];
    assert_eq!(event.sender, member_id);
}

#[tokio::test]
async fn rejected_applications_tell_the_applicant_why() {
    let d = deployment().await;
    let (_home, store, pending) = apply(&d, "Eve", "Nowhere").await;
    d.client("admin")
        .await
        .reject(&pending.id, "not a CSIRT".into())
        .await
        .expect("reject");
    match enroll::poll(&store, &pending).await.expect("poll") {
        Outcome::Rejected(status) => assert_eq!(status.reason.as_deref(), Some("not a CSIRT")),
        other => panic!("expected rejection, got {other:?}"),
    }
    let err = d
        .client("alice")
        .await
        .vouch(&pending.id, String::new())
        .await
        .expect_err("decided");
    assert_eq!(code(&err), Some(ErrorCode::Conflict));
}

#[tokio::test]
async fn sponsors_must_be_active_members_and_not_all_of_the_applicants_organisation() {
    let mut d = TestDeployment::new();
    d.add_member("alice", "CERT-EE");
    d.add_member("carol", "CERT-EE");
    d.add_member_with_status("sam", "CERT-B", MemberStatus::Suspended);
    d.start().await;
    let (_home, _store, pending) = apply(&d, "Ana", "CERT-EE").await;

    let err = d
        .client("sam")
        .await
        .vouch(&pending.id, String::new())
        .await
        .expect_err("suspended sponsor");
    assert_eq!(code(&err), Some(ErrorCode::MemberInactive));
    let err = d
        .client("alice")
        .await
        .vouch("no-such-application", String::new())
        .await
        .expect_err("unknown");
    assert_eq!(code(&err), Some(ErrorCode::NotFound));

    d.client("alice")
        .await
        .vouch(&pending.id, String::new())
        .await
        .expect("vouch");
    d.client("carol")
        .await
        .vouch(&pending.id, String::new())
        .await
        .expect("vouch");
    let admin = d.client("admin").await;
    let err = admin
        .approve(&pending.id, AttributeUpdate::default())
        .await
        .expect_err("same organisation");
    assert_eq!(code(&err), Some(ErrorCode::Precondition));
    // The admin may correct the organisation; sponsors from the same one still do not count twice.
    let other_org = AttributeUpdate::from_pairs(["organisation=CERT-LV"]).expect("attrs");
    admin
        .approve(&pending.id, other_org)
        .await
        .expect("approved once one sponsor is from elsewhere");
}

#[tokio::test]
async fn only_admins_decide_and_invite_by_default() {
    let d = deployment().await;
    let alice = d.client("alice").await;
    let err = alice
        .create_invite(None)
        .await
        .expect_err("members may not invite");
    assert_eq!(code(&err), Some(ErrorCode::Forbidden));
    let err = alice.applications(None).await.expect_err("not an admin");
    assert_eq!(code(&err), Some(ErrorCode::Forbidden));
    let (_home, _store, pending) = apply(&d, "Ana", "CERT-EE").await;
    let err = alice
        .approve(&pending.id, AttributeUpdate::default())
        .await
        .expect_err("not an admin");
    assert_eq!(code(&err), Some(ErrorCode::Forbidden));
    let bob = MemberId::parse(&d.profile("bob").member_id.to_string()).expect("id");
    let err = alice
        .set_status(&bob, StatusChange::Suspend, "no".into())
        .await
        .expect_err("not an admin");
    assert_eq!(code(&err), Some(ErrorCode::Forbidden));
}

#[tokio::test]
async fn an_invitation_admits_one_application_and_expires() {
    let d = deployment().await;
    let admin = d.client("admin").await;
    let invite = admin.create_invite(None).await.expect("invite");
    let home = tempfile::tempdir().expect("tempdir");
    let store = ProfileStore::new(home.path());
    enroll::apply(
        &store,
        &invite.enroll_address,
        &invite.code,
        claims("Ana", "CERT-EE"),
        "ana",
    )
    .await
    .expect("first use");
    let err = enroll::apply(
        &store,
        &invite.enroll_address,
        &invite.code,
        claims("Max", "CERT-EE"),
        "max",
    )
    .await
    .expect_err("second use");
    assert_eq!(code(&err), Some(ErrorCode::InviteInvalid));

    let short = admin.create_invite(Some(1)).await.expect("invite");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let err = enroll::apply(
        &store,
        &short.enroll_address,
        &short.code,
        claims("Max", "CERT-EE"),
        "max",
    )
    .await
    .expect_err("expired");
    assert_eq!(code(&err), Some(ErrorCode::InviteInvalid));

    // A code with a pin of another CA: the applicant refuses the server.
    let mut forged = escape_proto::vetting::InviteCode::parse(
        &admin.create_invite(None).await.expect("invite").code,
    )
    .expect("code");
    forged.pin = [7; 32];
    let err = enroll::apply(
        &store,
        &invite.enroll_address,
        &forged.to_string(),
        claims("Max", "CERT-EE"),
        "max",
    )
    .await
    .expect_err("pin mismatch");
    assert!(
        matches!(err, ClientError::Connect { ref message, .. } if message.contains("deployment CA")),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_enrollment_listener_serves_enrollment_only_and_bad_applications_are_refused() {
    let d = deployment().await;
    // No client certificate needed there, but no member routes either.
    let ca_pem = d.ca().cert_pem().to_owned();
    match probe(
        d.enroll_addr(),
        tls_config(&ca_pem, None, &[&rustls::version::TLS13]),
    )
    .await
    {
        Probe::Answered(status) => assert!(status.contains("404"), "{status}"),
        Probe::Refused(reason) => panic!("enrollment listener refused: {reason}"),
    }
    let invite = d
        .client("admin")
        .await
        .create_invite(None)
        .await
        .expect("invite");
    let secret = escape_proto::vetting::InviteCode::parse(&invite.code)
        .expect("code")
        .secret;
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(tls_config(&ca_pem, None, &[&rustls::version::TLS13]))
        .resolve("localhost", d.enroll_addr())
        .build()
        .expect("http");
    let url = format!(
        "https://localhost:{}/enroll/v1/applications",
        d.enroll_addr().port()
    );
    let (csr, _) = escape_certs::signing_request("x").expect("csr");
    let recipient = age::x25519::Identity::generate().to_public().to_string();
    let body = |claims: Claims, csr: &str, recipient: &str| serde_json::json!({"invite": secret, "claims": claims, "csr_pem": csr, "age_recipient": recipient});
    for (bad, field) in [
        (
            body(claims("Ana", "CERT-EE"), "garbage", &recipient),
            "csr_pem",
        ),
        (
            body(claims("Ana", "CERT-EE"), &csr, "age1nope"),
            "age_recipient",
        ),
        (
            body(
                Claims {
                    country: "Estonia".into(),
                    ..claims("Ana", "CERT-EE")
                },
                &csr,
                &recipient,
            ),
            "country",
        ),
    ] {
        let response = http.post(&url).json(&bad).send().await.expect("answer");
        assert_eq!(response.status().as_u16(), 400);
        let error: escape_proto::ErrorBody = response.json().await.expect("coded error");
        assert!(error.message.starts_with(field), "{}", error.message);
    }
    // None of those spent the invitation.
    let response = http
        .post(&url)
        .json(&body(claims("Ana", "CERT-EE"), &csr, &recipient))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status().as_u16(), 201);
    // A wrong poll token learns nothing.
    let receipt: escape_proto::vetting::ApplicationReceipt =
        response.json().await.expect("receipt");
    let status = http
        .get(format!("{url}/{}", receipt.id))
        .bearer_auth("0".repeat(64))
        .send()
        .await
        .expect("answer");
    assert_eq!(status.status().as_u16(), 404);
}

/// Approves `name` with sponsors alice and bob; returns its profile and member id.
async fn enrolled(d: &TestDeployment, name: &str) -> (tempfile::TempDir, ProfileStore, Profile) {
    let (home, store, pending) = apply(d, name, "CERT-EE").await;
    d.client("alice")
        .await
        .vouch(&pending.id, String::new())
        .await
        .expect("vouch");
    d.client("bob")
        .await
        .vouch(&pending.id, String::new())
        .await
        .expect("vouch");
    d.client("admin")
        .await
        .approve(&pending.id, AttributeUpdate::default())
        .await
        .expect("approve");
    let profile = approved_profile(d, &store, &pending).await;
    (home, store, profile)
}

#[tokio::test]
async fn revocation_cuts_a_live_session_within_a_second_and_later_handshakes_fail_even_after_restart()
 {
    let mut d = deployment().await;
    let (_home, _store, profile) = enrolled(&d, "Rex").await;
    let rex = Client::new(profile.clone()).await.expect("client");
    let ops = RoomName::parse("ops").expect("room");
    rex.create_room(ops.clone(), String::new())
        .await
        .expect("room");
    let mut channel = Channel::connect(&rex).await.expect("channel");
    channel.subscribe(&ops, None).await.expect("subscribe");

    let started = Instant::now();
    d.client("admin")
        .await
        .set_status(
            &profile.member_id,
            StatusChange::Revoke,
            "key compromised".into(),
        )
        .await
        .expect("revoke");
    match within("cut-off", channel.next()).await {
        Ok(Some(frame)) => match frame.frame {
            ServerFrame::Error { code, message } => {
                assert_eq!(code, ErrorCode::AccessRevoked);
                assert!(message.contains("key compromised"), "{message}");
            }
            other => panic!("expected the reason, got {other:?}"),
        },
        other => panic!("expected the reason, got {other:?}"),
    }
    assert!(matches!(
        channel.next().await,
        Err(ClientError::Closed(_)) | Ok(None)
    ));
    let elapsed = started.elapsed();
    eprintln!("revocation: live session cut off {elapsed:?} after the admin's request was sent");
    assert!(
        elapsed < Duration::from_secs(1),
        "cut off after {elapsed:?}"
    );

    let tls = |profile: &Profile| {
        tls_config(
            &profile.ca_pem,
            Some((&profile.cert_pem, &profile.key_pem)),
            &[&rustls::version::TLS13],
        )
    };
    assert_refused(d.addr(), tls(&profile), "revoked certificate", "Revoked").await;
    let crl = std::fs::read_to_string(d.data_dir().join("pki/crl.pem")).expect("crl written");
    assert!(crl.contains("BEGIN X509 CRL"));

    d.restart().await;
    assert_refused(
        d.addr(),
        tls(&profile),
        "revoked certificate after a restart",
        "Revoked",
    )
    .await;
    // Revocation is permanent.
    let err = d
        .client("admin")
        .await
        .set_status(&profile.member_id, StatusChange::Reinstate, "oops".into())
        .await
        .expect_err("permanent");
    assert_eq!(code(&err), Some(ErrorCode::Conflict));
    // Others are unaffected.
    d.client("alice").await.me().await.expect("alice still in");
}

#[tokio::test]
async fn suspension_closes_sessions_and_refuses_until_reinstated() {
    let d = deployment().await;
    let alice_id = d.profile("alice").member_id.clone();
    let ops = RoomName::parse("ops").expect("room");
    d.client("alice")
        .await
        .create_room(ops.clone(), String::new())
        .await
        .expect("room");
    let mut channel = d.channel("alice").await;
    channel.subscribe(&ops, None).await.expect("subscribe");
    let admin = d.client("admin").await;
    admin
        .set_status(&alice_id, StatusChange::Suspend, "under review".into())
        .await
        .expect("suspend");
    match next_frame(&mut channel).await.frame {
        ServerFrame::Error { code, .. } => assert_eq!(code, ErrorCode::AccessRevoked),
        other => panic!("expected the reason, got {other:?}"),
    }
    let err = d.client("alice").await.me().await.expect_err("suspended");
    assert!(
        matches!(&err, ClientError::Server { status: 403, code: ErrorCode::MemberInactive, message } if message.contains("Suspended")),
        "{err:?}"
    );
    admin
        .set_status(&alice_id, StatusChange::Reinstate, "cleared".into())
        .await
        .expect("reinstate");
    d.client("alice").await.me().await.expect("back in");
    let history = admin.member_history(&alice_id).await.expect("history");
    let reasons: Vec<&str> = history.changes.iter().map(|c| c.reason.as_str()).collect();
    assert!(
        reasons.ends_with(&["under review", "cleared"]),
        "{reasons:?}"
    );
    let err = admin
        .set_status(
            &d.profile("admin").member_id,
            StatusChange::Suspend,
            "x".into(),
        )
        .await
        .expect_err("self");
    assert_eq!(code(&err), Some(ErrorCode::Conflict));
}

#[tokio::test]
async fn attribute_changes_are_versioned_and_recorded() {
    let d = deployment().await;
    let alice_id = d.profile("alice").member_id.clone();
    let admin = d.client("admin").await;
    let before = admin
        .members()
        .await
        .expect("members")
        .into_iter()
        .find(|m| m.id == alice_id)
        .expect("alice");
    let update = AttributeUpdate::from_pairs(["country=LV", "role=cert-lead"]).expect("attrs");
    let after = admin
        .update_attributes(&alice_id, update, "moved to Riga".into())
        .await
        .expect("update");
    assert_eq!(after.version, before.version + 1);
    assert_eq!(
        d.client("alice")
            .await
            .me()
            .await
            .expect("me")
            .attributes
            .country,
        "LV"
    );
    let last = admin
        .member_history(&alice_id)
        .await
        .expect("history")
        .changes
        .pop()
        .expect("a change");
    assert_eq!(last.by, d.profile("admin").member_id);
    assert_eq!(last.reason, "moved to Riga");
    assert!(
        last.changes.contains(&"country: DE -> LV".to_owned()),
        "{:?}",
        last.changes
    );
    let err = admin
        .update_attributes(
            &alice_id,
            AttributeUpdate::from_pairs(["country=Latvia"]).expect("attrs"),
            String::new(),
        )
        .await
        .expect_err("invalid");
    assert_eq!(code(&err), Some(ErrorCode::InvalidRequest));
}

#[tokio::test]
async fn the_directory_shows_active_members_and_only_what_they_publish() {
    let mut d = TestDeployment::new();
    d.add_member("alice", "CERT-A");
    d.add_member("bob", "CERT-B");
    d.add_member_with_status("sam", "CERT-S", MemberStatus::Suspended);
    d.start().await;
    let alice = d.client("alice").await;
    let all = alice
        .directory(&DirectoryQuery::default())
        .await
        .expect("directory");
    let names: Vec<&str> = all.members.iter().map(|m| m.name.as_str()).collect();
    assert!(
        names.contains(&"bob") && !names.contains(&"sam"),
        "{names:?}"
    );
    assert!(
        all.members.iter().all(|m| m.email.is_none()),
        "email is private by default"
    );

    let by_org = alice
        .directory(&DirectoryQuery {
            organisation: Some("cert-b".into()),
            ..Default::default()
        })
        .await
        .expect("directory");
    assert_eq!(by_org.members.len(), 1);
    assert_eq!(by_org.members[0].country.as_deref(), Some("DE"));

    d.client("bob")
        .await
        .publish(&escape_proto::Published {
            email: false,
            country: false,
            sector: true,
            role: true,
        })
        .await
        .expect("publish");
    let by_country = alice
        .directory(&DirectoryQuery {
            country: Some("DE".into()),
            ..Default::default()
        })
        .await
        .expect("directory");
    assert!(
        by_country.members.iter().all(|m| m.name != "bob"),
        "a hidden country cannot be searched"
    );
    let bob = alice
        .directory(&DirectoryQuery {
            organisation: Some("CERT-B".into()),
            ..Default::default()
        })
        .await
        .expect("directory");
    assert_eq!(bob.members[0].country, None);
}

#[tokio::test]
async fn renewal_issues_a_fresh_certificate_for_the_same_or_a_new_key() {
    let d = deployment().await;
    let alice = d.client("alice").await;
    let mut profile = d.profile("alice");
    let csr = escape_certs::signing_request_for_key("alice", &profile.key_pem).expect("csr");
    let renewed = alice.renew(csr).await.expect("renew");
    assert!(renewed.not_after > time::OffsetDateTime::now_utc() + time::Duration::days(80));
    profile.cert_pem = renewed.cert_pem;
    Client::new(profile.clone())
        .await
        .expect("client")
        .me()
        .await
        .expect("works with the renewed certificate");

    let (csr, key) = escape_certs::signing_request("alice").expect("csr");
    let renewed = alice.renew(csr).await.expect("renew with a new key");
    profile.cert_pem = renewed.cert_pem;
    profile.key_pem = key;
    let me = Client::new(profile)
        .await
        .expect("client")
        .me()
        .await
        .expect("works with the new key");
    assert_eq!(me.name, "alice");
}
