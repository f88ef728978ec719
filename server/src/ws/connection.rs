//! One WebSocket session.
//!
//! The reader decodes each frame, asks the gate, acts, and queues the answer; beside the socket it
//! waits on the session's [`Inbox`] (alerts, mentions, typing notices). The writer drains
//! the bounded queue into the socket. When the queue stays full longer than the slow-consumer
//! limit the session is closed with `slow_consumer` (the client resumes later from its last
//! sequence) instead of the server buffering without bound.
//!
//! On server shutdown the reader stops taking requests, waits for pending acks, and the writer
//! sends `shutting_down` and a close frame (1001).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, close_code};
use escape_proto::frame::ServerMessage;
use escape_proto::{Body, ClientFrame, ClientRequest, ErrorCode, MemberId, RoomName, ServerFrame};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::notices::Inbox;
use super::subscription;
use crate::error::ApiError;
use crate::gate::action;
use crate::identity::Principal;
use crate::state::AppState;

/// The sending half every producer of frames for this session holds.
///
/// Frames are queued encoded: the queue's slots then hold shared bytes (32 bytes) rather than a
/// whole `ServerMessage`, which matters because the channel allocates its slots in blocks as soon
/// as it exists, and an idle session should cost as little as possible; and an event's frame,
/// encoded once, is queued to every recipient without a copy.
#[derive(Debug, Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Utf8Bytes>,
    session: Arc<Session>,
    slow_after: Duration,
}

/// How the session ends, and the signal to end it.
#[derive(Debug, Default)]
struct Session {
    close: CancellationToken,
    reason: OnceLock<(ErrorCode, String)>,
}

impl Outbox {
    /// Queues a frame. If the queue stays full past the slow-consumer limit the session is
    /// closed and `false` returned; producers then stop.
    ///
    /// The frame is encoded before the future is made, so the future holds bytes, not a
    /// `ServerMessage`: every task that awaits it (an idle session's among them) stays small.
    pub fn send(&self, frame: ServerMessage) -> impl Future<Output = bool> {
        self.send_until(frame, &self.session.close)
    }

    /// Like [`Outbox::send`], giving up (with `false`) as soon as `stop` fires: a cancelled
    /// subscription must not deliver one more event after it was told to stop.
    ///
    /// `stop` must be the session's own signal ([`Outbox::closed`]) or a child of it: a child
    /// fires with its parent, so checking `stop` alone also stops at the session's end (one
    /// check per frame, each a lock, instead of two).
    pub fn send_until(
        &self,
        frame: ServerMessage,
        stop: &CancellationToken,
    ) -> impl Future<Output = bool> {
        self.send_encoded(frame.encode().into(), stop)
    }

    /// Queues a frame already encoded (an event's, shared by its recipients), as
    /// [`Outbox::send_until`].
    ///
    /// A queue with room takes the frame at once, without a future; only a full queue waits,
    /// in a future of its own on the heap. This keeps every task that sends (the session, its
    /// subscriptions, its alerts) small while it is idle, which is what an idle session costs.
    pub async fn send_encoded(&self, frame: Utf8Bytes, stop: &CancellationToken) -> bool {
        if stop.is_cancelled() {
            return false;
        }
        match self.tx.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
            Err(mpsc::error::TrySendError::Full(frame)) => {
                Box::pin(self.wait_to_send(frame, stop)).await
            }
        }
    }

    /// Waits for room in the queue, at most the slow-consumer limit.
    async fn wait_to_send(&self, frame: Utf8Bytes, stop: &CancellationToken) -> bool {
        tokio::select! {
            biased;
            () = stop.cancelled() => false,
            () = self.session.close.cancelled() => false,
            sent = self.tx.send_timeout(frame, self.slow_after) => match sent {
                Ok(()) => true,
                Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                    self.close(ErrorCode::SlowConsumer, format!(
                        "the client did not read for {} ms; reconnect and resume from the last sequence received",
                        self.slow_after.as_millis()
                    ));
                    false
                }
                Err(mpsc::error::SendTimeoutError::Closed(_)) => false,
            },
        }
    }

    /// Queues an error frame, as [`Outbox::send`].
    pub fn error(&self, id: Option<String>, error: &ApiError) -> impl Future<Output = bool> {
        self.send(ServerMessage::new(
            id,
            ServerFrame::Error {
                code: error.code,
                message: error.message.clone(),
            },
        ))
    }

    /// Ends the session; the first reason given is the one the client is told.
    pub fn close(&self, code: ErrorCode, message: String) {
        let _ = self.session.reason.set((code, message));
        self.session.close.cancel();
    }

    pub fn closed(&self) -> &CancellationToken {
        &self.session.close
    }
}

