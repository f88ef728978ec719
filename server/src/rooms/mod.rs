//! Rooms: creation, membership, the ordered message log of each room, and history pages.
//!
//! Every operation takes an [`Authorized`] for its own action: the gate has already decided.

mod commit;
mod recent;
mod stored;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use escape_proto::room::{CreateRoom, HistoryPage, HistoryQuery, RoomSummary};
use escape_proto::{Body, ErrorCode, Event, MemberId, RoomName};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Limits;
use crate::error::ApiError;
use crate::gate::{Authorized, action};
use crate::store::{Batch, Order, Store, StoreError, Swap, keys, value};

pub use commit::{Committer, DurableHead};
pub use recent::SharedEvent;

/// A room as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoomRecord {
    pub name: RoomName,
    pub topic: String,
    /// The room's admin: may change its policy.
    pub created_by: MemberId,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(default = "default_tlp_max")]
    pub tlp_max: String,
    #[serde(default)]
    pub classification: u8,
    #[serde(default)]
    pub owner_organisation: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// See [`CreateRoom::history_for_joiners`]; `None` means the default for the room's TLP.
    #[serde(default)]
    pub history_for_joiners: Option<bool>,
    /// Whether joiners read messages from before they joined (`shared`, the default) or not
    /// (`joined`).
    #[serde(default)]
    pub history: Option<String>,
    /// Messages older than this many days are deleted (`None` or 0: kept).
    #[serde(default)]
    pub retention_days: Option<u32>,
    /// Only invited members (and admins) may join.
    #[serde(default)]
    pub invite_only: bool,
    #[serde(default)]
    pub invited: Vec<MemberId>,
}

fn default_tlp_max() -> String {
    "AMBER".into()
}

/// The TLP 2.0 labels, in widening order of who may see them.
pub const TLP_LABELS: &[&str] = &["RED", "AMBER+STRICT", "AMBER", "GREEN", "CLEAR"];

impl RoomRecord {
    /// The stored room, if there is one: the one place a room record is read.
    pub fn load(store: &dyn Store, room: &RoomName) -> Result<Option<Self>, StoreError> {
        let key = keys::room(room);
        store
            .get(&key)?
            .map(|bytes| value::decode(&key, &bytes))
            .transpose()
    }

    /// The stored room, or `room_not_found`.
    pub fn require(store: &dyn Store, room: &RoomName) -> Result<Self, ApiError> {
        Self::load(store, room)?.ok_or_else(|| {
            ApiError::new(ErrorCode::RoomNotFound, format!("there is no room {room}"))
        })
    }

    /// Whether a member reads what was said before it joined.
    pub fn shares_history(&self) -> bool {
        self.history.as_deref() != Some("joined")
    }

    /// Whether joiners get older file key generations: as set, else not in TLP:RED rooms.
    pub fn history_for_joiners(&self) -> bool {
        self.history_for_joiners.unwrap_or(self.tlp_max != "RED")
    }

    /// About how much memory the decoded record and what policies see of it take, for caches
    /// that must stay within a budget.
    pub fn approximate_bytes(&self) -> usize {
        let strings = |v: &[String]| v.iter().map(|s| s.len() + 24).sum::<usize>();
        let ids = self
            .invited
            .iter()
            .map(|id| id.as_str().len() + 24)
            .sum::<usize>();
        // The record, then the attributes made from it (name, label, owner, tags once more).
        2 * (self.name.as_str().len() + self.tlp_max.len() + self.owner_organisation.len())
            + self.topic.len()
            + self.created_by.as_str().len()
            + 2 * strings(&self.tags)
            + ids
            + 512
    }

    /// What policies see of the room.
    pub fn attributes(&self) -> crate::policy::RoomAttributes {
        crate::policy::RoomAttributes {
            name: self.name.clone(),
            classification: self.classification,
            tlp_max: self.tlp_max.clone(),
            owner_organisation: self.owner_organisation.clone(),
            tags: self.tags.clone(),
        }
    }
}

/// A membership as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Membership {
    #[serde(with = "time::serde::rfc3339")]
    pub joined_at: OffsetDateTime,
}

/// The sequencing state of one room.
///
/// Locks are taken in this order: `last`, `writer`, `pending`, `recent`.
#[derive(Debug)]
struct RoomLog {
    room: RoomName,
    /// The last sequence handed out (maybe not yet written, nor durable). Appends hold this lock
    /// while they check for a duplicate, take the next sequence and hand the event over.
    last: Mutex<u64>,
    durable: Arc<DurableHead>,
    /// The newest events, for live readers (see [`recent`]).
    recent: Mutex<recent::Recent>,
    /// Held while the committer writes the room's events, and by whoever reads or rewrites an
    /// event that may not be written yet: under it, every appended event is either pending or
    /// in the store.
    writer: Mutex<()>,
    pending: Mutex<Pending>,
}

/// What a room appended that the store does not hold yet.
#[derive(Debug, Default)]
struct Pending {
    /// Events appended since the committer last took them, in sequence order.
    events: Vec<stored::PendingEvent>,
}

impl Pending {
    /// The pending event `seq`, if it is one.
    fn event(&self, seq: u64) -> Option<Event> {
        self.events
            .iter()
            .find(|p| p.event.seq == seq)
            .map(|p| p.event.event.clone())
    }
}

fn store_lock_poisoned() -> StoreError {
    StoreError::Backend("a room's lock is poisoned".into())
}

impl RoomLog {
    /// Writes every event appended since the last call, as runs (see [`stored`]). The
    /// committer calls it before each flush.
    fn write(&self, store: &dyn Store) -> Result<(), StoreError> {
        let _writer = self.writer.lock().map_err(|_| store_lock_poisoned())?;
        let events = std::mem::take(
            &mut self
                .pending
                .lock()
                .map_err(|_| store_lock_poisoned())?
                .events,
        );
        if events.is_empty() {
            return Ok(());
        }
        // On failure the events are lost and nothing is acknowledged again (see `commit`);
        // their client id records, written already, are found stale (see `earlier`).
        stored::write(store, &self.room, &events)
    }

    /// An appended event, written or not. Takes the writer lock.
    fn event(&self, store: &dyn Store, seq: u64) -> Result<Option<Event>, ApiError> {
        let _writer = self.writer.lock().map_err(|_| lock_poisoned())?;
        let pending = self.pending.lock().map_err(|_| lock_poisoned())?.event(seq);
        match pending {
            Some(event) => Ok(Some(event)),
            None => Ok(stored::event(store, &self.room, seq)?),
        }
    }
}

/// The outcome of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
    /// The client message id had been stored before; nothing new was written.
    pub duplicate: bool,
}

#[derive(Debug)]
pub struct Rooms {
    store: Arc<dyn Store>,
    logs: Mutex<HashMap<RoomName, Arc<RoomLog>>>,
    /// Serialises changes to room records (settings, invitations), so two admins changing a
    /// room at once cannot undo each other's change.
    records: Mutex<()>,
    committer: Committer,
    limits: Limits,
}

/// What a sender is told once the store failed: nothing is acknowledged any more.
const STORE_FAILED: &str = "the store failed to write; the server is stopping: retry with the same client_msg_id once it is back";

