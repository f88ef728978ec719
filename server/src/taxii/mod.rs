//! TAXII 2.1 on the mutual-TLS listener, so a CERT's existing TAXII client, given a member's
//! certificate, gets exactly what that member may see.
//!
//! One API root (`/taxii2/escape/`); one collection per room the member may read, with
//! `can_write` from the policy. Objects are the room's indicators as STIX 2.1 (every version:
//! a relabel is a new `modified`), decided by the same gate and TLP rule as every other read;
//! TLP:RED never appears. Writes share the posted objects into the room like an import.
//! Errors are TAXII error messages with the TAXII media type.

use std::collections::BTreeMap;
use std::sync::Mutex;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use escape_proto::indicator::{IndicatorRecord, ShareOutcome};
use escape_proto::taxii::Filters;
use escape_proto::{ErrorCode, MemberId, RoomName};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::error::{ApiError, status_of};
use crate::gate::{Deployment, action};
use crate::identity::Principal;
use crate::indicators;
use crate::state::AppState;

/// The TAXII 2.1 media type.
pub const TAXII_MEDIA_TYPE: &str = "application/taxii+json;version=2.1";
const API_ROOT: &str = "escape";
/// Largest request body the API root accepts.
const MAX_CONTENT_LENGTH: usize = 8 * 1024 * 1024;

/// Status resources of writes, kept while the server runs (writes complete at once); the
/// newest ones only, so that writes cannot grow memory without bound.
#[derive(Debug, Default)]
pub struct Statuses {
    by_id: Mutex<KeptStatuses>,
}

type KeptStatuses = (
    BTreeMap<String, (MemberId, Value)>,
    std::collections::VecDeque<String>,
);

const KEPT_STATUSES: usize = 1000;

impl Statuses {
    fn keep(&self, id: String, owner: MemberId, status: Value) {
        if let Ok(mut guard) = self.by_id.lock() {
            let (by_id, order) = &mut *guard;
            by_id.insert(id.clone(), (owner, status));
            order.push_back(id);
            while order.len() > KEPT_STATUSES {
                if let Some(old) = order.pop_front() {
                    by_id.remove(&old);
                }
            }
        }
    }

    fn get(&self, id: &str) -> Option<(MemberId, Value)> {
        self.by_id.lock().ok()?.0.get(id).cloned()
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/taxii2/", get(discovery))
        .route("/taxii2/{root}/", get(api_root))
        .route("/taxii2/{root}/collections/", get(collections))
        .route("/taxii2/{root}/collections/{id}/", get(collection))
        .route(
            "/taxii2/{root}/collections/{id}/objects/",
            get(objects).post(add_objects),
        )
        .route(
            "/taxii2/{root}/collections/{id}/objects/{object}/",
            get(object),
        )
        .route(
            "/taxii2/{root}/collections/{id}/objects/{object}/versions/",
            get(versions),
        )
        .route("/taxii2/{root}/collections/{id}/manifest/", get(manifest))
        .route("/taxii2/{root}/status/{status}/", get(status))
}

/// A TAXII error message.
#[derive(Debug)]
pub struct TaxiiError {
    status: StatusCode,
    title: String,
    description: String,
}

impl TaxiiError {
    fn new(status: StatusCode, title: &str, description: impl Into<String>) -> Self {
        Self {
            status,
            title: title.to_owned(),
            description: description.into(),
        }
    }

    fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not found", what)
    }
}

impl From<ApiError> for TaxiiError {
    fn from(e: ApiError) -> Self {
        let status = match e.code {
            ErrorCode::NotAMember | ErrorCode::RoomNotFound => StatusCode::NOT_FOUND,
            code => status_of(code),
        };
        Self::new(status, e.code.as_str(), e.message)
    }
}

impl IntoResponse for TaxiiError {
    fn into_response(self) -> Response {
        let body = json!({
            "title": self.title,
            "description": self.description,
            "http_status": self.status.as_u16().to_string(),
        });
        (
            self.status,
            [(header::CONTENT_TYPE, TAXII_MEDIA_TYPE)],
            Json(body),
        )
            .into_response()
    }
}

