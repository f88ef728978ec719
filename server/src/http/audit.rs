//! `GET /v1/admin/audit?after=SEQ&limit=N`: the audit log, for admins.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use escape_proto::audit::{AuditEntry, AuditQuery};

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
