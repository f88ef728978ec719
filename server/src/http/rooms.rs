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

/// `PUT /v1/rooms/{room}/read` `{seq}`: this member has read up to `seq`.
pub async fn mark_read(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<escape_proto::room::ReadMarker>, JsonRejection>,
) -> Result<Json<RoomSummary>, ApiError> {
    let room = room_name(path)?;
    let Json(marker) = body?;
    let auth = state
        .gate
        .authorize::<action::ReadHistory>(&principal, room)?;
    Ok(Json(state.rooms.mark_read(&auth, marker.seq)?))
}

/// `PUT /v1/rooms/{room}/settings`: topic, history visibility, retention, invite-only.
pub async fn settings(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<escape_proto::room::RoomSettings>, JsonRejection>,
) -> Result<Json<RoomSummary>, ApiError> {
    let room = room_name(path)?;
    let Json(settings) = body?;
    let auth = state
        .gate
        .authorize::<action::ManageRoom>(&principal, room)?;
    let detail = serde_json::to_string(&settings).unwrap_or_default();
    let summary = state.rooms.update_settings(&auth, settings)?;
    state.audit.record(
        Some(principal.id()),
        "room.settings",
        summary.name.as_str(),
        detail,
    );
    Ok(Json(summary))
}

/// `POST /v1/rooms/{room}/invitations/{member}`: lets a member join an invite-only room.
pub async fn invite(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path((room, member)) = path?;
    let room = RoomName::parse(&room).map_err(|e| ApiError::invalid(e.to_string()))?;
    let member =
        escape_proto::MemberId::parse(&member).map_err(|e| ApiError::invalid(e.to_string()))?;
    let auth = state
        .gate
        .authorize::<action::ManageRoom>(&principal, room)?;
    state.rooms.invite(&auth, &member)?;
    state.audit.record(
        Some(principal.id()),
        "room.invite",
        auth.resource().as_str(),
        member.to_string(),
    );
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/rooms/{room}/messages/{seq}/redact` `{reason}`: removes a message's content for
/// everyone; its sender, the room's admin or a deployment admin may.
pub async fn redact(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<(String, u64)>, PathRejection>,
    body: Result<Json<escape_proto::vetting::Reason>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Path((room, seq)) = path?;
    let room = RoomName::parse(&room).map_err(|e| ApiError::invalid(e.to_string()))?;
    let Json(reason) = body?;
    if reason.reason.trim().is_empty() {
        return Err(ApiError::invalid("removing a message needs a reason"));
    }
    let auth = state
        .gate
        .authorize::<action::ReadHistory>(&principal, room.clone())?;
    let sender = state.rooms.sender_of(&room, seq)?.ok_or_else(|| {
        ApiError::new(
            escape_proto::ErrorCode::NotFound,
            format!("{room} has no message {seq}"),
        )
    })?;
    if sender != *principal.id() {
        // Not the sender: only the room's admin or a deployment admin (audited if refused).
        state
            .gate
            .authorize::<action::ManageRoom>(&principal, room.clone())?;
    }
    let appended = state.rooms.redact(&auth, seq)?;
    // Recorded as soon as the content is gone, whether or not the notice becomes durable in time.
    state.audit.record(
        Some(principal.id()),
        "message.redact",
        room.as_str(),
        format!("#{seq} sent by {sender}: {}", reason.reason.trim()),
    );
    state.rooms.durable(&room, appended.seq).await?;
    Ok(Json(
        serde_json::json!({"room": room, "redacted": seq, "seq": appended.seq}),
    ))
}

/// `GET /v1/search?text=&room=&limit=`: messages containing `text` (case-insensitive) in the
/// rooms this member may read, newest first; every result passes the gate and its label.
pub async fn search(
    State(state): State<AppState>,
    principal: Principal,
    query: Result<Query<escape_proto::room::SearchQuery>, QueryRejection>,
) -> Result<Json<Vec<escape_proto::Event>>, ApiError> {
    let Query(query) = query?;
    let needle = query.text.trim().to_lowercase();
    if needle.len() < 2 || needle.len() > 256 {
        return Err(ApiError::invalid("text: 2 to 256 characters"));
    }
    let limit = query.limit.unwrap_or(50).clamp(1, 200) as usize;
    let list = state
        .gate
        .authorize::<action::ListRooms>(&principal, Deployment)?;
    let rooms: Vec<RoomName> = match query.room {
        Some(room) => vec![room],
        None => state
            .rooms
            .list(&list)?
            .into_iter()
            .filter(|r| r.joined)
            .map(|r| r.name)
            .collect(),
    };
    let mut found = Vec::new();
    'rooms: for room in rooms {
        // Rooms this member may not read are skipped, not refused.
        let Some(auth) = state.gate.quietly::<action::ReadHistory>(&principal, room) else {
            continue;
        };
        // The newest 5 000 messages of each room, in pages.
        let mut before = None;
        for _ in 0..10 {
            let page = state.rooms.history(
                &auth,
                &HistoryQuery {
                    before,
                    after: None,
                    limit: Some(500),
                },
            )?;
            let Some(first) = page.messages.first() else {
                break;
            };
            before = Some(first.seq);
            for event in page.messages.iter().rev() {
                let text = match &event.body {
                    escape_proto::Body::Text { text, .. }
                    | escape_proto::Body::Edit { text, .. } => text.to_lowercase(),
                    escape_proto::Body::Indicator(i) => {
                        format!("{} {}", i.value, i.description).to_lowercase()
                    }
                    _ => continue,
                };
                if text.contains(&needle) && state.gate.may_read_event(&principal, event)? {
                    found.push(event.clone());
                    if found.len() >= limit {
                        break 'rooms;
                    }
                }
            }
            if !page.more {
                break;
            }
        }
    }
    found.sort_by_key(|e| std::cmp::Reverse(e.sent_at));
    Ok(Json(found))
}

/// `GET /v1/rooms/{room}/presence`: the room's members, online, away or offline; for those
/// who may read the room.
pub async fn presence(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<escape_proto::room::Presence>>, ApiError> {
    let room = room_name(path)?;
    let auth = state
        .gate
        .authorize::<action::ReadHistory>(&principal, room)?;
    let mut out = Vec::new();
    for member in state.rooms.members(auth.resource())? {
        let Some(record) = state.registry.get(&member)? else {
            continue;
        };
        out.push(escape_proto::room::Presence {
            status: state.sessions.presence(&member),
            name: record.name,
            member,
        });
    }
    Ok(Json(out))
}