type Taxii = Result<Response, TaxiiError>;

fn taxii(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, TAXII_MEDIA_TYPE)],
        Json(body),
    )
        .into_response()
}

/// 406 unless the client accepts TAXII 2.1 JSON (or anything).
fn accepts(headers: &HeaderMap) -> Result<(), TaxiiError> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|a| a.to_str().ok()) else {
        return Ok(());
    };
    let ok = accept.split(',').any(|part| {
        let part = part.trim().to_ascii_lowercase().replace(' ', "");
        part.starts_with("*/*")
            || part.starts_with("application/*")
            || part == "application/taxii+json"
            || part.starts_with("application/taxii+json;version=2.1")
    });
    if ok {
        Ok(())
    } else {
        Err(TaxiiError::new(
            StatusCode::NOT_ACCEPTABLE,
            "not acceptable",
            format!("this server answers {TAXII_MEDIA_TYPE}"),
        ))
    }
}

fn check_root(root: &str) -> Result<(), TaxiiError> {
    if root == API_ROOT {
        Ok(())
    } else {
        Err(TaxiiError::not_found(format!(
            "there is no API root {root}"
        )))
    }
}

fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-' | '[' | ']'))
        })
        .unwrap_or("localhost");
    format!("https://{host}")
}

async fn discovery(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
) -> Taxii {
    accepts(&headers)?;
    state
        .gate
        .authorize::<action::ListRooms>(&principal, Deployment)?;
    let root = format!("{}/taxii2/{API_ROOT}/", base_url(&headers));
    Ok(taxii(
        StatusCode::OK,
        json!({
            "title": "Escape",
            "description": "Threat indicators shared in Escape rooms, as the requesting member may read them",
            "default": root,
            "api_roots": [root],
        }),
    ))
}

async fn api_root(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path(root): Path<String>,
) -> Taxii {
    accepts(&headers)?;
    check_root(&root)?;
    state
        .gate
        .authorize::<action::ListRooms>(&principal, Deployment)?;
    Ok(taxii(
        StatusCode::OK,
        json!({
            "title": "Escape rooms",
            "description": "One collection per room you may read",
            "versions": [TAXII_MEDIA_TYPE],
            "max_content_length": MAX_CONTENT_LENGTH,
        }),
    ))
}

/// A room's collection id: a UUID derived from its name, stable across restarts.
pub fn collection_id(room: &RoomName) -> String {
    escape_proto::stix::name_uuid("escape-collection", room.as_str(), indicators::stix::sha256)
}

/// The rooms this member may read, with whether it may write, by collection id.
fn readable_rooms(
    state: &AppState,
    principal: &Principal,
) -> Result<Vec<(RoomName, bool)>, TaxiiError> {
    let auth = state
        .gate
        .authorize::<action::ListRooms>(principal, Deployment)?;
    let mut rooms = Vec::new();
    for summary in state.rooms.list(&auth)? {
        if summary.joined
            && state
                .gate
                .permits::<action::ReadHistory>(principal, summary.name.clone())
        {
            let write = state
                .gate
                .permits::<action::ShareIndicator>(principal, summary.name.clone());
            rooms.push((summary.name, write));
        }
    }
    Ok(rooms)
}

