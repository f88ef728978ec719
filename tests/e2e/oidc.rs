//! Proving claims with OpenID Connect against real providers on loopback: the `oidc-provider`
//! package for the happy path and replay, a misbehaving provider for forged tokens.

use escape_client::ProfileStore;
use escape_client::enroll::{self, Pending};
use escape_e2e::identity_providers::{self, browse};
use escape_e2e::{TestDeployment, tls_config};
use escape_proto::ErrorCode;
use escape_proto::vetting::{AttributeUpdate, Claims};
use escape_server::config::{Oidc, OidcProvider, OrganisationRule};

const CLIENT_ID: &str = "escape-deployment";
const CLIENT_SECRET: &str = "a-long-test-client-secret-0123456789";

fn provider(name: &str, issuer: &str) -> OidcProvider {
    OidcProvider {
        name: name.into(),
        issuer: issuer.into(),
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        client_secret_env: None,
        organisations: vec![OrganisationRule {
            organisation: "CERT-EE".into(),
            country: Some("EE".into()),
            email_domains: vec!["cert.example".into()],
        }],
    }
}

/// Starts the deployment once to learn its enrollment address (the redirect URI providers must
/// know), then lets the caller configure providers before the restart.
async fn deployment() -> TestDeployment {
    let mut d = TestDeployment::new();
    d.add_member("alice", "CERT-A");
    d.add_member("bob", "CERT-B");
    d.start().await;
    d
}

fn redirect_uri(d: &TestDeployment) -> String {
    format!("https://{}/enroll/v1/oidc/callback", d.enroll_addr())
}

async fn apply(d: &TestDeployment) -> (tempfile::TempDir, ProfileStore, Pending) {
    let invite = d
        .client("admin")
        .await
        .create_invite(None)
        .await
        .expect("invite");
    let home = tempfile::tempdir().expect("tempdir");
    let store = ProfileStore::new(home.path());
    let claims = Claims {
        name: "Ana".into(),
        email: "ana@cert.example".into(),
        organisation: "CERT-EE".into(),
        country: "EE".into(),
        sector: "government".into(),
        role: "analyst".into(),
    };
    let pending = enroll::apply(&store, &invite.enroll_address, &invite.code, claims, "ana")
        .await
        .expect("applied");
    (home, store, pending)
}

/// Visits the callback on the enrollment listener like the applicant's browser would.
async fn callback(d: &TestDeployment, url: &str) -> (u16, String) {
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(tls_config(
            d.ca().cert_pem(),
            None,
            &[&rustls::version::TLS13],
        ))
        .build()
        .expect("http");
    let response = http.get(url).send().await.expect("callback answers");
    (
        response.status().as_u16(),
        response.text().await.unwrap_or_default(),
    )
}

#[tokio::test]
async fn a_login_at_a_real_provider_proves_email_and_organisation_once() {
    let mut d = deployment().await;
    let idp = identity_providers::real(
        &redirect_uri(&d),
        CLIENT_ID,
        CLIENT_SECRET,
        "ana@cert.example",
        "Ana Tamm",
    );
    d.oidc = Oidc {
        providers: vec![provider("cert-idp", &idp.url)],
        redirect_url: None,
    };
    d.vetting.require_verified = vec!["CERT-EE".into()];
    d.restart().await;

    let (_home, _store, pending) = apply(&d).await;
    assert_eq!(
        enroll::providers(&pending).await.expect("providers"),
        vec!["cert-idp".to_owned()]
    );
    let admin = d.client("admin").await;
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
    let err = admin
        .approve(&pending.id, AttributeUpdate::default())
        .await
        .expect_err("needs verification");
    assert!(
        matches!(&err, escape_client::ClientError::Server { code: ErrorCode::Precondition, message, .. } if message.contains("verified")),
        "{err:?}"
    );

    let login = enroll::start_verification(&pending, "cert-idp")
        .await
        .expect("login link");
    assert!(
        login.starts_with(&idp.url) && login.contains("code_challenge") && login.contains("nonce"),
        "{login}"
    );
    let back = browse(&login, &redirect_uri(&d)).await;
    let (status, body) = callback(&d, &back).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("ana@cert.example"), "{body}");

    let app = admin.application(&pending.id).await.expect("application");
    let verified = app.verified.expect("verified claims recorded");
    assert_eq!(verified.email.as_deref(), Some("ana@cert.example"));
    assert_eq!(verified.organisation.as_deref(), Some("CERT-EE"));
    assert_eq!(verified.name.as_deref(), Some("Ana Tamm"));
    assert_eq!(verified.issuer, idp.url);

    // The same callback again is a replay: the login state was spent.
    let (status, body) = callback(&d, &back).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("used or expired"), "{body}");

    admin
        .approve(&pending.id, AttributeUpdate::default())
        .await
        .expect("approved once verified");
}

#[tokio::test]
async fn forged_or_wrong_id_tokens_are_refused_with_a_clear_reason() {
    let mut d = deployment().await;
    let idp = identity_providers::rogue();
    let modes = [
        ("other-key", "signature"),
        ("wrong-aud", "audience"),
        ("expired", "expired"),
        ("bad-nonce", "nonce"),
        ("alg-none", "signature"),
    ];
    d.oidc = Oidc {
        providers: modes
            .iter()
            .map(|(mode, _)| provider(mode, &format!("{}/{mode}", idp.url)))
            .collect(),
        redirect_url: None,
    };
    d.restart().await;
    let (_home, _store, pending) = apply(&d).await;
    for (mode, reason) in modes {
        let login = enroll::start_verification(&pending, mode)
            .await
            .expect("login link");
        let back = browse(&login, &redirect_uri(&d)).await;
        let (status, body) = callback(&d, &back).await;
        assert_eq!(status, 403, "{mode}: {body}");
        assert!(
            body.to_lowercase().contains(reason),
            "{mode}: expected {reason:?} in {body}"
        );
        eprintln!("{mode}: {body}");
    }
    let app = d
        .client("admin")
        .await
        .application(&pending.id)
        .await
        .expect("application");
    assert!(app.verified.is_none(), "nothing was recorded as verified");

    let err = enroll::start_verification(&pending, "nobody")
        .await
        .expect_err("unknown provider");
    assert!(
        matches!(
            err,
            escape_client::ClientError::Server {
                code: ErrorCode::NotFound,
                ..
            }
        ),
        "{err:?}"
    );
}
