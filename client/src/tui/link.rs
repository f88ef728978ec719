//! The real-time link: one WebSocket for every room the member follows, kept up by itself.
//!
//! Invariants: a message handed to the link is sent until the server acknowledges or refuses
//! it, across any number of reconnections, always under the same `client_msg_id` (so the
//! server stores it once); after a reconnection every room is followed again from the last
//! sequence seen, so nothing is missed and nothing is shown twice.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use escape_proto::frame::ServerMessage;
use escape_proto::{Body, ClientFrame, ErrorCode, RoomName, ServerFrame};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::app::{Connection, MAX_MESSAGE_BYTES, Update};
use crate::api::Client;
use crate::channel::Channel;
use crate::error::ClientError;

const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A ping goes out this often: it proves the connection alive to both sides (the server closes
/// sessions whose client has said nothing for its idle timeout, even while it sends to them).
const IDLE: Duration = Duration::from_secs(30);
/// How long the answer to that ping may take.
const PING_ANSWER: Duration = Duration::from_secs(10);
/// A connection that lasted this long counts as working again (the backoff starts over).
const STABLE: Duration = Duration::from_secs(30);

/// What the screen asks of the link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkCommand {
    Send {
        room: RoomName,
        client_msg_id: String,
        body: Body,
    },
    /// Follow `room`, starting after `since`.
    Subscribe {
        room: RoomName,
        since: Option<u64>,
    },
    Unsubscribe(RoomName),
    /// This member is typing in `room`.
    Typing(RoomName),
}

/// A message waiting for the server's answer.
#[derive(Debug, Clone)]
struct Outgoing {
    room: RoomName,
    client_msg_id: String,
    body: Body,
}

/// What a request id was for.
#[derive(Debug)]
enum Asked {
    Send(String),
    Subscribe(RoomName),
    Ping,
}

/// Starts the link; it runs until `commands` closes.
pub fn spawn(
    client: Client,
    commands: mpsc::UnboundedReceiver<LinkCommand>,
    updates: mpsc::UnboundedSender<Update>,
) -> tokio::task::JoinHandle<()> {
    let link = Link {
        client,
        commands,
        updates,
        rooms: BTreeMap::new(),
        outbox: Vec::new(),
    };
    tokio::spawn(link.run())
}

#[derive(Debug)]
struct Link {
    client: Client,
    commands: mpsc::UnboundedReceiver<LinkCommand>,
    updates: mpsc::UnboundedSender<Update>,
    /// Followed rooms and the last sequence delivered of each.
    rooms: BTreeMap<RoomName, Option<u64>>,
    /// Sent, not yet answered, in the order typed.
    outbox: Vec<Outgoing>,
}

/// Why a connection ended.
enum Ended {
    /// The screen closed: stop.
    Quit,
    Lost(String),
    Fatal(String),
}

impl Link {
    fn tell(&self, update: Update) {
        let _ = self.updates.send(update);
    }

