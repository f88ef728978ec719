//! Who gets in: only certificates from the deployment CA, valid now, for a client, naming an
//! active member.

use escape_certs::{Ca, Validity};
use escape_e2e::{
    Probe, TestDeployment, assert_refused, member_cert, probe, probe_from, server_log, tls_config,
};
use escape_proto::{ErrorCode, MemberId, MemberStatus};
use time::{Duration, OffsetDateTime};

const TLS13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
const TLS12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];

fn tls13() -> &'static [&'static rustls::SupportedProtocolVersion] {
    TLS13
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() {
    let mut d = TestDeployment::new();
    d.start().await;
    let ca_pem = d.ca().cert_pem().to_owned();
    assert_refused(
        d.addr(),
        tls_config(&ca_pem, None, tls13()),
        "no certificate, TLS 1.3",
        "peer sent no certificates",
    )
    .await;
    // A TLS 1.2 client learns it inside the handshake.
    assert_refused(
        d.addr(),
        tls_config(&ca_pem, None, TLS12),
        "no certificate, TLS 1.2",
        "peer sent no certificates",
    )
    .await;
}

#[tokio::test]
async fn certificates_the_deployment_did_not_issue_or_that_are_not_valid_now_are_refused() {
    let mut d = TestDeployment::new();
    let alice = d.add_member("alice", "CERT-A");
    d.start().await;
    let ca = d.ca();
    let ca_pem = ca.cert_pem().to_owned();
    let now = OffsetDateTime::now_utc();

    let other_ca = Ca::generate("Elsewhere", Validity::days_from_now(30)).expect("ca");
    let (cert, key) = member_cert(&other_ca, &alice, Validity::days_from_now(30));
    assert_refused(
        d.addr(),
        tls_config(&ca_pem, Some((&cert, &key)), tls13()),
        "another CA",
        "UnknownIssuer",
    )
    .await;

    let expired = Validity {
        not_before: now - Duration::days(10),
        not_after: now - Duration::days(1),
    };
    let (cert, key) = member_cert(&ca, &alice, expired);
    assert_refused(
        d.addr(),
        tls_config(&ca_pem, Some((&cert, &key)), tls13()),
        "expired",
        "certificate expired",
    )
    .await;

    let not_yet = Validity {
        not_before: now + Duration::days(1),
        not_after: now + Duration::days(10),
    };
    let (cert, key) = member_cert(&ca, &alice, not_yet);
    assert_refused(
        d.addr(),
        tls_config(&ca_pem, Some((&cert, &key)), tls13()),
        "not yet valid",
        "certificate not valid yet",
    )
    .await;

    // Self-signed, naming the member: anyone can make one; nobody gets in with it.
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, alice.as_str());
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let self_signed = params.self_signed(&key).expect("self-signed");
    assert_refused(
        d.addr(),
        tls_config(
            &ca_pem,
            Some((&self_signed.pem(), &key.serialize_pem())),
            tls13(),
        ),
        "self-signed",
        "UnknownIssuer",
    )
    .await;

    // The server's own certificate is for serverAuth only.
    let server_cert = std::fs::read_to_string(d.data_dir().join("pki/server.pem")).expect("read");
    let server_key = std::fs::read_to_string(d.data_dir().join("pki/server.key")).expect("read");
    assert_refused(
        d.addr(),
        tls_config(&ca_pem, Some((&server_cert, &server_key)), tls13()),
        "server certificate as client",
        "does not allow extended key usage for client authentication",
    )
    .await;

    // A certificate of the right CA whose usage is only serverAuth.
    let wrong_usage = ca
        .issue_member_with(&alice, "alice", Validity::days_from_now(1), |params| {
            params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        })
        .expect("issue");
    assert_refused(
        d.addr(),
        tls_config(
            &ca_pem,
            Some((&wrong_usage.cert_pem, &wrong_usage.key_pem)),
            tls13(),
        ),
        "wrong extended key usage",
        "does not allow extended key usage for client authentication",
    )
    .await;

    // The valid certificate of the same member is accepted, over TLS 1.3 and 1.2.
    let (cert, key) = member_cert(&ca, &alice, Validity::days_from_now(1));
    for versions in [TLS13, TLS12] {
        match probe(d.addr(), tls_config(&ca_pem, Some((&cert, &key)), versions)).await {
            Probe::Answered(status) => assert!(status.contains("200"), "{status}"),
            Probe::Refused(reason) => panic!("a valid certificate was refused: {reason}"),
        }
    }
}

