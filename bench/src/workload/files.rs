//! Files: encryption on one stream, then sharing through a real server. Escape's client
//! encrypts (age format, with the SHA-256 pass that names the file) and decrypts one file, then
//! the `age` command-line tool does the same with the same recipient; input and outputs are files
//! in the same folder. Then the same file is shared into a room as a member shares it (encrypted
//! to the room key, uploaded over mutual TLS in chunks the server syncs to disk) and fetched back
//! (downloaded, decrypted, checked), end to end.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use age::secrecy::ExposeSecret;
use anyhow::{Context, bail};
use escape_client::files::{self, no_progress};
use serde::{Deserialize, Serialize};

use crate::targets::process::find_program;
use crate::targets::{Server, escape};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FilesRun {
    pub bytes: u64,
    pub escape_encrypt_mib_s: f64,
    pub escape_decrypt_mib_s: f64,
    pub age_encrypt_mib_s: Option<f64>,
    pub age_decrypt_mib_s: Option<f64>,
    pub age_version: Option<String>,
    /// Encrypt and upload, as `escape file share` does it.
    #[serde(default)]
    pub share_mib_s: f64,
    /// Download, decrypt and check, as `escape file get` does it.
    #[serde(default)]
    pub fetch_mib_s: f64,
}

/// Timed runs of each side; the report gives the median.
const ROUNDS: usize = 5;

/// The middle value (of an odd count), `None` for none.
fn median(values: &mut [f64]) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied()
}

fn mib_s(bytes: u64, started: Instant) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / started.elapsed().as_secs_f64()
}

fn run_age(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(program).args(args).output()?;
    if !out.status.success() {
        bail!("age {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

pub async fn run(server: &Server, dir: &Path, mib: u64) -> anyhow::Result<FilesRun> {
    let work = tempfile::tempdir_in(dir)?;
    let plain = work.path().join("plain.bin");
    let (folder, input) = (work.path().to_owned(), plain.clone());
    let mut run = tokio::task::spawn_blocking(move || one_stream(&folder, &input, mib)).await??;

    let link = server.escape()?;
    let room = escape::room_name(0)?;
    let identity = files::file_identity(link.client.profile())?;
    let started = Instant::now();
    let shared = files::upload(&link.client, &room, &plain, &identity, None, no_progress()).await?;
    run.share_mib_s = mib_s(run.bytes, started);
    let fetched = work.path().join("fetched.bin");
    let started = Instant::now();
    files::download(
        &link.client,
        &room,
        &shared.id,
        Some(&fetched),
        &identity,
        no_progress(),
    )
    .await?;
    run.fetch_mib_s = mib_s(run.bytes, started);
    if std::fs::metadata(&fetched)?.len() != run.bytes {
        bail!("the file fetched back has a different size");
    }
    Ok(run)
}

/// Encryption and decryption on one stream, Escape's and the age tool's.
fn one_stream(work: &Path, plain: &Path, mib: u64) -> anyhow::Result<FilesRun> {
    {
        // Incompressible input, so nothing below the encryption can shortcut it.
        let mut out = std::io::BufWriter::new(std::fs::File::create(plain)?);
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut block = vec![0u8; 1 << 20];
        for _ in 0..mib {
            for chunk in block.chunks_mut(8) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
            }
            out.write_all(&block)?;
        }
        out.flush()?;
        // On disk before anything is timed, so neither side pays for writing the input back.
        out.get_ref().sync_all()?;
    }
    let bytes = mib * 1024 * 1024;
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public();

    let age = find_program("age");
    let key = work.join("key.txt");
    std::fs::write(&key, identity.to_string().expose_secret())?;
    let path = |p: &Path| p.to_str().map(str::to_owned).context("path");
    let (plain_s, key_s) = (path(plain)?, path(&key)?);
    let sealed_s = path(&work.join("cli.age"))?;
    let opened_s = path(&work.join("cli.out"))?;
    // Rounds taking turns, and the median of each side: one run on a shared disk and two
    // cores can differ from the next by a third, for either side (each round is logged). The
    // side that goes first alternates, so that neither always meets what the step before left
    // the disk to write back.
    let (mut escape_encrypt, mut escape_decrypt) = (Vec::new(), Vec::new());
    let (mut age_encrypt, mut age_decrypt) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let mut escape_side = || -> anyhow::Result<()> {
            let sealed = work.join("escape.age");
            let started = Instant::now();
            files::encrypt_file(plain, &sealed, &recipient, "plain.bin", &no_progress())?;
            std::fs::File::open(&sealed)?.sync_all()?;
            escape_encrypt.push(mib_s(bytes, started));
            let opened = work.join("escape.out");
            let started = Instant::now();
            files::decrypt_file(&sealed, &opened, &identity, &no_progress())?;
            escape_decrypt.push(mib_s(bytes, started));
            std::fs::remove_file(&opened)?;
            std::fs::remove_file(&sealed)?;
            Ok(())
        };
        let mut age_side = || -> anyhow::Result<()> {
            let Some(age) = &age else {
                return Ok(());
            };
            let started = Instant::now();
            run_age(
                age,
                &["-r", &recipient.to_string(), "-o", &sealed_s, &plain_s],
            )?;
            std::fs::File::open(&sealed_s)?.sync_all()?;
            age_encrypt.push(mib_s(bytes, started));
            let started = Instant::now();
            run_age(age, &["-d", "-i", &key_s, "-o", &opened_s, &sealed_s])?;
            age_decrypt.push(mib_s(bytes, started));
            if std::fs::metadata(&opened_s)?.len() != bytes {
                bail!("age decrypted to a different size");
            }
            std::fs::remove_file(&opened_s)?;
            std::fs::remove_file(&sealed_s)?;
            Ok(())
        };
        if round % 2 == 0 {
            escape_side()?;
            age_side()?;
        } else {
            age_side()?;
            escape_side()?;
        }
        let last = |v: &[f64]| v.last().map_or("-".to_owned(), |x| format!("{x:.0}"));
        eprintln!(
            "escape-load: files round {}: escape encrypt {} decrypt {}, age encrypt {} decrypt {} MiB/s",
            escape_encrypt.len(),
            last(&escape_encrypt),
            last(&escape_decrypt),
            last(&age_encrypt),
            last(&age_decrypt)
        );
    }
    let age_version = age.and_then(|age| {
        Command::new(&age)
            .arg("--version")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    });
    Ok(FilesRun {
        bytes,
        escape_encrypt_mib_s: median(&mut escape_encrypt).unwrap_or_default(),
        escape_decrypt_mib_s: median(&mut escape_decrypt).unwrap_or_default(),
        age_encrypt_mib_s: median(&mut age_encrypt),
        age_decrypt_mib_s: median(&mut age_decrypt),
        age_version,
        share_mib_s: 0.0,
        fetch_mib_s: 0.0,
    })
}
