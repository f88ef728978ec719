//! Rooms: named workspaces with a strictly increasing message sequence.

use serde::{Deserialize, Serialize};

use crate::message::Event;

/// A room's name, which is also its identifier: lower-case letters, digits, `-`, `_` and `.`,
/// starting with a letter or digit, at most 64 characters. Names are immutable, so a name seen in
/// an old log line still means the same room.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct RoomName(String);

impl RoomName {
    pub fn parse(s: &str) -> Result<Self, RoomNameError> {
        let bytes = s.as_bytes();
        let first_ok = bytes
            .first()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let rest_ok = bytes.iter().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        });
        if !first_ok || !rest_ok || bytes.len() > 64 {
            return Err(RoomNameError(s.chars().take(80).collect()));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for RoomName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for RoomName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(&self.0)
    }
}

impl std::str::FromStr for RoomName {
    type Err = RoomNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Why a string is not a room name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid room name {0:?}: use 1 to 64 lower-case letters, digits, '-', '_' or '.', starting with a letter or digit"
)]
pub struct RoomNameError(String);

/// A room as listed by `GET /v1/rooms` and returned by create and join.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSummary {
    pub name: RoomName,
    pub topic: String,
    /// How many members the room has now.
    pub members: u64,
    /// Whether the asking member is one of them.
    pub joined: bool,
    /// The sequence number of the newest stored message; 0 for an empty room.
    pub head: u64,
    /// Messages after this member's read marker (joined rooms only).
    #[serde(default)]
    pub unread: u64,
    /// The most restricted TLP label the room accepts: what its members may assume of anything
    /// said in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tlp_max: Option<crate::tlp::Tlp>,
    /// The room's classification level (members need at least this clearance by default).
    #[serde(default)]
    pub classification: u8,
}

/// A room's settings, as its admin changes them (`PUT /v1/rooms/{room}/settings`); fields
/// left out stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// `shared`: joiners read the room's history; `joined`: only what came after they joined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<String>,
    /// Messages older than this many days are deleted by the server (0: kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u32>,
    /// Only members the room's admin invited may join (otherwise the policy decides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invite_only: Option<bool>,
}

/// `GET /v1/search`: messages matching `text` in the rooms the member may read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchQuery {
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<RoomName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// Whether a member is reachable now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PresenceStatus {
    Online,
    Away,
    Offline,
}

/// One member of a room and its presence (`GET /v1/rooms/{room}/presence`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    pub member: crate::member::MemberId,
    pub name: String,
    pub status: PresenceStatus,
}

/// `PUT /v1/rooms/{room}/read`: this member has read up to `seq`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadMarker {
    pub seq: u64,
}

/// `GET /v1/rooms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomList {
    pub rooms: Vec<RoomSummary>,
}

/// `POST /v1/rooms`. The creator joins the room at once and administers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateRoom {
    pub name: RoomName,
    #[serde(default)]
    pub topic: String,
    /// The highest TLP label allowed in the room (default `AMBER`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tlp_max: Option<String>,
    /// A classification level policies can compare with clearances (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classification: Option<u8>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Whether members who join later receive the older file key generations, and so can read
    /// files shared before they joined (default: yes, unless the room is TLP:RED).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_for_joiners: Option<bool>,
}

impl CreateRoom {
    pub fn new(name: RoomName, topic: impl Into<String>) -> Self {
        Self {
            name,
            topic: topic.into(),
            tlp_max: None,
            classification: None,
            tags: Vec::new(),
            history_for_joiners: None,
        }
    }
}

/// A room's access policy (`GET`/`PUT /v1/rooms/{room}/policy`, `/v1/policy` for the deployment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDocument {
    /// Cedar policy text.
    pub text: String,
    /// 0 while the default applies.
    #[serde(default)]
    pub version: u64,
}

/// The outcome of a policy dry run: who would gain or lose what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyImpact {
    pub changes: Vec<AccessChange>,
    /// How many active members were checked.
    pub members_checked: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessChange {
    pub member: crate::member::MemberId,
    pub name: String,
    /// `read ops`, `invite`, ...
    pub gains: Vec<String>,
    pub loses: Vec<String>,
}

/// A ready policy a deployment or room can start from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyTemplate {
    pub name: String,
    pub admits: String,
    pub text: String,
}

/// Query of `GET /v1/rooms/{room}/messages`.
///
/// With neither bound the newest `limit` messages are returned. `before` pages backwards
/// (messages with a smaller sequence), `after` pages forwards; both may be given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// The answer of `GET /v1/rooms/{room}/messages`: messages in ascending sequence order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryPage {
    pub room: RoomName,
    pub messages: Vec<Event>,
    /// True when more messages lie beyond the page in the direction asked for
    /// (older ones when paging with `before` or with no bound, newer ones with `after`).
    pub more: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names() {
        for ok in ["ops", "cert-eu.2026", "a", "0day", &"a".repeat(64)] {
            assert!(RoomName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Ops", "-x", ".x", "a b", "a/b", "é", &"a".repeat(65)] {
            assert!(RoomName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn invalid_room_name_is_a_deserialize_error() {
        let err = serde_json::from_str::<CreateRoom>(r#"{"name":"../x"}"#).expect_err("refused");
        assert!(err.to_string().contains("invalid room name"), "{err}");
    }
}
