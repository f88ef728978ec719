//! End-to-end encrypted files: the server stores ciphertext it cannot open, keys rotate when
//! membership shrinks, joiners get older keys only where the room allows, and every download
//! passes the gate and is verified before anything is written.

use escape_client::ClientError;
use escape_client::files::{self, file_identity, no_progress};
use escape_e2e::{TestDeployment, contains_bytes};
use escape_proto::file::{FileInfo, StartUpload};
use escape_proto::room::{CreateRoom, HistoryQuery};
use escape_proto::vetting::StatusChange;
use escape_proto::{Body, ErrorCode, RoomName};
use std::path::{Path, PathBuf};

fn room(name: &str) -> RoomName {
    RoomName::parse(name).expect("room")
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write");
    path
}

async fn upload(d: &TestDeployment, who: &str, room: &RoomName, path: &Path) -> FileInfo {
    let client = d.client(who).await;
    let identity = file_identity(client.profile()).expect("identity");
    files::upload(&client, room, path, &identity, None, no_progress())
        .await
        .expect("upload")
}

async fn download(
    d: &TestDeployment,
    who: &str,
    room: &RoomName,
    id: &str,
    out: &Path,
) -> Result<Vec<u8>, ClientError> {
    let client = d.client(who).await;
    let identity = file_identity(client.profile()).expect("identity");
    files::download(&client, room, id, Some(out), &identity, no_progress()).await?;
    Ok(std::fs::read(out).expect("read output"))
}

fn code(err: &ClientError) -> Option<ErrorCode> {
    match err {
        ClientError::Server { code, .. } => Some(*code),
        _ => None,
    }
}

/// The stored ciphertext of a file, read straight from the data dir.
fn stored(d: &TestDeployment, room: &RoomName, id: &str) -> PathBuf {
    d.data_dir()
        .join("files")
        .join(room.as_str())
        .join(format!("{id}.age"))
}

/// Every file under `dir` that contains `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        for entry in std::fs::read_dir(&path).expect("dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if contains_bytes(&std::fs::read(&path).expect("read"), needle) {
                hits.push(path);
            }
        }
    }
    hits
}

#[tokio::test]
async fn files_round_trip_and_the_server_holds_only_ciphertext() {
    let mut d = TestDeployment::new();
    d.add_member("ana", "CERT-A");
    d.add_member("bob", "CERT-B");
    // Small chunks, so a file of a few hundred KiB travels in many requests.
    d.limits.file_chunk_bytes = 64 * 1024;
    d.start().await;
    let ops = room("ops");
    d.client("ana")
        .await
        .create_room(ops.clone(), String::new())
        .await
        .expect("room");
    d.client("bob").await.join(&ops).await.expect("join");

    let work = tempfile::tempdir().expect("dir");
    let content: Vec<u8> = b"Filebodyzz91 beacon 203.0.113.9 "
        .iter()
        .copied()
        .cycle()
        .take(300_000)
        .collect();
    let path = write(work.path(), "secret-report-q7.txt", &content);
    let info = upload(&d, "ana", &ops, &path).await;
    assert_eq!(info.name, "secret-report-q7.txt");
    assert_eq!(info.generation, 1);
    assert!(
        info.size > content.len() as u64,
        "ciphertext carries a header"
    );

    let listed = d.client("bob").await.files(&ops).await.expect("list");
    assert_eq!(listed, vec![info.clone()]);
    let out = work.path().join("from-ana.txt");
    assert_eq!(
        download(&d, "bob", &ops, &info.id, &out)
            .await
            .expect("download"),
        content
    );

    // The share is announced in the room, by the server; a client cannot fake one.
    let history = d
        .client("bob")
        .await
        .history(&ops, &HistoryQuery::default())
        .await
        .expect("history");
    assert!(
        history.messages.iter().any(|m| matches!(
            &m.body,
            Body::File { file_id, .. } if *file_id == info.id
        )),
        "{history:?}"
    );
    let mut channel = d.channel("bob").await;
    let forged = channel
        .send(
            &ops,
            "forged",
            Body::File {
                file_id: info.id.clone(),
                name: "malware.exe".into(),
                size: 1,
                generation: 1,
            },
        )
        .await
        .expect_err("clients cannot announce files");
    assert_eq!(code(&forged), Some(ErrorCode::InvalidRequest), "{forged:?}");
    channel.close().await;

    // What the server stores is age ciphertext; neither the bytes nor the name are readable
    // anywhere in the data dir.
    let ciphertext = std::fs::read(stored(&d, &ops, &info.id)).expect("stored");
    assert!(ciphertext.starts_with(b"age-encryption.org/v1"));
    d.stop().await;
    assert!(files_containing(d.data_dir(), b"Filebodyzz91").is_empty());
    assert!(files_containing(d.data_dir(), b"secret-report-q7").is_empty());
}

