//! File routes: room keys, resumable uploads of ciphertext, listings and downloads.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use escape_proto::RoomName;
use escape_proto::file::{
    AddCopies, FileInfo, KeyGeneration, NewGeneration, RoomKeys, StartUpload, UploadStatus,
};
use serde::Deserialize;
use tokio::io::AsyncSeekExt;

use crate::error::ApiError;
use crate::gate::action;
use crate::identity::Principal;
use crate::state::AppState;

fn room(raw: &str) -> Result<RoomName, ApiError> {
    RoomName::parse(raw).map_err(|e| ApiError::invalid(e.to_string()))
}

/// File ids are the server's own (32 hex digits); anything else names no file.
fn file_id(raw: &str) -> Result<String, ApiError> {
    if raw.len() == 32 && raw.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(raw.to_ascii_lowercase())
    } else {
        Err(ApiError::invalid("a file id is 32 hex digits"))
    }
}

#[derive(Debug, Deserialize)]
pub struct OffsetQuery {
    #[serde(default)]
    offset: u64,
}

pub async fn keys(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<RoomKeys>, ApiError> {
    let Path(raw) = path?;
    let auth = state
        .gate
        .authorize::<action::DownloadFile>(&principal, room(&raw)?)?;
    Ok(Json(state.files.keys(&auth)?))
}

pub async fn new_generation(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<NewGeneration>, JsonRejection>,
) -> Result<(StatusCode, Json<KeyGeneration>), ApiError> {
    let Path(raw) = path?;
    let Json(request) = body?;
    let auth = state
        .gate
        .authorize::<action::UploadFile>(&principal, room(&raw)?)?;
    let generation = state.files.new_generation(&auth, request)?;
    state.audit.record(
        Some(principal.id()),
        "room.key.generation",
        auth.resource().as_str(),
        format!("generation {}", generation.generation),
    );
    Ok((StatusCode::CREATED, Json(generation)))
}

pub async fn add_copies(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<(String, u32)>, PathRejection>,
    body: Result<Json<AddCopies>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Path((raw, generation)) = path?;
    let Json(request) = body?;
    let auth = state
        .gate
        .authorize::<action::UploadFile>(&principal, room(&raw)?)?;
    state.files.add_copies(&auth, generation, request)?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn start_upload(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<StartUpload>, JsonRejection>,
) -> Result<(StatusCode, Json<UploadStatus>), ApiError> {
    let Path(raw) = path?;
    let Json(request) = body?;
    let auth = state
        .gate
        .authorize::<action::UploadFile>(&principal, room(&raw)?)?;
    Ok((
        StatusCode::CREATED,
        Json(state.files.start_upload(&auth, request).await?),
    ))
}

pub async fn upload_status(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<UploadStatus>, ApiError> {
    let Path((raw, id)) = path?;
    let auth = state
        .gate
        .authorize::<action::UploadFile>(&principal, room(&raw)?)?;
    Ok(Json(state.files.upload_status(&auth, &file_id(&id)?)?))
}

pub async fn put_chunk(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<OffsetQuery>, QueryRejection>,
    body: Bytes,
) -> Result<Json<UploadStatus>, ApiError> {
    let Path((raw, id)) = path?;
    let Query(query) = query?;
    let auth = state
        .gate
        .authorize::<action::UploadFile>(&principal, room(&raw)?)?;
    Ok(Json(
        state
            .files
            .put_chunk(&auth, &file_id(&id)?, query.offset, &body)
            .await?,
    ))
}

pub async fn complete(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<FileInfo>, ApiError> {
    let Path((raw, id)) = path?;
    let auth = state
        .gate
        .authorize::<action::UploadFile>(&principal, room(&raw)?)?;
    let info = state.files.complete(&auth, &file_id(&id)?).await?;
    // Announced in the room like a message: every member's channel shows it, each delivery
    // decided by the gate for its recipient.
    let appended = state.rooms.append_file_event(&auth, &info)?;
    state.rooms.durable(auth.resource(), appended.seq).await?;
    state.audit.record(
        Some(principal.id()),
        "file.share",
        auth.resource().as_str(),
        format!("file {} ({} bytes)", info.id, info.size),
    );
    Ok(Json(info))
}

pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<FileInfo>>, ApiError> {
    let Path(raw) = path?;
    let auth = state
        .gate
        .authorize::<action::DownloadFile>(&principal, room(&raw)?)?;
    Ok(Json(state.files.list(&auth)?))
}

/// How much of a file one read takes while it is streamed to a client. Each read is a trip to
/// the blocking thread pool: at the stream's default of 4 KiB, those trips, not the disk or
/// TLS, set the download speed.
const DOWNLOAD_READ_BYTES: usize = 256 * 1024;

/// The ciphertext from `offset` on, streamed; the file's record travels in a header.
pub async fn download(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<OffsetQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Path((raw, id)) = path?;
    let Query(query) = query?;
    let auth = state
        .gate
        .authorize::<action::DownloadFile>(&principal, room(&raw)?)?;
    let download = state.files.download(&auth, &file_id(&id)?, query.offset)?;
    let mut file = tokio::fs::File::open(&download.path)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    file.seek(std::io::SeekFrom::Start(download.offset))
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let info = serde_json::to_string(&download.info).map_err(|e| ApiError::internal(&e))?;
    let remaining = download.info.size - download.offset;
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
        file,
        DOWNLOAD_READ_BYTES,
    ));
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, remaining.to_string()),
            (
                header::HeaderName::from_static("x-escape-file"),
                info.chars()
                    .filter(|c| c.is_ascii() && !c.is_ascii_control())
                    .collect(),
            ),
        ],
        body,
    )
        .into_response())
}
