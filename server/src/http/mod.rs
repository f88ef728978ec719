//! The HTTP API under `/v1`, and the WebSocket upgrade at `/v1/ws`.
//!
//! | route | action |
//! | --- | --- |
//! | `GET /v1/me` | who am I |
//! | `GET /v1/rooms` | list rooms |
//! | `POST /v1/rooms` | create a room (the creator joins it) |
//! | `POST /v1/rooms/{room}/join` | join |
//! | `POST /v1/rooms/{room}/leave` | leave |
//! | `POST /v1/rooms/{room}/members/{member}/remove` | remove a member (the room's admin, or a deployment admin) |
//! | `GET /v1/rooms/{room}/messages?before=&after=&limit=` | history page |
//! | `POST /v1/rooms/{room}/messages/{seq}/redact` | remove a message for everyone (sender, room admin) |
//! | `PUT /v1/rooms/{room}/read`, `PUT .../settings`, `POST .../invitations/{member}` | read marker; room settings; invite |
//! | `GET /v1/search?text=&room=` | messages in the rooms the member may read |
//! | `GET /v1/rooms/{room}/presence` | members online, away or offline (readers of the room) |
//! | `GET /v1/ws` | real-time channel (see `escape_proto::frame`) |
//! | `POST /v1/invites` | create an invitation |
//! | `POST /v1/applications/{id}/vouch` | vouch for an applicant |
//! | `GET /v1/directory?country=&sector=&organisation=` | who's who |
//! | `POST /v1/renew` | a new certificate for the caller |
//! | `PUT /v1/me/published` | what the caller shows in the directory |
//! | `GET /v1/admin/applications[?status=]`, `GET /v1/admin/applications/{id}` | applications (admins) |
//! | `POST /v1/admin/applications/{id}/approve`, `.../reject` | decide (admins) |
//! | `GET /v1/admin/members`, `GET /v1/admin/members/{id}/history` | members (admins) |
//! | `POST /v1/admin/members/{id}/{suspend,reinstate,revoke}` | lifecycle (admins) |
//! | `PUT /v1/admin/members/{id}/attributes` | attribute changes (admins) |
//! | `GET`/`PUT /v1/policy`, `POST /v1/policy/test` | the deployment's Cedar policy (admins) |
//! | `GET`/`PUT /v1/rooms/{room}/policy`, `POST .../policy/test` | a room's policy (its admin) |
//! | `GET /v1/policy/templates` | ready policies |
//! | `GET /v1/admin/audit?after=&limit=` | the hash-chained audit log (admins) |
//! | `GET /v1/rooms/{room}/keys` | the room's file key generations, with the caller's sealed copies |
//! | `POST /v1/rooms/{room}/keys`, `POST .../keys/{generation}/copies` | a new generation; copies for members who lack one |
//! | `GET`/`POST /v1/rooms/{room}/files` | shared files; announce an upload (ciphertext size, key generation) |
//! | `PUT /v1/rooms/{room}/files/{id}/content?offset=`, `GET .../upload`, `POST .../complete` | resumable upload |
//! | `GET /v1/rooms/{room}/files/{id}/content?offset=` | download the ciphertext (resumable) |
//! | `GET`/`POST /v1/rooms/{room}/indicators` | a room's indicators (TLP applied); share some (each checked, with a report) |
//! | `POST /v1/rooms/{room}/indicators/{seq}/{sightings,relabel,forward}` | report a sighting; relabel (the sharer); forward |
//! | `GET /v1/indicators/search?value=&type=` | every readable place a value was shared |
//! | `GET`/`POST /v1/rooms/{room}/stix[?tlp=]` | export a STIX 2.1 bundle (never TLP:RED); import one |
//! | `POST /v1/alerts` | send an early-warning alert to an audience by attributes (or `dry_run`) |
//! | `GET /v1/alerts`, `POST /v1/alerts/{id}/ack`, `GET /v1/alerts/{id}` | my pending alerts; acknowledge; who acknowledged (sender, admins) |
//! | `POST /v1/admin/keys/rotate` | replace the master key that seals the store, while serving (admins) |
//!
//! TAXII 2.1 lives under `/taxii2/` on the same listener ([`crate::taxii`]).
//!
//! The enrollment listener has its own router ([`enroll`]).
//!
//! Every handler takes a [`Principal`] (an active member, or the request is refused with 403)
//! and asks the gate before acting.
//!
//! Every request that may write (any method but `GET`, `HEAD` and `OPTIONS`) is on disk before
//! its successful reply goes out ([`durable_writes`]), whichever handler served it.

mod admin;
mod alerts;
mod audit;
pub mod enroll;
mod files;
pub(crate) mod indicators;
mod policy;
mod principal;
mod rooms;
mod vetting;

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use escape_proto::{ErrorCode, Member};

use crate::error::ApiError;
use crate::gate::{Deployment, action};
use crate::identity::Principal;
use crate::state::AppState;

