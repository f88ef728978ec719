//! The enrollment listener's routes, and nothing else: it admits peers without a certificate,
//! so it serves only what an applicant holding an invitation (or a poll token) may do.
//!
//! | route | what |
//! | --- | --- |
//! | `POST /enroll/v1/applications` | submit an application with an invitation |
//! | `GET /enroll/v1/applications/{id}` | its status; `Authorization: Bearer <poll token>` |
//! | `POST /enroll/v1/applications/{id}/oidc/{provider}` | start proving claims at a provider (bearer) |
//! | `GET /enroll/v1/oidc/providers` | the providers this deployment trusts |
//! | `GET /enroll/v1/oidc/callback` | where the provider sends the browser back |

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use axum::{Json, Router};
use escape_proto::ErrorCode;
use escape_proto::vetting::{ApplicationReceipt, EnrollmentStatus, OidcStart, SubmitApplication};

use super::vetting::application_id;
use crate::error::ApiError;
use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/enroll/v1/applications", post(submit))
        .route("/enroll/v1/applications/{id}", get(status))
        .route(
            "/enroll/v1/applications/{id}/oidc/{provider}",
            post(start_verification),
        )
        .route("/enroll/v1/oidc/providers", get(providers))
        .route("/enroll/v1/oidc/callback", get(callback))
        .fallback(|| async {
            ApiError::new(ErrorCode::NotFound, "this listener serves enrollment only")
        })
        .layer(DefaultBodyLimit::max(super::MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            super::durable_writes,
        ))
        .with_state(state)
}

async fn submit(
    State(state): State<AppState>,
    body: Result<Json<SubmitApplication>, JsonRejection>,
) -> Result<(StatusCode, Json<ApplicationReceipt>), ApiError> {
    let Json(request) = body?;
    let receipt = state.applications.submit(request)?;
    state
        .audit
        .record(None, "application.submit", &receipt.id, "");
    Ok((StatusCode::CREATED, Json(receipt)))
}

fn poll_token<'h>(headers: &'h HeaderMap, id: &str) -> Result<&'h str, ApiError> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("there is no application {id}")))
}

async fn status(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<EnrollmentStatus>, ApiError> {
    let id = application_id(path)?;
    Ok(Json(
        state.applications.status(&id, poll_token(&headers, &id)?)?,
    ))
}

async fn providers(State(state): State<AppState>) -> Json<Vec<String>> {
    Json(state.oidc.provider_names())
}

async fn start_verification(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<OidcStart>, ApiError> {
    let Path((id, provider)) = path?;
    let id = application_id(Ok(Path(id)))?;
    state
        .applications
        .may_verify(&id, poll_token(&headers, &id)?)?;
    let authorization_url = state.oidc.start(&id, &provider).await?;
    Ok(Json(OidcStart { authorization_url }))
}

#[derive(Debug, serde::Deserialize)]
struct Callback {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Where the provider sends the applicant's browser back.
async fn callback(
    State(state): State<AppState>,
    query: Result<Query<Callback>, QueryRejection>,
) -> Result<String, ApiError> {
    let Query(callback) = query?;
    if let Some(error) = callback.error {
        let detail = callback.error_description.unwrap_or_default();
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("the identity provider refused the login: {error} {detail}"),
        ));
    }
    let (Some(flow), Some(code)) = (callback.state, callback.code) else {
        return Err(ApiError::invalid("the callback needs state and code"));
    };
    let (application, verified) = state.oidc.finish(&flow, &code).await?;
    state
        .applications
        .record_verified(&application, verified.clone())?;
    let detail = format!("{} at {}", verified.subject, verified.provider);
    state
        .audit
        .record(None, "application.verified", &application, detail);
    // A GET that writes (the provider redirects the browser here): flushed by hand.
    state.persist().await?;
    Ok(format!(
        "Identity verified for application {application}: {} ({}). You can close this window and return to your terminal.\n",
        verified.email.as_deref().unwrap_or("no verified email"),
        verified
            .organisation
            .as_deref()
            .unwrap_or("no organisation this provider vouches for"),
    ))
}