fn find_room(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<(RoomName, bool), TaxiiError> {
    readable_rooms(state, principal)?
        .into_iter()
        .find(|(room, _)| collection_id(room) == id)
        .ok_or_else(|| TaxiiError::not_found(format!("there is no collection {id} you may read")))
}

fn collection_json(room: &RoomName, can_write: bool) -> Value {
    json!({
        "id": collection_id(room),
        "title": room.as_str(),
        "description": format!("Indicators shared in the room {room}"),
        "alias": room.as_str(),
        "can_read": true,
        "can_write": can_write,
        "media_types": [escape_proto::stix::STIX_MEDIA_TYPE],
    })
}

async fn collections(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path(root): Path<String>,
) -> Taxii {
    accepts(&headers)?;
    check_root(&root)?;
    let list: Vec<Value> = readable_rooms(&state, &principal)?
        .iter()
        .map(|(room, write)| collection_json(room, *write))
        .collect();
    Ok(taxii(StatusCode::OK, json!({ "collections": list })))
}

async fn collection(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((root, id)): Path<(String, String)>,
) -> Taxii {
    accepts(&headers)?;
    check_root(&root)?;
    let (room, write) = find_room(&state, &principal, &id)?;
    Ok(taxii(StatusCode::OK, collection_json(&room, write)))
}

/// One object version in a collection.
struct Entry {
    date_added: OffsetDateTime,
    object: Value,
    seq: u64,
}

impl Entry {
    fn id(&self) -> &str {
        self.object["id"].as_str().unwrap_or_default()
    }
    fn version(&self) -> &str {
        self.object["modified"].as_str().unwrap_or_default()
    }
}

/// Every version of every exportable indicator of the room this member may read, oldest first.
fn entries(
    state: &AppState,
    principal: &Principal,
    room: &RoomName,
) -> Result<Vec<Entry>, TaxiiError> {
    let auth = state
        .gate
        .authorize::<action::ReadHistory>(principal, room.clone())?;
    let records: Vec<IndicatorRecord> = indicators::list(state, &auth)?;
    let mut out = Vec::new();
    for record in records.iter().filter(|r| indicators::stix::exportable(r)) {
        let Some(event) = state.rooms.event(room, record.seq)? else {
            continue;
        };
        // Milliseconds, as every timestamp TAXII shows: `added_after` with a shown value must
        // not return the object it came from.
        let date_added = event
            .sent_at
            .replace_nanosecond(u32::from(event.sent_at.millisecond()) * 1_000_000)
            .unwrap_or(event.sent_at);
        out.push(Entry {
            date_added,
            object: escape_proto::stix::object(&record.indicator, &indicators::stix::sha256),
            seq: record.seq,
        });
    }
    Ok(out)
}

/// The filters of a request, refused with 400 and the parameter's name when a value is wrong.
fn filters(query: Option<&str>) -> Result<Filters, TaxiiError> {
    Filters::parse(query)
        .map_err(|e| TaxiiError::new(StatusCode::BAD_REQUEST, "bad filter", e.to_string()))
}

/// Applies the match filters; `default_version` is what `match[version]` means when absent.
fn select<'a>(entries: &'a [Entry], f: &Filters, default_version: &str) -> Vec<&'a Entry> {
    let mut latest: BTreeMap<&str, &str> = BTreeMap::new();
    let mut first: BTreeMap<&str, &str> = BTreeMap::new();
    for e in entries {
        let (id, version) = (e.id(), e.version());
        if latest.get(id).is_none_or(|v| *v < version) {
            latest.insert(id, version);
        }
        if first.get(id).is_none_or(|v| *v > version) {
            first.insert(id, version);
        }
    }
    let versions: Vec<String> = if f.versions.is_empty() {
        vec![default_version.to_owned()]
    } else {
        f.versions.clone()
    };
    entries
        .iter()
        .filter(|e| f.added_after.is_none_or(|t| e.date_added > t))
        .filter(|e| f.ids.is_empty() || f.ids.iter().any(|i| i == e.id()))
        .filter(|e| {
            f.types.is_empty()
                || f.types
                    .iter()
                    .any(|t| Some(t.as_str()) == e.object["type"].as_str())
        })
        .filter(|e| {
            f.spec_versions.is_empty()
                || f.spec_versions
                    .iter()
                    .any(|v| Some(v.as_str()) == e.object["spec_version"].as_str())
        })
        .filter(|e| {
            versions.iter().any(|v| match v.as_str() {
                "all" => true,
                "last" => latest.get(e.id()) == Some(&e.version()),
                "first" => first.get(e.id()) == Some(&e.version()),
                exact => same_time(exact, e.version()),
            })
        })
        .collect()
}

