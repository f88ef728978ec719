//! Admin routes: deciding applications and managing members. Every one asks the gate, which
//! admits deployment admins only.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use escape_proto::vetting::{
    Application, ApplicationList, ApplicationStatus, Approve, AttributeUpdate, MemberHistory,
    MemberList, Reason, StatusChange,
};
use escape_proto::{Member, MemberId};
use serde::Deserialize;

use super::vetting::application_id;
use crate::error::ApiError;
use crate::gate::{Deployment, action};
use crate::identity::Principal;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
pub struct ApplicationFilter {
    #[serde(default)]
    status: Option<ApplicationStatus>,
}

pub async fn applications(
    State(state): State<AppState>,
    principal: Principal,
    query: Result<Query<ApplicationFilter>, QueryRejection>,
) -> Result<Json<ApplicationList>, ApiError> {
    let Query(filter) = query?;
    let auth = state
        .gate
        .authorize::<action::ManageApplications>(&principal, Deployment)?;
    Ok(Json(ApplicationList {
        applications: state.applications.list(&auth, filter.status)?,
    }))
}

pub async fn application(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Application>, ApiError> {
    let id = application_id(path)?;
    let auth = state
        .gate
        .authorize::<action::ManageApplications>(&principal, Deployment)?;
    Ok(Json(state.applications.show(&auth, &id)?))
}

pub async fn approve(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<Approve>, JsonRejection>,
) -> Result<Json<Application>, ApiError> {
    let id = application_id(path)?;
    let Json(request) = body?;
    let auth = state
        .gate
        .authorize::<action::ManageApplications>(&principal, Deployment)?;
    let application = state.applications.approve(&auth, &id, request)?;
    let member = application
        .member_id
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    state.audit.record(
        Some(principal.id()),
        "application.approve",
        &id,
        format!("member {member}"),
    );
    Ok(Json(application))
}

pub async fn reject(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<Reason>, JsonRejection>,
) -> Result<Json<Application>, ApiError> {
    let id = application_id(path)?;
    let Json(request) = body?;
    let auth = state
        .gate
        .authorize::<action::ManageApplications>(&principal, Deployment)?;
    let application = state
        .applications
        .reject(&auth, &id, request.reason.clone())?;
    state.audit.record(
        Some(principal.id()),
        "application.reject",
        &id,
        request.reason,
    );
    Ok(Json(application))
}

pub async fn members(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<MemberList>, ApiError> {
    let auth = state
        .gate
        .authorize::<action::ManageApplications>(&principal, Deployment)?;
    Ok(Json(MemberList {
        members: state.members.list(&auth)?,
    }))
}

fn member_id(
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<(MemberId, String), ApiError> {
    let Path((id, verb)) = path?;
    let id = MemberId::parse(&id).map_err(|e| ApiError::invalid(e.to_string()))?;
    Ok((id, verb))
}

/// `POST /v1/admin/members/{id}/{suspend|reinstate|revoke}` with a reason.
pub async fn change_status(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Json<Reason>, JsonRejection>,
) -> Result<Json<Member>, ApiError> {
    let (id, verb) = member_id(path)?;
    let change = match verb.as_str() {
        "suspend" => StatusChange::Suspend,
        "reinstate" => StatusChange::Reinstate,
        "revoke" => StatusChange::Revoke,
        _ => return Err(ApiError::invalid("use suspend, reinstate or revoke")),
    };
    let Json(request) = body?;
    let auth = state
        .gate
        .authorize::<action::ManageMembers>(&principal, id)?;
    let member = state.members.set_status(&auth, change, &request.reason)?;
    state.audit.record(
        Some(principal.id()),
        &format!("member.{verb}"),
        member.id.as_str(),
        request.reason,
    );
    Ok(Json(member))
}

#[derive(Debug, Deserialize)]
pub struct AttributeChange {
    #[serde(default)]
    reason: String,
    attributes: AttributeUpdate,
}

pub async fn update_attributes(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<AttributeChange>, JsonRejection>,
) -> Result<Json<Member>, ApiError> {
    let Path(id) = path?;
    let id = MemberId::parse(&id).map_err(|e| ApiError::invalid(e.to_string()))?;
    let Json(change) = body?;
    let auth = state
        .gate
        .authorize::<action::ManageMembers>(&principal, id)?;
    let member = state
        .members
        .update_attributes(&auth, &change.attributes, &change.reason)?;
    let detail = format!("now version {}: {}", member.version, change.reason);
    state.audit.record(
        Some(principal.id()),
        "member.attributes",
        member.id.as_str(),
        detail,
    );
    Ok(Json(member))
}

pub async fn history(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<MemberHistory>, ApiError> {
    let Path(id) = path?;
    let id = MemberId::parse(&id).map_err(|e| ApiError::invalid(e.to_string()))?;
    let auth = state
        .gate
        .authorize::<action::ManageMembers>(&principal, id.clone())?;
    Ok(Json(MemberHistory {
        member: id,
        changes: state.members.history(&auth)?,
    }))
}