/// Nothing to write after an appended event.
fn nothing_after(_seq: u64) -> Result<Batch, ApiError> {
    Ok(Batch::default())
}

/// Runs retention reads at a time.
const RETENTION_RUNS: usize = 64;

fn lock_poisoned() -> ApiError {
    ApiError::internal(&"room lock poisoned")
}

impl Rooms {
    pub fn new(store: Arc<dyn Store>, limits: Limits) -> (Self, JoinHandle<()>) {
        let (committer, task) = Committer::spawn(store.clone());
        let rooms = Self {
            store,
            logs: Mutex::new(HashMap::new()),
            records: Mutex::new(()),
            committer,
            limits,
        };
        (rooms, task)
    }

    pub fn create(
        &self,
        auth: &Authorized<action::CreateRoom>,
        request: CreateRoom,
    ) -> Result<RoomSummary, ApiError> {
        if request.topic.len() > 512 {
            return Err(ApiError::invalid("a room topic is at most 512 bytes"));
        }
        let tlp_max = request
            .tlp_max
            .map(|t| t.trim().trim_start_matches("TLP:").to_uppercase())
            .unwrap_or_else(default_tlp_max);
        if !TLP_LABELS.contains(&tlp_max.as_str()) {
            return Err(ApiError::invalid(format!(
                "tlp_max: one of {}",
                TLP_LABELS.join(", ")
            )));
        }
        if request.tags.len() > 16 || request.tags.iter().any(|t| t.is_empty() || t.len() > 32) {
            return Err(ApiError::invalid("tags: at most 16, each 1 to 32 bytes"));
        }
        let record = RoomRecord {
            name: request.name.clone(),
            topic: request.topic,
            created_by: auth.principal().id().clone(),
            created_at: OffsetDateTime::now_utc(),
            tlp_max,
            classification: request.classification.unwrap_or(0),
            owner_organisation: auth.principal().member().attributes.organisation.clone(),
            tags: request.tags,
            history_for_joiners: request.history_for_joiners,
            history: None,
            retention_days: None,
            invite_only: false,
            invited: Vec::new(),
        };
        let key = keys::room(&record.name);
        if self
            .store
            .compare_and_swap(&key, None, Some(&value::encode(&record)?))?
            == Swap::Conflict
        {
            return Err(ApiError::new(
                ErrorCode::RoomExists,
                format!(
                    "a room named {} already exists; join it or pick another name",
                    record.name
                ),
            ));
        }
        self.add_member(&record.name, auth.principal().id())?;
        self.summary(&record.name, auth.principal().id())
    }

    /// Joins the room; who may (invite-only rooms included) is the gate's decision.
    pub fn join(&self, auth: &Authorized<action::JoinRoom>) -> Result<RoomSummary, ApiError> {
        let room = auth.resource();
        self.add_member(room, auth.principal().id())?;
        self.summary(room, auth.principal().id())
    }

    pub fn leave(&self, auth: &Authorized<action::LeaveRoom>) -> Result<RoomSummary, ApiError> {
        let (room, member) = (auth.resource(), auth.principal().id());
        self.end_membership(room, member)?;
        self.summary(room, member)
    }

