//! Real-time frames exchanged on `/v1/ws`, one JSON object per WebSocket text message.
//!
//! Every frame carries the protocol version `v` and, when it belongs to a request, the
//! request `id` the client chose:
//!
//! ```json
//! {"v":1,"id":"7","type":"send","room":"ops","client_msg_id":"c-1","body":{"kind":"text","text":"hi"}}
//! {"v":1,"id":"7","type":"ack","room":"ops","client_msg_id":"c-1","seq":42,"duplicate":false}
//! ```
//!
//! Server frames that no request caused (`event`) carry no `id`.

use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;
use crate::message::{Body, Event};
use crate::room::RoomName;

/// The only protocol version this crate speaks. A frame with another `v` is refused with
/// [`ErrorCode::UnsupportedVersion`] so that old servers never misread new frames.
pub const PROTOCOL_VERSION: u32 = 1;

/// The longest request id or client message id accepted, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// What a client asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Start receiving a room's events. With `since`, every stored event with a larger sequence
    /// is delivered first, exactly once, then live events follow with no gap at the seam.
    /// Without it only new events are delivered.
    Subscribe {
        room: RoomName,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<u64>,
    },
    /// Stop receiving a room's events.
    Unsubscribe { room: RoomName },
    /// Store a message. The server answers with an `ack` once it is durable. Sending the same
    /// `client_msg_id` again to the same room stores nothing new and acks the first sequence.
    Send {
        room: RoomName,
        client_msg_id: String,
        body: Body,
    },
    /// Share threat indicators (each checked and normalised); answered with `indicators_shared`.
    ShareIndicator {
        room: RoomName,
        indicators: Vec<crate::indicator::IndicatorDraft>,
    },
    /// "I am typing in this room": relayed to the room's readers who are online (at most one
    /// every two seconds per room and session is relayed).
    Typing { room: RoomName },
    /// Set this member's presence while connected: `online` or `away`.
    Presence { status: crate::room::PresenceStatus },
    /// Liveness probe; answered with `pong`.
    Ping,
}

impl ClientFrame {
    /// The frame's `type`, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Subscribe { .. } => "subscribe",
            Self::Unsubscribe { .. } => "unsubscribe",
            Self::Send { .. } => "send",
            Self::ShareIndicator { .. } => "share_indicator",
            Self::Typing { .. } => "typing",
            Self::Presence { .. } => "presence",
            Self::Ping => "ping",
        }
    }
}

const CLIENT_FRAME_TYPES: &[&str] = &[
    "subscribe",
    "unsubscribe",
    "send",
    "share_indicator",
    "typing",
    "presence",
    "ping",
];

/// The rule for a request id and a client message id: 1 to [`MAX_ID_LEN`] bytes.
fn fits_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN
}

/// A frame's `type` as its text spells it. Decoding the frame alone would also take a variant's
/// position (`"type": 6`) for its name; this reads the string itself.
#[derive(Deserialize)]
struct Tag<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
}

/// A client frame in its envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRequest {
    pub v: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(flatten)]
    pub frame: ClientFrame,
}

impl ClientRequest {
    pub fn new(id: impl Into<String>, frame: ClientFrame) -> Self {
        Self {
            v: PROTOCOL_VERSION,
            id: Some(id.into()),
            frame,
        }
    }