pub async fn run(
    socket: WebSocket,
    state: AppState,
    member: MemberId,
    expiry: Option<time::OffsetDateTime>,
) {
    let (sink, mut stream) = socket.split();
    let (tx, rx) = mpsc::channel(state.limits.send_queue_frames);
    let outbox = Outbox {
        tx,
        session: Arc::new(Session::default()),
        slow_after: state.limits.slow_consumer(),
    };
    let writer = tokio::spawn(write_loop(sink, rx, outbox.session.clone()));
    // Suspension or revocation closes the session with its reason, at once.
    let _registration = {
        let outbox = outbox.clone();
        state.sessions.register(
            &member,
            Box::new(move |code, message| outbox.close(code, message)),
        )
    };
    // Alerts: those waiting since the last session, then (in the loop) each one as it is sent.
    let mut inbox = Inbox::open(&state);
    if !Box::pin(inbox.backlog(&state, &member, &outbox)).await {
        outbox.closed().cancel();
    }
    let mut subscriptions: Subscriptions = HashMap::new();
    // Frames read in the current one-second window.
    let (mut window, mut frames) = (tokio::time::Instant::now(), 0u32);
    // When this session last relayed "typing" per room.
    let mut typing = HashMap::new();
    // Half-open connections cannot pile up: a session that sends nothing for this long ends.
    let idle = tokio::time::sleep(state.limits.idle_timeout());
    tokio::pin!(idle);
    let mut acks = JoinSet::new();
    // The member as last read, kept until a write that decides access (see the gate).
    let mut known = None;
    // Sends waiting for durability hold a permit: a client that writes without reading its
    // acks is slowed down instead of piling up tasks.
    let in_flight = Arc::new(Semaphore::new(state.limits.send_queue_frames));
    tracing::debug!(%member, "session open");

    loop {
        let message = tokio::select! {
            () = outbox.closed().cancelled() => break,
            () = &mut idle => {
                outbox.close(
                    ErrorCode::IdleTimeout,
                    format!(
                        "nothing received for {} s; the session is closed (clients ping when quiet)",
                        state.limits.idle_timeout().as_secs()
                    ),
                );
                break;
            }
            () = state.shutdown.cancelled() => {
                // Finish what was accepted: pending acks go out before the close frame.
                while acks.join_next().await.is_some() {}
                outbox.close(ErrorCode::ShuttingDown, "the server is shutting down; reconnect and resume".into());
                break;
            }
            Some(_) = acks.join_next(), if !acks.is_empty() => continue,
            notice = inbox.recv(), if inbox.is_open() => {
                // On the heap, like a request: the loop's own future stays small.
                if !Box::pin(inbox.deliver(&state, &member, &outbox, notice)).await {
                    break;
                }
                continue;
            }
            message = stream.next() => message,
        };
        idle.as_mut()
            .reset(tokio::time::Instant::now() + state.limits.idle_timeout());
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Binary(_))) => {
                outbox
                    .error(
                        None,
                        &ApiError::new(
                            ErrorCode::InvalidFrame,
                            "binary frames are not part of the protocol; send JSON text",
                        ),
                    )
                    .await;
                continue;
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Close(_))) | None => break,
            Some(Err(e)) => {
                let too_large = e
                    .into_inner()
                    .downcast_ref::<tokio_tungstenite::tungstenite::Error>()
                    .is_some_and(|e| {
                        matches!(e, tokio_tungstenite::tungstenite::Error::Capacity(_))
                    });
                if too_large {
                    // Above the hard limit the protocol cannot resynchronise: say why and close (1009).
                    outbox.close(
                        ErrorCode::TooLarge,
                        format!("the frame exceeds the hard limit of {} bytes; the connection is closed", state.limits.hard_max_frame_bytes),
                    );
                } else {
                    tracing::info!(%member, "WebSocket read failed");
                }
                break;
            }
        };
        if text.len() > state.limits.max_frame_bytes {
            let error = ApiError::new(
                ErrorCode::TooLarge,
                format!(
                    "the frame is {} bytes; this server accepts at most {}",
                    text.len(),
                    state.limits.max_frame_bytes
                ),
            );
            outbox.error(None, &error).await;
            continue;
        }
        // Per connection, whatever the frames: at most `frames_per_second` in any second.
        let now = tokio::time::Instant::now();
        // The window opens with the first frame after a quiet second.
        if frames == 0 || now.duration_since(window) >= std::time::Duration::from_secs(1) {
            window = now;
            frames = 0;
        }
        frames += 1;
        if frames > state.limits.frames_per_second {
            outbox
                .error(
                    None,
                    &crate::flood::rate_limited(
                        "this connection sends frames faster than the server reads them",
                        std::time::Duration::from_secs(1) - now.duration_since(window),
                    ),
                )
                .await;
            continue;
        }
        let request = match ClientRequest::decode(text.as_str()) {
            Ok(request) => request,
            Err(e) => {
                outbox.error(e.id, &ApiError::new(e.code, e.message)).await;
                continue;
            }
        };
        let id = request.id.clone();
        let context = Context {
            state: &state,
            member: &member,
            expiry,
            outbox: &outbox,
            in_flight: &in_flight,
        };
        // On the heap for the time of one request: the session's own future stays small
        // while it waits for the next frame (memory per idle session).
        if let Err(error) = Box::pin(handle(
            context,
            request,
            &mut subscriptions,
            &mut acks,
            &mut typing,
            &mut known,
        ))
        .await
        {
            outbox.error(id, &error).await;
        }
    }

    outbox.closed().cancel();
    for (token, _) in subscriptions.values() {
        token.cancel();
    }
    acks.abort_all();
    let _ = writer.await;
    tracing::debug!(%member, "session closed");
}

