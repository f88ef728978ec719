//! File encryption and transfer throughput: `cargo bench -p escape-client --bench files`.
//!
//! Encrypts and decrypts one file (1 GiB by default; `ESCAPE_BENCH_FILE_MIB` changes it) with
//! Escape's streaming API, then the same file with the `age` command-line tool
//! (`client/benches/install-age.sh` installs it), then uploads and downloads the ciphertext
//! over mutual TLS to a real server on 127.0.0.1. Client and server share the machine.
//! Prints one JSON object per case (what BENCHMARKS.md quotes).

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use age::secrecy::ExposeSecret;
use escape_client::files::{self, no_progress};
use escape_client::{Client, Profile};
use escape_proto::file::StartUpload;
use escape_proto::{ProfileBundle, RoomName};
use escape_server::config::Config;
use escape_server::deployment::{self, InitOptions};
use escape_server::seal::{MasterKey, MasterKeyOptions};

fn main() {
    let mib: u64 = std::env::var("ESCAPE_BENCH_FILE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let work = tempfile::tempdir().expect("tempdir");
    let plain = work.path().join("plain.bin");
    make_input(&plain, mib);
    let bytes = mib * 1024 * 1024;
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public();

    let sealed = work.path().join("escape.age");
    let started = Instant::now();
    files::encrypt_file(&plain, &sealed, &recipient, "plain.bin", &no_progress()).expect("encrypt");
    report("escape encrypt (SHA-256 pass + age stream)", bytes, started);
    let opened = work.path().join("escape.out");
    let started = Instant::now();
    files::decrypt_file(&sealed, &opened, &identity, &no_progress()).expect("decrypt");
    report(
        "escape decrypt (age stream + SHA-256 check)",
        bytes,
        started,
    );
    std::fs::remove_file(&opened).expect("remove");

    if Command::new("age").arg("--version").output().is_ok() {
        let key = work.path().join("key.txt");
        std::fs::write(&key, identity.to_string().expose_secret()).expect("key");
        let cli_sealed = work.path().join("cli.age");
        let started = Instant::now();
        run(Command::new("age")
            .arg("-r")
            .arg(recipient.to_string())
            .arg("-o")
            .arg(&cli_sealed)
            .arg(&plain));
        report("age CLI encrypt", bytes, started);
        let cli_opened = work.path().join("cli.out");
        let started = Instant::now();
        run(Command::new("age")
            .arg("-d")
            .arg("-i")
            .arg(&key)
            .arg("-o")
            .arg(&cli_opened)
            .arg(&cli_sealed));
        report("age CLI decrypt", bytes, started);
        std::fs::remove_file(&cli_sealed).expect("remove");
        std::fs::remove_file(&cli_opened).expect("remove");
    } else {
        println!(
            "{{\"case\":\"age CLI\",\"skipped\":\"not installed; run client/benches/install-age.sh\"}}"
        );
    }
    std::fs::remove_file(&sealed).expect("remove");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(transfer(work.path(), &plain));
}

/// Incompressible bytes, quickly (xorshift); the contents do not matter to the cipher.
fn make_input(path: &Path, mib: u64) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut block = vec![0u8; 1024 * 1024];
    for _ in 0..mib {
        for chunk in block.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
        out.write_all(&block).expect("write");
    }
    out.flush().expect("flush");
}

fn run(command: &mut Command) {
    let status = command.status().expect("run");
    assert!(status.success(), "{command:?} failed");
}

fn report(case: &str, bytes: u64, started: Instant) {
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{{\"case\":\"{case}\",\"bytes\":{bytes},\"seconds\":{seconds:.2},\"mib_per_second\":{:.0}}}",
        bytes as f64 / 1024.0 / 1024.0 / seconds
    );
}

async fn transfer(work: &Path, plain: &Path) {
    let data = tempfile::tempdir().expect("data");
    let keys = tempfile::tempdir().expect("keys");
    let master_key = MasterKeyOptions {
        path: keys.path().join("master-key"),
        passphrase: None,
    };
    let (master, _) = MasterKey::load_or_create(&master_key).expect("master key");
    let done = deployment::init(
        data.path(),
        &InitOptions {
            public_address: "127.0.0.1:0".into(),
            ..InitOptions::default()
        },
        &master,
    )
    .expect("init");
    let mut config = Config::ephemeral(data.path());
    config.master_key = master_key;
    let server = escape_server::start(config).await.expect("start");
    let bundle: ProfileBundle =
        serde_json::from_str(&std::fs::read_to_string(&done.admin_profile).expect("profile"))
            .expect("bundle");
    let mut profile = Profile::from_bundle(bundle).expect("profile");
    profile.server = server.local_addr().to_string();
    let client = Client::new(profile).await.expect("client");
    let room = RoomName::parse("bench").expect("room");
    client
        .create_room(room.clone(), String::new())
        .await
        .expect("room");
    let identity = files::file_identity(client.profile()).expect("identity");
    let keys = files::sync_room_keys(&client, &room, &identity)
        .await
        .expect("keys");
    let recipient: age::x25519::Recipient =
        keys.generations[0].recipient.parse().expect("recipient");
    let staged = work.join("upload.age");
    files::encrypt_file(plain, &staged, &recipient, "plain.bin", &no_progress()).expect("encrypt");
    let size = std::fs::metadata(&staged).expect("size").len();
    let status = client
        .start_upload(
            &room,
            &StartUpload {
                name: "plain.bin".into(),
                size,
                generation: keys.current.expect("generation"),
            },
        )
        .await
        .expect("start");

    let started = Instant::now();
    files::send_chunks(
        &client,
        &room,
        &status.file_id,
        &staged,
        size,
        status.chunk_bytes,
        &no_progress(),
    )
    .await
    .expect("upload");
    let info = client
        .complete_upload(&room, &status.file_id)
        .await
        .expect("complete");
    report(
        "upload over mutual TLS (4 MiB chunks, each synced to disk)",
        size,
        started,
    );
    std::fs::remove_file(&staged).expect("remove");

    let started = Instant::now();
    let mut response = client
        .file_content(&room, &info.id, 0)
        .await
        .expect("download");
    let mut out =
        std::io::BufWriter::new(std::fs::File::create(work.join("download.age")).expect("create"));
    let mut got = 0u64;
    while let Some(chunk) = response.chunk().await.expect("chunk") {
        out.write_all(&chunk).expect("write");
        got += chunk.len() as u64;
    }
    out.flush().expect("flush");
    assert_eq!(got, size);
    report("download over mutual TLS (streamed to disk)", size, started);
    server.shutdown().await;
}
