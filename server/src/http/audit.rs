//! `GET /v1/admin/audit?after=SEQ&limit=N`: the audit log, for admins; and the rotation of the
//! master key, an operation the audit log records.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use escape_proto::audit::{AuditEntry, AuditQuery, KeyRotation};

use crate::error::ApiError;
use crate::gate::{Deployment, action};
use crate::identity::Principal;
use crate::state::AppState;

pub async fn read(
    State(state): State<AppState>,
    principal: Principal,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    let Query(query) = query?;
    state
        .gate
        .authorize::<action::ManagePolicy>(&principal, Deployment)?;
    let limit = query.limit.unwrap_or(500).clamp(1, 5000) as usize;
    Ok(Json(state.audit.read(query.after, limit)?))
}

/// Re-wraps every data key to a fresh master key and replaces the key file. Blocking work
/// (age, a flush) runs off the async runtime; requests keep being served meanwhile.
pub async fn rotate_keys(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<KeyRotation>, ApiError> {
    let auth = state
        .gate
        .authorize::<action::ManageKeys>(&principal, Deployment)?;
    let sealing = state.sealing.clone();
    let rotated = tokio::task::spawn_blocking(move || sealing.rotate())
        .await
        .map_err(|e| ApiError::internal(&e))?
        .map_err(|e| ApiError::internal(&e))?;
    state.audit.record(
        Some(auth.principal().id()),
        "keys.rotate",
        "",
        format!(
            "master key rotated; {} data keys re-wrapped to {}",
            rotated.data_keys, rotated.recipient
        ),
    );
    Ok(Json(KeyRotation {
        data_keys: rotated.data_keys,
        recipient: rotated.recipient,
    }))
}