/// The running cursor of each subscribed room.
type Subscriptions = HashMap<RoomName, (CancellationToken, JoinHandle<()>)>;

/// What a request needs of its session.
#[derive(Clone, Copy)]
struct Context<'a> {
    state: &'a AppState,
    member: &'a MemberId,
    expiry: Option<time::OffsetDateTime>,
    outbox: &'a Outbox,
    in_flight: &'a Arc<Semaphore>,
}

/// Stops a room's cursor and waits until it can send nothing more.
async fn stop_cursor(subscriptions: &mut Subscriptions, room: &RoomName) {
    if let Some((token, handle)) = subscriptions.remove(room) {
        token.cancel();
        let _ = handle.await;
    }
}

async fn handle(
    context: Context<'_>,
    request: ClientRequest,
    subscriptions: &mut Subscriptions,
    acks: &mut JoinSet<()>,
    typing: &mut HashMap<RoomName, tokio::time::Instant>,
    known: &mut Option<crate::gate::KnownPrincipal>,
) -> Result<(), ApiError> {
    let Context {
        state,
        member,
        expiry,
        outbox,
        in_flight,
    } = context;
    // Attributes and status as they are now: read afresh after any write that decides access.
    let principal = state
        .gate
        .session_principal(&state.registry, member, expiry, known)?;
    let id = request.id;
    match request.frame {
        ClientFrame::Subscribe { room, since } => {
            let auth = state.gate.authorize_frame::<action::Subscribe>(
                &principal,
                room.clone(),
                "subscribe",
            )?;
            let head_rx = state.rooms.watch(&auth)?;
            // A new subscription to the same room replaces the old one only once the old one
            // can no longer send, so the two streams never interleave.
            stop_cursor(subscriptions, &room).await;
            let cursor =
                subscription::Cursor::new(state.clone(), auth, head_rx, since, outbox.clone())
                    .with_certificate_expiry(expiry);
            let token = cursor.stopper();
            subscriptions.insert(room, (token, state.tracker.spawn(Box::new(cursor).run(id))));
        }
        ClientFrame::Unsubscribe { room } => {
            stop_cursor(subscriptions, &room).await;
            outbox
                .send(ServerMessage::new(id, ServerFrame::Unsubscribed { room }))
                .await;
        }
        ClientFrame::Send {
            room,
            client_msg_id,
            body,
        } => {
            let auth =
                state
                    .gate
                    .authorize_frame::<action::Send>(&principal, room.clone(), "send")?;
            state
                .flood
                .check(principal.id(), crate::flood::Kind::Send)?;
            let permit = in_flight
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| ApiError::internal(&"ack semaphore closed"))?;
            // Sequencing happens here, in frame order; waiting for durability does not block
            // the next frame.
            let mentions = match &body {
                Body::Text { mentions, .. } => mentions.clone(),
                _ => Vec::new(),
            };
            let appended = state.rooms.append(&auth, client_msg_id.clone(), body)?;
            let (state, outbox) = (state.clone(), outbox.clone());
            acks.spawn(async move {
                let _permit = permit;
                let frame = match state.rooms.durable(&room, appended.seq).await {
                    Ok(()) => {
                        if !appended.duplicate {
                            notify_mentions(&state, &room, appended.seq, &mentions);
                        }
                        ServerFrame::Ack {
                            room,
                            client_msg_id,
                            seq: appended.seq,
                            duplicate: appended.duplicate,
                        }
                    }
                    Err(e) => ServerFrame::Error {
                        code: e.code,
                        message: e.message,
                    },
                };
                outbox.send(ServerMessage::new(id, frame)).await;
            });
        }
        ClientFrame::ShareIndicator { room, indicators } => {
            let auth = state.gate.authorize_frame::<action::ShareIndicator>(
                &principal,
                room.clone(),
                "share_indicator",
            )?;
            state.flood.check_n(
                principal.id(),
                crate::flood::Kind::Send,
                crate::http::indicators::bulk_cost(indicators.len()),
            )?;
            let report = crate::indicators::share(state, &auth, indicators).await?;
            outbox
                .send(ServerMessage::new(
                    id,
                    ServerFrame::IndicatorsShared { room, report },
                ))
                .await;
        }
        ClientFrame::Typing { room } => {
            // Only someone who may write here types here; relayed at most every two seconds.
            state
                .gate
                .authorize_frame::<action::Send>(&principal, room.clone(), "typing")?;
            let now = tokio::time::Instant::now();
            let recent = typing
                .get(&room)
                .is_some_and(|at| now.duration_since(*at) < std::time::Duration::from_secs(2));
            if !recent
                && state
                    .flood
                    .check(principal.id(), crate::flood::Kind::Typing)
                    .is_ok()
            {
                typing.insert(room.clone(), now);
                relay_typing(state, &principal, &room);
            }
        }
        ClientFrame::Presence { status } => {
            state.sessions.set_away(
                principal.id(),
                status == escape_proto::room::PresenceStatus::Away,
            );
        }
        ClientFrame::Ping => {
            outbox.send(ServerMessage::new(id, ServerFrame::Pong)).await;
        }
    }
    Ok(())
}

