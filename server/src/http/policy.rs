//! Policy routes: the deployment's policy (admins) and each room's (its admin or an admin),
//! read, dry-run against the current members, and replace. Templates for everyone.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use escape_proto::RoomName;
use escape_proto::room::{PolicyDocument, PolicyImpact, PolicyTemplate};

use crate::error::ApiError;
use crate::gate::{Deployment, action};
use crate::identity::Principal;
use crate::policy::{DEPLOYMENT_DEFAULT, PolicyRecord, ROOM_TEMPLATES};
use crate::state::AppState;

fn document(record: PolicyRecord) -> PolicyDocument {
    PolicyDocument {
        text: record.text,
        version: record.version,
    }
}

fn room_name(path: Result<Path<String>, PathRejection>) -> Result<RoomName, ApiError> {
    let Path(raw) = path?;
    RoomName::parse(&raw).map_err(|e| ApiError::invalid(e.to_string()))
}

pub async fn templates(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Vec<PolicyTemplate>>, ApiError> {
    state
        .gate
        .authorize::<action::ReadSelf>(&principal, Deployment)?;
    let mut all = vec![PolicyTemplate {
        name: "deployment-default".into(),
        admits: "the deployment policy a new deployment starts with".into(),
        text: DEPLOYMENT_DEFAULT.into(),
    }];
    all.extend(
        ROOM_TEMPLATES
            .iter()
            .map(|(name, admits, text)| PolicyTemplate {
                name: (*name).into(),
                admits: (*admits).into(),
                text: (*text).into(),
            }),
    );
    Ok(Json(all))
}

pub async fn get_deployment(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<PolicyDocument>, ApiError> {
    state
        .gate
        .authorize::<action::ManagePolicy>(&principal, Deployment)?;
    Ok(Json(document(state.gate.policy().deployment_policy()?)))
}

pub async fn set_deployment(
    State(state): State<AppState>,
    principal: Principal,
    body: Result<Json<PolicyDocument>, JsonRejection>,
) -> Result<Json<PolicyDocument>, ApiError> {
    let Json(request) = body?;
    let auth = state
        .gate
        .authorize::<action::ManagePolicy>(&principal, Deployment)?;
    let record = state
        .gate
        .policy()
        .set(None, &request.text, auth.principal().id())?;
    let detail = format!("version {}", record.version);
    state
        .audit
        .record(Some(principal.id()), "policy.set", "deployment", detail);
    Ok(Json(document(record)))
}

pub async fn test_deployment(
    State(state): State<AppState>,
    principal: Principal,
    body: Result<Json<PolicyDocument>, JsonRejection>,
) -> Result<Json<PolicyImpact>, ApiError> {
    let Json(request) = body?;
    state
        .gate
        .authorize::<action::ManagePolicy>(&principal, Deployment)?;
    impact(&state, None, &request.text)
}

pub async fn get_room(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<PolicyDocument>, ApiError> {
    let auth = state
        .gate
        .authorize::<action::ManageRoom>(&principal, room_name(path)?)?;
    Ok(Json(document(
        state.gate.policy().room_policy(auth.resource())?,
    )))
}

pub async fn set_room(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<PolicyDocument>, JsonRejection>,
) -> Result<Json<PolicyDocument>, ApiError> {
    let room = room_name(path)?;
    let Json(request) = body?;
    let auth = state
        .gate
        .authorize::<action::ManageRoom>(&principal, room)?;
    let record =
        state
            .gate
            .policy()
            .set(Some(auth.resource()), &request.text, auth.principal().id())?;
    let detail = format!("version {}", record.version);
    state.audit.record(
        Some(principal.id()),
        "policy.set",
        auth.resource().as_str(),
        detail,
    );
    Ok(Json(document(record)))
}

pub async fn test_room(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<PolicyDocument>, JsonRejection>,
) -> Result<Json<PolicyImpact>, ApiError> {
    let room = room_name(path)?;
    let Json(request) = body?;
    let auth = state
        .gate
        .authorize::<action::ManageRoom>(&principal, room)?;
    impact(&state, Some(auth.resource()), &request.text)
}

fn impact(
    state: &AppState,
    room: Option<&RoomName>,
    text: &str,
) -> Result<Json<PolicyImpact>, ApiError> {
    let policy = state.gate.policy();
    let proposed = policy.compile(text)?;
    let members = state.registry.all()?;
    let rooms = state.rooms.all_attributes()?;
    let changes = policy.impact(room, &proposed, &members, &rooms)?;
    let members_checked = members
        .iter()
        .filter(|m| m.status == escape_proto::MemberStatus::Active)
        .count() as u64;
    Ok(Json(PolicyImpact {
        changes,
        members_checked,
    }))
}
