//! Indicator routes: share, list, search, sightings, relabel, forward; STIX export and import.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use escape_proto::RoomName;
use escape_proto::indicator::{
    Forward, IndicatorRecord, ObservableType, Relabel, ShareIndicators, ShareOutcome, ShareReport,
    Sighting,
};
use escape_proto::tlp::Tlp;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::gate::{Deployment, action};
use crate::identity::Principal;
use crate::indicators;
use crate::state::AppState;

/// What a bulk share costs against the member's send budget: one, and one more per hundred.
pub(crate) fn bulk_cost(items: usize) -> u32 {
    u32::try_from(1 + items / 100).unwrap_or(u32::MAX)
}

/// Requests that carry many indicators (bulk shares, bundles) may be this large.
pub(crate) const MAX_BULK_BYTES: usize = 8 * 1024 * 1024;

fn room(raw: &str) -> Result<RoomName, ApiError> {
    RoomName::parse(raw).map_err(|e| ApiError::invalid(e.to_string()))
}

fn audit_share(state: &AppState, principal: &Principal, room: &RoomName, report: &ShareReport) {
    let accepted = report
        .outcomes
        .iter()
        .filter(|o| matches!(o, ShareOutcome::Accepted { .. }))
        .count();
    state.audit.record(
        Some(principal.id()),
        "indicator.share",
        room.as_str(),
        format!(
            "{accepted} accepted, {} rejected",
            report.outcomes.len() - accepted
        ),
    );
}

pub async fn share(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<ShareIndicators>, JsonRejection>,
) -> Result<Json<ShareReport>, ApiError> {
    let Path(raw) = path?;
    let Json(request) = body?;
    let auth = state
        .gate
        .authorize::<action::ShareIndicator>(&principal, room(&raw)?)?;
    state.flood.check_n(
        principal.id(),
        crate::flood::Kind::Send,
        bulk_cost(request.indicators.len()),
    )?;
    let report = indicators::share(&state, &auth, request.indicators).await?;
    audit_share(&state, &principal, auth.resource(), &report);
    Ok(Json(report))
}

pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<IndicatorRecord>>, ApiError> {
    let Path(raw) = path?;
    let auth = state
        .gate
        .authorize::<action::ReadHistory>(&principal, room(&raw)?)?;
    Ok(Json(indicators::list(&state, &auth)?))
}

#[derive(Debug, Deserialize)]
pub struct SearchQuery {
    value: String,
    #[serde(rename = "type")]
    kind: Option<String>,
}

pub async fn search(
    State(state): State<AppState>,
    principal: Principal,
    query: Result<Query<SearchQuery>, QueryRejection>,
) -> Result<Json<Vec<IndicatorRecord>>, ApiError> {
    let Query(query) = query?;
    state
        .gate
        .authorize::<action::ListRooms>(&principal, Deployment)?;
    let kind = match query.kind.as_deref() {
        None | Some("") => None,
        Some(kind) => Some(ObservableType::parse(kind).ok_or_else(|| {
            ApiError::invalid(format!("type: {kind:?} is not an observable type"))
        })?),
    };
    Ok(Json(indicators::search(
        &state,
        &principal,
        kind,
        &query.value,
    )?))
}

#[derive(Debug, Serialize)]
pub struct Sightings {
    sightings: u64,
}

pub async fn sight(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<(String, u64)>, PathRejection>,
    body: Result<Json<Sighting>, JsonRejection>,
) -> Result<Json<Sightings>, ApiError> {
    let Path((raw, seq)) = path?;
    let Json(sighting) = body?;
    let auth = state
        .gate
        .authorize::<action::ShareIndicator>(&principal, room(&raw)?)?;
    let sightings = indicators::sight(&state, &auth, seq, sighting)?;
    state.audit.record(
        Some(principal.id()),
        "indicator.sighting",
        auth.resource().as_str(),
        format!("#{seq}"),
    );
    Ok(Json(Sightings { sightings }))
}