#[tokio::test]
async fn a_valid_certificate_of_an_unknown_or_inactive_member_gets_403_and_no_websocket() {
    let mut d = TestDeployment::new();
    d.add_member_with_status("sam", "CERT-S", MemberStatus::Suspended);
    d.start().await;
    let ca = d.ca();

    let stranger = MemberId::parse("never-registered").expect("id");
    let (cert, key) = member_cert(&ca, &stranger, Validity::days_from_now(1));
    // The refusal is logged under the connection's address with its reason.
    let log = server_log::capture();
    let (peer, answer) = probe_from(
        d.addr(),
        tls_config(ca.cert_pem(), Some((&cert, &key)), tls13()),
    )
    .await;
    assert!(
        matches!(&answer, Probe::Answered(status) if status.contains("403")),
        "{answer:?}"
    );
    let lines = log.lines_of(peer).await;
    assert!(
        lines
            .iter()
            .any(|l| l.contains("request refused") && l.contains("unknown_member")),
        "the log must say why {peer} was refused: {lines:?}"
    );
    let unknown = d.profile_with_cert("admin", cert, key);
    let client = escape_client::Client::new(unknown).await.expect("client");
    let err = client.me().await.expect_err("refused");
    assert!(
        matches!(
            err,
            escape_client::ClientError::Server {
                status: 403,
                code: ErrorCode::UnknownMember,
                ..
            }
        ),
        "{err:?}"
    );
    let err = escape_client::Channel::connect(&client)
        .await
        .expect_err("no websocket");
    assert!(
        matches!(
            err,
            escape_client::ClientError::Server {
                status: 403,
                code: ErrorCode::UnknownMember,
                ..
            }
        ),
        "{err:?}"
    );

    let suspended = d.client("sam").await;
    let err = suspended.rooms().await.expect_err("refused");
    assert!(
        matches!(
            err,
            escape_client::ClientError::Server {
                status: 403,
                code: ErrorCode::MemberInactive,
                ..
            }
        ),
        "{err:?}"
    );
    let err = escape_client::Channel::connect(&suspended)
        .await
        .expect_err("no websocket");
    assert!(
        matches!(
            err,
            escape_client::ClientError::Server {
                status: 403,
                code: ErrorCode::MemberInactive,
                ..
            }
        ),
        "{err:?}"
    );

    // A certificate from the right CA with no member id at all identifies nobody.
    let nobody = ca
        .issue_member_with(&stranger, "nobody", Validity::days_from_now(1), |params| {
            params.subject_alt_names.clear();
        })
        .expect("issue");
    let client =
        escape_client::Client::new(d.profile_with_cert("admin", nobody.cert_pem, nobody.key_pem))
            .await
            .expect("client");
    let err = client.me().await.expect_err("refused");
    assert!(
        matches!(
            err,
            escape_client::ClientError::Server {
                status: 403,
                code: ErrorCode::UnknownMember,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn whoami_reports_the_member_behind_the_certificate() {
    let mut d = TestDeployment::new();
    let alice = d.add_member("alice", "CERT-A");
    d.start().await;
    let me = d.client("alice").await.me().await.expect("me");
    assert_eq!(me.id, alice);
    assert_eq!(me.attributes.organisation, "CERT-A");
    assert!(!me.admin);
    assert!(d.client("admin").await.me().await.expect("me").admin);
}
