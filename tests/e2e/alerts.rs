//! Early-warning alerts: an audience chosen by attributes and resolved by the policy engine,
//! delivered at once to those online and on connect to the others, acknowledged and tracked;
//! who may send is a policy decision; the label narrows the audience.

use std::collections::BTreeSet;

use escape_client::ClientError;
use escape_e2e::{TestDeployment, next_frame};
use escape_proto::alert::{AlertReport, SendAlert, Severity};
use escape_proto::{Attributes, ErrorCode, ServerFrame};

fn member(organisation: &str, country: &str, sector: &str, role: &str) -> Attributes {
    Attributes {
        organisation: organisation.into(),
        country: country.into(),
        sector: sector.into(),
        role: role.into(),
        clearance: 1,
        vetting: "vetted".into(),
        clients: Vec::new(),
    }
}

fn alert(to: &str, tlp: &str, dry_run: bool) -> SendAlert {
    SendAlert {
        to: to.into(),
        tlp: tlp.into(),
        severity: Severity::Critical,
        text: "Grid operators: active intrusion via exposed HMI, patch now".into(),
        dry_run,
    }
}

fn names(report: &AlertReport) -> BTreeSet<String> {
    report.audience.iter().map(|r| r.name.clone()).collect()
}

fn code(err: &ClientError) -> Option<ErrorCode> {
    match err {
        ClientError::Server { code, .. } => Some(*code),
        _ => None,
    }
}

async fn deployment() -> TestDeployment {
    let mut d = TestDeployment::new();
    d.add_member_as(
        "ada",
        member("CERT-EU", "BE", "national-cert", "coordinator"),
    );
    d.add_member_as("ben", member("CERT-EU", "BE", "national-cert", "analyst"));
    d.add_member_as("kip", member("KE-CIRT", "KE", "energy", "CERT lead"));
    d.add_member_as("kim", member("KE-CIRT", "KE", "energy", "analyst"));
    d.add_member_as("uma", member("UG-CERT", "UG", "energy", "CERT lead"));
    d.add_member_as("tom", member("TZ-CERT", "TZ", "finance", "CERT lead"));
    d.add_member_as("fay", member("FR-CERT", "FR", "energy", "CERT lead"));
    d.start().await;
    d
}

#[tokio::test]
async fn a_coordinator_warns_an_audience_by_attributes_and_sees_who_acknowledged() {
    let d = deployment().await;
    let ada = d.client("ada").await;
    let east_africa_energy = "sector=energy,country=KE|UG|TZ";

    // The dry run counts and names the audience and sends nothing.
    let dry = ada
        .send_alert(&alert(east_africa_energy, "GREEN", true))
        .await
        .expect("dry run");
    assert!(dry.alert.is_none());
    assert_eq!(names(&dry), ["kim", "kip", "uma"].map(String::from).into());
    assert!(
        d.client("kip")
            .await
            .pending_alerts()
            .await
            .expect("inbox")
            .is_empty()
    );

    // Kip and Fay are online; Kim and Uma are not.
    let mut kip_live = d.channel("kip").await;
    let fay_live = d.channel("fay").await;
    let sent = ada
        .send_alert(&alert(east_africa_energy, "GREEN", false))
        .await
        .expect("send");
    let sent_alert = sent.alert.clone().expect("sent");
    assert_eq!(names(&sent), names(&dry));
    match next_frame(&mut kip_live).await.frame {
        ServerFrame::Alert { alert: a } => {
            assert_eq!(a.id, sent_alert.id);
            assert_eq!(a.severity, Severity::Critical);
        }
        other => panic!("expected the alert at once, got {other:?}"),
    }
    // Fay (France) is not in the audience: nothing waits for her either.
    assert!(
        d.client("fay")
            .await
            .pending_alerts()
            .await
            .expect("inbox")
            .is_empty()
    );
    drop(fay_live);

    // Kim connects later and gets it on connect.
    let mut kim_live = d.channel("kim").await;
    match next_frame(&mut kim_live).await.frame {
        ServerFrame::Alert { alert: a } => assert_eq!(a.id, sent_alert.id),
        other => panic!("expected the waiting alert, got {other:?}"),
    }

    // Acknowledgements: Kip and Kim acknowledge; Uma has not yet.
    d.client("kip")
        .await
        .ack_alert(&sent_alert.id)
        .await
        .expect("ack");
    d.client("kim")
        .await
        .ack_alert(&sent_alert.id)
        .await
        .expect("ack");
    assert!(
        d.client("kim")
            .await
            .pending_alerts()
            .await
            .expect("inbox")
            .is_empty()
    );
    let status = ada.alert_status(&sent_alert.id).await.expect("status");
    let acked: BTreeSet<&str> = status
        .acknowledged
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    let pending: BTreeSet<&str> = status.pending.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(acked, ["kim", "kip"].into());
    assert_eq!(pending, ["uma"].into());
    assert!(
        status
            .acknowledged
            .iter()
            .all(|r| r.acknowledged_at.is_some())
    );

    // Only the sender (and admins) see who acknowledged; only recipients acknowledge.
    let err = d
        .client("kip")
        .await
        .alert_status(&sent_alert.id)
        .await
        .expect_err("not the sender");
    assert_eq!(code(&err), Some(ErrorCode::Forbidden), "{err:?}");
    let err = d
        .client("fay")
        .await
        .ack_alert(&sent_alert.id)
        .await
        .expect_err("not a recipient");
    assert_eq!(code(&err), Some(ErrorCode::NotFound), "{err:?}");
}

