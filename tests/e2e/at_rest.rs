//! Encryption at rest: a copy of the data dir without the master key is ciphertext and key
//! names; the master key can be replaced while the server serves.

use std::path::Path;

use escape_client::ClientError;
use escape_e2e::{TestDeployment, contains_bytes, next_frame};
use escape_proto::room::HistoryQuery;
use escape_proto::vetting::AttributeUpdate;
use escape_proto::{Attributes, Body, ErrorCode, RoomName, ServerFrame};
use escape_server::seal::{self, MasterKeyOptions, SealError};

/// Every byte of every file under `dir`.
fn every_file(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        for entry in std::fs::read_dir(&path).expect("read dir") {
            let entry = entry.expect("entry");
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("read file");
                files.push((path.display().to_string(), bytes));
            }
        }
    }
    files
}

fn found_in<'a>(files: &'a [(String, Vec<u8>)], needle: &str) -> Vec<&'a str> {
    files
        .iter()
        .filter(|(_, bytes)| contains_bytes(bytes, needle.as_bytes()))
        .map(|(name, _)| name.as_str())
        .collect()
}

#[tokio::test]
async fn a_copy_of_the_data_dir_without_the_master_key_reveals_no_text_or_attribute() {
    let mut d = TestDeployment::new();
    let ana = d.add_member_as(
        "ana",
        Attributes {
            organisation: "Orgqzx7-CSIRT".into(),
            country: "IS".into(),
            sector: "Sectorwq9".into(),
            role: "Rolexk3".into(),
            clearance: 2,
            vetting: "vetted".into(),
            clients: vec!["Clientpv4-Ministry".into()],
        },
    );
    d.start().await;
    let ops = RoomName::parse("ops").expect("room");
    let client = d.client("ana").await;
    client
        .create_room(ops.clone(), "Topicz9m2 reconnaissance".into())
        .await
        .expect("room");
    let mut channel = d.channel("ana").await;
    channel
        .send(&ops, "m1", Body::text("Bodykk51 beacon to 198.51.100.77"))
        .await
        .expect("ack");
    channel.close().await;
    client
        .share_indicators(
            &ops,
            &escape_proto::indicator::ShareIndicators {
                indicators: vec![escape_proto::indicator::IndicatorDraft {
                    value: "iocvaluezq3.example".into(),
                    tlp: "AMBER".into(),
                    description: "Iocdescrxy8".into(),
                    ..Default::default()
                }],
            },
        )
        .await
        .expect("indicator");
    d.client("admin")
        .await
        .update_attributes(
            &ana,
            AttributeUpdate::from_pairs(["sector=Sectornew8x"]).expect("update"),
            "Reasonmv2 moved teams".into(),
        )
        .await
        .expect("attributes");
    d.stop().await;

    let files = every_file(d.data_dir());
    // The search does see the store: key names (member ids) are in the clear by design.
    assert!(
        !found_in(&files, ana.as_str()).is_empty(),
        "the search must reach the store files"
    );
    for secret in [
        "Bodykk51",
        "198.51.100.77",
        "Topicz9m2",
        "Orgqzx7-CSIRT",
        "Sectorwq9",
        "Sectornew8x",
        "Rolexk3",
        "Clientpv4-Ministry",
        "Reasonmv2",
        "iocvaluezq3",
        "Iocdescrxy8",
    ] {
        let hits = found_in(&files, secret);
        assert!(hits.is_empty(), "{secret:?} is readable in {hits:?}");
    }

    // With the key, everything is there.
    d.start().await;
    let client = d.client("ana").await;
    let page = client
        .history(&ops, &HistoryQuery::default())
        .await
        .expect("history");
    assert_eq!(
        page.messages[0].body,
        Body::text("Bodykk51 beacon to 198.51.100.77")
    );
    let me = client.me().await.expect("me");
    assert_eq!(me.attributes.organisation, "Orgqzx7-CSIRT");
    assert_eq!(me.attributes.sector, "Sectornew8x");
}

#[tokio::test]
async fn the_master_key_rotates_while_serving_and_the_old_one_opens_nothing() {
    let mut d = TestDeployment::new();
    d.add_member("bob", "CERT-B");
    let old_key = std::fs::read(d.master_key().path).expect("key");
    d.start().await;
    let ops = RoomName::parse("ops").expect("room");
    let admin = d.client("admin").await;
    admin
        .create_room(ops.clone(), String::new())
        .await
        .expect("room");
    let mut channel = d.channel("admin").await;
    channel.subscribe(&ops, None).await.expect("subscribe");
    channel
        .send(&ops, "before", Body::text("before rotation"))
        .await
        .expect("ack");

    // Members cannot; admins can, and the open session keeps working throughout.
    let err = d
        .client("bob")
        .await
        .rotate_master_key()
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
    let rotated = admin.rotate_master_key().await.expect("rotate");
    assert!(rotated.data_keys >= 2, "{rotated:?}");
    assert_ne!(std::fs::read(d.master_key().path).expect("key"), old_key);
    channel
        .send(&ops, "after", Body::text("after rotation"))
        .await
        .expect("ack");
    let mut bodies = Vec::new();
    while bodies.len() < 2 {
        if let ServerFrame::Event(event) = next_frame(&mut channel).await.frame {
            bodies.push(event.body);
        }
    }
    assert_eq!(
        bodies,
        [Body::text("before rotation"), Body::text("after rotation")]
    );
    // A room created after the rotation gets a data key wrapped to the new master key.
    admin
        .create_room(RoomName::parse("later").expect("room"), String::new())
        .await
        .expect("room");
    channel.close().await;
    d.stop().await;

    // The old key opens nothing; a key kept inside the data dir is refused.
    let elsewhere = tempfile::tempdir().expect("dir");
    let old_path = elsewhere.path().join("old-key");
    std::fs::write(&old_path, &old_key).expect("write");
    let store = d.data_dir().join("store");
    let old = MasterKeyOptions {
        path: old_path,
        passphrase: None,
    };
    assert!(matches!(
        seal::open_deployment(d.data_dir(), &store, &old),
        Err(SealError::WrongMasterKey { .. })
    ));
    let inside = d.data_dir().join("master-key");
    std::fs::write(&inside, std::fs::read(d.master_key().path).expect("key")).expect("copy");
    let inside = MasterKeyOptions {
        path: inside,
        passphrase: None,
    };
    assert!(matches!(
        seal::open_deployment(d.data_dir(), &store, &inside),
        Err(SealError::KeyInsideDataDir { .. })
    ));
    std::fs::remove_file(&inside.path).expect("remove");

    // The new key serves everything, including what was written after the rotation.
    d.start().await;
    let admin = d.client("admin").await;
    let page = admin
        .history(&ops, &HistoryQuery::default())
        .await
        .expect("history");
    assert_eq!(page.messages.len(), 2);
    assert_eq!(admin.rooms().await.expect("rooms").len(), 2);
}