/// Tells the room's other members who may read it, and are online, that `principal` is typing.
fn relay_typing(state: &AppState, principal: &Principal, room: &RoomName) {
    let Ok(members) = state.rooms.members(room) else {
        return;
    };
    let recipients = members
        .into_iter()
        .filter(|m| m != principal.id())
        .filter(|m| state.sessions.presence(m) != escape_proto::room::PresenceStatus::Offline)
        .filter(|m| {
            Principal::resolve_id(&state.registry, m)
                .is_ok_and(|p| state.gate.permits::<action::ReadHistory>(&p, room.clone()))
        })
        .collect();
    state.alerts.notify(
        recipients,
        ServerFrame::Typing {
            room: room.clone(),
            member: principal.id().clone(),
            name: principal.member().name.clone(),
        },
    );
}

/// Tells each mentioned member who may read the message now (room and label) that it was
/// mentioned, on every live session.
fn notify_mentions(state: &AppState, room: &RoomName, seq: u64, mentions: &[MemberId]) {
    if mentions.is_empty() {
        return;
    }
    let Ok(Some(event)) = state.rooms.event(room, seq) else {
        return;
    };
    let excerpt = match &event.body {
        Body::Text { text, .. } => text.chars().take(200).collect(),
        _ => String::new(),
    };
    let recipients = mentions
        .iter()
        .filter(|m| {
            Principal::resolve_id(&state.registry, m).is_ok_and(|p| {
                state.gate.permits::<action::ReadHistory>(&p, room.clone())
                    && state.gate.may_read_event(&p, &event).unwrap_or(false)
            })
        })
        .cloned()
        .collect();
    state.alerts.notify(
        recipients,
        ServerFrame::Mention {
            room: room.clone(),
            seq,
            from: event.sender.clone(),
            from_name: event.sender_name.clone(),
            excerpt,
        },
    );
}

