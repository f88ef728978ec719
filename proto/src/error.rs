//! Error codes shared by HTTP answers and WebSocket error frames.

use serde::{Deserialize, Serialize};

/// A stable, machine-readable reason. Clients branch on the code; the message is for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The text of a frame or body is not JSON.
    MalformedJson,
    /// The JSON is well formed but a field is missing or has the wrong type or value.
    InvalidFrame,
    /// The frame's `type` is not one this server knows.
    UnknownFrameType,
    /// The frame's `v` is not a protocol version this server speaks.
    UnsupportedVersion,
    /// The frame or message body is larger than the server accepts.
    TooLarge,
    /// A request parameter or body field is invalid.
    InvalidRequest,
    /// The certificate is valid but names no active member of this deployment.
    UnknownMember,
    /// The member is known but not active (suspended or revoked).
    MemberInactive,
    /// The gate refused the action.
    Forbidden,
    /// The member is not in the room the action needs.
    NotAMember,
    /// No such room.
    RoomNotFound,
    /// A room with that name already exists.
    RoomExists,
    /// No such application, invitation or member.
    NotFound,
    /// The invitation is unknown, used or expired.
    InviteInvalid,
    /// The request conflicts with the current state (already decided, already vouched, ...).
    Conflict,
    /// The action needs more first (vouches, verification).
    Precondition,
    /// The member was suspended or revoked while connected; the session ends.
    AccessRevoked,
    /// The client reads too slowly; it may reconnect and resume from its last sequence.
    SlowConsumer,
    /// The server is shutting down; reconnect later and resume.
    ShuttingDown,
    /// Too many requests of this kind, or too many connections; the message says when to retry.
    RateLimited,
    /// The session sent nothing (not even a ping) for too long and was closed.
    IdleTimeout,
    /// Something failed inside the server; the details are in its log, not in this answer.
    Internal,
}

impl ErrorCode {
    /// The code as it appears on the wire, for logs and human output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MalformedJson => "malformed_json",
            Self::InvalidFrame => "invalid_frame",
            Self::UnknownFrameType => "unknown_frame_type",
            Self::UnsupportedVersion => "unsupported_version",
            Self::TooLarge => "too_large",
            Self::InvalidRequest => "invalid_request",
            Self::UnknownMember => "unknown_member",
            Self::MemberInactive => "member_inactive",
            Self::Forbidden => "forbidden",
            Self::NotAMember => "not_a_member",
            Self::RoomNotFound => "room_not_found",
            Self::RoomExists => "room_exists",
            Self::NotFound => "not_found",
            Self::InviteInvalid => "invite_invalid",
            Self::Conflict => "conflict",
            Self::Precondition => "precondition",
            Self::AccessRevoked => "access_revoked",
            Self::SlowConsumer => "slow_consumer",
            Self::ShuttingDown => "shutting_down",
            Self::RateLimited => "rate_limited",
            Self::IdleTimeout => "idle_timeout",
            Self::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The JSON body of every non-2xx HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_str_matches_serde() {
        for code in [
            ErrorCode::MalformedJson,
            ErrorCode::InvalidFrame,
            ErrorCode::UnknownFrameType,
            ErrorCode::UnsupportedVersion,
            ErrorCode::TooLarge,
            ErrorCode::InvalidRequest,
            ErrorCode::UnknownMember,
            ErrorCode::MemberInactive,
            ErrorCode::Forbidden,
            ErrorCode::NotAMember,
            ErrorCode::RoomNotFound,
            ErrorCode::RoomExists,
            ErrorCode::NotFound,
            ErrorCode::InviteInvalid,
            ErrorCode::Conflict,
            ErrorCode::Precondition,
            ErrorCode::AccessRevoked,
            ErrorCode::SlowConsumer,
            ErrorCode::ShuttingDown,
            ErrorCode::Internal,
        ] {
            let json = serde_json::to_string(&code).expect("serialize");
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }
}
