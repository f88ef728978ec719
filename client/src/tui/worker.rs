//! Carries out the screen's HTTP work (rooms, history, indicators, files, alerts, search) in
//! tasks of its own, so the screen never waits on the network; every answer, good or bad,
//! comes back as an [`Update`] in plain words.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use escape_proto::indicator::ShareIndicators;
use escape_proto::room::HistoryQuery;
use tokio::sync::mpsc;

use super::app::{Effect, PAGE, Update};
use crate::api::Client;
use crate::error::ClientError;
use crate::files::{self, Progress, Stage};

/// Progress is reported at most this often per transfer.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// Where files go: the state of resumable uploads. (Downloads without a path go to the
/// current directory under the name their verified header carries, as `escape download`.)
#[derive(Debug, Clone)]
pub struct Places {
    pub resume_dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Worker {
    client: Client,
    places: Places,
    updates: mpsc::UnboundedSender<Update>,
    /// Rooms whose keys were synced this session (uploads and downloads sync again themselves).
    keys_synced: Arc<Mutex<HashSet<escape_proto::RoomName>>>,
}

impl Worker {
    pub fn new(client: Client, places: Places, updates: mpsc::UnboundedSender<Update>) -> Self {
        Self {
            client,
            places,
            updates,
            keys_synced: Arc::default(),
        }
    }

    /// Starts `effect` in the background (link effects are not the worker's).
    pub fn start(&self, effect: Effect) {
        let worker = self.clone();
        tokio::spawn(async move {
            let updates = worker.updates.clone();
            for update in worker.carry_out(effect).await {
                let _ = updates.send(update);
            }
        });
    }

    async fn carry_out(&self, effect: Effect) -> Vec<Update> {
        let client = &self.client;
        let result: Result<Vec<Update>, (String, ClientError)> = match effect {
            Effect::Link(_) => Ok(Vec::new()),
            Effect::Me => client
                .me()
                .await
                .map(|m| vec![Update::Me(m)])
                .map_err(|e| ("who you are".into(), e)),
            Effect::Rooms => client
                .rooms()
                .await
                .map(|r| vec![Update::Rooms(r)])
                .map_err(|e| ("the rooms".into(), e)),
            Effect::PendingAlerts => client
                .pending_alerts()
                .await
                .map(|a| vec![Update::PendingAlerts(a)])
                .map_err(|e| ("alerts".into(), e)),
            Effect::Join(room) => client
                .join(&room)
                .await
                .map(|r| vec![Update::Joined(r)])
                .map_err(|e| (format!("joining {room}"), e)),
            Effect::Leave(room) => client
                .leave(&room)
                .await
                .map(|_| vec![Update::Left(room.clone())])
                .map_err(|e| (format!("leaving {room}"), e)),
            Effect::History { room, before } => {
                let query = HistoryQuery {
                    before: Some(before),
                    after: None,
                    limit: Some(PAGE as u32),
                };
                match client.history(&room, &query).await {
                    Ok(page) => Ok(vec![Update::History(page)]),
                    Err(e) => Ok(vec![Update::HistoryFailed(room, e.to_string())]),
                }
            }
            Effect::Panel(room) => {
                let mut out = Vec::new();
                // As `escape files` does: keys reach joiners, rotations due are made; once per
                // room and session, not at every switch between rooms.
                let first = self
                    .keys_synced
                    .lock()
                    .is_ok_and(|mut synced| synced.insert(room.clone()));
                if first
                    && let Ok(identity) = files::file_identity(client.profile())
                    && let Err(e) = files::sync_room_keys(client, &room, &identity).await
                {
                    if let Ok(mut synced) = self.keys_synced.lock() {
                        synced.remove(&room);
                    }
                    out.push(Update::Error(format!("room keys of {room}: {e}")));
                }
                match client.indicators(&room).await {
                    Ok(list) => out.push(Update::Indicators(room.clone(), list)),
                    Err(e) => out.push(Update::Error(format!("indicators of {room}: {e}"))),
                }
                match client.files(&room).await {
                    Ok(list) => out.push(Update::Files(room.clone(), list)),
                    Err(e) => out.push(Update::Error(format!("files of {room}: {e}"))),
                }
                Ok(out)
            }
            Effect::MarkRead { room, seq } => match client.mark_read(&room, seq).await {
                Ok(_) => Ok(Vec::new()),
                // The marker is a convenience: say nothing unless it keeps failing elsewhere.
                Err(e) => {
                    tracing::debug!("read marker for {room}: {e}");
                    Ok(Vec::new())
                }
            },
            Effect::Share { room, draft } => client
                .share_indicators(
                    &room,
                    &ShareIndicators {
                        indicators: vec![draft],
                    },
                )
                .await
                .map(|report| vec![Update::Shared(room.clone(), report)])
                .map_err(|e| (format!("sharing the indicator in {room}"), e)),
            Effect::Upload { id, room, path } => Ok(vec![self.upload(id, room, path).await]),
            Effect::Download {
                id,
                room,
                file_id,
                output,
            } => Ok(vec![self.download(id, room, file_id, output).await]),
            Effect::AckAlert(id) => client
                .ack_alert(&id)
                .await
                .map(|()| vec![Update::AlertAcked(id.clone())])
                .map_err(|e| (format!("acknowledging alert {id}"), e)),
            Effect::SendAlert(request) => client
                .send_alert(&request)
                .await
                .map(|report| vec![Update::AlertSent(Box::new(report))])
                .map_err(|e| ("sending the alert".into(), e)),
            Effect::Search(query) => client
                .search(&query, None)
                .await
                .map(|hits| vec![Update::SearchResults { query, hits }])
                .map_err(|e| ("searching".into(), e)),
            Effect::Who(room) => client
                .presence(&room)
                .await
                .map(|list| vec![Update::Who(room.clone(), list)])
                .map_err(|e| (format!("who is in {room}"), e)),
        };
        result.unwrap_or_else(|(what, e)| vec![Update::Error(format!("{what}: {e}"))])
    }

