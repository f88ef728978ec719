//! What can go wrong on the client side, each with what to do about it.

use escape_proto::ErrorCode;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("no profile {0:?}; import one with `escape profile import FILE`")]
    NoSuchProfile(String),
    #[error(
        "no profile imported yet; import the one your admin gave you with `escape profile import FILE`"
    )]
    NoProfile,
    #[error("the profile is not usable: {0}")]
    BadProfile(String),
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot reach {server}: {message}")]
    Connect { server: String, message: String },
    /// The server answered with a coded refusal.
    #[error("{message} ({code})")]
    Server {
        status: u16,
        code: ErrorCode,
        message: String,
    },
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
    #[error("the connection closed{}", .0.as_ref().map(|r| format!(": {r}")).unwrap_or_default())]
    Closed(Option<String>),
    /// A file or a room key did not decrypt or verify; nothing was written.
    #[error("{0}")]
    File(String),
}

impl ClientError {
    /// The process exit code for this error, documented in the README.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::NoSuchProfile(_) | Self::NoProfile | Self::BadProfile(_) | Self::Io { .. } => 3,
            Self::Connect { .. } | Self::Closed(_) => 4,
            Self::Server { code, .. } => match code {
                ErrorCode::UnknownMember
                | ErrorCode::MemberInactive
                | ErrorCode::Forbidden
                | ErrorCode::NotAMember => 5,
                ErrorCode::AccessRevoked | ErrorCode::InviteInvalid => 5,
                ErrorCode::RoomNotFound | ErrorCode::NotFound => 6,
                ErrorCode::RoomExists | ErrorCode::Conflict => 7,
                ErrorCode::InvalidRequest
                | ErrorCode::InvalidFrame
                | ErrorCode::TooLarge
                | ErrorCode::MalformedJson
                | ErrorCode::Precondition => 8,
                ErrorCode::RateLimited => 10,
                _ => 1,
            },
            Self::Protocol(_) => 1,
            Self::File(_) => 9,
        }
    }
}
