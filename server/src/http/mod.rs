//! The HTTP API under `/v1`, and the WebSocket upgrade at `/v1/ws`.
//!
//! | route | action |
//! | --- | --- |
//! | `GET /v1/me` | who am I |
//! | `GET /v1/rooms` | list rooms |
//! | `POST /v1/rooms` | create a room (the creator joins it) |
//! | `POST /v1/rooms/{room}/join` | join |
//! | `POST /v1/rooms/{room}/leave` | leave |
//! | `GET /v1/rooms/{room}/messages?before=&after=&limit=` | history page |
//! | `GET /v1/ws` | real-time channel (see `escape_proto::frame`) |
//!
//! Every handler takes a [`Principal`] (an active member, or the request is refused with 403)
//! and asks the gate before acting.

mod principal;
mod rooms;

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::routing::{get, post};
use escape_proto::{ErrorCode, Member};

use crate::error::ApiError;
use crate::gate::{Deployment, action};
use crate::identity::Principal;
use crate::state::AppState;

/// Request bodies are small JSON documents; anything larger is refused with 413.
const MAX_BODY_BYTES: usize = 64 * 1024;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/me", get(me))
        .route("/v1/rooms", get(rooms::list).post(rooms::create))
        .route("/v1/rooms/{room}/join", post(rooms::join))
        .route("/v1/rooms/{room}/leave", post(rooms::leave))
        .route("/v1/rooms/{room}/messages", get(rooms::history))
        .route("/v1/ws", get(crate::ws::upgrade))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn me(State(state): State<AppState>, principal: Principal) -> Result<Json<Member>, ApiError> {
    let auth = state
        .gate
        .authorize::<action::ReadSelf>(&principal, Deployment)?;
    Ok(Json(auth.principal().member().clone()))
}

async fn not_found(_principal: Principal) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidRequest,
        "no such route; the API lives under /v1",
    )
}