#[tokio::test]
async fn the_label_narrows_the_audience_and_cedar_conditions_are_validated() {
    let d = deployment().await;
    let ada = d.client("ada").await;
    // AMBER+STRICT reaches the sender's organisation only, whatever the condition selects.
    let strict = ada
        .send_alert(&alert("*", "AMBER+STRICT", true))
        .await
        .expect("dry run");
    assert_eq!(names(&strict), ["ben"].map(String::from).into());
    // A Cedar condition on attributes.
    let leads = ada
        .send_alert(&alert(
            "principal.role == \"CERT lead\" && principal.country != \"FR\"",
            "CLEAR",
            true,
        ))
        .await
        .expect("cedar");
    assert_eq!(
        names(&leads),
        ["kip", "tom", "uma"].map(String::from).into()
    );
    // Conditions are checked against the schema, with Cedar's diagnostics.
    let err = ada
        .send_alert(&alert("principal.colour == \"red\"", "CLEAR", true))
        .await
        .expect_err("unknown attribute");
    assert_eq!(code(&err), Some(ErrorCode::InvalidRequest), "{err:?}");
    let err = ada
        .send_alert(&alert(
            "principal.sector == \"x\" }; permit(principal, action, resource) when { true",
            "CLEAR",
            true,
        ))
        .await
        .expect_err("no policies smuggled in");
    assert_eq!(code(&err), Some(ErrorCode::InvalidRequest), "{err:?}");
    let err = ada
        .send_alert(&alert("colour=red", "CLEAR", true))
        .await
        .expect_err("unknown attribute");
    assert_eq!(code(&err), Some(ErrorCode::InvalidRequest), "{err:?}");
}

#[tokio::test]
async fn who_may_send_alerts_is_a_policy_decision() {
    let d = deployment().await;
    let admin = d.client("admin").await;
    let current = admin.policy(None).await.expect("policy").text;
    let restricted = format!(
        "{current}\n@id(\"coordinators-warn\")\nforbid(principal, action == Action::\"send_alert\", resource)\nunless {{ principal.role == \"coordinator\" }};\n"
    );
    admin.set_policy(None, restricted).await.expect("set");
    let err = d
        .client("tom")
        .await
        .send_alert(&alert("*", "GREEN", true))
        .await
        .expect_err("not a coordinator");
    assert_eq!(code(&err), Some(ErrorCode::Forbidden), "{err:?}");
    d.client("ada")
        .await
        .send_alert(&alert("*", "GREEN", false))
        .await
        .expect("the coordinator may");
}