    /// Decodes one frame sent by a peer. Each failure names its cause with a code, and
    /// carries the request id whenever it could be read, so the client can match the error.
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        // Well-formed frames, nearly all of them, are read in one pass; anything this refuses
        // is read again below only to say exactly why.
        if let Ok(request) = serde_json::from_str::<Self>(text)
            && request.is_well_formed()
            && serde_json::from_str::<Tag>(text).is_ok_and(|tag| tag.kind == request.frame.kind())
        {
            return Ok(request);
        }
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| DecodeError {
            code: ErrorCode::MalformedJson,
            message: format!("frame is not valid JSON: {e}"),
            id: None,
        })?;
        let Some(object) = value.as_object() else {
            return Err(DecodeError::invalid(None, "a frame must be a JSON object"));
        };
        let id = match object.get("id") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) if fits_id(s) => Some(s.clone()),
            Some(_) => {
                return Err(DecodeError::invalid(
                    None,
                    format!("\"id\" must be a string of 1 to {MAX_ID_LEN} bytes"),
                ));
            }
        };
        match object.get("v").and_then(serde_json::Value::as_u64) {
            Some(v) if v == u64::from(PROTOCOL_VERSION) => {}
            Some(v) => {
                return Err(DecodeError {
                    code: ErrorCode::UnsupportedVersion,
                    message: format!(
                        "protocol version {v} is not supported; this server speaks {PROTOCOL_VERSION}"
                    ),
                    id,
                });
            }
            None => {
                return Err(DecodeError::invalid(
                    id,
                    "missing \"v\": every frame carries the protocol version",
                ));
            }
        }
        match object.get("type").and_then(serde_json::Value::as_str) {
            Some(t) if CLIENT_FRAME_TYPES.contains(&t) => {}
            Some(t) => {
                return Err(DecodeError {
                    code: ErrorCode::UnknownFrameType,
                    message: format!(
                        "unknown frame type {:?}; known types: {}",
                        t.chars().take(40).collect::<String>(),
                        CLIENT_FRAME_TYPES.join(", ")
                    ),
                    id,
                });
            }
            None => return Err(DecodeError::invalid(id, "missing \"type\"")),
        }
        let request: Self = serde_json::from_value(value)
            .map_err(|e| DecodeError::invalid(id.clone(), e.to_string()))?;
        if !request.client_msg_id_is_well_formed() {
            return Err(DecodeError::invalid(
                id,
                format!("\"client_msg_id\" must be 1 to {MAX_ID_LEN} bytes"),
            ));
        }
        Ok(request)
    }

    /// Every rule [`ClientRequest::decode`] checks beyond the frame's shape.
    fn is_well_formed(&self) -> bool {
        self.v == PROTOCOL_VERSION
            && self.id.as_deref().is_none_or(fits_id)
            && self.client_msg_id_is_well_formed()
    }

    fn client_msg_id_is_well_formed(&self) -> bool {
        match &self.frame {
            ClientFrame::Send { client_msg_id, .. } => fits_id(client_msg_id),
            _ => true,
        }
    }

    pub fn encode(&self) -> String {
        // Serializing these plain data types cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Why a client frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct DecodeError {
    pub code: ErrorCode,
    pub message: String,
    /// The request id, when the frame carried a readable one.
    pub id: Option<String>,
}

impl DecodeError {
    fn invalid(id: Option<String>, message: impl Into<String>) -> Self {
        Self {
            code: ErrorCode::InvalidFrame,
            message: message.into(),
            id,
        }
    }
}

/// What the server sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ServerFrame {
    /// The subscription is live. `head` is the room's newest durable sequence at that moment;
    /// when `since` was given, the missed events up to `head` follow.
    Subscribed {
        room: RoomName,
        head: u64,
    },
    Unsubscribed {
        room: RoomName,
    },
    /// A message of a subscribed room.
    Event(Event),
    /// The message is durably stored under `seq`. `duplicate` says it had been stored before.
    Ack {
        room: RoomName,
        client_msg_id: String,
        seq: u64,
        duplicate: bool,
    },
    Pong,
    /// An early-warning alert addressed to this member (live, or on connect if it was sent
    /// while the member was away, until acknowledged).
    /// (Wrapped: an alert's own `id` must not be taken for the envelope's request id.)
    Alert {
        alert: crate::alert::Alert,
    },
    /// Another member is typing in a room this member may read.
    Typing {
        room: RoomName,
        member: crate::member::MemberId,
        name: String,
    },
    /// This member was mentioned in a room it may read (sent to all its sessions, subscribed to
    /// the room or not).
    Mention {
        room: RoomName,
        seq: u64,
        from: crate::member::MemberId,
        from_name: String,
        /// The start of the message.
        excerpt: String,
    },
    /// What became of each indicator of a `share_indicator` (accepted ones are durable).
    IndicatorsShared {
        room: RoomName,
        report: crate::indicator::ShareReport,
    },
    /// A request failed, or the connection is about to be closed (`slow_consumer`, `shutting_down`).
    Error {
        code: ErrorCode,
        message: String,
    },
}