/// Request bodies are small JSON documents; anything larger is refused with 413.
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/me", get(me))
        .route("/v1/rooms", get(rooms::list).post(rooms::create))
        .route("/v1/rooms/{room}/join", post(rooms::join))
        .route("/v1/rooms/{room}/leave", post(rooms::leave))
        .route(
            "/v1/rooms/{room}/members/{member}/remove",
            post(rooms::remove_member),
        )
        .route("/v1/rooms/{room}/messages", get(rooms::history))
        .route(
            "/v1/rooms/{room}/messages/{seq}/redact",
            post(rooms::redact),
        )
        .route("/v1/rooms/{room}/read", put(rooms::mark_read))
        .route("/v1/rooms/{room}/presence", get(rooms::presence))
        .route("/v1/rooms/{room}/settings", put(rooms::settings))
        .route("/v1/rooms/{room}/invitations/{member}", post(rooms::invite))
        .route("/v1/search", get(rooms::search))
        .route("/v1/ws", get(crate::ws::upgrade))
        .route("/v1/invites", post(vetting::create_invite))
        .route("/v1/applications/{id}/vouch", post(vetting::vouch))
        .route("/v1/directory", get(vetting::directory))
        .route("/v1/renew", post(vetting::renew))
        .route("/v1/me/published", put(vetting::publish))
        .route("/v1/admin/applications", get(admin::applications))
        .route("/v1/admin/applications/{id}", get(admin::application))
        .route("/v1/admin/applications/{id}/approve", post(admin::approve))
        .route("/v1/admin/applications/{id}/reject", post(admin::reject))
        .route("/v1/admin/members", get(admin::members))
        .route("/v1/admin/members/{id}/history", get(admin::history))
        .route(
            "/v1/admin/members/{id}/attributes",
            put(admin::update_attributes),
        )
        .route("/v1/admin/members/{id}/{verb}", post(admin::change_status))
        .route("/v1/admin/audit", get(audit::read))
        .route("/v1/admin/keys/rotate", post(audit::rotate_keys))
        .route(
            "/v1/policy",
            get(policy::get_deployment).put(policy::set_deployment),
        )
        .route("/v1/policy/test", post(policy::test_deployment))
        .route("/v1/policy/templates", get(policy::templates))
        .route(
            "/v1/rooms/{room}/policy",
            get(policy::get_room).put(policy::set_room),
        )
        .route("/v1/rooms/{room}/policy/test", post(policy::test_room))
        .route(
            "/v1/rooms/{room}/keys",
            get(files::keys).post(files::new_generation),
        )
        .route(
            "/v1/rooms/{room}/keys/{generation}/copies",
            post(files::add_copies),
        )
        .route(
            "/v1/rooms/{room}/files",
            get(files::list).post(files::start_upload),
        )
        .route(
            "/v1/rooms/{room}/files/{id}/content",
            get(files::download)
                .put(files::put_chunk)
                .layer(DefaultBodyLimit::max(
                    usize::try_from(state.limits.file_chunk_bytes).unwrap_or(usize::MAX),
                )),
        )
        .route(
            "/v1/rooms/{room}/files/{id}/upload",
            get(files::upload_status),
        )
        .route(
            "/v1/rooms/{room}/files/{id}/complete",
            post(files::complete),
        )
        .route(
            "/v1/rooms/{room}/indicators",
            get(indicators::list)
                .post(indicators::share)
                .layer(DefaultBodyLimit::max(indicators::MAX_BULK_BYTES)),
        )
        .route(
            "/v1/rooms/{room}/indicators/{seq}/sightings",
            post(indicators::sight),
        )
        .route(
            "/v1/rooms/{room}/indicators/{seq}/relabel",
            post(indicators::relabel),
        )
        .route(
            "/v1/rooms/{room}/indicators/{seq}/forward",
            post(indicators::forward),
        )
        .route("/v1/indicators/search", get(indicators::search))
        .route("/v1/alerts", get(alerts::pending).post(alerts::send))
        .route("/v1/alerts/{id}", get(alerts::status))
        .route("/v1/alerts/{id}/ack", post(alerts::ack))
        .route(
            "/v1/rooms/{room}/stix",
            get(indicators::export)
                .post(indicators::import)
                .layer(DefaultBodyLimit::max(indicators::MAX_BULK_BYTES)),
        )
        .merge(crate::taxii::router().layer(DefaultBodyLimit::max(indicators::MAX_BULK_BYTES)))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            durable_writes,
        ))
        .with_state(state)
}

/// A successful reply to a request that may have written (a suspension, a policy, a file key
/// generation, a read marker) goes out only once the store is flushed: sled syncs on its own
/// only every half second, and a power cut must not undo what the caller was told holds. One
/// rule for every route, so that no handler can forget it. Reads pass untouched.
pub(crate) async fn durable_writes(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let writes = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let response = next.run(request).await;
    if writes
        && response.status().is_success()
        && let Err(error) = state.persist().await
    {
        return error.into_response();
    }
    response
}

async fn me(State(state): State<AppState>, principal: Principal) -> Result<Json<Member>, ApiError> {
    let auth = state
        .gate
        .authorize::<action::ReadSelf>(&principal, Deployment)?;
    Ok(Json(auth.principal().member().clone()))
}

async fn not_found(_principal: Principal) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidRequest,
        "no such route; the API lives under /v1",
    )
}
