//! End-to-end encrypted files: room key generations made and shared by clients, files
//! encrypted with age before they leave the machine and checked after they come back.
//!
//! The server only ever sees ciphertext and sealed copies. Encryption and decryption stream in
//! constant memory (the file is read twice on upload: once to hash it, once to encrypt it);
//! ciphertext is staged in a temporary file so an interrupted transfer resumes at the byte the
//! server (or the local copy) already has.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use age::secrecy::ExposeSecret;
use escape_proto::file::{
    AddCopies, FILE_MAGIC, FILE_MAGIC_V1, FileHeader, FileInfo, FileTrailer, NewGeneration,
    RoomKeys, StartUpload, safe_file_name,
};
use escape_proto::{ErrorCode, RoomName};

use crate::api::Client;
use crate::error::ClientError;
use crate::file_threads::{PipeError, ReadAhead, WriteBehind, pipe};
use crate::profile::Profile;

/// How often one chunk is retried after a failure, resuming where the server stands.
const ATTEMPTS: u32 = 5;
const BUFFER: usize = 64 * 1024;
/// How often a copy reports its progress, in bytes.
const PROGRESS_STEP: u64 = 1024 * 1024;

/// What a transfer is doing, for progress displays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Encrypting,
    Uploading,
    Downloading,
    Decrypting,
}

/// Called with the stage, bytes done and bytes in total.
pub type Progress = Arc<dyn Fn(Stage, u64, u64) + Send + Sync>;

/// A byte count for people (`1.5 MiB`).
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A progress callback that shows nothing.
pub fn no_progress() -> Progress {
    Arc::new(|_, _, _| {})
}

