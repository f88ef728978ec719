//! `escape upload`, `escape files`, `escape download`: end-to-end encrypted files, with
//! progress bars on a terminal.

use std::path::Path;
use std::sync::{Arc, Mutex};

use escape_client::files::{self, Progress, Stage};
use escape_client::{Client, ClientError};
use escape_proto::RoomName;
use indicatif::{ProgressBar, ProgressStyle};

use super::output::{self, clean, print};

/// A progress bar per stage, drawn on stderr and only on a terminal (indicatif hides itself
/// otherwise), so scripts and `--json` see clean output.
fn bars(json: bool) -> Progress {
    if json {
        return files::no_progress();
    }
    let current: Arc<Mutex<Option<(Stage, ProgressBar)>>> = Arc::new(Mutex::new(None));
    Arc::new(move |stage, done, total| {
        let Ok(mut slot) = current.lock() else {
            return;
        };
        if slot.as_ref().map(|(s, _)| *s) != Some(stage) {
            if let Some((_, bar)) = slot.take() {
                bar.finish();
            }
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg:>11} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_message(format!("{stage:?}").to_lowercase());
            *slot = Some((stage, bar));
        }
        if let Some((_, bar)) = slot.as_ref() {
            bar.set_length(total);
            bar.set_position(done);
            if done >= total {
                bar.finish();
            }
        }
    })
}

/// Shares a file. The ciphertext and the upload's state stay in `resume_dir` until it is
/// complete, so running the same command again after an interruption resumes it.
pub async fn upload(
    client: &Client,
    json: bool,
    room: &RoomName,
    path: &Path,
    resume_dir: &Path,
) -> Result<(), ClientError> {
    let identity = files::file_identity(client.profile())?;
    let info = files::upload(client, room, path, &identity, Some(resume_dir), bars(json))
        .await
        .inspect_err(|e| {
            if matches!(e, ClientError::Connect { .. } | ClientError::Closed(_)) {
                eprintln!(
                    "escape: the upload was interrupted; run the same command again to resume it"
                );
            }
        })?;
    print(json, &info, || {
        format!(
            "shared {} in {} as {} ({} encrypted, key generation {})",
            clean(&info.name),
            info.room,
            info.id,
            output::bytes(info.size),
            info.generation
        )
    });
    Ok(())
}

pub async fn list(client: &Client, json: bool, room: &RoomName) -> Result<(), ClientError> {
    // Listing also brings the room keys up to date: members who joined get the keys this
    // member holds, and a rotation due after someone left is made now.
    if let Ok(identity) = files::file_identity(client.profile()) {
        files::sync_room_keys(client, room, &identity).await?;
    }
    let list = client.files(room).await?;
    print(json, &list, || {
        if list.is_empty() {
            return format!("no files in {room}");
        }
        list.iter()
            .map(|f| {
                format!(
                    "{}  {:>10}  {}  {}  {}",
                    f.id,
                    output::bytes(f.size),
                    output::timestamp(f.shared_at),
                    clean(&f.sender_name),
                    clean(&f.name)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(())
}

pub async fn download(
    client: &Client,
    json: bool,
    room: &RoomName,
    file_id: &str,
    output_path: Option<&Path>,
) -> Result<(), ClientError> {
    let identity = files::file_identity(client.profile())?;
    let (info, path) =
        files::download(client, room, file_id, output_path, &identity, bars(json)).await?;
    #[derive(serde::Serialize)]
    struct Downloaded<'a> {
        file: &'a escape_proto::file::FileInfo,
        path: String,
    }
    let shown = Downloaded {
        file: &info,
        path: path.display().to_string(),
    };
    print(json, &shown, || {
        format!(
            "{} from {}: decrypted, size and SHA-256 verified, written to {}",
            clean(&info.name),
            clean(&info.sender_name),
            clean(&path.display().to_string())
        )
    });
    Ok(())
}
