//! The real-time channel at `/v1/ws`.
//!
//! - [`connection`]: one task reads frames and answers requests; one writes the bounded send
//!   queue to the socket.
//! - [`subscription`]: one cursor per subscribed room, reading durable events from the store and
//!   asking the gate before delivering each one.
//! - [`notices`]: alerts, mentions and typing notices, waited on by the session's reader.
//!
//! The upgrade itself requires an active member: anyone else gets 403 and no WebSocket.

mod connection;
mod notices;
mod subscription;

use axum::extract::{State, WebSocketUpgrade};
use axum::response::Response;

use crate::error::ApiError;
use crate::identity::Principal;
use crate::state::AppState;

pub async fn upgrade(
    State(state): State<AppState>,
    principal: Principal,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let member = principal.id().clone();
    let expiry = principal.cert_not_after();
    let limits = &state.limits;
    // Taken here, held by the session: a member cannot open more than its share.
    let Some(slot) = state
        .sessions
        .websocket(&member, limits.connections_per_member)
    else {
        return Err(crate::flood::rate_limited(
            &format!(
                "you have {} sessions open, the most this server allows; close one",
                limits.connections_per_member
            ),
            std::time::Duration::from_secs(5),
        ));
    };
    let ws = ws
        .max_message_size(limits.hard_max_frame_bytes)
        .max_frame_size(limits.hard_max_frame_bytes)
        // Small buffers: most sessions are idle most of the time, and the defaults (128 KiB
        // to read, as much to write) made each idle session cost several times more (memory per
        // idle connection: `bash bench/run.sh`, in BENCHMARKS.md). A larger frame still arrives
        // whole (the message is assembled apart from the read buffer).
        .read_buffer_size(1024)
        // Bound what tungstenite buffers on its own before our queue applies back-pressure.
        .write_buffer_size(8 * 1024)
        .max_write_buffer_size(1024 * 1024);
    // Counted from now: the upgrade completes after this connection's HTTP task has ended, and
    // shutdown must not miss the session that is about to start.
    let tracked = state.tracker.token();
    Ok(ws.on_upgrade(move |socket| async move {
        connection::run(socket, state, member, expiry).await;
        drop(slot);
        drop(tracked);
    }))
}
