//! Member-facing vetting routes: invitations, vouching, the directory, renewal, publishing.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use escape_proto::vetting::{
    Application, CreateInvite, Directory, DirectoryQuery, Invite, Renew, Renewed, VouchRequest,
};
use escape_proto::{ErrorCode, Member, Published};

use crate::error::ApiError;
use crate::gate::{ApplicationRef, Deployment, action};
use crate::identity::Principal;
use crate::state::AppState;

pub async fn create_invite(
    State(state): State<AppState>,
    principal: Principal,
    body: Result<Json<CreateInvite>, JsonRejection>,
) -> Result<(StatusCode, Json<Invite>), ApiError> {
    let Json(request) = body?;
    let auth = state
        .gate
        .authorize::<action::CreateInvite>(&principal, Deployment)?;
    let pin = state
        .pki
        .ca_fingerprint()
        .map_err(|e| ApiError::internal(&e))?;
    let invite = state
        .invites
        .create(&auth, &request, pin, state.enroll_address.clone())?;
    let detail = format!("valid until {}", invite.expires_at);
    state
        .audit
        .record(Some(principal.id()), "invite.create", "", detail);
    Ok((StatusCode::CREATED, Json(invite)))
}

pub async fn vouch(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<VouchRequest>, JsonRejection>,
) -> Result<Json<Application>, ApiError> {
    let Path(id) = path?;
    let Json(request) = body?;
    let auth = state
        .gate
        .authorize::<action::Vouch>(&principal, ApplicationRef(id))?;
    let application = state.applications.vouch(&auth, request.comment)?;
    state.audit.record(
        Some(principal.id()),
        "application.vouch",
        &application.id,
        "",
    );
    Ok(Json(application))
}

pub async fn directory(
    State(state): State<AppState>,
    principal: Principal,
    query: Result<Query<DirectoryQuery>, QueryRejection>,
) -> Result<Json<Directory>, ApiError> {
    let Query(query) = query?;
    let auth = state
        .gate
        .authorize::<action::ReadDirectory>(&principal, Deployment)?;
    Ok(Json(Directory {
        members: crate::vetting::directory::list(&state.registry, &state.gate, &auth, &query)?,
    }))
}

pub async fn renew(
    State(state): State<AppState>,
    principal: Principal,
    body: Result<Json<Renew>, JsonRejection>,
) -> Result<Json<Renewed>, ApiError> {
    let Json(request) = body?;
    let auth = state
        .gate
        .authorize::<action::ManageSelf>(&principal, Deployment)?;
    let renewed = state.members.renew(&auth, &request.csr_pem)?;
    let detail = format!("valid until {}", renewed.not_after);
    state.audit.record(
        Some(principal.id()),
        "member.renew",
        principal.id().as_str(),
        detail,
    );
    Ok(Json(renewed))
}

pub async fn publish(
    State(state): State<AppState>,
    principal: Principal,
    body: Result<Json<Published>, JsonRejection>,
) -> Result<Json<Member>, ApiError> {
    let Json(published) = body?;
    let auth = state
        .gate
        .authorize::<action::ManageSelf>(&principal, Deployment)?;
    Ok(Json(state.members.publish(&auth, published)?))
}

/// The application id in a path, checked before it becomes part of a store key.
pub fn application_id(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(id) = path?;
    if id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("there is no application {id:.64}"),
        ));
    }
    Ok(id)
}
