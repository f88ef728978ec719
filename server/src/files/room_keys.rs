//! Key generations of a room: who holds which, and when the next one is due.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use escape_proto::file::{
    AddCopies, KeyGeneration, KeyHolder, MissingCopy, NewGeneration, RoomKeys,
};
use escape_proto::{ErrorCode, MemberId, MemberStatus, RoomName};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::Files;
use crate::error::ApiError;
use crate::gate::{Authorized, action};
use crate::store::{Batch, Store, StoreError, keys, value};

/// A sealed copy is an armored age file of one X25519 identity: small.
const MAX_COPY_BYTES: usize = 4096;
const ARMOR_BEGIN: &str = "-----BEGIN AGE ENCRYPTED FILE-----";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct KeyState {
    pub current: Option<u32>,
    pub rotation_needed: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct GenerationRecord {
    generation: u32,
    recipient: String,
    created_by: MemberId,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    copies: BTreeMap<MemberId, String>,
}

/// Serialises every change to key generations and to the membership they are sealed to: a
/// generation checked against the members must not miss one who leaves meanwhile. One server
/// process owns a store, so a process-wide lock is the whole of it.
static KEY_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub(crate) fn key_lock() -> Result<std::sync::MutexGuard<'static, ()>, ApiError> {
    KEY_LOCK
        .lock()
        .map_err(|_| ApiError::internal(&"room key lock poisoned"))
}

/// The rooms `member` belongs to.
fn rooms_of(store: &dyn Store, member: &MemberId) -> Result<Vec<RoomName>, StoreError> {
    let prefix = keys::member_rooms_prefix(member);
    Ok(store
        .scan_prefix(&prefix, usize::MAX)?
        .into_iter()
        .filter_map(|(key, _)| {
            std::str::from_utf8(&key[prefix.len()..])
                .ok()
                .and_then(|name| RoomName::parse(name).ok())
        })
        .collect())
}

/// Adds to `batch` the marks for every room of `member` to need a new key generation (they are
/// being suspended or revoked): files shared from now on must not be readable with a key they
/// hold. In the batch that changes the member's status, so that no crash can keep one without
/// the other. Call with [`key_lock`] held until the batch is applied.
pub fn mark_departure(
    store: &dyn Store,
    member: &MemberId,
    batch: &mut Batch,
) -> Result<(), StoreError> {
    for room in rooms_of(store, member)? {
        mark_rotation(store, &room, batch)?;
    }
    Ok(())
}

/// A reinstated member is back in its rooms. Where joiners get no existing generation, it gets
/// none either: the next upload makes one that includes it. As [`mark_departure`].
pub fn mark_return(
    store: &dyn Store,
    member: &MemberId,
    batch: &mut Batch,
) -> Result<(), StoreError> {
    for room in rooms_of(store, member)? {
        if let Some(record) = crate::rooms::RoomRecord::load(store, &room)?
            && !record.history_for_joiners()
        {
            mark_rotation(store, &room, batch)?;
        }
    }
    Ok(())
}

/// Adds to `batch` the write that marks `room` as needing a new generation, if it has one at
/// all, so that the mark lands atomically with the membership change that calls for it. Call
/// with [`key_lock`] held.
pub(crate) fn mark_rotation(
    store: &dyn Store,
    room: &RoomName,
    batch: &mut Batch,
) -> Result<(), StoreError> {
    let key = keys::room_key_state(room);
    let mut state: KeyState = match store.get(&key)? {
        Some(bytes) => value::decode(&key, &bytes)?,
        None => return Ok(()),
    };
    if state.current.is_some() && !state.rotation_needed {
        state.rotation_needed = true;
        batch.put(key, value::encode(&state)?);
    }
    Ok(())
}

impl Files {
    pub(super) fn key_state(&self, room: &RoomName) -> Result<KeyState, ApiError> {
        let key = keys::room_key_state(room);
        Ok(match self.store.get(&key)? {
            Some(bytes) => value::decode(&key, &bytes)?,
            None => KeyState::default(),
        })
    }

    fn generations(&self, room: &RoomName) -> Result<Vec<GenerationRecord>, ApiError> {
        self.store
            .scan_prefix(&keys::room_keys_prefix(room), usize::MAX)?
            .into_iter()
            .map(|(k, v)| value::decode(&k, &v).map_err(ApiError::from))
            .collect()
    }

    /// Active members of the room who registered an age recipient.
    fn holders(&self, room: &RoomName) -> Result<Vec<KeyHolder>, ApiError> {
        let prefix = keys::room_members_prefix(room);
        let mut holders = Vec::new();
        for (key, _) in self.store.scan_prefix(&prefix, usize::MAX)? {
            let Some(id) = std::str::from_utf8(&key[prefix.len()..])
                .ok()
                .and_then(|s| MemberId::parse(s).ok())
            else {
                continue;
            };
            if let Some(member) = self.registry.get(&id)?
                && member.status == MemberStatus::Active
                && let Some(recipient) = member.age_recipient
            {
                holders.push(KeyHolder {
                    member: id,
                    age_recipient: recipient,
                });
            }
        }
        Ok(holders)
    }

    fn history_for_joiners(&self, room: &RoomName) -> Result<bool, ApiError> {
        Ok(crate::rooms::RoomRecord::load(self.store.as_ref(), room)?
            .is_some_and(|record| record.history_for_joiners()))
    }

