//! Threat indicators in rooms: sharing (checked, normalised, stamped with their source), the
//! index that correlates the same value across rooms, search, sightings, relabelling and
//! forwarding, and STIX export.
//!
//! Indicators travel as events of the room's log, so they are sequenced, stored and delivered
//! like messages. Every read here goes through the gate twice: may this member read the room
//! (`Deliver`, which is not audited as an attempt), then may it read this event
//! ([`Gate::may_read_event`](crate::gate::Gate::may_read_event), the TLP 2.0 rule).

pub mod stix;

use std::collections::BTreeMap;

use escape_proto::indicator::{
    FieldError, Indicator, IndicatorDraft, IndicatorRecord, ObservableType, ShareOutcome,
    ShareReport, Sighting, normalise,
};
use escape_proto::tlp::Tlp;
use escape_proto::{Body, ErrorCode, Event, MemberId, RoomName};
use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::gate::{Authorized, action};
use crate::identity::Principal;
use crate::state::AppState;
use crate::store::{Swap, keys, value};

/// How many indicators one request may share.
pub const MAX_PER_REQUEST: usize = 5000;

/// How many places of one value a search or a correlation looks at: the newest rooms first
/// would need another index; this bounds the work of one request.
const MAX_PLACES: usize = 1000;

/// Sightings counted per indicator at most (one per member).
const MAX_SIGHTINGS: usize = 100_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSighting {
    member: MemberId,
    organisation: String,
    #[serde(with = "time::serde::rfc3339")]
    seen_at: OffsetDateTime,
    note: String,
}

/// The index key for a value: HMAC-SHA256 under the deployment's index secret.
fn index_mac(state: &AppState, kind: ObservableType, value: &str) -> Result<String, ApiError> {
    let store = state.registry.store();
    let secret = match store.get(keys::INDICATOR_INDEX_SECRET)? {
        Some(secret) => secret,
        None => {
            let mut fresh = [0u8; 32];
            ring::rand::SystemRandom::new()
                .fill(&mut fresh)
                .map_err(|_| ApiError::internal(&"no randomness"))?;
            match store.compare_and_swap(keys::INDICATOR_INDEX_SECRET, None, Some(&fresh))? {
                Swap::Done => fresh.to_vec(),
                Swap::Conflict => store
                    .get(keys::INDICATOR_INDEX_SECRET)?
                    .ok_or_else(|| ApiError::internal(&"index secret vanished"))?,
            }
        }
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret);
    let tag = ring::hmac::sign(&key, format!("{kind}:{value}").as_bytes());
    Ok(tag.as_ref().iter().map(|b| format!("{b:02x}")).collect())
}

/// The label a room takes at most (its `tlp_max`).
fn room_ceiling(state: &AppState, room: &RoomName) -> Result<Tlp, ApiError> {
    Ok(Tlp::parse(&state.gate.room(room)?.tlp_max).unwrap_or(Tlp::Amber))
}

fn ceiling_error(room: &RoomName, ceiling: Tlp, tlp: Tlp) -> FieldError {
    FieldError {
        field: "tlp".into(),
        reason: format!("{room} takes labels up to {ceiling}; share {tlp} in a room made for it"),
    }
}

/// Stores one indicator event in an authorised room and indexes it under `mac` (its
/// [`index_mac`]).
fn store_indicator(
    state: &AppState,
    auth: &Authorized<action::ShareIndicator>,
    indicator: Indicator,
    mac: &str,
) -> Result<u64, ApiError> {
    let room = auth.resource();
    let (id, tlp) = (indicator.id.clone(), indicator.tlp);
    // Written with the indicator's run, after it: a label that outlived its indicator in a
    // crash would relabel the versions before it.
    let appended = state.rooms.append_indicator(auth, indicator, |seq| {
        let latest = crate::gate::LatestVersion {
            seq,
            tlp,
            at: OffsetDateTime::now_utc(),
        };
        let mut batch = crate::store::Batch::default();
        batch
            .put(keys::indicator_index(mac, room, seq), Vec::new())
            .put(keys::indicator_latest(room, &id), value::encode(&latest)?);
        Ok(batch)
    })?;
    Ok(appended.seq)
}

