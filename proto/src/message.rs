//! Room messages: what a member sends and what every reader of the room receives.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::member::MemberId;
use crate::room::RoomName;

/// What a message carries. Tagged by `kind` so that indicators and files can join text
/// as typed bodies without changing the frames around them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Body {
    Text {
        text: String,
    },
    /// A threat indicator (checked, normalised and stamped with its source by the server; clients
    /// share through the indicator API or frame, never as a plain message).
    Indicator(Box<crate::indicator::Indicator>),
    /// A file was shared (written by the server when an upload completes, never by a client).
    File {
        file_id: String,
        name: String,
        /// Bytes of ciphertext.
        size: u64,
        generation: u32,
    },
}

impl Body {
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text { text: text.into() }
    }

    /// The size the server's body limit is measured against.
    pub fn size(&self) -> usize {
        match self {
            Self::Text { text } => text.len(),
            Self::File { name, file_id, .. } => name.len() + file_id.len(),
            Self::Indicator(i) => i.value.len() + i.description.len(),
        }
    }

    /// Whether the body carries nothing worth storing.
    pub fn is_empty(&self) -> bool {
        match self {
            Self::Text { text } => text.trim().is_empty(),
            Self::File { file_id, .. } => file_id.is_empty(),
            Self::Indicator(i) => i.value.is_empty(),
        }
    }
}

/// A stored message as delivered live and in history. `seq` is the room's sequence number:
/// strictly increasing, without gaps, and assigned only once the message is durably stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub room: RoomName,
    pub seq: u64,
    pub sender: MemberId,
    pub sender_name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub sent_at: OffsetDateTime,
    /// The sender's own id for the message, so its other sessions can match their echo.
    pub client_msg_id: String,
    pub body: Body,
}
