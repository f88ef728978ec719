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
        /// The message this one answers: a thread is the replies to one message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<u64>,
        /// Members this message notifies (each must be able to read the room).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        mentions: Vec<MemberId>,
    },
    /// A correction by the sender of message `target`; the original stays in history.
    Edit { target: u64, text: String },
    /// Message `target` was removed for everyone (written by the server; the content is
    /// erased from the store, the fact and the reason stay in the audit log).
    Redaction { target: u64 },
    /// What a removed message reads as from then on.
    Redacted,
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
        Self::Text {
            text: text.into(),
            reply_to: None,
            mentions: Vec::new(),
        }
    }

    /// A reply to message `parent`.
    pub fn reply(parent: u64, text: impl Into<String>) -> Self {
        Self::Text {
            text: text.into(),
            reply_to: Some(parent),
            mentions: Vec::new(),
        }
    }

    /// The size the server's body limit is measured against.
    pub fn size(&self) -> usize {
        match self {
            Self::Text { text, mentions, .. } => text.len() + mentions.len() * 40,
            Self::Edit { text, .. } => text.len(),
            Self::Redaction { .. } | Self::Redacted => 0,
            Self::File { name, file_id, .. } => name.len() + file_id.len(),
            Self::Indicator(i) => i.value.len() + i.description.len(),
        }
    }

    /// Whether the body carries nothing worth storing.
    pub fn is_empty(&self) -> bool {
        match self {
            Self::Text { text, .. } | Self::Edit { text, .. } => text.trim().is_empty(),
            Self::Redaction { .. } | Self::Redacted => false,
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
    /// The sender's organisation when the message was stored (readers weigh a message by who
    /// vouches for it; empty in events stored before it was recorded).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sender_organisation: String,
    #[serde(with = "time::serde::rfc3339")]
    pub sent_at: OffsetDateTime,
    /// The sender's own id for the message, so its other sessions can match their echo.
    pub client_msg_id: String,
    pub body: Body,
}