/// Shares checked drafts into the room; each is accepted or rejected with its reason.
pub async fn share(
    state: &AppState,
    auth: &Authorized<action::ShareIndicator>,
    drafts: Vec<IndicatorDraft>,
) -> Result<ShareReport, ApiError> {
    if drafts.len() > MAX_PER_REQUEST {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!("at most {MAX_PER_REQUEST} indicators per request"),
        ));
    }
    let room = auth.resource();
    let ceiling = room_ceiling(state, room)?;
    let sharer = auth.principal().member();
    let now = OffsetDateTime::now_utc();
    let mut outcomes = Vec::with_capacity(drafts.len());
    let mut last = 0;
    for (index, draft) in drafts.into_iter().enumerate() {
        let checked = match draft.check() {
            Ok(checked) if checked.tlp < ceiling => Err(ceiling_error(room, ceiling, checked.tlp)),
            other => other,
        };
        let checked = match checked {
            Ok(checked) => checked,
            Err(error) => {
                outcomes.push(ShareOutcome::Rejected {
                    index,
                    value: draft.value.chars().take(200).collect(),
                    error,
                });
                continue;
            }
        };
        let indicator = Indicator {
            tlp: checked.tlp,
            kind: checked.kind,
            value: checked.value,
            id: checked
                .stix_id
                .unwrap_or_else(|| format!("indicator--{}", uuid::Uuid::new_v4())),
            confidence: checked.confidence,
            valid_from: checked.valid_from.unwrap_or(now),
            valid_until: checked.valid_until,
            description: checked.description,
            tags: checked.tags,
            kill_chain_phase: checked.kill_chain_phase,
            sharer: sharer.id.clone(),
            source_organisation: sharer.attributes.organisation.clone(),
            source_clients: sharer.attributes.clients.clone(),
            created: now,
            modified: now,
            forwarded_from: None,
        };
        let mac = index_mac(state, indicator.kind, &indicator.value)?;
        let seen_in = correlate(state, auth.principal(), &mac, room)?;
        let seq = store_indicator(state, auth, indicator.clone(), &mac)?;
        last = last.max(seq);
        outcomes.push(ShareOutcome::Accepted {
            seq,
            indicator: Box::new(indicator),
            seen_in,
        });
    }
    if last > 0 {
        state.rooms.durable(room, last).await?;
    }
    Ok(ShareReport { outcomes })
}

/// The event at `seq` of `room` if `principal` may read it now (room, then label).
fn readable(
    state: &AppState,
    principal: &Principal,
    room: &RoomName,
    seq: u64,
) -> Result<Option<Event>, ApiError> {
    if !state
        .gate
        .permits::<action::ReadHistory>(principal, room.clone())
    {
        return Ok(None);
    }
    if seq > state.rooms.durable_head(room)? {
        return Ok(None);
    }
    let Some(event) = state.rooms.event(room, seq)? else {
        return Ok(None);
    };
    Ok(state
        .gate
        .may_read_event(principal, &event)?
        .then_some(event))
}

/// Every readable event where the value indexed under `mac` was shared.
fn places(state: &AppState, principal: &Principal, mac: &str) -> Result<Vec<Event>, ApiError> {
    let prefix = keys::indicator_index_prefix(mac);
    let mut found = Vec::new();
    for (key, _) in state.registry.store().scan_prefix(&prefix, MAX_PLACES)? {
        let rest = &key[prefix.len()..];
        let Some(split) = rest.len().checked_sub(9) else {
            continue;
        };
        let (Ok(room), Some(seq)) = (
            std::str::from_utf8(&rest[..split])
                .map_err(|_| ())
                .and_then(|r| RoomName::parse(r).map_err(|_| ())),
            keys::seq_of_message_key(rest),
        ) else {
            continue;
        };
        if let Some(event) = readable(state, principal, &room, seq)? {
            found.push(event);
        }
    }
    Ok(found)
}

/// Other rooms than `except` where the value indexed under `mac` was shared and `principal`
/// may read it.
fn correlate(
    state: &AppState,
    principal: &Principal,
    mac: &str,
    except: &RoomName,
) -> Result<Vec<RoomName>, ApiError> {
    let mut rooms: Vec<RoomName> = places(state, principal, mac)?
        .into_iter()
        .map(|event| event.room)
        .filter(|room| room != except)
        .collect();
    rooms.sort();
    rooms.dedup();
    Ok(rooms)
}

