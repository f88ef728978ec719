//! Uploads of ciphertext in chunks at exact offsets, and downloads from any offset.

use std::path::{Path, PathBuf};

use escape_proto::file::{FileInfo, StartUpload, UploadStatus};
use escape_proto::{ErrorCode, MemberId, RoomName};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use super::Files;
use crate::error::ApiError;
use crate::gate::{Authorized, action};
use crate::store::{keys, value};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct FileRecord {
    info: FileInfo,
    received: u64,
    complete: bool,
}

impl FileRecord {
    fn status(&self, chunk_bytes: u64) -> UploadStatus {
        UploadStatus {
            file_id: self.info.id.clone(),
            received: self.received,
            size: self.info.size,
            chunk_bytes,
            complete: self.complete,
        }
    }
}

/// An open download: the ciphertext file and where to start.
#[derive(Debug)]
pub struct Download {
    pub info: FileInfo,
    pub path: PathBuf,
    pub offset: u64,
}

impl Files {
    /// Makes the name of `file` durable: its room's folder, and that folder within ours.
    async fn sync_dirs(&self, file: &Path) -> Result<(), ApiError> {
        let dirs: Vec<PathBuf> = file
            .ancestors()
            .skip(1)
            .take(2)
            .map(Path::to_path_buf)
            .collect();
        tokio::task::spawn_blocking(move || {
            dirs.iter().try_for_each(|dir| crate::disk::sync_dir(dir))
        })
        .await
        .map_err(|e| ApiError::internal(&e))?
        .map_err(|e| ApiError::internal(&e))
    }

    fn part_path(&self, room: &RoomName, id: &str) -> PathBuf {
        self.dir.join(room.as_str()).join(format!("{id}.part"))
    }

    fn complete_path(&self, room: &RoomName, id: &str) -> PathBuf {
        self.dir.join(room.as_str()).join(format!("{id}.age"))
    }

    fn record(&self, room: &RoomName, id: &str) -> Result<FileRecord, ApiError> {
        let key = keys::file(room, id);
        match self.store.get(&key)? {
            Some(bytes) => Ok(value::decode(&key, &bytes)?),
            None => Err(ApiError::new(
                ErrorCode::NotFound,
                format!("{room} has no file {id}"),
            )),
        }
    }

    fn put_record(&self, room: &RoomName, record: &FileRecord) -> Result<(), ApiError> {
        self.store
            .put(&keys::file(room, &record.info.id), &value::encode(record)?)?;
        Ok(())
    }

    /// Bytes stored (or reserved by uploads in progress) by `member` everywhere and in `room`.
    fn usage(&self, member: &MemberId, room: &RoomName) -> Result<(u64, u64), ApiError> {
        let (mut by_member, mut in_room) = (0u64, 0u64);
        for (key, bytes) in self.store.scan_prefix(keys::FILES_PREFIX, usize::MAX)? {
            let record: FileRecord = value::decode(&key, &bytes)?;
            if record.info.sender == *member {
                by_member = by_member.saturating_add(record.info.size);
            }
            if record.info.room == *room {
                in_room = in_room.saturating_add(record.info.size);
            }
        }
        Ok((by_member, in_room))
    }

