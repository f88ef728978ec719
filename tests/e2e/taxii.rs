//! TAXII 2.1 with the reference client (`taxii2-client`, PyPI) over mutual TLS, and every
//! exported bundle accepted by the OASIS `stix2-validator`. A member's TAXII client gets
//! exactly what the member may see: the rooms it may read, the labels TLP lets it read, never
//! TLP:RED.

use escape_e2e::TestDeployment;
use escape_e2e::taxii_tools::{self, PemFiles};
use escape_proto::RoomName;
use escape_proto::indicator::{IndicatorDraft, ShareIndicators};
use escape_proto::room::CreateRoom;

fn draft(value: &str, tlp: &str) -> IndicatorDraft {
    IndicatorDraft {
        value: value.into(),
        tlp: tlp.into(),
        ..IndicatorDraft::default()
    }
}

fn patterns(collection: &serde_json::Value) -> Vec<String> {
    let mut found: Vec<String> = collection["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .map(|o| {
            o["pattern"]
                .as_str()
                .or(o["name"].as_str())
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    found.sort();
    found
}

fn collection<'a>(read: &'a serde_json::Value, title: &str) -> Option<&'a serde_json::Value> {
    read["api_roots"][0]["collections"]
        .as_array()
        .expect("collections")
        .iter()
        .find(|c| c["title"] == title)
}

async fn deployment() -> (TestDeployment, RoomName) {
    let mut d = TestDeployment::new();
    d.add_member_as("ana", escape_e2e::attributes("CERT-A", &[]));
    d.add_member_as("bob", escape_e2e::attributes("CERT-B", &[]));
    d.start().await;
    let intel = RoomName::parse("intel").expect("room");
    let mut request = CreateRoom::new(intel.clone(), "");
    request.tlp_max = Some("RED".into());
    let ana = d.client("ana").await;
    ana.create_room_with(&request).await.expect("room");
    d.client("bob").await.join(&intel).await.expect("join");
    ana.create_room(RoomName::parse("solo").expect("room"), String::new())
        .await
        .expect("room");
    ana.share_indicators(
        &intel,
        &ShareIndicators {
            indicators: vec![
                draft("clear.example", "CLEAR"),
                draft("green.example", "GREEN"),
                draft("amber.example", "AMBER"),
                draft("strict.example", "AMBER+STRICT"),
                draft("red.example", "RED"),
                draft("CVE-2021-44228", "CLEAR"),
            ],
        },
    )
    .await
    .expect("share");
    (d, intel)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_taxii_client_reads_exactly_what_the_member_may_see() {
    let (d, _) = deployment().await;
    let url = format!("https://{}/taxii2/", d.addr());
    let read_as = |who: &str| {
        let pem = PemFiles::new(&d.profile(who));
        let url = url.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let [ca, cert, key] = pem.paths();
                let result = taxii_tools::check(&["read", &url, &ca, &cert, &key]);
                drop(pem);
                result
            })
            .await
            .expect("python")
        }
    };

    let bob = read_as("bob").await;
    assert_eq!(
        bob["api_roots"][0]["versions"][0],
        "application/taxii+json;version=2.1"
    );
    assert!(collection(&bob, "solo").is_none(), "bob is not in solo");
    let intel = collection(&bob, "intel").expect("intel");
    assert_eq!(intel["can_read"], true);
    assert_eq!(
        patterns(intel),
        [
            "CVE-2021-44228",
            "[domain-name:value = 'clear.example']",
            "[domain-name:value = 'green.example']",
        ]
    );
    assert_eq!(intel["manifest"].as_array().expect("manifest").len(), 3);

    let ana = read_as("ana").await;
    assert!(collection(&ana, "solo").is_some());
    let intel = collection(&ana, "intel").expect("intel");
    assert_eq!(intel["can_write"], true);
    let seen = patterns(intel);
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert!(
        !seen.iter().any(|p| p.contains("red.example")),
        "TLP:RED never leaves its room, not even to its sharer's TAXII client"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_client_writes_and_the_validator_accepts_our_bundles() {
    let (d, intel) = deployment().await;
    let ana = d.client("ana").await;
    let work = tempfile::tempdir().expect("dir");

    // Every bundle we export passes the OASIS validator.
    let bundle = ana.export_stix(&intel).await.expect("export");
    let exported = work.path().join("intel.json");
    std::fs::write(&exported, serde_json::to_vec_pretty(&bundle).expect("json")).expect("write");
    let verdict = {
        let path = exported.clone();
        tokio::task::spawn_blocking(move || taxii_tools::validate(&path))
            .await
            .expect("python")
    };
    assert_eq!(verdict["valid"], true, "{verdict}");

    // The reference client posts a bundle into a collection; it lands in the room.
    let incoming = serde_json::json!({
        "type": "bundle",
        "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d",
        "objects": [{
            "type": "indicator",
            "spec_version": "2.1",
            "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
            "created": "2024-03-01T10:00:00.000Z",
            "modified": "2024-03-01T10:00:00.000Z",
            "pattern": "[ipv4-addr:value = '203.0.113.66']",
            "pattern_type": "stix",
            "valid_from": "2024-03-01T10:00:00.000Z",
            "object_marking_refs": ["marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"]
        }]
    });
    let posted = work.path().join("incoming.json");
    std::fs::write(&posted, incoming.to_string()).expect("write");
    let pem = PemFiles::new(&d.profile("bob"));
    let url = format!("https://{}/taxii2/", d.addr());
    let status = tokio::task::spawn_blocking(move || {
        let [ca, cert, key] = pem.paths();
        let result = taxii_tools::check(&[
            "write",
            &url,
            &ca,
            &cert,
            &key,
            "intel",
            &posted.display().to_string(),
        ]);
        drop(pem);
        result
    })
    .await
    .expect("python");
    assert_eq!(status["status"], "complete", "{status}");
    assert_eq!(status["success_count"], 1, "{status}");
    let found = ana
        .search_indicators("203.0.113.66", None)
        .await
        .expect("search");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].indicator.source_organisation, "CERT-B");
    assert_eq!(
        found[0].indicator.id, "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
        "the posted object keeps its id"
    );
}