fn sightings(state: &AppState, indicator: &str) -> Result<u64, ApiError> {
    Ok(state
        .registry
        .store()
        .scan_prefix(&keys::sightings_prefix(indicator), MAX_SIGHTINGS)?
        .len() as u64)
}

/// A readable event as a record, with the label that governs it now.
fn record(state: &AppState, event: Event) -> Result<Option<IndicatorRecord>, ApiError> {
    let effective = state.gate.effective_label(&event)?;
    let Body::Indicator(mut indicator) = event.body else {
        return Ok(None);
    };
    if let Some((tlp, _)) = effective {
        indicator.tlp = tlp;
    }
    Ok(Some(IndicatorRecord {
        sightings: sightings(state, &indicator.id)?,
        room: event.room,
        seq: event.seq,
        indicator: *indicator,
    }))
}

/// Everything `value` (of `kind`, or recognised) is known as, where `principal` may read it.
pub fn search(
    state: &AppState,
    principal: &Principal,
    kind: Option<ObservableType>,
    value: &str,
) -> Result<Vec<IndicatorRecord>, ApiError> {
    let kind = match kind {
        Some(kind) => kind,
        None => escape_proto::indicator::infer_type(value).ok_or_else(|| {
            ApiError::invalid("value: cannot tell its type; give type=ipv4, domain, ...")
        })?,
    };
    let value = normalise(kind, value).map_err(|e| ApiError::invalid(e.to_string()))?;
    let mut records = Vec::new();
    let mac = index_mac(state, kind, &value)?;
    for event in places(state, principal, &mac)? {
        if let Some(r) = record(state, event)? {
            records.push(r);
        }
    }
    Ok(records)
}

/// The room's indicators this member may read, oldest first (every version: a relabel is a
/// new event).
pub fn list(
    state: &AppState,
    auth: &Authorized<action::ReadHistory>,
) -> Result<Vec<IndicatorRecord>, ApiError> {
    let room = auth.resource();
    let head = state.rooms.durable_head(room)?;
    let mut records = Vec::new();
    let mut next = 1;
    while next <= head {
        let events = state.rooms.read_range(room, next, head, 512)?;
        let Some(last) = events.last() else {
            break;
        };
        next = last.seq + 1;
        for event in events {
            if matches!(event.body, Body::Indicator(_))
                && state.gate.may_read_event(auth.principal(), &event)?
                && let Some(r) = record(state, event.event.clone())?
            {
                records.push(r);
            }
        }
    }
    Ok(records)
}

/// The latest version of each indicator in `records` (by STIX id), for exports.
pub fn latest(records: &[IndicatorRecord]) -> Vec<&IndicatorRecord> {
    let mut by_id: BTreeMap<&str, &IndicatorRecord> = BTreeMap::new();
    for r in records {
        let newer = by_id.get(r.indicator.id.as_str()).is_none_or(|seen| {
            (seen.indicator.modified, seen.seq) <= (r.indicator.modified, r.seq)
        });
        if newer {
            by_id.insert(&r.indicator.id, r);
        }
    }
    let mut latest: Vec<_> = by_id.into_values().collect();
    latest.sort_by_key(|r| r.seq);
    latest
}

fn readable_indicator(
    state: &AppState,
    principal: &Principal,
    room: &RoomName,
    seq: u64,
) -> Result<Indicator, ApiError> {
    let not_found = || {
        ApiError::new(
            ErrorCode::NotFound,
            format!("{room} has no indicator {seq} you may read"),
        )
    };
    let event = readable(state, principal, room, seq)?.ok_or_else(not_found)?;
    let (tlp, _) = state.gate.effective_label(&event)?.ok_or_else(not_found)?;
    let Body::Indicator(mut indicator) = event.body else {
        return Err(not_found());
    };
    indicator.tlp = tlp;
    Ok(*indicator)
}