/// Whether two RFC 3339 timestamps name the same instant (precision and offsets may differ).
fn same_time(a: &str, b: &str) -> bool {
    let parse =
        |t: &str| OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok();
    match (parse(a), parse(b)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// A page of `selected` after `f.next`, and the `next` token if more remain.
fn page<'a>(selected: &[&'a Entry], f: &Filters) -> (Vec<&'a Entry>, Option<u64>) {
    let rest: Vec<&Entry> = selected
        .iter()
        .copied()
        .filter(|e| f.next.is_none_or(|n| e.seq > n))
        .collect();
    let more = rest.len() > f.limit;
    let page: Vec<&Entry> = rest.into_iter().take(f.limit).collect();
    let next = if more {
        page.last().map(|e| e.seq)
    } else {
        None
    };
    (page, next)
}

fn date_headers(response: &mut Response, page: &[&Entry]) {
    let stamp = |e: &Entry| escape_proto::stix::timestamp(e.date_added);
    if let (Some(first), Some(last)) = (page.first(), page.last()) {
        for (name, value) in [
            ("x-taxii-date-added-first", stamp(first)),
            ("x-taxii-date-added-last", stamp(last)),
        ] {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
    }
}

/// A page as TAXII lists it: `more`, `next` when there is more, and the items under `field`.
fn paged(field: &str, items: Vec<Value>, next: Option<u64>) -> Value {
    let mut body = json!({ "more": next.is_some() });
    body[field] = Value::Array(items);
    if let Some(next) = next {
        body["next"] = json!(next.to_string());
    }
    body
}

/// An envelope of the page's objects.
fn envelope(page: &[&Entry], next: Option<u64>) -> Value {
    paged(
        "objects",
        page.iter().map(|e| e.object.clone()).collect(),
        next,
    )
}

/// What every listing starts from: the checks, the filters, and the room's entries.
fn listing(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    root: &str,
    id: &str,
    query: Option<&str>,
) -> Result<(Vec<Entry>, Filters), TaxiiError> {
    accepts(headers)?;
    check_root(root)?;
    let f = filters(query)?;
    let (room, _) = find_room(state, principal, id)?;
    Ok((entries(state, principal, &room)?, f))
}

/// A TAXII answer for one page, with the date headers of what it holds.
fn page_response(body: Value, page: &[&Entry]) -> Response {
    let mut response = taxii(StatusCode::OK, body);
    date_headers(&mut response, page);
    response
}

async fn objects(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((root, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Taxii {
    let (all, f) = listing(&state, &principal, &headers, &root, &id, query.as_deref())?;
    let selected = select(&all, &f, "last");
    let (page, next) = page(&selected, &f);
    Ok(page_response(envelope(&page, next), &page))
}

async fn object(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((root, id, object)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> Taxii {
    let (all, mut f) = listing(&state, &principal, &headers, &root, &id, query.as_deref())?;
    f.ids = vec![object.clone()];
    let selected = select(&all, &f, "last");
    if selected.is_empty() {
        return Err(TaxiiError::not_found(format!("no object {object} here")));
    }
    let (page, next) = page(&selected, &f);
    Ok(page_response(envelope(&page, next), &page))
}

async fn versions(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((root, id, object)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> Taxii {
    let (all, mut f) = listing(&state, &principal, &headers, &root, &id, query.as_deref())?;
    f.ids = vec![object.clone()];
    let selected = select(&all, &f, "all");
    if selected.is_empty() {
        return Err(TaxiiError::not_found(format!("no object {object} here")));
    }
    let (page, next) = page(&selected, &f);
    let versions = page.iter().map(|e| json!(e.version())).collect();
    Ok(page_response(paged("versions", versions, next), &page))
}

async fn manifest(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((root, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Taxii {
    let (all, f) = listing(&state, &principal, &headers, &root, &id, query.as_deref())?;
    let selected = select(&all, &f, "last");
    let (page, next) = page(&selected, &f);
    let records = page
        .iter()
        .map(|e| {
            json!({
                "id": e.id(),
                "date_added": escape_proto::stix::timestamp(e.date_added),
                "version": e.version(),
                "media_type": escape_proto::stix::STIX_MEDIA_TYPE,
            })
        })
        .collect();
    Ok(page_response(paged("objects", records, next), &page))
}

async fn add_objects(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((root, id)): Path<(String, String)>,
    body: Bytes,
) -> Taxii {
    accepts(&headers)?;
    check_root(&root)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|c| c.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase()
        .replace(' ', "");
    if content_type != "application/taxii+json" && content_type != TAXII_MEDIA_TYPE {
        return Err(TaxiiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported media type",
            format!("send an envelope as {TAXII_MEDIA_TYPE}"),
        ));
    }
    if body.len() > MAX_CONTENT_LENGTH {
        return Err(TaxiiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too large",
            format!("at most {MAX_CONTENT_LENGTH} bytes"),
        ));
    }
    let (room, can_write) = find_room(&state, &principal, &id)?;
    if !can_write {
        return Err(TaxiiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("you may not share indicators in {room}"),
        ));
    }
    let envelope: Value = serde_json::from_slice(&body)
        .map_err(|e| TaxiiError::new(StatusCode::BAD_REQUEST, "not JSON", e.to_string()))?;
    let auth = state
        .gate
        .authorize::<action::ShareIndicator>(&principal, room.clone())?;
    let objects = envelope["objects"].as_array().map_or(0, Vec::len);
    state.flood.check_n(
        principal.id(),
        crate::flood::Kind::Send,
        crate::http::indicators::bulk_cost(objects),
    )?;
    let report = crate::http::indicators::import_objects(&state, &auth, &envelope, None).await?;
    // The ids of the objects that could become indicators, in the order the report counts them.
    let ids: Vec<String> = escape_proto::stix::objects_of(&envelope)
        .map(|objects| {
            objects
                .iter()
                .filter(|o| matches!(o["type"].as_str(), Some("indicator" | "vulnerability")))
                .map(|o| o["id"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default();
    let mut successes = Vec::new();
    let mut failures = Vec::new();
    for outcome in &report.outcomes {
        match outcome {
            ShareOutcome::Accepted { indicator, .. } => {
                let served = escape_proto::stix::object(indicator, &indicators::stix::sha256);
                successes.push(json!({
                    "id": served["id"],
                    "version": served["modified"],
                }));
            }
            ShareOutcome::Rejected { index, error, .. } => failures.push(json!({
                "id": ids.get(*index).cloned().unwrap_or_default(),
                "message": error.to_string(),
            })),
        }
    }
    let status_id = uuid::Uuid::new_v4().to_string();
    let status = json!({
        "id": status_id,
        "status": "complete",
        "request_timestamp": escape_proto::stix::timestamp(OffsetDateTime::now_utc()),
        "total_count": successes.len() + failures.len(),
        "success_count": successes.len(),
        "failure_count": failures.len(),
        "pending_count": 0,
        "successes": successes,
        "failures": failures,
    });
    state
        .taxii_statuses
        .keep(status_id, principal.id().clone(), status.clone());
    state.audit.record(
        Some(principal.id()),
        "taxii.add_objects",
        room.as_str(),
        format!(
            "{} accepted, {} rejected",
            status["success_count"], status["failure_count"]
        ),
    );
    Ok(taxii(StatusCode::ACCEPTED, status))
}

async fn status(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((root, id)): Path<(String, String)>,
) -> Taxii {
    accepts(&headers)?;
    check_root(&root)?;
    let found = state.taxii_statuses.get(&id);
    match found {
        Some((owner, status)) if owner == *principal.id() => Ok(taxii(StatusCode::OK, status)),
        _ => Err(TaxiiError::not_found(format!("no status {id}"))),
    }
}
