//! Extracting the [`Principal`] of a request: the connection's certificate identity, looked up
//! in the registry now. Unknown or inactive members get 403 before any handler runs.

use axum::extract::FromRequestParts;
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
            tracing::info!(?identity, code = %e.code, "request refused");
        }
        principal
    }
}