#[tokio::test]
async fn leaving_rotates_the_room_key_so_later_files_are_unreadable_to_the_leaver() {
    let mut d = TestDeployment::new();
    d.add_member("ana", "CERT-A");
    d.add_member("bob", "CERT-B");
    let dan = d.add_member("dan", "CERT-D");
    let eve = d.add_member("eve", "CERT-E");
    d.start().await;
    let ops = room("ops");
    let ana = d.client("ana").await;
    ana.create_room(ops.clone(), String::new())
        .await
        .expect("room");
    let bob = d.client("bob").await;
    bob.join(&ops).await.expect("join");
    for who in ["dan", "eve"] {
        d.client(who).await.join(&ops).await.expect("join");
    }
    let work = tempfile::tempdir().expect("dir");
    let first = upload(&d, "ana", &ops, &write(work.path(), "a.txt", b"first")).await;
    assert_eq!(
        download(&d, "bob", &ops, &first.id, &work.path().join("a-bob"))
            .await
            .expect("bob reads what was shared while he was a member"),
        b"first"
    );
    // Bob keeps everything he could ever see: his own key and generation 1's.
    let bob_identity = file_identity(bob.profile()).expect("identity");
    let keys = bob.room_keys(&ops).await.expect("keys");
    let generation_one = files::open_copy(
        keys.generations[0]
            .copy
            .as_deref()
            .expect("bob holds gen 1"),
        &bob_identity,
    )
    .expect("open");

    // An upload under way when Bob leaves is not shared afterwards: its bytes are encrypted to
    // a key he holds.
    let recipient: age::x25519::Recipient =
        keys.generations[0].recipient.parse().expect("recipient");
    let sealed = work.path().join("late.age");
    files::encrypt_file(
        &write(work.path(), "late.txt", b"late"),
        &sealed,
        &recipient,
        "late.txt",
        &no_progress(),
    )
    .expect("encrypt");
    let bytes = std::fs::read(&sealed).expect("read");
    let late = ana
        .start_upload(
            &ops,
            &StartUpload {
                name: "late.txt".into(),
                size: bytes.len() as u64,
                generation: 1,
            },
        )
        .await
        .expect("start");
    ana.put_chunk(&ops, &late.file_id, 0, bytes)
        .await
        .expect("all bytes");

    bob.leave(&ops).await.expect("leave");
    let keys = ana.room_keys(&ops).await.expect("keys");
    assert!(keys.rotation_needed, "{keys:?}");
    let refused = ana
        .complete_upload(&ops, &late.file_id)
        .await
        .expect_err("rotated meanwhile");
    assert_eq!(code(&refused), Some(ErrorCode::Precondition), "{refused:?}");
    // An upload still encrypted to generation 1 is refused.
    let stale = ana
        .start_upload(
            &ops,
            &StartUpload {
                name: "stale.txt".into(),
                size: 100,
                generation: 1,
            },
        )
        .await
        .expect_err("old generation");
    assert_eq!(code(&stale), Some(ErrorCode::Precondition), "{stale:?}");

    // Ana's client makes generation 2 for the remaining members and encrypts to it.
    let second = upload(&d, "ana", &ops, &write(work.path(), "b.txt", b"second")).await;
    assert_eq!(second.generation, 2);
    let keys = ana.room_keys(&ops).await.expect("keys");
    assert!(!keys.rotation_needed);
    assert!(
        keys.holders
            .iter()
            .all(|h| h.member != bob.profile().member_id),
        "bob is no holder"
    );

    // Even with a copy of the ciphertext, nothing Bob holds opens it.
    let ciphertext = std::fs::read(stored(&d, &ops, &second.id)).expect("stored");
    for key in [&bob_identity, &generation_one] {
        assert!(
            age::decrypt(key, &ciphertext).is_err(),
            "a key Bob holds opens a file shared after he left"
        );
    }
    // And the server no longer serves him the room's files at all.
    let err = bob.files(&ops).await.expect_err("not a member");
    assert_eq!(code(&err), Some(ErrorCode::NotAMember), "{err:?}");

    // Suspension and revocation end a member's access to new files the same way.
    for (member, change) in [(&dan, StatusChange::Suspend), (&eve, StatusChange::Revoke)] {
        let admin = d.client("admin").await;
        admin.join(&ops).await.expect("join");
        upload(&d, "ana", &ops, &write(work.path(), "c.txt", b"c")).await;
        assert!(!ana.room_keys(&ops).await.expect("keys").rotation_needed);
        admin
            .set_status(member, change, "left the community".into())
            .await
            .expect("status");
        let keys = ana.room_keys(&ops).await.expect("keys");
        assert!(keys.rotation_needed, "{change:?}: {keys:?}");
        assert!(keys.holders.iter().all(|h| h.member != *member));
    }
}

