//! The enrollment listener's routes, and nothing else: it admits peers without a certificate,
//! so it serves only what an applicant holding an invitation (or a poll token) may do.
//!
//! | route | what |
//! | --- | --- |
//! | `POST /enroll/v1/applications` | submit an application with an invitation |
//! | `GET /enroll/v1/applications/{id}` | its status; `Authorization: Bearer <poll token>` |

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use axum::{Json, Router};
use escape_proto::ErrorCode;
use escape_proto::vetting::{ApplicationReceipt, EnrollmentStatus, SubmitApplication};

use super::vetting::application_id;
use crate::error::ApiError;
use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/enroll/v1/applications", post(submit))
        .route("/enroll/v1/applications/{id}", get(status))
        .fallback(|| async {
            ApiError::new(ErrorCode::NotFound, "this listener serves enrollment only")
        })
        .layer(DefaultBodyLimit::max(super::MAX_BODY_BYTES))
        .with_state(state)
}

async fn submit(
    State(state): State<AppState>,
    body: Result<Json<SubmitApplication>, JsonRejection>,
) -> Result<(StatusCode, Json<ApplicationReceipt>), ApiError> {
    let Json(request) = body?;
    Ok((
        StatusCode::CREATED,
        Json(state.applications.submit(request)?),
    ))
}

async fn status(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<EnrollmentStatus>, ApiError> {
    let id = application_id(path)?;
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::new(ErrorCode::NotFound, format!("there is no application {id}"))
        })?;
    Ok(Json(state.applications.status(&id, token.trim())?))
}