    /// Registers an upload of `size` bytes of ciphertext encrypted to the room's current key.
    pub async fn start_upload(
        &self,
        auth: &Authorized<action::UploadFile>,
        request: StartUpload,
    ) -> Result<UploadStatus, ApiError> {
        let room = auth.resource();
        let sender = auth.principal().member();
        let name = request.name.trim();
        if name.is_empty() || name.len() > 255 {
            return Err(ApiError::invalid("a file name is 1 to 255 bytes"));
        }
        if request.size == 0 {
            return Err(ApiError::invalid("an upload has at least one byte"));
        }
        if request.size > self.limits.max_file_bytes {
            return Err(ApiError::new(
                ErrorCode::TooLarge,
                format!(
                    "the file is {} bytes encrypted; this server accepts files up to {} bytes",
                    request.size, self.limits.max_file_bytes
                ),
            ));
        }
        let _guard = self.lock.lock().await;
        self.check_generation(room, request.generation)?;
        let (by_member, in_room) = self.usage(&sender.id, room)?;
        if by_member.saturating_add(request.size) > self.limits.member_quota_bytes {
            return Err(ApiError::new(
                ErrorCode::TooLarge,
                format!(
                    "quota: you store {by_member} bytes of files; {} more would pass your quota of {} bytes",
                    request.size, self.limits.member_quota_bytes
                ),
            ));
        }
        if in_room.saturating_add(request.size) > self.limits.room_quota_bytes {
            return Err(ApiError::new(
                ErrorCode::TooLarge,
                format!(
                    "quota: {room} holds {in_room} bytes of files; {} more would pass its quota of {} bytes",
                    request.size, self.limits.room_quota_bytes
                ),
            ));
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        let part = self.part_path(room, &id);
        if let Some(dir) = part.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| ApiError::internal(&e))?;
        }
        tokio::fs::File::create(&part)
            .await
            .map_err(|e| ApiError::internal(&e))?;
        // The chunks' acknowledgements promise they are on disk: the file's name must be too,
        // and the room's folder within the files folder.
        self.sync_dirs(&part).await?;
        let record = FileRecord {
            info: FileInfo {
                id,
                room: room.clone(),
                name: name.to_owned(),
                size: request.size,
                generation: request.generation,
                sender: sender.id.clone(),
                sender_name: sender.name.clone(),
                shared_at: OffsetDateTime::now_utc(),
            },
            received: 0,
            complete: false,
        };
        self.put_record(room, &record)?;
        Ok(record.status(self.limits.file_chunk_bytes))
    }

    /// Uploads must be encrypted to the room's current generation, and none is current while a
    /// rotation is due.
    fn check_generation(&self, room: &RoomName, generation: u32) -> Result<(), ApiError> {
        let state = self.key_state(room)?;
        if state.current == Some(generation) && !state.rotation_needed {
            return Ok(());
        }
        Err(ApiError::new(
            ErrorCode::Precondition,
            match state.current {
                Some(current) if state.rotation_needed => format!(
                    "the membership of {room} changed since key generation {current}: make generation {} and encrypt to it",
                    current + 1
                ),
                Some(current) => format!(
                    "files in {room} are encrypted to key generation {current}, not {generation}"
                ),
                None => format!("{room} has no file key yet: make generation 1 first"),
            },
        ))
    }

    /// Where an upload stands (for resuming); only its uploader asks.
    pub fn upload_status(
        &self,
        auth: &Authorized<action::UploadFile>,
        id: &str,
    ) -> Result<UploadStatus, ApiError> {
        let record = self.own_record(auth, id)?;
        Ok(record.status(self.limits.file_chunk_bytes))
    }

    fn own_record(
        &self,
        auth: &Authorized<action::UploadFile>,
        id: &str,
    ) -> Result<FileRecord, ApiError> {
        let record = self.record(auth.resource(), id)?;
        if record.info.sender != *auth.principal().id() {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "only the uploader may write to an upload",
            ));
        }
        Ok(record)
    }

    /// Appends `bytes` at `offset`. A chunk the server already has is accepted again without
    /// effect, so a client that lost the answer can simply resend.
    pub async fn put_chunk(
        &self,
        auth: &Authorized<action::UploadFile>,
        id: &str,
        offset: u64,
        bytes: &[u8],
    ) -> Result<UploadStatus, ApiError> {
        let room = auth.resource();
        let _guard = self.lock.lock().await;
        let mut record = self.own_record(auth, id)?;
        self.check_generation(room, record.info.generation)?;
        let chunk = self.limits.file_chunk_bytes;
        if record.complete {
            return Err(ApiError::new(ErrorCode::Conflict, "the upload is complete"));
        }
        if bytes.len() as u64 > chunk {
            return Err(ApiError::new(
                ErrorCode::TooLarge,
                format!("a chunk is at most {chunk} bytes"),
            ));
        }
        let end = offset.saturating_add(bytes.len() as u64);
        if end > record.info.size {
            return Err(ApiError::new(
                ErrorCode::TooLarge,
                format!(
                    "the upload was announced as {} bytes; this chunk ends at {end}",
                    record.info.size
                ),
            ));
        }
        if offset > record.received {
            return Err(ApiError::new(
                ErrorCode::Precondition,
                format!(
                    "the next byte expected is {}; resume from there",
                    record.received
                ),
            ));
        }
        if end > record.received {
            let fresh = usize::try_from(record.received - offset)
                .ok()
                .and_then(|skip| bytes.get(skip..))
                .ok_or_else(|| ApiError::internal(&"chunk offset"))?;
            // The record, not the file's length, says how much arrived: a write cut off by a
            // dropped connection or a crash may have left bytes past it. They go first.
            let mut file = tokio::fs::OpenOptions::new()
                .write(true)
                .open(self.part_path(room, id))
                .await
                .map_err(|e| ApiError::internal(&e))?;
            file.set_len(record.received)
                .await
                .map_err(|e| ApiError::internal(&e))?;
            file.seek(std::io::SeekFrom::Start(record.received))
                .await
                .map_err(|e| ApiError::internal(&e))?;
            file.write_all(fresh)
                .await
                .map_err(|e| ApiError::internal(&e))?;
            file.sync_data().await.map_err(|e| ApiError::internal(&e))?;
            record.received = end;
            self.put_record(room, &record)?;
        }
        Ok(record.status(chunk))
    }

    /// Makes a fully received upload a shared file. Returns it; the caller announces it.
    pub async fn complete(
        &self,
        auth: &Authorized<action::UploadFile>,
        id: &str,
    ) -> Result<FileInfo, ApiError> {
        let room = auth.resource();
        let _guard = self.lock.lock().await;
        let mut record = self.own_record(auth, id)?;
        if record.complete {
            return Ok(record.info);
        }
        if record.received != record.info.size {
            return Err(ApiError::new(
                ErrorCode::Precondition,
                format!(
                    "the upload is incomplete: {} of {} bytes received; resume it",
                    record.received, record.info.size
                ),
            ));
        }
        // Checked again at the end: membership may have shrunk while the bytes travelled, and
        // a file encrypted to a key a departed member holds must not be shared afterwards.
        self.check_generation(room, record.info.generation)?;
        let part = self.part_path(room, id);
        let done = self.complete_path(room, id);
        if tokio::fs::try_exists(&part).await.unwrap_or(false) {
            let file = tokio::fs::OpenOptions::new()
                .write(true)
                .open(&part)
                .await
                .map_err(|e| ApiError::internal(&e))?;
            file.set_len(record.info.size)
                .await
                .map_err(|e| ApiError::internal(&e))?;
            file.sync_all().await.map_err(|e| ApiError::internal(&e))?;
            tokio::fs::rename(&part, &done)
                .await
                .map_err(|e| ApiError::internal(&e))?;
            // Before the record says complete: a rename lost to a power cut would leave a
            // complete record whose file is nowhere.
            self.sync_dirs(&done).await?;
        } else if !tokio::fs::try_exists(&done).await.unwrap_or(false) {
            return Err(ApiError::internal(&format!(
                "upload {id} has neither its partial nor its complete file"
            )));
        }
        // (If only the complete file exists, a crash came between the rename and this record.)
        record.complete = true;
        record.info.shared_at = OffsetDateTime::now_utc();
        self.put_record(room, &record)?;
        Ok(record.info)
    }

    /// The room's shared files, oldest first.
    pub fn list(&self, auth: &Authorized<action::DownloadFile>) -> Result<Vec<FileInfo>, ApiError> {
        let mut files = Vec::new();
        for (key, bytes) in self
            .store
            .scan_prefix(&keys::files_prefix(auth.resource()), usize::MAX)?
        {
            let record: FileRecord = value::decode(&key, &bytes)?;
            if record.complete {
                files.push(record.info);
            }
        }
        files.sort_by_key(|f| f.shared_at);
        Ok(files)
    }

    /// A complete file, for reading from `offset`.
    pub fn download(
        &self,
        auth: &Authorized<action::DownloadFile>,
        id: &str,
        offset: u64,
    ) -> Result<Download, ApiError> {
        let room = auth.resource();
        let record = self.record(room, id)?;
        if !record.complete {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!("{room} has no file {id} (its upload is not complete)"),
            ));
        }
        if offset > record.info.size {
            return Err(ApiError::invalid(format!(
                "offset {offset} is past the end ({} bytes)",
                record.info.size
            )));
        }
        Ok(Download {
            path: self.complete_path(room, id),
            info: record.info,
            offset,
        })
    }
}