#[tokio::test]
async fn joiners_get_older_keys_unless_the_room_is_red() {
    let mut d = TestDeployment::new();
    d.add_member("ana", "CERT-A");
    let carol_id = d.add_member("carol", "CERT-C");
    d.start().await;
    let ana = d.client("ana").await;
    let carol = d.client("carol").await;
    let ana_identity = file_identity(ana.profile()).expect("identity");
    let work = tempfile::tempdir().expect("dir");

    for (name, tlp, joiner_reads_old) in [("amber", "AMBER", true), ("red", "RED", false)] {
        let r = room(name);
        let mut request = CreateRoom::new(r.clone(), "");
        request.tlp_max = Some(tlp.into());
        ana.create_room_with(&request).await.expect("room");
        let before = upload(&d, "ana", &r, &write(work.path(), "old.txt", b"before")).await;
        carol.join(&r).await.expect("join");
        // Only a holder can share a generation: a member who lacks it cannot plant a copy.
        let planted = carol
            .add_key_copies(
                &r,
                1,
                &escape_proto::file::AddCopies {
                    copies: [(
                        ana.profile().member_id.clone(),
                        "-----BEGIN AGE ENCRYPTED FILE-----\nx\n-----END AGE ENCRYPTED FILE-----\n"
                            .to_owned(),
                    )]
                    .into(),
                },
            )
            .await
            .expect_err("not a holder");
        assert_eq!(code(&planted), Some(ErrorCode::Forbidden), "{planted:?}");
        // Any holder's client shares keys when it next syncs (listing files does).
        files::sync_room_keys(&ana, &r, &ana_identity)
            .await
            .expect("sync");
        let old = download(
            &d,
            "carol",
            &r,
            &before.id,
            &work.path().join(format!("{name}-old")),
        )
        .await;
        if joiner_reads_old {
            assert_eq!(old.expect("joiner reads history"), b"before");
        } else {
            let err = old.expect_err("no history for joiners in a RED room");
            assert!(matches!(err, ClientError::File(_)), "{err:?}");
            assert!(!work.path().join(format!("{name}-old")).exists());
        }
        // Files shared after the join are readable to the joiner either way.
        let after = upload(&d, "ana", &r, &write(work.path(), "new.txt", b"after")).await;
        assert_eq!(
            download(
                &d,
                "carol",
                &r,
                &after.id,
                &work.path().join(format!("{name}-new"))
            )
            .await
            .expect("joiner reads new files"),
            b"after"
        );
    }
    // A member suspended and reinstated is back in the RED room without its current key: the
    // next upload makes a generation that includes it. The AMBER room hands keys on instead.
    let admin = d.client("admin").await;
    admin
        .set_status(&carol_id, StatusChange::Suspend, "leave of absence".into())
        .await
        .expect("suspend");
    for name in ["amber", "red"] {
        // Marked in the batch that suspended her, before anyone could upload.
        assert!(
            ana.room_keys(&room(name))
                .await
                .expect("keys")
                .rotation_needed,
            "{name}: a suspension calls for a new key generation"
        );
        // Uploads while she is away make generations without her.
        upload(
            &d,
            "ana",
            &room(name),
            &write(work.path(), "away.txt", b"away"),
        )
        .await;
        assert!(
            !ana.room_keys(&room(name))
                .await
                .expect("keys")
                .rotation_needed
        );
    }
    admin
        .set_status(&carol_id, StatusChange::Reinstate, "back".into())
        .await
        .expect("reinstate");
    assert!(
        ana.room_keys(&room("red"))
            .await
            .expect("keys")
            .rotation_needed
    );
    assert!(
        !ana.room_keys(&room("amber"))
            .await
            .expect("keys")
            .rotation_needed
    );
}