    fn progress(&self, id: u64) -> Progress {
        let updates = self.updates.clone();
        let last: Mutex<Option<(Stage, Instant)>> = Mutex::new(None);
        Arc::new(move |stage, done, total| {
            let Ok(mut last) = last.lock() else {
                return;
            };
            let now = Instant::now();
            let due = match *last {
                Some((s, at)) => {
                    s != stage || done >= total || now.duration_since(at) >= PROGRESS_EVERY
                }
                None => true,
            };
            if due {
                *last = Some((stage, now));
                let _ = updates.send(Update::Transfer {
                    id,
                    stage,
                    done,
                    total,
                });
            }
        })
    }

    async fn upload(&self, id: u64, room: escape_proto::RoomName, path: PathBuf) -> Update {
        let outcome = async {
            let identity = files::file_identity(self.client.profile())?;
            files::upload(
                &self.client,
                &room,
                &path,
                &identity,
                Some(&self.places.resume_dir),
                self.progress(id),
            )
            .await
        }
        .await;
        let outcome = match outcome {
            Ok(info) => {
                // The panel shows the new file; a failed listing leaves it as it was.
                if let Ok(list) = self.client.files(&room).await {
                    let _ = self.updates.send(Update::Files(room.clone(), list));
                }
                Ok(format!(
                    "shared {} in {room} as {} (encrypted here, key generation {})",
                    info.name, info.id, info.generation
                ))
            }
            Err(e @ (ClientError::Connect { .. } | ClientError::Closed(_))) => Err(format!(
                "upload of {} interrupted ({e}); /upload it again to resume",
                path.display()
            )),
            Err(e) => Err(format!("upload of {}: {e}", path.display())),
        };
        Update::TransferDone { id, outcome }
    }

    async fn download(
        &self,
        id: u64,
        room: escape_proto::RoomName,
        file_id: String,
        output: Option<PathBuf>,
    ) -> Update {
        let outcome = async {
            let identity = files::file_identity(self.client.profile())?;
            files::download(
                &self.client,
                &room,
                &file_id,
                output.as_deref(),
                &identity,
                self.progress(id),
            )
            .await
        }
        .await;
        let outcome = match outcome {
            Ok((info, path)) => Ok(format!(
                "{} decrypted, size and SHA-256 verified, saved to {}",
                info.name,
                path.display()
            )),
            Err(e) => Err(format!("download of {file_id}: {e}")),
        };
        Update::TransferDone { id, outcome }
    }
}