    /// Takes `member` out of the room (its admin, or a deployment admin, decides): it stops
    /// receiving at the next event, and the room's file key rotates before the next upload.
    pub fn remove_member(
        &self,
        auth: &Authorized<action::ManageRoom>,
        member: &MemberId,
    ) -> Result<(), ApiError> {
        let room = auth.resource();
        if self.store.get(&keys::room_member(room, member))?.is_none() {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!("{member} is not a member of {room}"),
            ));
        }
        self.end_membership(room, member)?;
        // Removed means removed: an invitation to an invite-only room does not survive it.
        let _records = self.records.lock().map_err(|_| lock_poisoned())?;
        let mut record = self.record(room)?;
        if let Some(at) = record.invited.iter().position(|m| m == member) {
            record.invited.remove(at);
            self.store
                .put(&keys::room(room), &value::encode(&record)?)?;
        }
        Ok(())
    }

    /// Deletes both membership records and marks the room's file key for rotation, under the
    /// key lock: files shared from now on must not be readable with a key the member holds.
    fn end_membership(&self, room: &RoomName, member: &MemberId) -> Result<(), ApiError> {
        let mut batch = Batch::default();
        batch
            .delete(keys::room_member(room, member))
            .delete(keys::member_room(member, room));
        let _keys = crate::files::key_lock()?;
        crate::files::mark_rotation(self.store.as_ref(), room, &mut batch)?;
        self.store.apply(batch)?;
        Ok(())
    }

    fn add_member(&self, room: &RoomName, member: &MemberId) -> Result<(), ApiError> {
        if self.store.get(&keys::room_member(room, member))?.is_some() {
            return Ok(());
        }
        let membership = value::encode(&Membership {
            joined_at: OffsetDateTime::now_utc(),
        })?;
        let mut batch = Batch::default();
        batch
            .put(keys::room_member(room, member), membership.clone())
            .put(keys::member_room(member, room), membership);
        let _keys = crate::files::key_lock()?;
        // In a room that keeps older file keys from joiners, a joiner must not be handed the
        // current generation either: the next upload makes a new one that includes them.
        if let Some(record) = RoomRecord::load(self.store.as_ref(), room)?
            && !record.history_for_joiners()
        {
            crate::files::mark_rotation(self.store.as_ref(), room, &mut batch)?;
        }
        self.store.apply(batch)?;
        Ok(())
    }

    /// Every room of the deployment, with whether the asking member has joined it.
    pub fn list(&self, auth: &Authorized<action::ListRooms>) -> Result<Vec<RoomSummary>, ApiError> {
        let mut rooms = Vec::new();
        for (key, bytes) in self.store.scan_prefix(keys::ROOM_PREFIX, usize::MAX)? {
            let record: RoomRecord = value::decode(&key, &bytes)?;
            rooms.push(self.summary_of(record, auth.principal().id())?);
        }
        Ok(rooms)
    }

    /// Every room's attributes, for policy dry runs.
    pub fn all_attributes(&self) -> Result<Vec<crate::policy::RoomAttributes>, ApiError> {
        self.store
            .scan_prefix(keys::ROOM_PREFIX, usize::MAX)?
            .into_iter()
            .map(|(k, v)| Ok(value::decode::<RoomRecord>(&k, &v)?.attributes()))
            .collect()
    }

    fn summary(&self, room: &RoomName, member: &MemberId) -> Result<RoomSummary, ApiError> {
        self.summary_of(self.record(room)?, member)
    }

    fn summary_of(&self, record: RoomRecord, member: &MemberId) -> Result<RoomSummary, ApiError> {
        let members = self
            .store
            .scan_prefix(&keys::room_members_prefix(&record.name), usize::MAX)?
            .len() as u64;
        let joined = self
            .store
            .get(&keys::room_member(&record.name, member))?
            .is_some();
        let head = self.log(&record.name)?.durable.get();
        let unread = if joined {
            head.saturating_sub(self.read_marker(&record.name, member)?)
        } else {
            0
        };
        Ok(RoomSummary {
            tlp_max: escape_proto::tlp::Tlp::parse(&record.tlp_max),
            classification: record.classification,
            name: record.name,
            topic: record.topic,
            members,
            joined,
            head,
            unread,
        })
    }

    /// The sequencing state of a room, loaded from the store on first use.
    fn log(&self, room: &RoomName) -> Result<Arc<RoomLog>, ApiError> {
        if let Some(log) = self.logs.lock().map_err(|_| lock_poisoned())?.get(room) {
            return Ok(log.clone());
        }
        // Read the newest sequence without holding the map: other rooms stay available. If two
        // callers race here, the first to insert wins and both use its log; the value they read
        // is the same, since appends need the log first.
        let last = self.newest(room)?;
        // Retention may have deleted the newest messages too: the sequence it recorded keeps
        // numbers from ever being handed out twice.
        let last = last.max(self.recorded_last(room)?);
        let log = Arc::new(RoomLog {
            room: room.clone(),
            last: Mutex::new(last),
            durable: Arc::new(DurableHead::new(last)),
            recent: Mutex::new(recent::Recent::default()),
            writer: Mutex::new(()),
            pending: Mutex::new(Pending::default()),
        });
        let mut logs = self.logs.lock().map_err(|_| lock_poisoned())?;
        Ok(logs.entry(room.clone()).or_insert(log).clone())
    }

    /// The newest sequence retention deleted from a room (0 when none is recorded; in older data
    /// dirs every append recorded its own sequence here, which serves the same end).
    fn recorded_last(&self, room: &RoomName) -> Result<u64, ApiError> {
        let key = keys::room_last(room);
        Ok(match self.store.get(&key)? {
            Some(bytes) => value::decode(&key, &bytes)?,
            None => 0,
        })
    }

    /// The sequence of a room's newest stored message (0 for none). The client message ids of
    /// the newest run are recorded again if their records are missing: an earlier release
    /// wrote each message first and its record after, so a crash between the two left the
    /// newest message without one. (This release writes the record first; see `earlier`.)
    /// Without a record a client retrying that message would store it twice.
    fn newest(&self, room: &RoomName) -> Result<u64, ApiError> {
        let Some((seq, events)) = stored::newest(self.store.as_ref(), room)? else {
            return Ok(0);
        };
        let events = match events {
            Ok(events) => events,
            Err(e) => {
                tracing::error!(%room, seq, error = %e, "newest messages unreadable; not mended");
                return Ok(seq);
            }
        };
        for event in events {
            let record = keys::client_msg(room, &event.sender, &event.client_msg_id);
            if self.store.get(&record)?.is_none() {
                tracing::warn!(%room, seq = event.seq, "a message had no client message id record; written");
                self.store.put(&record, &value::encode(&event.seq)?)?;
            }
        }
        Ok(seq)
    }

    /// Empties a room's window of recent events (after its stored events were deleted).
    fn forget_recent(&self, room: &RoomName) -> Result<(), ApiError> {
        let log = self
            .logs
            .lock()
            .map_err(|_| lock_poisoned())?
            .get(room)
            .cloned();
        if let Some(log) = log {
            log.recent.lock().map_err(|_| lock_poisoned())?.clear();
        }
        Ok(())
    }

    /// Takes the room's next sequence for a message (written at the next group commit), or finds
    /// the sequence a retry of the same client message id was taken under. The message is not
    /// yet durable: wait with [`Rooms::durable`] before acknowledging it.
    pub fn append(
        &self,
        auth: &Authorized<action::Send>,
        client_msg_id: String,
        body: Body,
    ) -> Result<Appended, ApiError> {
        match body {
            Body::File { .. } => {
                return Err(ApiError::invalid(
                    "file events are written by the server when an upload completes; upload the file instead",
                ));
            }
            Body::Indicator(_) => {
                return Err(ApiError::invalid(
                    "indicators are shared with the share_indicator frame or POST /v1/rooms/{room}/indicators, which check them",
                ));
            }
            Body::Redaction { .. } | Body::Redacted => {
                return Err(ApiError::invalid(
                    "messages are removed with POST /v1/rooms/{room}/messages/{seq}/redact",
                ));
            }
            _ => {}
        }
        self.append_as(
            auth.resource(),
            auth.principal().member(),
            client_msg_id,
            body,
            nothing_after,
        )
    }

    /// Announces a completed upload in the room's channel (sequenced like any message).
    pub fn append_file_event(
        &self,
        auth: &Authorized<action::UploadFile>,
        file: &escape_proto::file::FileInfo,
    ) -> Result<Appended, ApiError> {
        let body = Body::File {
            file_id: file.id.clone(),
            name: file.name.clone(),
            size: file.size,
            generation: file.generation,
        };
        self.append_as(
            auth.resource(),
            auth.principal().member(),
            format!("file-{}", file.id),
            body,
            nothing_after,
        )
    }

    /// Stores a checked indicator in the room's log (sequenced and delivered like a message).
    /// `after` makes, from the indicator's sequence, what is written right after the run that
    /// holds it (in order: after a crash the store never holds those writes without it).
    pub fn append_indicator(
        &self,
        auth: &Authorized<action::ShareIndicator>,
        indicator: escape_proto::indicator::Indicator,
        after: impl FnOnce(u64) -> Result<Batch, ApiError>,
    ) -> Result<Appended, ApiError> {
        let client_msg_id = format!("ioc-{}", uuid::Uuid::new_v4().simple());
        self.append_as(
            auth.resource(),
            auth.principal().member(),
            client_msg_id,
            Body::Indicator(Box::new(indicator)),
            after,
        )
    }

    /// The newest durable sequence of a room (0 when it has none).
    pub fn durable_head(&self, room: &RoomName) -> Result<u64, ApiError> {
        Ok(self.log(room)?.durable.get())
    }

    /// One appended event, by sequence (callers ask for sequences they were told of, at or
    /// below the durable head, but an event not yet written is found too).
    pub fn event(&self, room: &RoomName, seq: u64) -> Result<Option<Event>, ApiError> {
        self.log(room)?.event(self.store.as_ref(), seq)
    }

    fn record(&self, room: &RoomName) -> Result<RoomRecord, ApiError> {
        RoomRecord::require(self.store.as_ref(), room)
    }

    /// The members of a room.
    pub fn members(&self, room: &RoomName) -> Result<Vec<MemberId>, ApiError> {
        let prefix = keys::room_members_prefix(room);
        Ok(self
            .store
            .scan_prefix(&prefix, usize::MAX)?
            .into_iter()
            .filter_map(|(k, _)| {
                std::str::from_utf8(&k[prefix.len()..])
                    .ok()
                    .and_then(|m| MemberId::parse(m).ok())
            })
            .collect())
    }

    /// How far `member` has read `room` (0: nothing).
    pub fn read_marker(&self, room: &RoomName, member: &MemberId) -> Result<u64, ApiError> {
        let key = keys::read_marker(room, member);
        Ok(match self.store.get(&key)? {
            Some(bytes) => value::decode(&key, &bytes)?,
            None => 0,
        })
    }

    /// Moves the member's read marker to `seq` (never past the head, never backwards).
    pub fn mark_read(
        &self,
        auth: &Authorized<action::ReadHistory>,
        seq: u64,
    ) -> Result<RoomSummary, ApiError> {
        let (room, member) = (auth.resource(), auth.principal().id());
        let head = self.durable_head(room)?;
        // Read and write under one lock: two requests racing must not move the marker back.
        let _records = self.records.lock().map_err(|_| lock_poisoned())?;
        let marker = seq.min(head).max(self.read_marker(room, member)?);
        self.store
            .put(&keys::read_marker(room, member), &value::encode(&marker)?)?;
        self.summary(room, member)
    }

    /// Changes a room's settings (its admin, or a deployment admin).
    pub fn update_settings(
        &self,
        auth: &Authorized<action::ManageRoom>,
        settings: escape_proto::room::RoomSettings,
    ) -> Result<RoomSummary, ApiError> {
        let room = auth.resource();
        let _records = self.records.lock().map_err(|_| lock_poisoned())?;
        let mut record = self.record(room)?;
        if let Some(topic) = settings.topic {
            if topic.len() > 512 || topic.chars().any(char::is_control) {
                return Err(ApiError::invalid(
                    "topic: at most 512 bytes, no control characters",
                ));
            }
            record.topic = topic;
        }
        if let Some(history) = settings.history {
            if !matches!(history.as_str(), "shared" | "joined") {
                return Err(ApiError::invalid("history: shared or joined"));
            }
            record.history = Some(history);
        }
        if let Some(days) = settings.retention_days {
            if days > 36_500 {
                return Err(ApiError::invalid(
                    "retention_days: at most 36500 (0 keeps messages)",
                ));
            }
            record.retention_days = (days > 0).then_some(days);
        }
        if let Some(invite_only) = settings.invite_only {
            record.invite_only = invite_only;
        }
        self.store
            .put(&keys::room(room), &value::encode(&record)?)?;
        self.summary(room, auth.principal().id())
    }

    /// Deletes the messages older than each room's retention period, as of `now`; returns how
    /// many. Runs every minute (see `server.rs`).
    pub fn enforce_retention(&self, now: OffsetDateTime) -> Result<usize, ApiError> {
        let mut deleted = 0;
        for (key, bytes) in self.store.scan_prefix(keys::ROOM_PREFIX, usize::MAX)? {
            let record: RoomRecord = match value::decode(&key, &bytes) {
                Ok(record) => record,
                Err(e) => {
                    tracing::error!(error = %e, "a room record is unreadable; its retention is not enforced");
                    continue;
                }
            };
            let Some(days) = record.retention_days.filter(|d| *d > 0) else {
                continue;
            };
            let Some(cutoff) = now.checked_sub(time::Duration::days(i64::from(days))) else {
                continue;
            };
            // One room's trouble (an unreadable run, say) leaves the other rooms' retention be.
            match self.trim(&record.name, cutoff) {
                Ok(count) => deleted += count,
                Err(e) => {
                    tracing::error!(room = %record.name, error = %e, "retention stopped for this room");
                }
            }
        }
        Ok(deleted)
    }

    /// Deletes a room's messages said before `cutoff`, oldest first, and their client id
    /// records (a retry of one is stored anew); returns how many.
    fn trim(&self, room: &RoomName, cutoff: OffsetDateTime) -> Result<usize, ApiError> {
        let log = self.log(room)?;
        let mut deleted = 0;
        loop {
            // Nothing else rewrites the room's runs meanwhile (a redaction would put back what
            // this deletes); the committer only adds runs after them. Held for one batch at a
            // time, so sends to the room wait little.
            let _appending = log.last.lock().map_err(|_| lock_poisoned())?;
            let runs = stored::oldest(self.store.as_ref(), room, RETENTION_RUNS)?;
            let scanned = runs.len();
            let mut batch = Batch::default();
            let (mut removed, mut newest_removed, mut kept_any) = (0, 0, false);
            for run in runs {
                let (old, kept): (Vec<Event>, Vec<Event>) =
                    run.events.into_iter().partition(|e| e.sent_at < cutoff);
                if !old.is_empty() {
                    removed += old.len();
                    stored::replace_run(&mut batch, room, &run.key, &kept)?;
                }
                for event in &old {
                    newest_removed = newest_removed.max(event.seq);
                    batch.delete(keys::client_msg(room, &event.sender, &event.client_msg_id));
                }
                if !kept.is_empty() {
                    kept_any = true;
                    break;
                }
            }
            if removed == 0 {
                break;
            }
            // In the same atomic batch: once the newest messages are gone, this record is what
            // keeps their sequences from being handed out again (see `log`).
            let recorded = self.recorded_last(room)?;
            batch.put(
                keys::room_last(room),
                value::encode(&recorded.max(newest_removed))?,
            );
            self.store.apply(batch)?;
            self.forget_recent(room)?;
            deleted += removed;
            if kept_any || scanned < RETENTION_RUNS {
                break;
            }
        }
        Ok(deleted)
    }

    /// Lets `member` join an invite-only room.
    pub fn invite(
        &self,
        auth: &Authorized<action::ManageRoom>,
        member: &MemberId,
    ) -> Result<(), ApiError> {
        let room = auth.resource();
        let _records = self.records.lock().map_err(|_| lock_poisoned())?;
        let mut record = self.record(room)?;
        if !record.invited.contains(member) {
            if record.invited.len() >= 10_000 {
                return Err(ApiError::invalid(
                    "this room has too many pending invitations",
                ));
            }
            record.invited.push(member.clone());
            self.store
                .put(&keys::room(room), &value::encode(&record)?)?;
        }
        Ok(())
    }

    /// Removes message `seq`'s content for everyone: the stored event keeps its place, sender
    /// and time with a `redacted` body, and a `redaction` event tells every reader. The caller
    /// decided who may (the sender, the room's admin, a deployment admin).
    pub fn redact(
        &self,
        auth: &Authorized<action::ReadHistory>,
        seq: u64,
    ) -> Result<Appended, ApiError> {
        let room = auth.resource();
        let log = self.log(room)?;
        // Appends to the room wait until the store, the pending events and the window of
        // recent events are all rewritten: an edit appended meanwhile could keep the words.
        let appending = log.last.lock().map_err(|_| lock_poisoned())?;
        let is_edit =
            |event: &Event| matches!(event.body, Body::Edit { target, .. } if target == seq);
        // The edits stored already, read while the committer goes on writing (every room's
        // acks wait for it): they stay where they are, since nothing else rewrites the room's
        // runs while this holds it.
        let (mut edits, next) = self.stored_matching(room, seq + 1, is_edit)?;
        // From here the committer writes nothing of the room: every event is either pending
        // or stored, and stays so. What it wrote since the scan is read again, from `next` on.
        let writer = log.writer.lock().map_err(|_| lock_poisoned())?;
        let mut pending = log.pending.lock().map_err(|_| lock_poisoned())?;
        edits.extend(self.stored_matching(room, next, is_edit)?.0);
        let found = match pending.event(seq) {
            Some(event) => Some(event),
            None => stored::event(self.store.as_ref(), room, seq)?,
        };
        let Some(event) = found else {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!("{room} has no message {seq}"),
            ));
        };
        match event.body {
            Body::Redacted | Body::Redaction { .. } => {
                return Err(ApiError::new(
                    ErrorCode::Conflict,
                    format!("{room}#{seq} is already removed"),
                ));
            }
            Body::File { .. } | Body::Indicator(_) => {
                return Err(ApiError::invalid(
                    "files and indicators are not removed as messages (relabel an indicator; a file stays with its key)",
                ));
            }
            _ => {}
        }
        // The message, and every edit of it: none of its words stay readable.
        let mut changed = vec![event];
        changed.extend(edits);
        changed.extend(
            pending
                .events
                .iter()
                .filter(|p| is_edit(&p.event))
                .map(|p| p.event.event.clone()),
        );
        let mut rewritten = Vec::new();
        let mut stored_changes = Vec::new();
        for mut event in changed {
            event.body = Body::Redacted;
            let encoded = value::encode(&event)?;
            let shared = SharedEvent::new(event.clone(), encoded.len());
            match pending.events.iter_mut().find(|p| p.event.seq == event.seq) {
                Some(slot) => {
                    slot.event = shared.clone();
                    slot.encoded = encoded;
                }
                None => stored_changes.push(event),
            }
            rewritten.push(shared);
        }
        let mut batch = Batch::default();
        stored::rewrite(self.store.as_ref(), room, stored_changes, &mut batch)?;
        // Readers of the window wait for both writes, so none reads the words after the store
        // lost them.
        let mut recent = log.recent.lock().map_err(|_| lock_poisoned())?;
        self.store.apply(batch)?;
        for event in rewritten {
            recent.replace(event);
        }
        drop(recent);
        drop(pending);
        drop(writer);
        drop(appending);
        self.append_as(
            room,
            auth.principal().member(),
            format!("server-redaction-{}", uuid::Uuid::new_v4().simple()),
            Body::Redaction { target: seq },
            nothing_after,
        )
    }

    /// The stored events of a room from sequence `from` on that `wanted` picks, and the
    /// sequence after the last one read.
    fn stored_matching(
        &self,
        room: &RoomName,
        from: u64,
        wanted: impl Fn(&Event) -> bool,
    ) -> Result<(Vec<Event>, u64), ApiError> {
        let (mut found, mut next) = (Vec::new(), from);
        loop {
            let events = stored::range(
                self.store.as_ref(),
                room,
                next,
                u64::MAX,
                Order::Ascending,
                512,
            )?;
            let Some((last, _)) = events.last() else {
                return Ok((found, next));
            };
            next = last.seq + 1;
            found.extend(
                events
                    .into_iter()
                    .map(|(event, _)| event)
                    .filter(|e| wanted(e)),
            );
        }
    }

    /// The sender of message `seq`, if it exists.
    pub fn sender_of(&self, room: &RoomName, seq: u64) -> Result<Option<MemberId>, ApiError> {
        Ok(self.event(room, seq)?.map(|event| event.sender))
    }

    /// The sequence a message with this client id was appended under before, if it was.
    ///
    /// A record is written before its message, and the message only at the next group commit,
    /// so a crash or a failed write can leave a record whose message was never stored: its
    /// sequence is then above the room's last (which opening the room reads from the messages)
    /// or, once appends went past it, holds another message or none (retention deleted it).
    /// Such a record is stale and the message is appended anew, writing over it. Retention
    /// deletes the records of the messages it deletes, so a record whose message is gone is
    /// always stale.
    fn earlier(
        &self,
        log: &RoomLog,
        record: &[u8],
        sender: &MemberId,
        client_msg_id: &str,
        last: u64,
    ) -> Result<Option<u64>, ApiError> {
        let Some(bytes) = self.store.get(record)? else {
            return Ok(None);
        };
        let seq: u64 = value::decode(record, &bytes)?;
        if seq > last {
            return Ok(None);
        }
        Ok(log
            .event(self.store.as_ref(), seq)?
            .filter(|event| event.sender == *sender && event.client_msg_id == client_msg_id)
            .map(|_| seq))
    }

    /// Checks what a message refers to: a reply's parent exists, mentions are members, an edit
    /// corrects the sender's own message.
    fn check_references(
        &self,
        log: &RoomLog,
        sender: &MemberId,
        body: &Body,
        last: u64,
    ) -> Result<(), ApiError> {
        let room = &log.room;
        match body {
            Body::Text {
                reply_to, mentions, ..
            } => {
                if let Some(parent) = reply_to
                    && (*parent == 0 || *parent > last)
                {
                    return Err(ApiError::invalid(format!(
                        "reply_to: {room} has no message {parent}"
                    )));
                }
                if mentions.len() > 32 {
                    return Err(ApiError::invalid("mentions: at most 32"));
                }
                for m in mentions {
                    if self.store.get(&keys::room_member(room, m))?.is_none() {
                        return Err(ApiError::invalid(format!(
                            "mentions: {m} is not a member of {room}"
                        )));
                    }
                }
            }
            Body::Edit { target, .. } => {
                let original = match log.event(self.store.as_ref(), *target)? {
                    Some(event) if *target <= last => event,
                    _ => {
                        return Err(ApiError::invalid(format!(
                            "target: {room} has no message {target}"
                        )));
                    }
                };
                if original.sender != *sender {
                    return Err(ApiError::new(
                        ErrorCode::Forbidden,
                        "only the sender of a message may edit it",
                    ));
                }
                if !matches!(original.body, Body::Text { .. }) {
                    return Err(ApiError::invalid("target: only text messages are edited"));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn append_as(
        &self,
        room: &RoomName,
        sender: &escape_proto::Member,
        client_msg_id: String,
        body: Body,
        after: impl FnOnce(u64) -> Result<Batch, ApiError>,
    ) -> Result<Appended, ApiError> {
        if self.committer.failed().is_cancelled() {
            return Err(ApiError::new(ErrorCode::Internal, STORE_FAILED));
        }
        if body.size() > self.limits.max_body_bytes {
            return Err(ApiError::new(
                ErrorCode::TooLarge,
                format!(
                    "the message body is {} bytes; this server accepts at most {}",
                    body.size(),
                    self.limits.max_body_bytes
                ),
            ));
        }
        if body.is_empty() {
            return Err(ApiError::invalid("the message body is empty"));
        }
        let log = self.log(room)?;
        let record = keys::client_msg(room, &sender.id, &client_msg_id);
        let mut last = log.last.lock().map_err(|_| lock_poisoned())?;
        self.check_references(&log, &sender.id, &body, *last)?;
        let seq = *last + 1;
        let event = Event {
            room: room.clone(),
            seq,
            sender: sender.id.clone(),
            sender_name: sender.name.clone(),
            sender_organisation: sender.attributes.organisation.clone(),
            sent_at: OffsetDateTime::now_utc(),
            client_msg_id,
            body,
        };
        // Encoded once, here: the committer writes this encoding (see `stored`).
        let encoded = value::encode(&event)?;
        let after = after(seq)?.into_writes();
        // The record goes first, so that the store never holds the message without it; one a
        // crash leaves without its message is found stale (see `earlier`). Written only if
        // there is none: one look into the store for a new message, not two.
        let fresh = value::encode(&seq)?;
        if self.store.compare_and_swap(&record, None, Some(&fresh))? == Swap::Conflict {
            let (sender, client_msg_id) = (&event.sender, &event.client_msg_id);
            if let Some(seq) = self.earlier(&log, &record, sender, client_msg_id, *last)? {
                return Ok(Appended {
                    seq,
                    duplicate: true,
                });
            }
            self.store.put(&record, &fresh)?;
        }
        let shared = SharedEvent::new(event, encoded.len());
        log.pending
            .lock()
            .map_err(|_| lock_poisoned())?
            .events
            .push(stored::PendingEvent {
                event: shared.clone(),
                encoded,
                after,
            });
        *last = seq;
        // Still under the sequencing lock: the window stays in order.
        log.recent.lock().map_err(|_| lock_poisoned())?.push(shared);
        drop(last);
        self.committer.request(log, seq);
        Ok(Appended {
            seq,
            duplicate: false,
        })
    }

    /// Waits until `seq` of `room` is durable, at most the configured time, and no longer once
    /// the store has failed to flush.
    pub async fn durable(&self, room: &RoomName, seq: u64) -> Result<(), ApiError> {
        let mut head = self.log(room)?.durable.watch();
        let failed = self.committer.failed();
        let waited = tokio::select! {
            // A head that moved before the failure still counts.
            biased;
            durable = tokio::time::timeout(
                self.limits.durable_timeout(),
                head.wait_for(|h| *h >= seq),
            ) => matches!(durable, Ok(Ok(_))),
            () = failed.cancelled() => false,
        };
        if waited {
            return Ok(());
        }
        let message = if failed.is_cancelled() {
            STORE_FAILED
        } else {
            "the message could not be made durable in time; retry with the same client_msg_id"
        };
        Err(ApiError::new(ErrorCode::Internal, message))
    }

    /// Cancelled when the store failed to flush: from then on no message is acknowledged, and
    /// the server stops so that it starts again from what the disk holds.
    pub fn store_failed(&self) -> CancellationToken {
        self.committer.failed().clone()
    }

    /// Watches a room's durable head: subscribers wake when it moves.
    pub fn watch(
        &self,
        auth: &Authorized<action::Subscribe>,
    ) -> Result<watch::Receiver<u64>, ApiError> {
        Ok(self.log(auth.resource())?.durable.watch())
    }

    /// Events with `from <= seq <= to`, at most `limit`, for delivery: from the room's window
    /// of recent events when it holds `from`, else from the store. Callers pass `to` at or
    /// below the durable head. Each event must still pass the gate for its recipient before
    /// it is sent.
    pub fn read_range(
        &self,
        room: &RoomName,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<Arc<SharedEvent>>, ApiError> {
        let log = self.log(room)?;
        if let Some(events) = log
            .recent
            .lock()
            .map_err(|_| lock_poisoned())?
            .range(from, to, limit)
        {
            return Ok(events);
        }
        Ok(
            stored::range(self.store.as_ref(), room, from, to, Order::Ascending, limit)?
                .into_iter()
                .map(|(event, size)| SharedEvent::new(event, size))
                .collect(),
        )
    }

    /// A page of durable history.
    pub fn history(
        &self,
        auth: &Authorized<action::ReadHistory>,
        query: &HistoryQuery,
    ) -> Result<HistoryPage, ApiError> {
        let room = auth.resource();
        let max = self.limits.history_page_max;
        let limit = query.limit.unwrap_or(50).clamp(1, max) as usize;
        let head = self.log(room)?.durable.get();
        // Sequences the page may contain: after < seq < before, and never past the durable head.
        let low = query.after.map_or(1, |a| a.saturating_add(1));
        let high = query.before.map_or(head, |b| b.saturating_sub(1).min(head));
        if low > high {
            return Ok(HistoryPage {
                room: room.clone(),
                messages: Vec::new(),
                more: false,
            });
        }
        // Forwards when only `after` is given, else backwards from the newest; one extra entry tells `more`.
        let order = if query.after.is_some() && query.before.is_none() {
            Order::Ascending
        } else {
            Order::Descending
        };
        let mut messages: Vec<Event> =
            stored::range(self.store.as_ref(), room, low, high, order, limit + 1)?
                .into_iter()
                .map(|(event, _)| event)
                .collect();
        let more = messages.len() > limit;
        messages.truncate(limit);
        if order == Order::Descending {
            messages.reverse();
        }
        Ok(HistoryPage {
            room: room.clone(),
            messages,
            more,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::{Deployment, Gate};
    use crate::identity::Principal;
    use crate::registry::Registry;
    use crate::store::MemoryStore;
    use escape_proto::Member;

    fn setup() -> (Gate, Rooms, Principal) {
        setup_on(Arc::new(MemoryStore::new()))
    }

    fn setup_on(store: Arc<dyn Store>) -> (Gate, Rooms, Principal) {
        let registry = Registry::new(store.clone());
        let id = MemberId::parse("m1").expect("id");
        registry.put(&Member::new(id.clone(), "m1")).expect("put");
        let principal = Principal::resolve_id(&registry, &id).expect("principal");
        let (rooms, _task) = Rooms::new(store.clone(), Limits::default());
        let policy = Arc::new(crate::policy::PolicyEngine::load(store.clone()).expect("policy"));
        (Gate::new(store, policy), rooms, principal)
    }

    fn room() -> RoomName {
        RoomName::parse("ops").expect("room")
    }

    /// Creates the test room and lets the principal send to it.
    fn open_room(gate: &Gate, rooms: &Rooms, principal: &Principal) -> Authorized<action::Send> {
        let create = gate
            .authorize::<action::CreateRoom>(principal, Deployment)
            .expect("create");
        rooms
            .create(&create, CreateRoom::new(room(), ""))
            .expect("created");
        gate.authorize::<action::Send>(principal, room())
            .expect("send")
    }

    /// The test room on `store` holding two durable messages, client ids `c1` and `c2`; the
    /// sender's permission and principal, for a test to go on with a new `Rooms` on the store.
    async fn two_durable_messages(store: &Arc<dyn Store>) -> (Authorized<action::Send>, Principal) {
        let (gate, rooms, principal) = setup_on(store.clone());
        let send = open_room(&gate, &rooms, &principal);
        for id in ["c1", "c2"] {
            rooms
                .append(&send, id.to_owned(), Body::text(id))
                .expect("append");
        }
        rooms.durable(&room(), 2).await.expect("durable");
        (send, principal)
    }

    #[tokio::test]
    async fn a_retry_of_a_message_whose_client_id_record_a_crash_took_is_not_stored_twice() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let (send, principal) = two_durable_messages(&store).await;
        // What a crash in an earlier release, which wrote messages before their records, left:
        // the newest messages (here one run of two) without them.
        for id in ["c1", "c2"] {
            store
                .delete(&keys::client_msg(&room(), principal.id(), id))
                .expect("delete");
        }
        // The server starts again and the client, never acknowledged, retries.
        let (rooms, _task) = Rooms::new(store, Limits::default());
        for (id, seq) in [("c2", 2), ("c1", 1)] {
            let retried = rooms
                .append(&send, id.to_owned(), Body::text(id))
                .expect("retry");
            assert_eq!((retried.seq, retried.duplicate), (seq, true));
        }
        let next = rooms
            .append(&send, "c3".to_owned(), Body::text("c3"))
            .expect("next");
        assert_eq!((next.seq, next.duplicate), (3, false));
    }

    /// After a failed sync the kernel may have dropped the written pages and reports it once;
    /// a later flush that succeeds proves nothing about them, so nothing is acknowledged again.
    #[tokio::test]
    async fn after_a_failed_flush_nothing_is_acknowledged_again() {
        let store = Arc::new(MemoryStore::new());
        let (gate, rooms, principal) = setup_on(store.clone());
        let send = open_room(&gate, &rooms, &principal);
        let first = rooms
            .append(&send, "c1".to_owned(), Body::text("first"))
            .expect("append");
        rooms.durable(&room(), first.seq).await.expect("durable");

        store.fail_next_flush();
        let lost = rooms
            .append(&send, "c2".to_owned(), Body::text("second"))
            .expect("append");
        let started = std::time::Instant::now();
        let refused = rooms
            .durable(&room(), lost.seq)
            .await
            .expect_err("not acknowledged");
        assert!(refused.message.contains("failed to write"), "{refused:?}");
        assert!(started.elapsed() < Limits::default().durable_timeout() / 2);
        assert!(rooms.store_failed().is_cancelled());

        // The store's next flush would succeed; the message after is refused, so it neither
        // waits in memory for a committer that stopped nor is acknowledged.
        let after = rooms
            .append(&send, "c3".to_owned(), Body::text("third"))
            .expect_err("refused");
        assert!(after.message.contains("failed to write"), "{after:?}");
        assert_eq!(rooms.durable_head(&room()).expect("head"), first.seq);
    }

    #[tokio::test]
    async fn after_a_write_that_failed_half_way_no_sequence_is_handed_out_twice() {
        let store = Arc::new(MemoryStore::new());
        let (gate, rooms, principal) = setup_on(store.clone());
        let send = open_room(&gate, &rooms, &principal);
        store.cut_next_in_order_batch();
        // The message's run is written, its client id record is not, and it is never
        // acknowledged: nothing is, from then on.
        let first = rooms
            .append(&send, "c1".to_owned(), Body::text("first"))
            .expect("taken");
        rooms
            .durable(&room(), first.seq)
            .await
            .expect_err("the store failed");
        assert!(rooms.store_failed().is_cancelled());
        // A retry before the server stops is refused.
        rooms
            .append(&send, "c1".to_owned(), Body::text("first"))
            .expect_err("refused");

        // The server starts again from what the store holds.
        let (rooms, _task) = Rooms::new(store.clone(), Limits::default());
        // The next message takes the next sequence instead of writing over the first one.
        let next = rooms
            .append(&send, "c2".to_owned(), Body::text("second"))
            .expect("next");
        assert_eq!((next.seq, next.duplicate), (2, false));
        // The sender retries the first one: it is stored already, once, under sequence 1.
        let retried = rooms
            .append(&send, "c1".to_owned(), Body::text("first"))
            .expect("retry");
        assert_eq!((retried.seq, retried.duplicate), (1, true));
        rooms.durable(&room(), 2).await.expect("durable");
        assert_eq!(
            rooms
                .read_range(&room(), 1, 10, 10)
                .expect("read")
                .iter()
                .map(|e| (e.seq, e.client_msg_id.clone()))
                .collect::<Vec<_>>(),
            [(1, "c1".to_owned()), (2, "c2".to_owned())]
        );
    }

    /// Sets the test room's retention to 30 days.
    fn keep_for_30_days(gate: &Gate, rooms: &Rooms, principal: &Principal) {
        let manage = gate
            .authorize::<action::ManageRoom>(principal, room())
            .expect("manage");
        rooms
            .update_settings(
                &manage,
                escape_proto::room::RoomSettings {
                    retention_days: Some(30),
                    ..Default::default()
                },
            )
            .expect("settings");
    }

    #[tokio::test]
    async fn messages_older_than_the_retention_period_are_deleted() {
        let (gate, rooms, principal) = setup();
        let send = open_room(&gate, &rooms, &principal);
        for i in 0..3 {
            rooms
                .append(&send, format!("c{i}"), Body::text("x"))
                .expect("append");
        }
        rooms.durable(&room(), 3).await.expect("durable");
        let now = OffsetDateTime::now_utc();
        // No retention set: nothing goes.
        assert_eq!(
            rooms
                .enforce_retention(now + time::Duration::days(400))
                .expect("run"),
            0
        );
        keep_for_30_days(&gate, &rooms, &principal);
        assert_eq!(
            rooms
                .enforce_retention(now + time::Duration::days(29))
                .expect("run"),
            0
        );
        assert_eq!(
            rooms
                .enforce_retention(now + time::Duration::days(31))
                .expect("run"),
            3
        );
        let left = rooms.read_range(&room(), 1, 10, 10).expect("read");
        assert!(left.is_empty());
        // After a restart with every message gone, sequences still continue.
        let (reopened, _task) = Rooms::new(rooms.store.clone(), Limits::default());
        let next = reopened
            .append(&send, "after".into(), Body::text("y"))
            .expect("append");
        assert_eq!(next.seq, 4);
    }

    #[tokio::test]
    async fn sequences_are_dense_and_retries_are_idempotent() {
        let (gate, rooms, principal) = setup();
        let send = open_room(&gate, &rooms, &principal);
        let mut seqs = Vec::new();
        for i in 0..5 {
            let appended = rooms
                .append(&send, format!("c{i}"), Body::text("x"))
                .expect("append");
            assert!(!appended.duplicate);
            seqs.push(appended.seq);
        }
        assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
        let again = rooms
            .append(&send, "c2".into(), Body::text("x"))
            .expect("retry");
        assert_eq!(
            again,
            Appended {
                seq: 3,
                duplicate: true
            }
        );
        rooms.durable(&room(), 5).await.expect("durable");
        let read = gate
            .authorize::<action::ReadHistory>(&principal, room())
            .expect("read");
        let page = rooms
            .history(&read, &HistoryQuery::default())
            .expect("history");
        assert_eq!(
            page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
            seqs
        );
    }

    /// Appends in a row, with no await between them, are all pending: the committer has not run.
    #[tokio::test]
    async fn a_retry_before_the_message_is_written_is_a_duplicate() {
        let store = Arc::new(MemoryStore::new());
        let (gate, rooms, principal) = setup_on(store.clone());
        let send = open_room(&gate, &rooms, &principal);
        let first = rooms
            .append(&send, "c1".to_owned(), Body::text("once"))
            .expect("append");
        let written = |seq| stored::event(store.as_ref(), &room(), seq).expect("read");
        assert!(written(first.seq).is_none(), "not written yet");
        let retried = rooms
            .append(&send, "c1".to_owned(), Body::text("once"))
            .expect("retry");
        assert_eq!((retried.seq, retried.duplicate), (first.seq, true));
        // An edit of a message not written yet is checked against it.
        let edit = rooms
            .append(
                &send,
                "c2".to_owned(),
                Body::Edit {
                    target: first.seq,
                    text: "twice".into(),
                },
            )
            .expect("an edit of a pending message");
        rooms.durable(&room(), edit.seq).await.expect("durable");
        assert!(written(first.seq).is_some(), "written");
        let retried = rooms
            .append(&send, "c1".to_owned(), Body::text("once"))
            .expect("retry");
        assert_eq!((retried.seq, retried.duplicate), (first.seq, true));
        assert_eq!(rooms.read_range(&room(), 1, 10, 10).expect("read").len(), 2);
    }

    /// A client id record whose message a crash took (records are written first) does not
    /// make a retry of it a duplicate, nor does one whose sequence another message took since.
    #[tokio::test]
    async fn a_record_whose_message_was_never_written_is_stale() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let (send, _) = two_durable_messages(&store).await;
        // What a crash after the records were written and before the run leaves.
        store
            .delete(&keys::message(&room(), 2))
            .expect("delete the run");
        let (rooms, _task) = Rooms::new(store.clone(), Limits::default());
        // Sequence 1 is now another message's.
        let other = rooms
            .append(&send, "c9".to_owned(), Body::text("c9"))
            .expect("append");
        assert_eq!((other.seq, other.duplicate), (1, false));
        // Retries of both, never acknowledged, are stored anew.
        for (id, seq) in [("c2", 2), ("c1", 3)] {
            let retried = rooms
                .append(&send, id.to_owned(), Body::text(id))
                .expect("retry");
            assert_eq!((retried.seq, retried.duplicate), (seq, false), "{id}");
        }
        // And from then on they are duplicates.
        let again = rooms
            .append(&send, "c1".to_owned(), Body::text("c1"))
            .expect("retry");
        assert_eq!((again.seq, again.duplicate), (3, true));
        rooms.durable(&room(), 3).await.expect("durable");
        let ids: Vec<String> = rooms
            .read_range(&room(), 1, 10, 10)
            .expect("read")
            .iter()
            .map(|e| e.client_msg_id.clone())
            .collect();
        assert_eq!(ids, ["c9", "c2", "c1"]);
    }

    /// Every copy of a redacted message's words goes: the stored run, an edit still pending,
    /// and the window live readers are served from.
    #[tokio::test]
    async fn a_redaction_reaches_stored_and_pending_edits() {
        let store = Arc::new(MemoryStore::new());
        let (gate, rooms, principal) = setup_on(store.clone());
        let send = open_room(&gate, &rooms, &principal);
        let edit = |n: u64| Body::Edit {
            target: 1,
            text: format!("secret edit {n}"),
        };
        rooms
            .append(&send, "c1".into(), Body::text("secret words"))
            .expect("append");
        rooms.append(&send, "c2".into(), edit(1)).expect("append");
        rooms
            .append(&send, "c3".into(), Body::text("kept"))
            .expect("append");
        rooms.durable(&room(), 3).await.expect("durable");
        // Written and durable up to 3; this one is pending when the redaction comes.
        rooms.append(&send, "c4".into(), edit(2)).expect("append");
        let read = gate
            .authorize::<action::ReadHistory>(&principal, room())
            .expect("read");
        let redaction = rooms.redact(&read, 1).expect("redact");
        rooms
            .durable(&room(), redaction.seq)
            .await
            .expect("durable");
        let bodies: Vec<Body> = rooms
            .read_range(&room(), 1, 10, 10)
            .expect("read")
            .iter()
            .map(|e| e.body.clone())
            .collect();
        assert_eq!(
            bodies,
            [
                Body::Redacted,
                Body::Redacted,
                Body::text("kept"),
                Body::Redacted,
                Body::Redaction { target: 1 }
            ]
        );
        for (key, value) in store.scan_prefix(b"", usize::MAX).expect("scan") {
            assert!(
                !String::from_utf8_lossy(&value).contains("secret"),
                "{}",
                String::from_utf8_lossy(&key)
            );
        }
        // Read from the store rather than the window, after a restart.
        let (reopened, _task) = Rooms::new(store, Limits::default());
        let read_back = reopened.read_range(&room(), 1, 10, 10).expect("read");
        assert_eq!(read_back.len(), 5);
        assert_eq!(read_back[3].body, Body::Redacted);
    }

    /// Retention deletes old events from inside a run and keeps the newer ones of it.
    #[tokio::test]
    async fn retention_trims_a_run_and_keeps_its_newer_events() {
        let store = Arc::new(MemoryStore::new());
        let (gate, rooms, principal) = setup_on(store.clone());
        let send = open_room(&gate, &rooms, &principal);
        for i in 1..=3 {
            rooms
                .append(&send, format!("c{i}"), Body::text("x"))
                .expect("append");
        }
        rooms.durable(&room(), 3).await.expect("durable");
        keep_for_30_days(&gate, &rooms, &principal);
        // One run, its events said 60, 40 and 10 days ago.
        let now = OffsetDateTime::now_utc();
        let mut runs = stored::oldest(store.as_ref(), &room(), 10).expect("runs");
        assert_eq!(runs.len(), 1, "appended together, written together");
        let mut run = runs.remove(0);
        for (event, days) in run.events.iter_mut().zip([60, 40, 10]) {
            event.sent_at = now - time::Duration::days(days);
        }
        let mut batch = Batch::default();
        stored::replace_run(&mut batch, &room(), &run.key, &run.events).expect("replace");
        store.apply(batch).expect("apply");

        assert_eq!(rooms.enforce_retention(now).expect("run"), 2);
        let left = rooms.read_range(&room(), 1, 10, 10).expect("read");
        assert_eq!(left.iter().map(|e| e.seq).collect::<Vec<_>>(), [3]);
        assert_eq!(rooms.enforce_retention(now).expect("run"), 0);
        let next = rooms
            .append(&send, "c4".into(), Body::text("y"))
            .expect("append");
        assert_eq!(next.seq, 4);
        // Their client id records went with them: a retry of one is stored anew, and the kept
        // one's record stays.
        let retried = rooms
            .append(&send, "c1".into(), Body::text("x"))
            .expect("retry");
        assert_eq!((retried.seq, retried.duplicate), (5, false));
        let kept = rooms
            .append(&send, "c3".into(), Body::text("x"))
            .expect("retry");
        assert_eq!((kept.seq, kept.duplicate), (3, true));
    }

    #[tokio::test]
    async fn a_second_room_with_the_same_name_is_refused() {
        let (gate, rooms, principal) = setup();
        let create = gate
            .authorize::<action::CreateRoom>(&principal, Deployment)
            .expect("create");
        let request = CreateRoom::new(room(), "");
        rooms.create(&create, request.clone()).expect("created");
        let err = rooms.create(&create, request).expect_err("exists");
        assert_eq!(err.code, ErrorCode::RoomExists);
    }
}