#[tokio::test]
async fn tampered_ciphertext_is_detected_and_nothing_is_written() {
    let mut d = TestDeployment::new();
    d.add_member("ana", "CERT-A");
    d.start().await;
    let ops = room("ops");
    d.client("ana")
        .await
        .create_room(ops.clone(), String::new())
        .await
        .expect("room");
    let work = tempfile::tempdir().expect("dir");
    let content = vec![7u8; 200_000];
    let info = upload(&d, "ana", &ops, &write(work.path(), "f.bin", &content)).await;

    let path = stored(&d, &ops, &info.id);
    let mut ciphertext = std::fs::read(&path).expect("stored");
    let middle = ciphertext.len() / 2;
    ciphertext[middle] ^= 0x40;
    std::fs::write(&path, &ciphertext).expect("tamper");

    let out_dir = tempfile::tempdir().expect("dir");
    let out = out_dir.path().join("f.bin");
    let err = download(&d, "ana", &ops, &info.id, &out)
        .await
        .expect_err("tampering is detected");
    assert!(matches!(err, ClientError::File(_)), "{err:?}");
    assert!(err.to_string().contains("altered"), "{err}");
    assert!(!out.exists(), "nothing at the output path");
    assert_eq!(
        std::fs::read_dir(out_dir.path()).expect("dir").count(),
        0,
        "no partial file left behind"
    );
}

#[tokio::test]
async fn interrupted_uploads_resume_and_are_never_listed_before_they_are_complete() {
    let mut d = TestDeployment::new();
    d.add_member("ana", "CERT-A");
    d.add_member("bob", "CERT-B");
    d.limits.member_quota_bytes = 800_000;
    d.limits.max_file_bytes = 600_000;
    d.start().await;
    let ops = room("ops");
    let ana = d.client("ana").await;
    ana.create_room(ops.clone(), String::new())
        .await
        .expect("room");
    let identity = file_identity(ana.profile()).expect("identity");
    let keys = files::sync_room_keys(&ana, &ops, &identity)
        .await
        .expect("keys");
    let generation = keys.current.expect("generation 1");
    let recipient: age::x25519::Recipient =
        keys.generations[0].recipient.parse().expect("recipient");

    let work = tempfile::tempdir().expect("dir");
    let plain = write(work.path(), "big.bin", &vec![3u8; 300_000]);
    let sealed = work.path().join("big.age");
    files::encrypt_file(&plain, &sealed, &recipient, "big.bin", &no_progress()).expect("encrypt");
    let ciphertext = std::fs::read(&sealed).expect("read");
    let size = ciphertext.len() as u64;

    let status = ana
        .start_upload(
            &ops,
            &StartUpload {
                name: "big.bin".into(),
                size,
                generation,
            },
        )
        .await
        .expect("start");
    let half = ciphertext.len() / 2;
    ana.put_chunk(&ops, &status.file_id, 0, ciphertext[..half].to_vec())
        .await
        .expect("first half");
    // The connection "drops" here. An incomplete upload is neither complete nor listed.
    let early = ana
        .complete_upload(&ops, &status.file_id)
        .await
        .expect_err("incomplete");
    assert_eq!(code(&early), Some(ErrorCode::Precondition), "{early:?}");
    assert!(ana.files(&ops).await.expect("list").is_empty());
    // A chunk past the expected offset is refused; a resent chunk is harmless.
    let gap = ana
        .put_chunk(&ops, &status.file_id, half as u64 + 10, vec![0; 10])
        .await
        .expect_err("gap");
    assert_eq!(code(&gap), Some(ErrorCode::Precondition), "{gap:?}");
    let again = ana
        .put_chunk(&ops, &status.file_id, 0, ciphertext[..1000].to_vec())
        .await
        .expect("resent");
    assert_eq!(again.received, half as u64);
    // Only the uploader writes to an upload.
    let bob = d.client("bob").await;
    bob.join(&ops).await.expect("join");
    let intruder = bob
        .put_chunk(&ops, &status.file_id, half as u64, vec![0; 10])
        .await
        .expect_err("not bob's upload");
    assert_eq!(code(&intruder), Some(ErrorCode::Forbidden), "{intruder:?}");

    // Resume from where the server stands.
    files::send_chunks(
        &ana,
        &ops,
        &status.file_id,
        &sealed,
        size,
        64 * 1024,
        &no_progress(),
    )
    .await
    .expect("resume");
    let info = ana
        .complete_upload(&ops, &status.file_id)
        .await
        .expect("complete");
    assert_eq!(ana.files(&ops).await.expect("list"), vec![info.clone()]);
    let out = work.path().join("out.bin");
    assert_eq!(
        download(&d, "ana", &ops, &info.id, &out)
            .await
            .expect("download"),
        vec![3u8; 300_000]
    );

    // Limits: the largest file, then the member's quota, each with a clear error.
    let too_big = ana
        .start_upload(
            &ops,
            &StartUpload {
                name: "huge".into(),
                size: 700_000,
                generation,
            },
        )
        .await
        .expect_err("too large");
    assert_eq!(code(&too_big), Some(ErrorCode::TooLarge), "{too_big:?}");
    let over_quota = ana
        .start_upload(
            &ops,
            &StartUpload {
                name: "more".into(),
                size: 500_000,
                generation,
            },
        )
        .await
        .expect_err("quota");
    assert_eq!(
        code(&over_quota),
        Some(ErrorCode::TooLarge),
        "{over_quota:?}"
    );
    assert!(over_quota.to_string().contains("quota"), "{over_quota}");
}