fn file_error(message: impl Into<String>) -> ClientError {
    ClientError::File(message.into())
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ClientError + '_ {
    move |source| ClientError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The member's age identity from its profile (made at enrollment or registration).
pub fn file_identity(profile: &Profile) -> Result<age::x25519::Identity, ClientError> {
    let text = profile.age_identity.as_deref().ok_or_else(|| {
        ClientError::BadProfile(
            "this profile has no file key (age.key); files need a profile made by enrollment or registration"
                .into(),
        )
    })?;
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .ok_or_else(|| ClientError::BadProfile("age.key holds no AGE-SECRET-KEY line".into()))?;
    age::x25519::Identity::from_str(line)
        .map_err(|e| ClientError::BadProfile(format!("age.key: {e}")))
}

/// Seals `secret` (a generation's identity) to a member's age recipient, armored.
fn seal_copy(recipient: &str, secret: &str) -> Result<String, ClientError> {
    let recipient = age::x25519::Recipient::from_str(recipient.trim())
        .map_err(|e| file_error(format!("a member's age recipient is invalid: {e}")))?;
    let armored = age::encrypt_and_armor(&recipient, secret.as_bytes())
        .map_err(|e| file_error(format!("sealing a room key: {e}")))?;
    Ok(armored)
}

/// Opens a sealed copy of a room key generation with the member's own identity.
pub fn open_copy(
    copy: &str,
    identity: &age::x25519::Identity,
) -> Result<age::x25519::Identity, ClientError> {
    let reader = age::armor::ArmoredReader::new(copy.as_bytes());
    let decryptor = age::Decryptor::new(reader)
        .map_err(|e| file_error(format!("a sealed room key is malformed: {e}")))?;
    let mut secret = String::new();
    decryptor
        .decrypt(std::iter::once(identity as &dyn age::Identity))
        .map_err(|e| {
            file_error(format!(
                "a sealed room key does not open with your key: {e}"
            ))
        })?
        .read_to_string(&mut secret)
        .map_err(|e| file_error(format!("a sealed room key does not open: {e}")))?;
    age::x25519::Identity::from_str(secret.trim())
        .map_err(|e| file_error(format!("a sealed room key holds no identity: {e}")))
}

/// Brings the room's keys up to date from this member's side: makes the next generation when
/// there is none or membership shrank, and seals the generations this member holds for members
/// who lack them (joiners). Every member's client does this before it uploads or lists files.
pub async fn sync_room_keys(
    client: &Client,
    room: &RoomName,
    identity: &age::x25519::Identity,
) -> Result<RoomKeys, ClientError> {
    let mut keys = client.room_keys(room).await?;
    if keys.current.is_none() || keys.rotation_needed {
        let generation = keys.current.map_or(1, |c| c + 1);
        let fresh = age::x25519::Identity::generate();
        let secret = fresh.to_string();
        let mut copies = BTreeMap::new();
        for holder in &keys.holders {
            copies.insert(
                holder.member.clone(),
                seal_copy(&holder.age_recipient, secret.expose_secret())?,
            );
        }
        let request = NewGeneration {
            generation,
            recipient: fresh.to_public().to_string(),
            copies,
        };
        match client.new_key_generation(room, &request).await {
            Ok(_) => {}
            // Another member's client made it (or membership moved) first: use theirs.
            Err(ClientError::Server {
                code: ErrorCode::Conflict | ErrorCode::Precondition,
                ..
            }) => {}
            Err(e) => return Err(e),
        }
        keys = client.room_keys(room).await?;
    }
    let mut shared = false;
    for generation in &keys.generations {
        let lacking: Vec<_> = keys
            .missing
            .iter()
            .filter(|m| m.generation == generation.generation)
            .collect();
        let Some(copy) = &generation.copy else {
            continue;
        };
        if lacking.is_empty() {
            continue;
        }
        // A copy that does not open for us (damaged, or planted by someone) is not ours to share.
        let Ok(opened) = open_copy(copy, identity) else {
            continue;
        };
        let secret = opened.to_string();
        let mut copies = BTreeMap::new();
        for member in lacking {
            copies.insert(
                member.member.clone(),
                seal_copy(&member.age_recipient, secret.expose_secret())?,
            );
        }
        match client
            .add_key_copies(room, generation.generation, &AddCopies { copies })
            .await
        {
            Ok(()) => shared = true,
            Err(ClientError::Server {
                code: ErrorCode::Conflict | ErrorCode::Precondition | ErrorCode::Forbidden,
                ..
            }) => {}
            Err(e) => return Err(e),
        }
    }
    if shared {
        keys = client.room_keys(room).await?;
    }
    Ok(keys)
}

/// Encryption's copy: `reader` to `writer`, reporting `stage` against `total` about once a MiB;
/// returns how many bytes it copied. The file's reads (with the plaintext's digest) and writes
/// run on threads of their own beside this loop (see `file_threads`).
fn copy(
    reader: &mut impl BufRead,
    writer: &mut impl Write,
    errors: (
        impl Fn(std::io::Error) -> ClientError,
        impl Fn(std::io::Error) -> ClientError,
    ),
    (stage, total, progress): (Stage, u64, &Progress),
) -> Result<u64, ClientError> {
    let (read_error, write_error) = errors;
    let (mut done, mut reported) = (0u64, 0u64);
    loop {
        let available = reader.fill_buf().map_err(&read_error)?;
        if available.is_empty() {
            progress(stage, done, total);
            return Ok(done);
        }
        writer.write_all(available).map_err(&write_error)?;
        let n = available.len();
        reader.consume(n);
        done += n as u64;
        if done - reported >= PROGRESS_STEP {
            progress(stage, done, total);
            reported = done;
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Encrypts `input` to `recipient` into `output`: the magic line, the header line, then the
/// bytes. Streams; memory use does not grow with the file.
pub fn encrypt_file(
    input: &Path,
    output: &Path,
    recipient: &age::x25519::Recipient,
    name: &str,
    progress: &Progress,
) -> Result<FileHeader, ClientError> {
    let source = File::open(input).map_err(io(input))?;
    let size = source.metadata().map_err(io(input))?.len();
    let mut header = FileHeader {
        name: name.to_owned(),
        size,
        sha256: String::new(),
    };
    let header_line =
        serde_json::to_string(&header).map_err(|e| file_error(format!("file header: {e}")))?;
    let out = File::create(output).map_err(io(output))?;
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(recipient as &dyn age::Recipient))
            .map_err(|e| file_error(format!("encrypting: {e}")))?;
    let mut writer = encryptor
        .wrap_output(WriteBehind::new(out).map_err(io(output))?)
        .map_err(io(output))?;
    writer
        .write_all(format!("{FILE_MAGIC}\n{header_line}\n").as_bytes())
        .map_err(io(output))?;
    let mut reader = ReadAhead::new(source).map_err(io(input))?;
    let done = copy(
        &mut reader,
        &mut writer,
        (|e| io(input)(e), |e| io(output)(e)),
        (Stage::Encrypting, size, progress),
    )?;
    let sha256 = hex(reader.finish().map_err(io(input))?.as_ref());
    if done != size {
        return Err(file_error(format!(
            "{} changed while it was being encrypted",
            input.display()
        )));
    }
    let trailer = serde_json::to_string(&FileTrailer {
        sha256: sha256.clone(),
    })
    .map_err(|e| file_error(format!("file trailer: {e}")))?;
    writer
        .write_all(format!("{trailer}\n").as_bytes())
        .map_err(io(output))?;
    header.sha256 = sha256;
    writer
        .finish()
        .and_then(WriteBehind::finish)
        .map_err(io(output))?;
    Ok(header)
}

/// Decrypts `input` with `identity` and writes the plaintext to `output` only if it decrypts
/// completely and its size and SHA-256 match the header that travelled inside the encryption.
/// On any failure nothing is left at `output`.
pub fn decrypt_file(
    input: &Path,
    output: &Path,
    identity: &age::x25519::Identity,
    progress: &Progress,
) -> Result<FileHeader, ClientError> {
    if output.exists() {
        return Err(file_error(format!(
            "{} exists; choose another output path",
            output.display()
        )));
    }
    let dir = output.parent().unwrap_or(Path::new(""));
    decrypt_into_dir(input, dir, identity, progress, |_| output.to_path_buf()).map(|(h, _)| h)
}

/// Decrypts into `dir` and names the result with `name` once the header inside the encryption
/// is verified (so a default name comes from the sharer, not from the server's listing).
fn decrypt_into_dir(
    input: &Path,
    dir: &Path,
    identity: &age::x25519::Identity,
    progress: &Progress,
    name: impl FnOnce(&FileHeader) -> PathBuf,
) -> Result<(FileHeader, PathBuf), ClientError> {
    let partial = dir.join(format!(".escape-{}.partial", uuid::Uuid::new_v4()));
    let result = decrypt_into(input, &partial, identity, progress).and_then(|header| {
        let output = name(&header);
        if output.exists() {
            return Err(file_error(format!(
                "{} exists; choose another output path",
                output.display()
            )));
        }
        std::fs::rename(&partial, &output).map_err(io(&output))?;
        Ok((header, output))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

fn decrypt_into(
    input: &Path,
    partial: &Path,
    identity: &age::x25519::Identity,
    progress: &Progress,
) -> Result<FileHeader, ClientError> {
    let tampered = |e: &dyn std::fmt::Display| {
        file_error(format!(
            "the file does not decrypt: it was altered, truncated, or is not for this key ({e})"
        ))
    };
    let source = BufReader::with_capacity(BUFFER, File::open(input).map_err(io(input))?);
    let decryptor = age::Decryptor::new_buffered(source).map_err(|e| tampered(&e))?;
    let reader = decryptor
        .decrypt(std::iter::once(identity as &dyn age::Identity))
        .map_err(|e| tampered(&e))?;
    let mut reader = BufReader::with_capacity(BUFFER, reader);
    let mut line = String::new();
    (&mut reader)
        .take(64)
        .read_line(&mut line)
        .map_err(|e| tampered(&e))?;
    let with_trailer = match line.trim_end() {
        FILE_MAGIC => true,
        FILE_MAGIC_V1 => false,
        _ => return Err(file_error("this is not an Escape file")),
    };
    line.clear();
    (&mut reader)
        .take(64 * 1024)
        .read_line(&mut line)
        .map_err(|e| tampered(&e))?;
    let mut header: FileHeader = serde_json::from_str(line.trim_end())
        .map_err(|e| file_error(format!("file header: {e}")))?;
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(partial)
        .map_err(io(partial))?;
    // Format 2: exactly `size` bytes, then the trailer; format 1: the bytes run to the end.
    let limit = if with_trailer { header.size } else { u64::MAX };
    // Decryption stays on this thread; writing and the digest run on threads of their own.
    let (size, digest) = pipe(&mut (&mut reader).take(limit), &mut out, |done| {
        progress(Stage::Decrypting, done, header.size);
    })
    .map_err(|e| match e {
        PipeError::Read(e) => tampered(&e),
        PipeError::Write(e) => io(partial)(e),
    })?;
    let sha256 = hex(digest.as_ref());
    if with_trailer {
        line.clear();
        (&mut reader)
            .take(1024)
            .read_line(&mut line)
            .map_err(|e| tampered(&e))?;
        let trailer: FileTrailer = serde_json::from_str(line.trim_end())
            .map_err(|e| file_error(format!("file trailer: {e}")))?;
        let mut rest = [0u8; 1];
        if reader.read(&mut rest).map_err(|e| tampered(&e))? != 0 {
            return Err(file_error("the file has bytes after its trailer"));
        }
        header.sha256 = trailer.sha256;
    }
    if size != header.size || sha256 != header.sha256 {
        return Err(file_error(format!(
            "the decrypted file does not match its header ({size} bytes, sha256 {sha256}; expected {} bytes, sha256 {})",
            header.size, header.sha256
        )));
    }
    Ok(header)
}

/// A temporary file removed when dropped.
struct Staged(PathBuf);

impl Staged {
    fn new(kind: &str) -> Self {
        Self(std::env::temp_dir().join(format!("escape-{kind}-{}.age", uuid::Uuid::new_v4())))
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ClientError> + Send + 'static,
) -> Result<T, ClientError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| file_error(format!("background task failed: {e}")))?
}

/// Whether an error is worth retrying a transfer step for.
fn transient(e: &ClientError) -> bool {
    matches!(e, ClientError::Connect { .. } | ClientError::Closed(_))
        || matches!(
            e,
            ClientError::Server {
                code: ErrorCode::Internal,
                ..
            }
        )
}

/// Where an upload interrupted in an earlier run stands, kept beside its staged ciphertext so
/// that running the same upload again resumes it instead of starting over.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct PendingUpload {
    room: RoomName,
    source: PathBuf,
    source_size: u64,
    source_modified: Option<std::time::SystemTime>,
    file_id: String,
    generation: u32,
    size: u64,
}

impl PendingUpload {
    fn state_path(dir: &Path, room: &RoomName, source: &Path) -> PathBuf {
        let digest = ring::digest::digest(
            &ring::digest::SHA256,
            format!("{room}\n{}", source.display()).as_bytes(),
        );
        dir.join(format!("{}.json", &hex(digest.as_ref())[..32]))
    }

    fn staged_path(state: &Path) -> PathBuf {
        state.with_extension("age")
    }
}

/// The size and modification time of the file to share, to recognise it on resume.
fn fingerprint(path: &Path) -> Result<(u64, Option<std::time::SystemTime>), ClientError> {
    let meta = std::fs::metadata(path).map_err(io(path))?;
    Ok((meta.len(), meta.modified().ok()))
}

/// Encrypts `path` to the room's current key and uploads it; returns the shared file.
///
/// With `resume_dir`, the ciphertext and the upload's state are kept there until the upload
/// completes, and a later call for the same room and file (unchanged) resumes at the byte the
/// server already has. Without it, the ciphertext is staged in a temporary file.
pub async fn upload(
    client: &Client,
    room: &RoomName,
    path: &Path,
    identity: &age::x25519::Identity,
    resume_dir: Option<&Path>,
    progress: Progress,
) -> Result<FileInfo, ClientError> {
    // If the room's key rotated while the bytes travelled, the server refuses to share them:
    // encrypt again to the new generation, once.
    match upload_once(client, room, path, identity, resume_dir, progress.clone()).await {
        Err(ClientError::Server {
            code: ErrorCode::Precondition,
            ..
        }) => upload_once(client, room, path, identity, resume_dir, progress).await,
        other => other,
    }
}

async fn upload_once(
    client: &Client,
    room: &RoomName,
    path: &Path,
    identity: &age::x25519::Identity,
    resume_dir: Option<&Path>,
    progress: Progress,
) -> Result<FileInfo, ClientError> {
    let source = std::path::absolute(path).map_err(io(path))?;
    let keys = sync_room_keys(client, room, identity).await?;
    let generation = keys
        .current
        .and_then(|c| keys.generations.iter().find(|g| g.generation == c))
        .ok_or_else(|| file_error(format!("{room} has no file key yet")))?;
    // Encrypt only to a key we hold ourselves: the recipient the server lists must be the public
    // half of the copy sealed to us, or someone swapped it.
    let mine = generation.copy.as_deref().ok_or_else(|| {
        file_error(format!(
            "you hold no copy of key generation {} of {room}; a member who does shares it when they next sync",
            generation.generation
        ))
    })?;
    if open_copy(mine, identity)?.to_public().to_string() != generation.recipient {
        return Err(file_error(format!(
            "the key offered for {room} is not the one sealed to you; refusing to encrypt to it"
        )));
    }
    let (source_size, source_modified) = fingerprint(&source)?;

    let state_path = match resume_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
            Some(PendingUpload::state_path(dir, room, &source))
        }
        None => None,
    };
    if let Some(state_path) = &state_path
        && let Some(info) = resume(
            client,
            state_path,
            generation.generation,
            (source_size, source_modified),
            &progress,
        )
        .await?
    {
        return Ok(info);
    }

    let recipient = age::x25519::Recipient::from_str(&generation.recipient)
        .map_err(|e| file_error(format!("the room key is invalid: {e}")))?;
    let name = source
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| file_error(format!("{} names no file", path.display())))?;
    // A temporary file unless it must outlive this run for a resume.
    let temporary = Staged::new("upload");
    let staged = state_path
        .as_deref()
        .map(PendingUpload::staged_path)
        .unwrap_or_else(|| temporary.0.clone());
    {
        let (input, output, name, progress) = (
            source.clone(),
            staged.clone(),
            name.clone(),
            progress.clone(),
        );
        blocking(move || encrypt_file(&input, &output, &recipient, &name, &progress)).await?;
    }
    let size = std::fs::metadata(&staged).map_err(io(&staged))?.len();
    let status = client
        .start_upload(
            room,
            &StartUpload {
                name,
                size,
                generation: generation.generation,
            },
        )
        .await?;
    if let Some(state_path) = &state_path {
        let pending = PendingUpload {
            room: room.clone(),
            source,
            source_size,
            source_modified,
            file_id: status.file_id.clone(),
            generation: generation.generation,
            size,
        };
        let json =
            serde_json::to_vec(&pending).map_err(|e| file_error(format!("upload state: {e}")))?;
        std::fs::write(state_path, json).map_err(io(state_path))?;
    }
    let sent = async {
        send_chunks(
            client,
            room,
            &status.file_id,
            &staged,
            size,
            status.chunk_bytes,
            &progress,
        )
        .await?;
        client.complete_upload(room, &status.file_id).await
    }
    .await;
    if let Some(state_path) = &state_path
        && !matches!(&sent, Err(e) if transient(e))
    {
        // Done, or refused for good: either way there is nothing to resume.
        forget_pending(state_path);
    }
    sent
}

fn forget_pending(state_path: &Path) {
    let _ = std::fs::remove_file(PendingUpload::staged_path(state_path));
    let _ = std::fs::remove_file(state_path);
}

/// Finishes an upload an earlier run left behind, if it is still the same file, for the room's
/// current key, and the server still has it. Anything else is forgotten and starts over.
async fn resume(
    client: &Client,
    state_path: &Path,
    generation: u32,
    fingerprint: (u64, Option<std::time::SystemTime>),
    progress: &Progress,
) -> Result<Option<FileInfo>, ClientError> {
    let Ok(bytes) = std::fs::read(state_path) else {
        return Ok(None);
    };
    let staged = PendingUpload::staged_path(state_path);
    let usable = serde_json::from_slice::<PendingUpload>(&bytes)
        .ok()
        .filter(|p| {
            p.generation == generation
                && (p.source_size, p.source_modified) == fingerprint
                && std::fs::metadata(&staged).ok().map(|m| m.len()) == Some(p.size)
        });
    let Some(pending) = usable else {
        forget_pending(state_path);
        return Ok(None);
    };
    let status = match client.upload_status(&pending.room, &pending.file_id).await {
        Ok(status) => status,
        Err(ClientError::Server {
            code: ErrorCode::NotFound | ErrorCode::Forbidden | ErrorCode::Conflict,
            ..
        }) => {
            forget_pending(state_path);
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    if !status.complete {
        send_chunks(
            client,
            &pending.room,
            &pending.file_id,
            &staged,
            pending.size,
            status.chunk_bytes,
            progress,
        )
        .await?;
    }
    let info = client
        .complete_upload(&pending.room, &pending.file_id)
        .await?;
    forget_pending(state_path);
    Ok(Some(info))
}

/// Sends the staged ciphertext from wherever the server stands, retrying transient failures.
pub async fn send_chunks(
    client: &Client,
    room: &RoomName,
    file_id: &str,
    staged: &Path,
    size: u64,
    chunk_bytes: u64,
    progress: &Progress,
) -> Result<(), ClientError> {
    let chunk = chunk_bytes.clamp(1, 4 * 1024 * 1024);
    let mut file = File::open(staged).map_err(io(staged))?;
    let mut offset = client.upload_status(room, file_id).await?.received;
    let mut failures = 0;
    while offset < size {
        let len = chunk.min(size - offset);
        let mut bytes = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX)];
        file.seek(SeekFrom::Start(offset)).map_err(io(staged))?;
        file.read_exact(&mut bytes).map_err(io(staged))?;
        match client.put_chunk(room, file_id, offset, bytes).await {
            Ok(status) => {
                offset = status.received;
                failures = 0;
                progress(Stage::Uploading, offset, size);
            }
            Err(e) if transient(&e) && failures + 1 < ATTEMPTS => {
                failures += 1;
                tokio::time::sleep(Duration::from_millis(200 * u64::from(failures))).await;
                offset = client.upload_status(room, file_id).await?.received;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Downloads a file, decrypts it with the room key of its generation and writes it to `output`
/// (default: its name, made safe, in the current directory). Returns the file and the path.
pub async fn download(
    client: &Client,
    room: &RoomName,
    file_id: &str,
    output: Option<&Path>,
    identity: &age::x25519::Identity,
    progress: Progress,
) -> Result<(FileInfo, PathBuf), ClientError> {
    let info = client
        .files(room)
        .await?
        .into_iter()
        .find(|f| f.id == file_id)
        .ok_or_else(|| ClientError::Server {
            status: 404,
            code: ErrorCode::NotFound,
            message: format!("{room} has no file {file_id}"),
        })?;
    let keys = sync_room_keys(client, room, identity).await?;
    let copy = keys
        .generations
        .iter()
        .find(|g| g.generation == info.generation)
        .and_then(|g| g.copy.clone())
        .ok_or_else(|| {
            file_error(format!(
                "you hold no copy of key generation {} of {room}: it was made before you joined, and either the room keeps older keys from joiners or no member who holds it has synced since (they do on their next upload or `escape files {room}`)",
                info.generation
            ))
        })?;
    let room_identity = open_copy(&copy, identity)?;
    if let Some(output) = output
        && output.exists()
    {
        return Err(file_error(format!(
            "{} exists; choose another output path",
            output.display()
        )));
    }
    let staged = Staged::new("download");
    fetch(client, room, &info, &staged.0, &progress).await?;
    let explicit = output.map(Path::to_path_buf);
    let fallback = info.id.clone();
    let (_, written) = {
        let (input, progress) = (staged.0.clone(), progress.clone());
        let dir = explicit
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        blocking(move || {
            decrypt_into_dir(&input, &dir, &room_identity, &progress, |header| {
                explicit.unwrap_or_else(|| PathBuf::from(safe_file_name(&header.name, &fallback)))
            })
        })
        .await?
    };
    Ok((info, written))
}

/// Fetches the ciphertext into `staged`, resuming from what it holds after a failure.
async fn fetch(
    client: &Client,
    room: &RoomName,
    info: &FileInfo,
    staged: &Path,
    progress: &Progress,
) -> Result<(), ClientError> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(staged)
        .map_err(io(staged))?;
    let mut failures = 0;
    loop {
        let have = file.metadata().map_err(io(staged))?.len();
        if have >= info.size {
            break;
        }
        let attempt: Result<(), ClientError> = async {
            let mut response = client.file_content(room, &info.id, have).await?;
            let mut got = have;
            while let Some(bytes) = response
                .chunk()
                .await
                .map_err(|e| client.connect_error(&e))?
            {
                file.write_all(&bytes).map_err(io(staged))?;
                got += bytes.len() as u64;
                progress(Stage::Downloading, got, info.size);
            }
            Ok(())
        }
        .await;
        match attempt {
            Ok(()) => {}
            Err(e) if transient(&e) && failures + 1 < ATTEMPTS => {
                failures += 1;
                tokio::time::sleep(Duration::from_millis(200 * u64::from(failures))).await;
            }
            Err(e) => return Err(e),
        }
        if file.metadata().map_err(io(staged))?.len() == have {
            failures += 1;
            if failures >= ATTEMPTS {
                return Err(file_error("the download made no progress"));
            }
        }
    }
    file.flush().map_err(io(staged))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An age file of `payload`, as a client of the given format would have written it.
    fn sealed(dir: &Path, recipient: &age::x25519::Recipient, payload: &[u8]) -> PathBuf {
        let path = dir.join(format!("{}.age", uuid::Uuid::new_v4()));
        let encryptor =
            age::Encryptor::with_recipients(std::iter::once(recipient as &dyn age::Recipient))
                .expect("encryptor");
        let mut writer = encryptor
            .wrap_output(File::create(&path).expect("create"))
            .expect("wrap");
        writer.write_all(payload).expect("write");
        writer.finish().expect("finish");
        path
    }

    fn sha256(bytes: &[u8]) -> String {
        hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
    }

    #[test]
    fn a_file_comes_back_whole_and_tampered_contents_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let identity = age::x25519::Identity::generate();
        let recipient = identity.to_public();
        let plain = dir.path().join("sample.bin");
        // More than one read chunk, not a multiple of it.
        let bytes: Vec<u8> = (0..crate::file_threads::BUFFER * 2 + 17)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        std::fs::write(&plain, &bytes).expect("write");
        let sealed_path = dir.path().join("sample.age");
        let header = encrypt_file(
            &plain,
            &sealed_path,
            &recipient,
            "sample.bin",
            &no_progress(),
        )
        .expect("encrypt");
        assert_eq!(
            (header.size, header.sha256.as_str()),
            (bytes.len() as u64, sha256(&bytes).as_str())
        );
        let out = dir.path().join("out.bin");
        let opened = decrypt_file(&sealed_path, &out, &identity, &no_progress()).expect("decrypt");
        assert_eq!(opened, header);
        assert_eq!(std::fs::read(&out).expect("read"), bytes);

        // The first format (digest in the header, nothing after the bytes) still opens.
        let v1_header = serde_json::to_string(&FileHeader {
            name: "old.bin".into(),
            size: 3,
            sha256: sha256(b"abc"),
        })
        .expect("header");
        let v1 = sealed(
            dir.path(),
            &recipient,
            format!("{FILE_MAGIC_V1}\n{v1_header}\nabc").as_bytes(),
        );
        let old = dir.path().join("old.bin");
        let opened = decrypt_file(&v1, &old, &identity, &no_progress()).expect("format 1");
        assert_eq!((opened.size, opened.sha256), (3, sha256(b"abc")));
        assert_eq!(std::fs::read(&old).expect("read"), b"abc");

        // Format 2 written by someone else: a wrong digest, a short body, bytes after the
        // trailer, a missing trailer. Each is refused and leaves nothing behind.
        let header = r#"{"name":"x","size":3}"#;
        let good = format!(r#"{{"sha256":"{}"}}"#, sha256(b"abc"));
        let cases = [
            format!("{FILE_MAGIC}\n{header}\nabd\n{good}\n"),
            format!("{FILE_MAGIC}\n{header}\nab\n{good}\n"),
            format!("{FILE_MAGIC}\n{header}\nabc{good}\nmore"),
            format!("{FILE_MAGIC}\n{header}\nabc"),
        ];
        for (i, payload) in cases.iter().enumerate() {
            let path = sealed(dir.path(), &recipient, payload.as_bytes());
            let out = dir.path().join(format!("bad-{i}.bin"));
            let err = decrypt_file(&path, &out, &identity, &no_progress()).expect_err("refused");
            assert!(matches!(err, ClientError::File(_)), "case {i}: {err:?}");
            assert!(!out.exists(), "case {i}: nothing is left behind");
        }
        // The well-formed one, for contrast, opens.
        let path = sealed(
            dir.path(),
            &recipient,
            format!("{FILE_MAGIC}\n{header}\nabc{good}\n").as_bytes(),
        );
        let out = dir.path().join("good.bin");
        decrypt_file(&path, &out, &identity, &no_progress()).expect("well formed");
        assert_eq!(std::fs::read(&out).expect("read"), b"abc");
    }
}
