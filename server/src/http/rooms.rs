//! Room routes: list, create, join, leave, history.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use escape_proto::RoomName;
use escape_proto::room::{CreateRoom, HistoryPage, HistoryQuery, RoomList, RoomSummary};

use crate::error::ApiError;
use crate::gate::{Deployment, action};
use crate::identity::Principal;
use crate::state::AppState;

fn room_name(path: Result<Path<String>, PathRejection>) -> Result<RoomName, ApiError> {
    let Path(raw) = path?;
    RoomName::parse(&raw).map_err(|e| ApiError::invalid(e.to_string()))
}

pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<RoomList>, ApiError> {
    let auth = state
        .gate
        .authorize::<action::ListRooms>(&principal, Deployment)?;
    Ok(Json(RoomList {
        rooms: state.rooms.list(&auth)?,
    }))
}

pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    body: Result<Json<CreateRoom>, JsonRejection>,
) -> Result<(StatusCode, Json<RoomSummary>), ApiError> {
    let Json(request) = body?;
    let auth = state
        .gate
        .authorize::<action::CreateRoom>(&principal, Deployment)?;
    let summary = state.rooms.create(&auth, request)?;
    state.audit.record(
        Some(principal.id()),
        "room.create",
        summary.name.as_str(),
        "",
    );
    tracing::info!(member = %principal.id(), room = %summary.name, "room created");
    Ok((StatusCode::CREATED, Json(summary)))
}

pub async fn join(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<RoomSummary>, ApiError> {
    let auth = state
        .gate
        .authorize::<action::JoinRoom>(&principal, room_name(path)?)?;
    state
        .flood
        .check(principal.id(), crate::flood::Kind::Join)?;
    let summary = state.rooms.join(&auth)?;
    state
        .audit
        .record(Some(principal.id()), "room.join", summary.name.as_str(), "");
    Ok(Json(summary))
}

pub async fn leave(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<RoomSummary>, ApiError> {
    let auth = state
        .gate
        .authorize::<action::LeaveRoom>(&principal, room_name(path)?)?;
    let summary = state.rooms.leave(&auth)?;
    state.audit.record(
        Some(principal.id()),
        "room.leave",
        summary.name.as_str(),
        "",
    );
    Ok(Json(summary))
}

/// `POST /v1/rooms/{room}/members/{member}/remove` `{reason}`: the room's admin (or a deployment
/// admin) removes a member.
pub async fn remove_member(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Json<escape_proto::vetting::Reason>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Path((room, member)) = path?;
    let Json(reason) = body?;
    let room = RoomName::parse(&room).map_err(|e| ApiError::invalid(e.to_string()))?;
    let member =
        escape_proto::MemberId::parse(&member).map_err(|e| ApiError::invalid(e.to_string()))?;
    if reason.reason.trim().is_empty() {
        return Err(ApiError::invalid("removing a member needs a reason"));
    }
    let auth = state
        .gate
        .authorize::<action::ManageRoom>(&principal, room)?;
    state.rooms.remove_member(&auth, &member)?;
    state.audit.record(
        Some(principal.id()),
        "room.remove_member",
        auth.resource().as_str(),
        format!("{member}: {}", reason.reason.trim()),
    );
    Ok(StatusCode::NO_CONTENT)
}

pub async fn history(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<HistoryPage>, ApiError> {
    let room = room_name(path)?;
    let Query(query) = query?;
    let auth = state
        .gate
        .authorize::<action::ReadHistory>(&principal, room)?;
    let mut page = state.rooms.history(&auth, &query)?;
    // Each event passes its own label too (an indicator this member may not see is left out).
    let mut visible = Vec::with_capacity(page.messages.len());
    for event in page.messages {
        if state.gate.may_read_event(&principal, &event)? {
            visible.push(event);
        }
    }
    page.messages = visible;
    Ok(Json(page))
}