#[tokio::test]
async fn the_gate_decides_every_file_request() {
    let mut d = TestDeployment::new();
    d.add_member("ana", "CERT-A");
    d.add_member("bob", "CERT-B");
    d.add_member("eve", "CERT-E");
    d.start().await;
    let ops = room("ops");
    let ana = d.client("ana").await;
    ana.create_room(ops.clone(), String::new())
        .await
        .expect("room");
    let bob = d.client("bob").await;
    bob.join(&ops).await.expect("join");
    let work = tempfile::tempdir().expect("dir");
    let info = upload(&d, "ana", &ops, &write(work.path(), "x.txt", b"x")).await;

    // Not a member: no keys, no list, no bytes.
    let eve = d.client("eve").await;
    for err in [
        eve.room_keys(&ops).await.map(|_| ()).expect_err("keys"),
        eve.files(&ops).await.map(|_| ()).expect_err("list"),
        eve.file_content(&ops, &info.id, 0)
            .await
            .map(|_| ())
            .expect_err("content"),
    ] {
        assert_eq!(code(&err), Some(ErrorCode::NotAMember), "{err:?}");
    }

    // A room policy that forbids downloads to Bob's organisation: he keeps his membership,
    // but the gate refuses him the file (and the keys) from the next request on.
    let policy = "@id(\"members\")\npermit(principal, action, resource is Room);\n\
         @id(\"no-downloads-for-b\")\nforbid(principal, action == Action::\"download\", resource is Room)\n\
         when { principal.organisation == \"CERT-B\" };\n"
        .to_owned();
    ana.set_policy(Some(&ops), policy).await.expect("policy");
    let err = download(&d, "bob", &ops, &info.id, &work.path().join("bob-x"))
        .await
        .expect_err("denied");
    assert_eq!(code(&err), Some(ErrorCode::Forbidden), "{err:?}");
    let raw = bob
        .file_content(&ops, &info.id, 0)
        .await
        .map(|_| ())
        .expect_err("denied");
    assert_eq!(code(&raw), Some(ErrorCode::Forbidden), "{raw:?}");
    assert!(!work.path().join("bob-x").exists());
    // Ana, whom the policy does not name, still downloads.
    assert_eq!(
        download(&d, "ana", &ops, &info.id, &work.path().join("ana-x"))
            .await
            .expect("download"),
        b"x"
    );
}