pub async fn relabel(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<(String, u64)>, PathRejection>,
    body: Result<Json<Relabel>, JsonRejection>,
) -> Result<Json<IndicatorRecord>, ApiError> {
    let Path((raw, seq)) = path?;
    let Json(request) = body?;
    let auth = state
        .gate
        .authorize::<action::ShareIndicator>(&principal, room(&raw)?)?;
    let record = indicators::relabel(&state, &auth, seq, &request.tlp).await?;
    state.audit.record(
        Some(principal.id()),
        "indicator.relabel",
        auth.resource().as_str(),
        format!("{} now {}", record.indicator.id, record.indicator.tlp),
    );
    Ok(Json(record))
}

pub async fn forward(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<(String, u64)>, PathRejection>,
    body: Result<Json<Forward>, JsonRejection>,
) -> Result<Json<IndicatorRecord>, ApiError> {
    let Path((raw, seq)) = path?;
    let Json(request) = body?;
    let from = room(&raw)?;
    let to = state
        .gate
        .authorize::<action::ShareIndicator>(&principal, request.to)?;
    let record = indicators::forward(&state, &principal, &from, seq, &to).await?;
    state.audit.record(
        Some(principal.id()),
        "indicator.forward",
        from.as_str(),
        format!("{} to {}", record.indicator.id, record.room),
    );
    Ok(Json(record))
}

/// A STIX 2.1 bundle of what this member may export from the room.
pub async fn export(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(raw) = path?;
    let auth = state
        .gate
        .authorize::<action::ReadHistory>(&principal, room(&raw)?)?;
    let records = indicators::list(&state, &auth)?;
    let bundle = indicators::stix::export(&records);
    state.audit.record(
        Some(principal.id()),
        "indicator.export",
        auth.resource().as_str(),
        "STIX bundle",
    );
    Ok((
        [(header::CONTENT_TYPE, escape_proto::stix::STIX_MEDIA_TYPE)],
        Json(bundle),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
pub struct ImportQuery {
    /// The label for objects without a TLP marking.
    tlp: Option<String>,
}

/// Shares the indicators of a STIX 2.1 bundle into the room.
pub async fn import(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<ImportQuery>, QueryRejection>,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<Json<ShareReport>, ApiError> {
    let Path(raw) = path?;
    let Query(query) = query?;
    let Json(document) = body?;
    let default_tlp = match query.tlp.as_deref() {
        None | Some("") => None,
        Some(t) => {
            Some(Tlp::parse(t).ok_or_else(|| ApiError::invalid("tlp: not a TLP 2.0 label"))?)
        }
    };
    let auth = state
        .gate
        .authorize::<action::ShareIndicator>(&principal, room(&raw)?)?;
    let objects = document["objects"].as_array().map_or(0, Vec::len);
    state
        .flood
        .check_n(principal.id(), crate::flood::Kind::Send, bulk_cost(objects))?;
    let report = import_objects(&state, &auth, &document, default_tlp).await?;
    audit_share(&state, &principal, auth.resource(), &report);
    Ok(Json(report))
}

/// Shares what a bundle (or envelope) holds; objects that cannot be read are reported in the
/// same report, by their position among the indicators.
pub(crate) async fn import_objects(
    state: &AppState,
    auth: &crate::gate::Authorized<action::ShareIndicator>,
    document: &serde_json::Value,
    default_tlp: Option<Tlp>,
) -> Result<ShareReport, ApiError> {
    let objects = escape_proto::stix::objects_of(document).map_err(ApiError::invalid)?;
    let parsed = escape_proto::stix::drafts_from_objects(objects, default_tlp);
    let mut drafts = Vec::new();
    let mut positions = Vec::new();
    let mut rejected = Vec::new();
    for (index, item) in parsed.into_iter().enumerate() {
        match item {
            Ok(draft) => {
                positions.push(index);
                drafts.push(draft);
            }
            Err((value, error)) => rejected.push(ShareOutcome::Rejected {
                index,
                value,
                error,
            }),
        }
    }
    let mut report = indicators::share(state, auth, drafts).await?;
    for outcome in &mut report.outcomes {
        if let ShareOutcome::Rejected { index, .. } = outcome {
            *index = positions.get(*index).copied().unwrap_or(*index);
        }
    }
    report.outcomes.extend(rejected);
    Ok(report)
}
