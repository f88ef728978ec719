//! Following a room without gaps across disconnects: subscribe with the last sequence seen,
//! reconnect with backoff, resume. What `escape tail` runs.

use std::ops::ControlFlow;
use std::time::Duration;

use escape_proto::{ErrorCode, Event, RoomName, ServerFrame};

use crate::api::Client;
use crate::channel::Channel;
use crate::error::ClientError;

/// How long a quiet connection goes before the tail checks it with a ping.
const IDLE: Duration = Duration::from_secs(30);
/// How long the answer to that ping may take.
const PING_ANSWER: Duration = Duration::from_secs(10);

/// What a tail reports to its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TailEvent {
    /// Subscribed; `head` is the room's newest sequence at that moment.
    Connected {
        head: u64,
    },
    Event(Event),
    /// An early-warning alert addressed to this member.
    Alert(escape_proto::alert::Alert),
    /// This member was mentioned (in any room it may read).
    Mention {
        room: RoomName,
        seq: u64,
        from_name: String,
        excerpt: String,
    },
    /// The connection was lost; the tail reconnects after `retry_in` and resumes.
    Disconnected {
        reason: String,
        retry_in: Duration,
    },
}

#[derive(Debug)]
pub struct Tail {
    client: Client,
    room: RoomName,
    /// The last sequence handed to the caller (or the head when none was yet).
    last: Option<u64>,
    first_backoff: Duration,
    max_backoff: Duration,
}

impl Tail {
    /// Follows `room`, starting after `since` (or with new messages only when `None`).
    pub fn new(client: Client, room: RoomName, since: Option<u64>) -> Self {
        Self {
            client,
            room,
            last: since,
            first_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
        }
    }

    pub fn with_backoff(mut self, first: Duration, max: Duration) -> Self {
        self.first_backoff = first;
        self.max_backoff = max;
        self
    }

    /// The last sequence delivered: resume from here.
    pub fn last_seq(&self) -> Option<u64> {
        self.last
    }

    /// Runs until `on` breaks or an error that retrying cannot fix (the member is refused,
    /// the room is gone).
    pub async fn run(
        &mut self,
        mut on: impl FnMut(TailEvent) -> ControlFlow<()>,
    ) -> Result<(), ClientError> {
        let mut backoff = self.first_backoff;
        loop {
            let reason = match self.follow(&mut on, &mut backoff).await {
                Ok(ControlFlow::Break(())) => return Ok(()),
                Ok(ControlFlow::Continue(())) => "the server closed the connection".to_owned(),
                Err(e) if is_fatal(&e) => return Err(e),
                Err(e) => e.to_string(),
            };
            if on(TailEvent::Disconnected {
                reason,
                retry_in: backoff,
            })
            .is_break()
            {
                return Ok(());
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.max_backoff);
        }
    }

    async fn follow(
        &mut self,
        on: &mut impl FnMut(TailEvent) -> ControlFlow<()>,
        backoff: &mut Duration,
    ) -> Result<ControlFlow<()>, ClientError> {
        let mut channel = Channel::connect(&self.client).await?;
        let head = channel.subscribe(&self.room, self.last).await?;
        *backoff = self.first_backoff;
        if self.last.is_none() {
            self.last = Some(head);
        }
        if on(TailEvent::Connected { head }).is_break() {
            return Ok(ControlFlow::Break(()));
        }
        loop {
            let message = match tokio::time::timeout(IDLE, channel.next()).await {
                Ok(next) => match next? {
                    Some(message) => message,
                    None => break,
                },
                Err(_) => {
                    // Quiet for a while: make sure the connection is alive, not half-open.
                    let id = channel.request(escape_proto::ClientFrame::Ping).await?;
                    match tokio::time::timeout(PING_ANSWER, channel.answer(&id)).await {
                        Ok(Ok(_)) => continue,
                        Ok(Err(e)) => return Err(e),
                        Err(_) => {
                            return Err(ClientError::Closed(Some(
                                "the server did not answer a ping".into(),
                            )));
                        }
                    }
                }
            };
            match message.frame {
                ServerFrame::Event(event) if event.room == self.room => {
                    if self.last.is_some_and(|last| event.seq <= last) {
                        continue;
                    }
                    self.last = Some(event.seq);
                    if on(TailEvent::Event(event)).is_break() {
                        channel.close().await;
                        return Ok(ControlFlow::Break(()));
                    }
                }
                ServerFrame::Mention {
                    room,
                    seq,
                    from_name,
                    excerpt,
                    ..
                } => {
                    let flow = on(TailEvent::Mention {
                        room,
                        seq,
                        from_name,
                        excerpt,
                    });
                    if flow.is_break() {
                        channel.close().await;
                        return Ok(ControlFlow::Break(()));
                    }
                }
                ServerFrame::Alert { alert } => {
                    let flow = on(TailEvent::Alert(alert));
                    if flow.is_break() {
                        channel.close().await;
                        return Ok(ControlFlow::Break(()));
                    }
                }
                ServerFrame::Error { code, message } => {
                    return Err(ClientError::Server {
                        status: 0,
                        code,
                        message,
                    });
                }
                _ => {}
            }
        }
        Ok(ControlFlow::Continue(()))
    }
}

/// Errors that reconnecting cannot cure.
fn is_fatal(e: &ClientError) -> bool {
    match e {
        ClientError::Server { code, .. } => !matches!(
            code,
            ErrorCode::SlowConsumer | ErrorCode::ShuttingDown | ErrorCode::Internal
        ),
        ClientError::BadProfile(_) | ClientError::NoProfile | ClientError::NoSuchProfile(_) => true,
        _ => false,
    }
}