#[tokio::test]
async fn an_upload_interrupted_in_one_run_resumes_in_the_next() {
    let mut d = TestDeployment::new();
    d.add_member("ana", "CERT-A");
    d.limits.file_chunk_bytes = 64 * 1024;
    d.start().await;
    let ops = room("ops");
    let ana = d.client("ana").await;
    ana.create_room(ops.clone(), String::new())
        .await
        .expect("room");
    let identity = file_identity(ana.profile()).expect("identity");
    let work = tempfile::tempdir().expect("dir");
    let resume_dir = work.path().join("uploads");
    let content: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let path = write(work.path(), "capture.pcap", &content);

    // The first run is cut off once the server has acknowledged some chunks.
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let tx = std::sync::Mutex::new(Some(tx));
    let cut: files::Progress = std::sync::Arc::new(move |stage, done, _| {
        if stage == files::Stage::Uploading && done >= 3 * 64 * 1024 {
            if let Some(tx) = tx.lock().expect("lock").take() {
                let _ = tx.send(());
            }
            // Hold the upload here until the test has aborted it.
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    });
    let first = {
        let (client, ops, path, identity, resume_dir) = (
            d.client("ana").await,
            ops.clone(),
            path.clone(),
            identity.clone(),
            resume_dir.clone(),
        );
        tokio::spawn(async move {
            files::upload(&client, &ops, &path, &identity, Some(&resume_dir), cut).await
        })
    };
    rx.await.expect("some chunks were sent");
    first.abort();
    assert!(first.await.expect_err("aborted").is_cancelled());
    assert!(ana.files(&ops).await.expect("list").is_empty());
    let pending = std::fs::read_dir(&resume_dir).expect("state kept").count();
    assert_eq!(pending, 2, "the state and the staged ciphertext are kept");

    // The next run resumes the same upload: the same file id, and nothing resent from zero.
    let sent_from = std::sync::Arc::new(std::sync::Mutex::new(None::<u64>));
    let seen = sent_from.clone();
    let watch: files::Progress = std::sync::Arc::new(move |stage, done, _| {
        if stage == files::Stage::Encrypting {
            panic!("a resumed upload does not encrypt again");
        }
        if stage == files::Stage::Uploading {
            seen.lock().expect("lock").get_or_insert(done);
        }
    });
    let info = files::upload(&ana, &ops, &path, &identity, Some(&resume_dir), watch)
        .await
        .expect("resumed");
    let first_ack = sent_from.lock().expect("lock").expect("uploaded");
    assert!(first_ack > 3 * 64 * 1024, "resumed at {first_ack}");
    assert_eq!(ana.files(&ops).await.expect("list"), vec![info.clone()]);
    assert_eq!(
        std::fs::read_dir(&resume_dir).expect("dir").count(),
        0,
        "nothing left behind once complete"
    );
    assert_eq!(
        download(&d, "ana", &ops, &info.id, &work.path().join("out"))
            .await
            .expect("download"),
        content
    );
}

#[tokio::test]
async fn a_room_admin_removes_a_member_and_the_key_rotates() {
    let mut d = TestDeployment::new();
    d.add_member("ana", "CERT-A");
    let bob_id = d.add_member("bob", "CERT-B");
    d.add_member("carol", "CERT-C");
    d.start().await;
    let ops = room("ops");
    let ana = d.client("ana").await;
    ana.create_room(ops.clone(), String::new())
        .await
        .expect("room");
    for who in ["bob", "carol"] {
        d.client(who).await.join(&ops).await.expect("join");
    }
    let work = tempfile::tempdir().expect("dir");
    upload(&d, "ana", &ops, &write(work.path(), "a.txt", b"a")).await;

    // Only the room's admin (or a deployment admin) removes members.
    let carol = d.client("carol").await;
    let err = carol
        .remove_member(&ops, &bob_id, "no reason".into())
        .await
        .expect_err("not the room's admin");
    assert_eq!(code(&err), Some(ErrorCode::Forbidden), "{err:?}");

    ana.remove_member(&ops, &bob_id, "left the agency".into())
        .await
        .expect("removed");
    assert!(ana.room_keys(&ops).await.expect("keys").rotation_needed);
    let err = d
        .client("bob")
        .await
        .files(&ops)
        .await
        .expect_err("no longer a member");
    assert_eq!(code(&err), Some(ErrorCode::NotAMember), "{err:?}");
    let next = upload(&d, "ana", &ops, &write(work.path(), "b.txt", b"b")).await;
    assert_eq!(next.generation, 2);
    assert_eq!(
        download(&d, "carol", &ops, &next.id, &work.path().join("b-carol"))
            .await
            .expect("carol stays"),
        b"b"
    );
}