/// A server frame in its envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerMessage {
    pub v: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(flatten)]
    pub frame: ServerFrame,
}

impl ServerMessage {
    pub fn new(id: Option<String>, frame: ServerFrame) -> Self {
        Self {
            v: PROTOCOL_VERSION,
            id,
            frame,
        }
    }

    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn decode(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::member::MemberId;
    use time::macros::datetime;

    fn room() -> RoomName {
        RoomName::parse("ops").expect("valid")
    }

    /// Golden JSON: the exact text of every client frame, both ways.
    #[test]
    fn client_frames_golden() {
        let cases = [
            (
                r#"{"v":1,"id":"1","type":"subscribe","room":"ops","since":41}"#,
                ClientFrame::Subscribe {
                    room: room(),
                    since: Some(41),
                },
            ),
            (
                r#"{"v":1,"id":"1","type":"subscribe","room":"ops"}"#,
                ClientFrame::Subscribe {
                    room: room(),
                    since: None,
                },
            ),
            (
                r#"{"v":1,"id":"1","type":"unsubscribe","room":"ops"}"#,
                ClientFrame::Unsubscribe { room: room() },
            ),
            (
                r#"{"v":1,"id":"1","type":"send","room":"ops","client_msg_id":"c-1","body":{"kind":"text","text":"hi"}}"#,
                ClientFrame::Send {
                    room: room(),
                    client_msg_id: "c-1".into(),
                    body: Body::text("hi"),
                },
            ),
            (r#"{"v":1,"id":"1","type":"ping"}"#, ClientFrame::Ping),
        ];
        for (json, frame) in cases {
            let request = ClientRequest::new("1", frame);
            assert_eq!(request.encode(), json);
            assert_eq!(ClientRequest::decode(json), Ok(request));
        }
    }

    /// Golden JSON: the exact text of every server frame, both ways.
    #[test]
    fn server_frames_golden() {
        let event = Event {
            room: room(),
            seq: 42,
            sender: MemberId::parse("m-1").expect("valid"),
            sender_name: "Ana".into(),
            sender_organisation: String::new(),
            sent_at: datetime!(2026-11-23 09:30:00.125 UTC),
            client_msg_id: "c-1".into(),
            body: Body::text("hi"),
        };
        let cases = [
            (
                r#"{"v":1,"id":"1","type":"subscribed","room":"ops","head":41}"#,
                Some("1"),
                ServerFrame::Subscribed {
                    room: room(),
                    head: 41,
                },
            ),
            (
                r#"{"v":1,"id":"1","type":"unsubscribed","room":"ops"}"#,
                Some("1"),
                ServerFrame::Unsubscribed { room: room() },
            ),
            (
                r#"{"v":1,"type":"event","room":"ops","seq":42,"sender":"m-1","sender_name":"Ana","sent_at":"2026-11-23T09:30:00.125Z","client_msg_id":"c-1","body":{"kind":"text","text":"hi"}}"#,
                None,
                ServerFrame::Event(event),
            ),
            (
                r#"{"v":1,"id":"1","type":"ack","room":"ops","client_msg_id":"c-1","seq":42,"duplicate":false}"#,
                Some("1"),
                ServerFrame::Ack {
                    room: room(),
                    client_msg_id: "c-1".into(),
                    seq: 42,
                    duplicate: false,
                },
            ),
            (
                r#"{"v":1,"id":"1","type":"pong"}"#,
                Some("1"),
                ServerFrame::Pong,
            ),
            (
                r#"{"v":1,"id":"1","type":"error","code":"room_not_found","message":"no room ops"}"#,
                Some("1"),
                ServerFrame::Error {
                    code: ErrorCode::RoomNotFound,
                    message: "no room ops".into(),
                },
            ),
        ];
        for (json, id, frame) in cases {
            let message = ServerMessage::new(id.map(str::to_owned), frame);
            assert_eq!(message.encode(), json);
            assert_eq!(ServerMessage::decode(json).expect("decodes"), message);
        }
    }

    #[test]
    fn decode_errors_have_codes_and_keep_the_request_id() {
        let cases = [
            ("{not json", ErrorCode::MalformedJson, None),
            ("[1,2]", ErrorCode::InvalidFrame, None),
            (r#"{"v":1,"id":"9"}"#, ErrorCode::InvalidFrame, Some("9")),
            (
                r#"{"v":2,"id":"9","type":"ping"}"#,
                ErrorCode::UnsupportedVersion,
                Some("9"),
            ),
            (
                r#"{"id":"9","type":"ping"}"#,
                ErrorCode::InvalidFrame,
                Some("9"),
            ),
            (
                r#"{"v":1,"id":"9","type":"launch"}"#,
                ErrorCode::UnknownFrameType,
                Some("9"),
            ),
            (
                r#"{"v":1,"id":"9","type":"send","room":"ops"}"#,
                ErrorCode::InvalidFrame,
                Some("9"),
            ),
            (
                r#"{"v":1,"id":"9","type":"subscribe","room":"../etc"}"#,
                ErrorCode::InvalidFrame,
                Some("9"),
            ),
            (
                r#"{"v":1,"id":"9","type":"send","room":"ops","client_msg_id":"","body":{"kind":"text","text":"x"}}"#,
                ErrorCode::InvalidFrame,
                Some("9"),
            ),
            (
                r#"{"v":1,"id":"9","type":"send","room":"ops","client_msg_id":"c","body":{"kind":"video"}}"#,
                ErrorCode::InvalidFrame,
                Some("9"),
            ),
            (
                r#"{"v":1,"id":7,"type":"ping"}"#,
                ErrorCode::InvalidFrame,
                None,
            ),
            // A variant's position is not its name.
            (
                r#"{"v":1,"id":"9","type":6}"#,
                ErrorCode::InvalidFrame,
                Some("9"),
            ),
        ];
        // Frames serde alone would take: the rules beyond their shape still refuse them.
        let long = "x".repeat(MAX_ID_LEN + 1);
        let shaped_but_refused = [
            (r#"{"v":1,"id":"","type":"ping"}"#.to_owned(), None),
            (format!(r#"{{"v":1,"id":"{long}","type":"ping"}}"#), None),
            (
                format!(
                    r#"{{"v":1,"id":"9","type":"send","room":"ops","client_msg_id":"{long}","body":{{"kind":"text","text":"x"}}}}"#
                ),
                Some("9"),
            ),
        ];
        let cases = cases
            .into_iter()
            .map(|(text, code, id)| (text.to_owned(), code, id))
            .chain(
                shaped_but_refused
                    .into_iter()
                    .map(|(text, id)| (text, ErrorCode::InvalidFrame, id)),
            );
        for (text, code, id) in cases {
            let err = ClientRequest::decode(&text).expect_err(&text);
            assert_eq!(err.code, code, "{text}: {err}");
            assert_eq!(err.id.as_deref(), id, "{text}");
            assert!(!err.message.is_empty());
        }
    }

    #[test]
    fn unknown_fields_are_ignored_for_forward_compatibility() {
        let request = ClientRequest::decode(r#"{"v":1,"type":"ping","future":true}"#).expect("ok");
        assert_eq!(request.frame, ClientFrame::Ping);
    }
}