/// Refuses to act on a superseded version: relabels and forwards start from the newest.
fn newest(state: &AppState, room: &RoomName, seq: u64, id: &str) -> Result<(), ApiError> {
    match state.gate.latest_version(room, id)? {
        Some(latest) if latest.seq != seq => Err(ApiError::new(
            ErrorCode::Conflict,
            format!(
                "{room}#{seq} is an older version of this indicator; use the newest, #{}",
                latest.seq
            ),
        )),
        _ => Ok(()),
    }
}

/// Records that the member saw the indicator (one sighting per member and indicator, the
/// latest report kept); returns how many members have reported it.
pub fn sight(
    state: &AppState,
    auth: &Authorized<action::ShareIndicator>,
    seq: u64,
    sighting: Sighting,
) -> Result<u64, ApiError> {
    let (principal, room) = (auth.principal(), auth.resource());
    let indicator = readable_indicator(state, principal, room, seq)?;
    if sighting.note.len() > 1024 || sighting.note.chars().any(char::is_control) {
        return Err(ApiError::invalid("note: at most 1024 printable bytes"));
    }
    let now = OffsetDateTime::now_utc();
    let seen_at = sighting.seen_at.unwrap_or(now);
    if seen_at > now + time::Duration::minutes(5) {
        return Err(ApiError::invalid("seen_at: in the future"));
    }
    let stored = StoredSighting {
        member: principal.id().clone(),
        organisation: principal.member().attributes.organisation.clone(),
        seen_at,
        note: sighting.note,
    };
    state.registry.store().put(
        &keys::sighting(&indicator.id, principal.id()),
        &value::encode(&stored)?,
    )?;
    sightings(state, &indicator.id)
}

/// A new version of an indicator with another label. Only its original sharer may relabel it
/// (TLP: widening needs the source's permission).
pub async fn relabel(
    state: &AppState,
    auth: &Authorized<action::ShareIndicator>,
    seq: u64,
    tlp: &str,
) -> Result<IndicatorRecord, ApiError> {
    let room = auth.resource();
    let mut indicator = readable_indicator(state, auth.principal(), room, seq)?;
    newest(state, room, seq, &indicator.id)?;
    let tlp = Tlp::parse(tlp).ok_or_else(|| ApiError::invalid("tlp: not a TLP 2.0 label"))?;
    if indicator.sharer != *auth.principal().id() {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "only the member who shared an indicator may change its label",
        ));
    }
    let ceiling = room_ceiling(state, room)?;
    if tlp < ceiling {
        return Err(ApiError::invalid(
            ceiling_error(room, ceiling, tlp).to_string(),
        ));
    }
    indicator.tlp = tlp;
    indicator.modified = OffsetDateTime::now_utc();
    let mac = index_mac(state, indicator.kind, &indicator.value)?;
    let new_seq = store_indicator(state, auth, indicator.clone(), &mac)?;
    state.rooms.durable(room, new_seq).await?;
    Ok(IndicatorRecord {
        room: room.clone(),
        seq: new_seq,
        indicator,
        sightings: 0,
    })
}

/// Copies a readable indicator into another room the member may share into. TLP:RED never
/// leaves the room where it was shared; the copy keeps its label and source, so the same rule
/// decides who reads it there.
pub async fn forward(
    state: &AppState,
    principal: &Principal,
    from: &RoomName,
    seq: u64,
    to: &Authorized<action::ShareIndicator>,
) -> Result<IndicatorRecord, ApiError> {
    if to.resource() == from {
        return Err(ApiError::invalid("forward to another room"));
    }
    let mut indicator = readable_indicator(state, principal, from, seq)?;
    newest(state, from, seq, &indicator.id)?;
    if indicator.tlp == Tlp::Red {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "TLP:RED never leaves the room where it was shared",
        ));
    }
    let target = to.resource();
    let ceiling = room_ceiling(state, target)?;
    if indicator.tlp < ceiling {
        return Err(ApiError::invalid(
            ceiling_error(target, ceiling, indicator.tlp).to_string(),
        ));
    }
    indicator.forwarded_from.get_or_insert_with(|| from.clone());
    let mac = index_mac(state, indicator.kind, &indicator.value)?;
    let new_seq = store_indicator(state, to, indicator.clone(), &mac)?;
    state.rooms.durable(target, new_seq).await?;
    Ok(IndicatorRecord {
        room: target.clone(),
        seq: new_seq,
        indicator,
        sightings: 0,
    })
}