    /// The room's generations with the caller's sealed copies, and who still lacks one.
    pub fn keys(&self, auth: &Authorized<action::DownloadFile>) -> Result<RoomKeys, ApiError> {
        let room = auth.resource();
        let me = auth.principal().id();
        let state = self.key_state(room)?;
        let history = self.history_for_joiners(room)?;
        let holders = self.holders(room)?;
        let generations = self.generations(room)?;
        let mut missing = Vec::new();
        // Where joiners do not get older keys, copies are never added after a generation is
        // made: a join starts a new generation instead (see `Rooms::add_member`).
        for g in generations.iter().filter(|_| history) {
            for h in &holders {
                if !g.copies.contains_key(&h.member) {
                    missing.push(MissingCopy {
                        generation: g.generation,
                        member: h.member.clone(),
                        age_recipient: h.age_recipient.clone(),
                    });
                }
            }
        }
        Ok(RoomKeys {
            room: room.clone(),
            current: state.current,
            rotation_needed: state.rotation_needed,
            history_for_joiners: history,
            generations: generations
                .into_iter()
                .map(|g| KeyGeneration {
                    copy: g.copies.get(me).cloned(),
                    generation: g.generation,
                    recipient: g.recipient,
                    created_by: g.created_by,
                    created_at: g.created_at,
                })
                .collect(),
            holders,
            missing,
        })
    }

    /// Stores the next generation, sealed to exactly the current holders.
    pub fn new_generation(
        &self,
        auth: &Authorized<action::UploadFile>,
        request: NewGeneration,
    ) -> Result<KeyGeneration, ApiError> {
        let room = auth.resource();
        let _guard = key_lock()?;
        let state = self.key_state(room)?;
        let expected = state.current.map_or(1, |c| c.saturating_add(1));
        if request.generation != expected {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!(
                    "the next generation of {room} is {expected}; fetch the keys again and retry"
                ),
            ));
        }
        age::x25519::Recipient::from_str(request.recipient.trim()).map_err(|e| {
            ApiError::invalid(format!("recipient: not an age X25519 recipient ({e})"))
        })?;
        let holders: BTreeSet<MemberId> =
            self.holders(room)?.into_iter().map(|h| h.member).collect();
        let given: BTreeSet<MemberId> = request.copies.keys().cloned().collect();
        if given != holders {
            let lacking: Vec<String> = holders.difference(&given).map(|m| m.to_string()).collect();
            let extra: Vec<String> = given.difference(&holders).map(|m| m.to_string()).collect();
            return Err(ApiError::new(
                ErrorCode::Precondition,
                format!(
                    "a generation is sealed to exactly the room's current members; missing: [{}], not members: [{}]",
                    lacking.join(", "),
                    extra.join(", ")
                ),
            ));
        }
        for copy in request.copies.values() {
            check_copy(copy)?;
        }
        let record = GenerationRecord {
            generation: request.generation,
            recipient: request.recipient.trim().to_owned(),
            created_by: auth.principal().id().clone(),
            created_at: OffsetDateTime::now_utc(),
            copies: request.copies,
        };
        let new_state = KeyState {
            current: Some(request.generation),
            rotation_needed: false,
        };
        let mut batch = Batch::default();
        batch
            .put(
                keys::room_key(room, request.generation),
                value::encode(&record)?,
            )
            .put(keys::room_key_state(room), value::encode(&new_state)?);
        self.store.apply(batch)?;
        Ok(KeyGeneration {
            copy: record.copies.get(auth.principal().id()).cloned(),
            generation: record.generation,
            recipient: record.recipient,
            created_by: record.created_by,
            created_at: record.created_at,
        })
    }

    /// Adds copies of an existing generation for members who lack one (rooms that give joiners
    /// the older keys).
    pub fn add_copies(
        &self,
        auth: &Authorized<action::UploadFile>,
        generation: u32,
        request: AddCopies,
    ) -> Result<usize, ApiError> {
        let room = auth.resource();
        let _guard = key_lock()?;
        let key = keys::room_key(room, generation);
        let mut record: GenerationRecord = match self.store.get(&key)? {
            Some(bytes) => value::decode(&key, &bytes)?,
            None => {
                return Err(ApiError::new(
                    ErrorCode::NotFound,
                    format!("{room} has no key generation {generation}"),
                ));
            }
        };
        if !self.history_for_joiners(room)? {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "{room} does not give existing key generations to members who join later; the next upload makes one that includes them"
                ),
            ));
        }
        if !record.copies.contains_key(auth.principal().id()) {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("only a member who holds generation {generation} can share it"),
            ));
        }
        let holders: BTreeSet<MemberId> =
            self.holders(room)?.into_iter().map(|h| h.member).collect();
        for (member, copy) in &request.copies {
            if !holders.contains(member) {
                return Err(ApiError::new(
                    ErrorCode::Precondition,
                    format!("{member} is not an active member of {room} with a file key"),
                ));
            }
            if record.copies.contains_key(member) {
                return Err(ApiError::new(
                    ErrorCode::Conflict,
                    format!("{member} already holds generation {generation}"),
                ));
            }
            check_copy(copy)?;
        }
        let added = request.copies.len();
        record.copies.extend(request.copies);
        self.store.put(&key, &value::encode(&record)?)?;
        Ok(added)
    }
}

fn check_copy(copy: &str) -> Result<(), ApiError> {
    if copy.len() > MAX_COPY_BYTES || !copy.trim_start().starts_with(ARMOR_BEGIN) {
        return Err(ApiError::invalid(
            "a sealed copy is an armored age file of at most 4 KiB",
        ));
    }
    Ok(())
}
