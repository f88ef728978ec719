//! The server's error type and its one mapping to what a peer sees.
//!
//! Every failure a peer can cause or observe becomes an [`ApiError`]: a machine code from the
//! protocol and a message for people. The HTTP status is derived from the code in exactly one
//! place ([`status_of`]); WebSocket error frames carry the same code. Internal causes (storage,
//! I/O) are logged here and reach the peer only as `internal`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use escape_proto::{ErrorBody, ErrorCode};

use crate::store::StoreError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// For `rate_limited`: when to try again (sent as Retry-After over HTTP).
    pub retry_after: Option<std::time::Duration>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn with_retry_after(mut self, wait: std::time::Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    /// Logs the cause and returns an error that reveals nothing of it.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        Self::new(
            ErrorCode::Internal,
            "the server could not complete the request; it has been logged",
        )
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code,
            message: self.message.clone(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::internal(&e)
    }
}

/// The HTTP status for each error code: the one place that decides it.
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::MalformedJson
        | ErrorCode::InvalidFrame
        | ErrorCode::UnknownFrameType
        | ErrorCode::UnsupportedVersion
        | ErrorCode::InvalidRequest => StatusCode::BAD_REQUEST,
        ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::UnknownMember
        | ErrorCode::MemberInactive
        | ErrorCode::Forbidden
        | ErrorCode::NotAMember => StatusCode::FORBIDDEN,
        ErrorCode::RoomNotFound | ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::RoomExists | ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::InviteInvalid | ErrorCode::AccessRevoked => StatusCode::FORBIDDEN,
        ErrorCode::Precondition => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::SlowConsumer | ErrorCode::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (status_of(self.code), Json(self.body())).into_response();
        if let Some(wait) = self.retry_after {
            // Whole seconds, rounded up, as the header wants.
            let seconds = wait.as_millis().div_ceil(1000).max(1);
            if let Ok(value) = axum::http::HeaderValue::from_str(&seconds.to_string()) {
                response
                    .headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, value);
            }
        }
        response
    }
}

macro_rules! from_rejection {
    ($($rejection:ty),*) => {$(
        impl From<$rejection> for ApiError {
            fn from(r: $rejection) -> Self {
                let code = if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ErrorCode::TooLarge
                } else {
                    ErrorCode::InvalidRequest
                };
                Self::new(code, r.body_text())
            }
        }
    )*};
}

from_rejection!(
    axum::extract::rejection::JsonRejection,
    axum::extract::rejection::QueryRejection,
    axum::extract::rejection::PathRejection
);
