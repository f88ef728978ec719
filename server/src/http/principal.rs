//! Extracting the [`Principal`] of a request: the connection's certificate identity, looked up
//! in the registry now. Unknown or inactive members get 403 before any handler runs.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

use crate::error::ApiError;
use crate::identity::{CertificateExpiry, PeerIdentity, Principal};
use crate::state::AppState;

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let identity = parts
            .extensions
            .get::<PeerIdentity>()
            .cloned()
            .unwrap_or_else(|| {
                PeerIdentity::Unidentified("no TLS identity on this request".into())
            });
        let expiry = parts.extensions.get::<CertificateExpiry>().map(|e| e.0);
        let principal = Principal::resolve(&state.registry, &identity)
            .map(|p| p.with_certificate_expiry(expiry));
        if let Err(e) = &principal {
            // Under the connection's address, as the listener logs its handshake refusals.
            let peer = parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.to_string())
                .unwrap_or_default();
            tracing::info!(%peer, ?identity, code = %e.code, reason = %e.message, "request refused");
        }
        principal
    }
}
