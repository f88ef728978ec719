//! The audit log records what admins and members did and were refused, is readable by admins
//! only, and verifies after the server stopped (chain and signed checkpoints).

use escape_client::ClientError;
use escape_e2e::TestDeployment;
use escape_proto::vetting::StatusChange;
use escape_proto::{ErrorCode, RoomName};
use escape_server::audit::{Finding, verify};

#[tokio::test]
async fn actions_and_denials_are_recorded_and_the_chain_verifies() {
    let mut d = TestDeployment::new();
    d.add_member("alice", "CERT-A");
    d.add_member("bob", "CERT-B");
    d.start().await;
    let admin = d.client("admin").await;
    let ops = RoomName::parse("ops").expect("room");
    admin
        .create_room(ops.clone(), String::new())
        .await
        .expect("room");
    d.client("alice").await.join(&ops).await.expect("join");
    let text = admin.policy(Some(&ops)).await.expect("policy").text;
    admin.set_policy(Some(&ops), text).await.expect("policy");
    let bob_id = d.profile("bob").member_id;
    // A refused request is recorded as a denial.
    let denied = d
        .client("bob")
        .await
        .history(&ops, &Default::default())
        .await;
    assert!(matches!(
        denied,
        Err(ClientError::Server {
            code: ErrorCode::NotAMember,
            ..
        })
    ));
    admin
        .set_status(&bob_id, StatusChange::Revoke, "left the team".into())
        .await
        .expect("revoke");

    let entries = admin.audit(0, 1000).await.expect("audit");
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    for expected in [
        "server.start",
        "room.create",
        "room.join",
        "policy.set",
        "access.denied",
        "member.revoke",
    ] {
        assert!(
            actions.contains(&expected),
            "{expected} missing from {actions:?}"
        );
    }
    let revoke = entries
        .iter()
        .find(|e| e.action == "member.revoke")
        .expect("revoke");
    assert_eq!(revoke.subject, bob_id.as_str());
    assert_eq!(revoke.detail, "left the team");
    assert_eq!(revoke.actor.as_ref(), Some(&d.profile("admin").member_id));
    // Each entry commits to the one before.
    for pair in entries.windows(2) {
        assert_eq!(pair[1].prev, pair[0].hash);
        assert_eq!(pair[1].seq, pair[0].seq + 1);
    }
    let after = entries.last().expect("entries").seq;
    assert!(admin.audit(after, 10).await.expect("audit").is_empty());

    let err = d
        .client("alice")
        .await
        .audit(0, 10)
        .await
        .expect_err("admins only");
    assert!(
        matches!(
            err,
            ClientError::Server {
                code: ErrorCode::Forbidden,
                ..
            }
        ),
        "{err:?}"
    );

    // After a graceful stop the whole chain verifies, with the shutdown checkpoint signed.
    d.stop().await;
    let store = d.open_store();
    let cert = std::fs::read_to_string(d.data_dir().join("pki/server.pem")).expect("cert");
    match verify(store.as_ref(), &cert).expect("verify") {
        Finding::Intact {
            entries: n,
            checkpoints,
        } => {
            assert!(n > after, "server.stop was recorded too");
            assert!(checkpoints >= 1, "a checkpoint was signed at shutdown");
        }
        broken => panic!("{broken:?}"),
    }
}