/// Most frames written together before a flush.
const WRITE_BATCH: usize = 64;

async fn write_loop(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Utf8Bytes>,
    session: Arc<Session>,
) {
    loop {
        tokio::select! {
            biased;
            frame = rx.recv() => {
                let Some(frame) = frame else { break };
                // Frames already queued behind this one go out in the same write: under load a
                // busy session then costs one TLS record and one system call per batch, not per
                // frame; an idle one still writes each frame at once.
                let batch = async {
                    sink.feed(Message::Text(frame)).await?;
                    for _ in 1..WRITE_BATCH {
                        let Ok(next) = rx.try_recv() else { break };
                        sink.feed(Message::Text(next)).await?;
                    }
                    sink.flush().await
                };
                // A peer that stopped reading must not hold the writer: closing wins.
                tokio::select! {
                    sent = batch => if sent.is_err() {
                        session.close.cancel();
                        return;
                    },
                    () = session.close.cancelled() => break,
                }
            }
            () = session.close.cancelled() => break,
        }
    }
    let reason = session.reason.get().cloned();
    if matches!(reason, Some((ErrorCode::SlowConsumer, _))) {
        // The peer is not reading: what is queued would only delay the reason.
        while rx.try_recv().is_ok() {}
    }
    // Tell the client why, if the socket still takes writes; never wait long on a stuck peer.
    let goodbye = async {
        // Frames already queued (acks of accepted messages) go first.
        while let Ok(frame) = rx.try_recv() {
            sink.send(Message::Text(frame)).await?;
        }
        if let Some((code, message)) = reason {
            let frame = ServerMessage::new(None, ServerFrame::Error { code, message });
            sink.send(Message::Text(frame.encode().into())).await?;
            let close_code = match code {
                ErrorCode::ShuttingDown => close_code::AWAY,
                ErrorCode::TooLarge => close_code::SIZE,
                _ => close_code::POLICY,
            };
            sink.send(Message::Close(Some(CloseFrame {
                code: close_code,
                reason: code.as_str().into(),
            })))
            .await?;
        } else {
            sink.send(Message::Close(None)).await?;
        }
        sink.flush().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), goodbye).await;
}