#[tokio::test]
async fn taxii_speaks_its_media_types_errors_and_paging() {
    let (d, _) = deployment().await;
    let profile = d.profile("ana");
    let tls = escape_e2e::tls_config(
        &profile.ca_pem,
        Some((&profile.cert_pem, &profile.key_pem)),
        &[&rustls::version::TLS13],
    );
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .expect("client");
    let base = format!("https://127.0.0.1:{}/taxii2", d.addr().port());
    let taxii = "application/taxii+json;version=2.1";
    let get = |path: String, accept: &'static str| {
        let http = http.clone();
        async move {
            http.get(path)
                .header("Accept", accept)
                .send()
                .await
                .expect("request")
        }
    };

    let bad_accept = get(format!("{base}/"), "text/html").await;
    assert_eq!(bad_accept.status(), 406);
    let discovery = get(format!("{base}/"), taxii).await;
    assert_eq!(discovery.status(), 200);
    assert_eq!(
        discovery.headers()["content-type"].to_str().expect("type"),
        taxii
    );
    let collections: serde_json::Value = get(format!("{base}/escape/collections/"), taxii)
        .await
        .json()
        .await
        .expect("json");
    let intel = collections["collections"]
        .as_array()
        .expect("collections")
        .iter()
        .find(|c| c["title"] == "intel")
        .expect("intel")["id"]
        .as_str()
        .expect("id")
        .to_owned();

    // Paging: one object at a time, with `more`, `next` and the date headers.
    let first = get(
        format!("{base}/escape/collections/{intel}/objects/?limit=1"),
        taxii,
    )
    .await;
    assert_eq!(first.status(), 200);
    assert!(first.headers().contains_key("x-taxii-date-added-first"));
    assert!(first.headers().contains_key("x-taxii-date-added-last"));
    let first: serde_json::Value = first.json().await.expect("json");
    assert_eq!(first["more"], true);
    assert_eq!(first["objects"].as_array().expect("objects").len(), 1);
    let next = first["next"].as_str().expect("next");
    let second: serde_json::Value = get(
        format!("{base}/escape/collections/{intel}/objects/?limit=1&next={next}"),
        taxii,
    )
    .await
    .json()
    .await
    .expect("json");
    assert_ne!(second["objects"][0]["id"], first["objects"][0]["id"]);
    let only_vulnerabilities: serde_json::Value = get(
        format!("{base}/escape/collections/{intel}/objects/?match[type]=vulnerability"),
        taxii,
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(
        only_vulnerabilities["objects"]
            .as_array()
            .expect("objects")
            .len(),
        1
    );
    let id = first["objects"][0]["id"].as_str().expect("id");
    let versions: serde_json::Value = get(
        format!("{base}/escape/collections/{intel}/objects/{id}/versions/"),
        taxii,
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(versions["versions"].as_array().expect("versions").len(), 1);

    // Errors are TAXII error messages.
    let unknown = get(
        format!("{base}/escape/collections/00000000-0000-4000-8000-000000000000/"),
        taxii,
    )
    .await;
    assert_eq!(unknown.status(), 404);
    let body: serde_json::Value = unknown.json().await.expect("json");
    assert!(body["title"].is_string(), "{body}");
    let wrong_type = http
        .post(format!("{base}/escape/collections/{intel}/objects/"))
        .header("Accept", taxii)
        .header("Content-Type", "application/json")
        .body("{\"objects\":[]}")
        .send()
        .await
        .expect("request");
    assert_eq!(wrong_type.status(), 415);
    let bad_filter = get(
        format!("{base}/escape/collections/{intel}/objects/?added_after=yesterday"),
        taxii,
    )
    .await;
    assert_eq!(bad_filter.status(), 400);
}