    async fn run(mut self) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            self.tell(Update::Connection(Connection::Connecting));
            let ended = match Channel::connect(&self.client).await {
                Ok(channel) => {
                    let connected = Instant::now();
                    let ended = self.follow(channel).await;
                    // Only a connection that lasted starts the backoff over: one that keeps
                    // failing right after connecting must not be retried twice a second.
                    if connected.elapsed() >= STABLE {
                        backoff = FIRST_BACKOFF;
                    }
                    ended
                }
                Err(e) if is_fatal(&e) => Ended::Fatal(e.to_string()),
                Err(e) => Ended::Lost(e.to_string()),
            };
            match ended {
                Ended::Quit => return,
                Ended::Fatal(reason) => {
                    self.tell(Update::Connection(Connection::Stopped(reason.clone())));
                    for out in std::mem::take(&mut self.outbox) {
                        self.tell(Update::SendFailed {
                            room: out.room,
                            client_msg_id: out.client_msg_id,
                            error: format!("not sent: {reason}"),
                        });
                    }
                    // Nothing more can be sent; keep answering the screen until it closes.
                    while let Some(command) = self.commands.recv().await {
                        if let LinkCommand::Send {
                            room,
                            client_msg_id,
                            ..
                        } = command
                        {
                            self.tell(Update::SendFailed {
                                room,
                                client_msg_id,
                                error: "not connected: the server refused this member".into(),
                            });
                        }
                    }
                    return;
                }
                Ended::Lost(reason) => {
                    let retry_at = Instant::now() + backoff;
                    self.tell(Update::Connection(Connection::Offline {
                        reason,
                        retry_at: retry_at.into_std(),
                    }));
                    if !self.wait_offline(retry_at).await {
                        return;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Keeps taking commands while offline (they are sent on reconnection); false when the
    /// screen closed.
    async fn wait_offline(&mut self, until: Instant) -> bool {
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return true,
                command = self.commands.recv() => match command {
                    None => return false,
                    Some(command) => self.remember(command),
                },
            }
        }
    }

    /// Whether a command may go out. A message longer than the server takes would be dropped
    /// there without an answer naming it, and would stay queued (and be resent) forever: it
    /// fails here instead, at once.
    fn fits(&self, command: &LinkCommand) -> bool {
        if let LinkCommand::Send {
            room,
            client_msg_id,
            body,
        } = command
            && body.size() > MAX_MESSAGE_BYTES
        {
            self.tell(Update::SendFailed {
                room: room.clone(),
                client_msg_id: client_msg_id.clone(),
                error: format!(
                    "{} bytes; the server takes at most {MAX_MESSAGE_BYTES}",
                    body.size()
                ),
            });
            return false;
        }
        true
    }

    /// Records a command's lasting effect (what to follow, what to send).
    fn remember(&mut self, command: LinkCommand) {
        if !self.fits(&command) {
            return;
        }
        match command {
            LinkCommand::Send {
                room,
                client_msg_id,
                body,
            } => self.outbox.push(Outgoing {
                room,
                client_msg_id,
                body,
            }),
            LinkCommand::Subscribe { room, since } => {
                self.rooms.entry(room).or_insert(since);
            }
            LinkCommand::Unsubscribe(room) => {
                self.rooms.remove(&room);
            }
            LinkCommand::Typing(_) => {}
        }
    }

    async fn follow(&mut self, mut channel: Channel) -> Ended {
        let mut asked: HashMap<String, Asked> = HashMap::new();
        // Follow again from where each room was left, then resend what is unanswered.
        let rooms: Vec<(RoomName, Option<u64>)> =
            self.rooms.iter().map(|(r, s)| (r.clone(), *s)).collect();
        for (room, since) in rooms {
            if let Err(e) = subscribe(&mut channel, &mut asked, room, since).await {
                return Ended::Lost(e.to_string());
            }
        }
        for out in self.outbox.clone() {
            if let Err(e) = send(&mut channel, &mut asked, out).await {
                return Ended::Lost(e.to_string());
            }
        }
        self.tell(Update::Connection(Connection::Online));
        let mut next_ping = Instant::now() + IDLE;
        // When the unanswered ping went out; any frame since proves the connection alive.
        let mut ping_sent: Option<Instant> = None;
        loop {
            let check_at = match ping_sent {
                Some(at) => at + PING_ANSWER,
                None => next_ping,
            };
            tokio::select! {
                command = self.commands.recv() => {
                    let Some(command) = command else {
                        channel.close().await;
                        return Ended::Quit;
                    };
                    if !self.fits(&command) {
                        continue;
                    }
                    let result = match command.clone() {
                        LinkCommand::Send { room, client_msg_id, body } => {
                            let out = Outgoing { room, client_msg_id, body };
                            self.outbox.push(out.clone());
                            send(&mut channel, &mut asked, out).await
                        }
                        LinkCommand::Subscribe { room, since } => {
                            if self.rooms.contains_key(&room) {
                                Ok(())
                            } else {
                                self.rooms.insert(room.clone(), since);
                                subscribe(&mut channel, &mut asked, room, since).await
                            }
                        }
                        LinkCommand::Unsubscribe(room) => {
                            self.rooms.remove(&room);
                            channel.request(ClientFrame::Unsubscribe { room }).await.map(drop)
                        }
                        // Typing notices have no answer: nothing to remember.
                        LinkCommand::Typing(room) => {
                            channel.request(ClientFrame::Typing { room }).await.map(drop)
                        }
                    };
                    if let Err(e) = result {
                        return Ended::Lost(e.to_string());
                    }
                }
                message = channel.next() => {
                    ping_sent = None;
                    match message {
                        Ok(Some(message)) => {
                            if let Some(ended) = self.on_message(message, &mut asked) {
                                return ended;
                            }
                        }
                        Ok(None) => return Ended::Lost("the server closed the connection".into()),
                        Err(e) if is_fatal(&e) => return Ended::Fatal(e.to_string()),
                        Err(e) => return Ended::Lost(e.to_string()),
                    }
                }
                _ = tokio::time::sleep_until(check_at) => {
                    if ping_sent.is_some() {
                        return Ended::Lost("the server did not answer a ping".into());
                    }
                    if let Err(e) = request(&mut channel, &mut asked, ClientFrame::Ping, Asked::Ping).await {
                        return Ended::Lost(e.to_string());
                    }
                    ping_sent = Some(Instant::now());
                    next_ping = Instant::now() + IDLE;
                }
            }
        }
    }

    fn on_message(
        &mut self,
        message: ServerMessage,
        asked: &mut HashMap<String, Asked>,
    ) -> Option<Ended> {
        let purpose = message.id.as_ref().and_then(|id| asked.remove(id));
        match message.frame {
            ServerFrame::Event(event) => {
                let last = self.rooms.get_mut(&event.room)?;
                if last.is_some_and(|l| event.seq <= l) {
                    return None;
                }
                *last = Some(event.seq);
                self.tell(Update::Event(Box::new(event)));
            }
            ServerFrame::Ack {
                room,
                client_msg_id,
                ..
            } => {
                self.outbox.retain(|o| o.client_msg_id != client_msg_id);
                self.tell(Update::Acked {
                    room,
                    client_msg_id,
                });
            }
            ServerFrame::Subscribed { room, head } => {
                if let Some(last) = self.rooms.get_mut(&room)
                    && last.is_none()
                {
                    *last = Some(head);
                }
            }
            ServerFrame::Alert { alert } => self.tell(Update::Alert(Box::new(alert))),
            ServerFrame::Mention {
                room,
                seq,
                from_name,
                excerpt,
                ..
            } => self.tell(Update::Mention {
                room,
                seq,
                from_name,
                excerpt,
            }),
            ServerFrame::Typing { room, name, .. } => self.tell(Update::Typing { room, name }),
            ServerFrame::Error {
                code,
                message: text,
            } => {
                let error = format!("{text} ({code})");
                match purpose {
                    Some(Asked::Send(client_msg_id)) => {
                        let at = self
                            .outbox
                            .iter()
                            .position(|o| o.client_msg_id == client_msg_id)?;
                        // Refusals are final. (A durability timeout is reported too; if the
                        // message is stored after all, its event replaces the marked line.)
                        let out = self.outbox.remove(at);
                        self.tell(Update::SendFailed {
                            room: out.room,
                            client_msg_id,
                            error,
                        });
                    }
                    Some(Asked::Subscribe(room)) => {
                        self.rooms.remove(&room);
                        self.tell(Update::SubscriptionFailed { room, error });
                    }
                    Some(Asked::Ping) => self.tell(Update::Error(error)),
                    // Not about one request: the session is ending, or something was dropped
                    // (an oversized or too frequent frame, a subscription that ended).
                    None => match code {
                        ErrorCode::AccessRevoked
                        | ErrorCode::MemberInactive
                        | ErrorCode::UnknownMember => return Some(Ended::Fatal(error)),
                        ErrorCode::SlowConsumer
                        | ErrorCode::ShuttingDown
                        | ErrorCode::IdleTimeout => return Some(Ended::Lost(error)),
                        _ => self.tell(Update::Error(error)),
                    },
                }
            }
            _ => {}
        }
        None
    }
}

async fn request(
    channel: &mut Channel,
    asked: &mut HashMap<String, Asked>,
    frame: ClientFrame,
    purpose: Asked,
) -> Result<(), ClientError> {
    let id = channel.request(frame).await?;
    asked.insert(id, purpose);
    Ok(())
}

async fn subscribe(
    channel: &mut Channel,
    asked: &mut HashMap<String, Asked>,
    room: RoomName,
    since: Option<u64>,
) -> Result<(), ClientError> {
    let frame = ClientFrame::Subscribe {
        room: room.clone(),
        since,
    };
    request(channel, asked, frame, Asked::Subscribe(room)).await
}

async fn send(
    channel: &mut Channel,
    asked: &mut HashMap<String, Asked>,
    out: Outgoing,
) -> Result<(), ClientError> {
    let frame = ClientFrame::Send {
        room: out.room,
        client_msg_id: out.client_msg_id.clone(),
        body: out.body,
    };
    request(channel, asked, frame, Asked::Send(out.client_msg_id)).await
}

/// Errors that reconnecting cannot cure.
fn is_fatal(e: &ClientError) -> bool {
    match e {
        ClientError::Server { code, .. } => matches!(
            code,
            ErrorCode::AccessRevoked
                | ErrorCode::MemberInactive
                | ErrorCode::UnknownMember
                | ErrorCode::Forbidden
        ),
        ClientError::BadProfile(_) | ClientError::NoProfile | ClientError::NoSuchProfile(_) => true,
        _ => false,
    }
}
