//! Alert routes: send (or dry-run), my pending alerts, acknowledge, status.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use escape_proto::alert::{Alert, AlertReport, AlertStatus, SendAlert};

use crate::error::ApiError;
use crate::gate::{Deployment, action};
use crate::identity::Principal;
use crate::state::AppState;

pub async fn send(
    State(state): State<AppState>,
    principal: Principal,
    body: Result<Json<SendAlert>, JsonRejection>,
) -> Result<(StatusCode, Json<AlertReport>), ApiError> {
    let Json(request) = body?;
    let auth = state
        .gate
        .authorize::<action::SendAlert>(&principal, Deployment)?;
    let dry_run = request.dry_run;
    // Dry runs too: each one reveals how many members match a condition.
    state
        .flood
        .check(principal.id(), crate::flood::Kind::Alert)?;
    let report = state.alerts.send(&state.gate, &auth, request)?;
    if let Some(alert) = &report.alert {
        state.audit.record(
            Some(principal.id()),
            "alert.send",
            &alert.id,
            format!(
                "{} {} to {} member(s): {}",
                alert.tlp,
                alert.severity.as_str(),
                report.audience_size,
                report.condition
            ),
        );
    }
    let status = if dry_run {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(report)))
}

pub async fn pending(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Vec<Alert>>, ApiError> {
    let auth = state
        .gate
        .authorize::<action::ReadSelf>(&principal, Deployment)?;
    Ok(Json(state.alerts.pending(auth.principal().id())?))
}

pub async fn ack(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(id) = path?;
    let auth = state
        .gate
        .authorize::<action::ReadSelf>(&principal, Deployment)?;
    state.alerts.ack(auth.principal().id(), &id)?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn status(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<AlertStatus>, ApiError> {
    let Path(id) = path?;
    let auth = state
        .gate
        .authorize::<action::ReadSelf>(&principal, Deployment)?;
    Ok(Json(state.alerts.status(auth.principal(), &id)?))
}
