//! The gate: the one place that decides whether a principal may do something.
//!
//! Every HTTP route, every WebSocket request, every delivery of an event to a subscriber and
//! every history read asks [`Gate::authorize`]. What it returns, [`Authorized`], can be built
//! nowhere else, and the operations that act on rooms take one, so no handler can run an action
//! without a decision for that very action (the type parameter names it).
//!
//! Two layers decide, in this order: structural rules no policy can change (an active principal,
//! an existing room, membership of it, admin rights for admin actions), then the attribute-based
//! Cedar policy of the deployment and of the room ([`crate::policy`]), deny by default.

use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use escape_proto::{ErrorCode, RoomName};

use crate::error::ApiError;
use crate::identity::Principal;
use crate::policy::{PolicyEngine, Target};
use crate::store::{Epoch, KeptAtEpoch, Store, keys};

/// What the gate needs to know about an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActionKind {
    ReadSelf,
    ListRooms,
    CreateRoom,
    JoinRoom,
    LeaveRoom,
    ReadHistory,
    Subscribe,
    Send,
    /// Handing one stored event to one subscriber. Checked per recipient, per event.
    Deliver,
    CreateInvite,
    /// Vouching for an applicant.
    Vouch,
    /// Reading and deciding applications (admins).
    ManageApplications,
    /// Suspending, reinstating, revoking members and changing their attributes (admins).
    ManageMembers,
    ReadDirectory,
    /// Renewing one's own certificate, choosing what one publishes.
    ManageSelf,
    /// Changing a room's policy (its admin, or a deployment admin).
    ManageRoom,
    /// Reading, testing and changing the deployment's policy (admins).
    ManagePolicy,
    /// Seeing one member's entry in the directory.
    SeeMember,
    /// Rotating the master key that seals the store (admins).
    ManageKeys,
    /// Sharing a file in a room: its key generations and the encrypted upload.
    UploadFile,
    /// Reading a room's files and the keys sealed to oneself.
    DownloadFile,
    /// Sharing, relabelling or forwarding threat indicators into a room.
    ShareIndicator,
    /// Sending an early-warning alert (its audience is resolved separately).
    SendAlert,
}

mod sealed {
    pub trait Sealed {}
}

/// A type naming one action, so that `Authorized<Send>` cannot be passed where
/// `Authorized<ReadHistory>` is required.
pub trait Action: sealed::Sealed + std::fmt::Debug {
    const KIND: ActionKind;
    /// What the action is on: the deployment as a whole, or one room.
    type Resource: Resource;
}

/// A resource the gate can decide on.
pub trait Resource: Clone + std::fmt::Debug {
    /// The resource as the policy sees it, read from the store now (or as the gate keeps it
    /// while nothing that decides access was written).
    fn target(&self, gate: &Gate) -> Result<Arc<Target>, ApiError>;
}

/// The deployment itself, for actions that are not about one room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deployment;

impl Resource for Deployment {
    fn target(&self, _gate: &Gate) -> Result<Arc<Target>, ApiError> {
        Ok(Arc::new(Target::Deployment))
    }
}

impl Resource for RoomName {
    fn target(&self, gate: &Gate) -> Result<Arc<Target>, ApiError> {
        Ok(gate.known_room(self)?.target)
    }
}

impl Resource for escape_proto::MemberId {
    fn target(&self, gate: &Gate) -> Result<Arc<Target>, ApiError> {
        let key = keys::member(self);
        let member = match gate.store.get(&key)? {
            Some(bytes) => crate::store::value::decode(&key, &bytes)?,
            // An unknown target still gets a decision; the handler then reports not_found.
            None => escape_proto::Member::new(self.clone(), ""),
        };
        Ok(Arc::new(Target::Member(Box::new(member))))
    }
}

/// An application, by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplicationRef(pub String);

impl Resource for ApplicationRef {
    fn target(&self, _gate: &Gate) -> Result<Arc<Target>, ApiError> {
        Ok(Arc::new(Target::Application(self.0.clone())))
    }
}

macro_rules! actions {
    ($($name:ident => $resource:ty),* $(,)?) => {
        /// One marker type per action.
        pub mod action {
            $(
                #[derive(Debug, Clone, Copy)]
                pub struct $name;
                impl super::sealed::Sealed for $name {}
                impl super::Action for $name {
                    const KIND: super::ActionKind = super::ActionKind::$name;
                    type Resource = $resource;
                }
            )*
        }
    };
}

actions! {
    ReadSelf => super::Deployment,
    ListRooms => super::Deployment,
    CreateRoom => super::Deployment,
    JoinRoom => escape_proto::RoomName,
    LeaveRoom => escape_proto::RoomName,
    ReadHistory => escape_proto::RoomName,
    Subscribe => escape_proto::RoomName,
    Send => escape_proto::RoomName,
    Deliver => escape_proto::RoomName,
    CreateInvite => super::Deployment,
    Vouch => super::ApplicationRef,
    ManageApplications => super::Deployment,
    ManageMembers => escape_proto::MemberId,
    ReadDirectory => super::Deployment,
    ManageSelf => super::Deployment,
    ManageRoom => escape_proto::RoomName,
    ManagePolicy => super::Deployment,
    ManageKeys => super::Deployment,
    UploadFile => escape_proto::RoomName,
    DownloadFile => escape_proto::RoomName,
    ShareIndicator => escape_proto::RoomName,
    SendAlert => super::Deployment,
    SeeMember => escape_proto::MemberId,
}

/// Proof that the gate allowed `principal` to perform `A` on `resource`. Only the gate makes one.
#[derive(Debug, Clone)]
pub struct Authorized<A: Action> {
    principal: Principal,
    resource: A::Resource,
    _action: PhantomData<A>,
}

impl<A: Action> Authorized<A> {
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    pub fn resource(&self) -> &A::Resource {
        &self.resource
    }
}

#[derive(Debug, Clone)]
pub struct Gate {
    store: Arc<dyn Store>,
    policy: Arc<PolicyEngine>,
    members_may_invite: bool,
    audit: Option<Arc<crate::audit::AuditLog>>,
    /// Moves with every write that decides access (when the store is an
    /// [`EpochStore`](crate::store::EpochStore)): lets subscriptions keep what they read.
    epoch: Option<Epoch>,
    /// Room records decoded at the current epoch, shared by every session: each frame sent to
    /// a room needs its record, and decoding it again was most of the gate's own allocations.
    rooms: Arc<Mutex<KeptAtEpoch<RoomName, KnownRoom>>>,
}

/// A room's record and what policies see of it, made from it once.
#[derive(Debug, Clone)]
pub(crate) struct KnownRoom {
    pub record: Arc<crate::rooms::RoomRecord>,
    pub target: Arc<Target>,
}

/// Most memory the kept room records may hold; past it they are all read again. A record
/// grows with its invitations (up to ten thousand ids), so a count alone would not bound it.
const KNOWN_ROOM_BYTES: usize = 8 * 1024 * 1024;

impl Gate {
    pub fn new(store: Arc<dyn Store>, policy: Arc<PolicyEngine>) -> Self {
        Self {
            store,
            policy,
            members_may_invite: false,
            audit: None,
            epoch: None,
            rooms: Arc::new(Mutex::new(KeptAtEpoch::new(KNOWN_ROOM_BYTES))),
        }
    }

    /// Counts access-deciding writes through `epoch`: the store given to [`Gate::new`] must be
    /// the [`EpochStore`](crate::store::EpochStore) it came from.
    pub fn with_epoch(mut self, epoch: Epoch) -> Self {
        self.epoch = Some(epoch);
        self
    }

    /// Records denials in the audit log (rate-limited there).
    pub fn with_audit(mut self, audit: Arc<crate::audit::AuditLog>) -> Self {
        self.audit = Some(audit);
        self
    }

    /// Whether members who are not admins may create invitations (a deployment setting).
    pub fn with_members_may_invite(mut self, allowed: bool) -> Self {
        self.members_may_invite = allowed;
        self
    }

    /// Decides. Deny by default: each action kind below lists what it needs.
    pub fn authorize<A: Action>(
        &self,
        principal: &Principal,
        resource: A::Resource,
    ) -> Result<Authorized<A>, ApiError> {
        self.authorize_frame::<A>(principal, resource, "http")
    }

    /// Decides, telling the policy which kind of frame asked (policies may look at it).
    ///
    /// First the rules no policy can change: an active principal (guaranteed by [`Principal`]),
    /// an existing room, membership of the room for everything but joining, admin rights for
    /// admin actions. Then the attribute-based policy, which denies by default.
    pub fn authorize_frame<A: Action>(
        &self,
        principal: &Principal,
        resource: A::Resource,
        frame: &'static str,
    ) -> Result<Authorized<A>, ApiError> {
        let decision = self.decide::<A>(principal, resource.clone(), frame);
        if let (Err(denied), Some(audit)) = (&decision, &self.audit)
            // A delivery withheld or a directory entry hidden is the policy working, not an
            // attempt by the member.
            && !matches!(A::KIND, ActionKind::Deliver | ActionKind::SeeMember)
            && matches!(denied.code, ErrorCode::Forbidden | ErrorCode::NotAMember)
        {
            audit.denial(
                principal.id(),
                &format!("{:?}", A::KIND),
                &format!("{resource:?}"),
                &denied.message,
            );
        }
        decision
    }

    fn decide<A: Action>(
        &self,
        principal: &Principal,
        resource: A::Resource,
        frame: &'static str,
    ) -> Result<Authorized<A>, ApiError> {
        let member = principal.member();
        match A::KIND {
            ActionKind::CreateInvite if !(member.admin || self.members_may_invite) => {
                return Err(ApiError::new(
                    ErrorCode::Forbidden,
                    "only deployment admins may invite on this deployment",
                ));
            }
            ActionKind::ManageApplications
            | ActionKind::ManageMembers
            | ActionKind::ManagePolicy
            | ActionKind::ManageKeys
                if !member.admin =>
            {
                return Err(ApiError::new(
                    ErrorCode::Forbidden,
                    "this needs a deployment admin",
                ));
            }
            _ => {}
        }
        let target = resource.target(self)?;
        if let Target::Room(room) = &*target {
            match A::KIND {
                ActionKind::JoinRoom => self.may_join(principal, &room.name)?,
                ActionKind::ManageRoom => {
                    if !member.admin && self.room_admin(&room.name)? != *principal.id() {
                        return Err(ApiError::new(
                            ErrorCode::Forbidden,
                            format!(
                                "only the admin of {} or a deployment admin may change it",
                                room.name
                            ),
                        ));
                    }
                }
                _ => self.is_member(principal, &room.name)?,
            }
        }
        self.policy
            .decide(member, A::KIND, &target, frame, principal.cert_days_left())?;
        Ok(Authorized {
            principal: principal.clone(),
            resource,
            _action: PhantomData,
        })
    }

    /// The stored room, or `room_not_found`: as decoded earlier while nothing that decides
    /// access was written since (room records are such writes), else read now.
    pub(crate) fn room(&self, room: &RoomName) -> Result<Arc<crate::rooms::RoomRecord>, ApiError> {
        Ok(self.known_room(room)?.record)
    }

    /// The stored room and its policy target; see [`Gate::room`].
    pub(crate) fn known_room(&self, room: &RoomName) -> Result<KnownRoom, ApiError> {
        let read = || {
            let record = crate::rooms::RoomRecord::require(self.store.as_ref(), room)?;
            Ok::<_, ApiError>(KnownRoom {
                target: Arc::new(Target::Room(record.attributes())),
                record: Arc::new(record),
            })
        };
        let Some(epoch) = &self.epoch else {
            return read();
        };
        // Taken before reading, as every reader of the epoch does.
        let at = epoch.now();
        if let Some(kept) = self.rooms.lock().ok().and_then(|known| known.get(room, at)) {
            return Ok(kept);
        }
        let fresh = read()?;
        if let Ok(mut known) = self.rooms.lock() {
            let size = fresh.record.approximate_bytes();
            // The epoch is read under the lock, after the read of the record.
            known.keep(room.clone(), fresh.clone(), size, at, epoch.now());
        }
        Ok(fresh)
    }

    fn room_admin(&self, room: &RoomName) -> Result<escape_proto::MemberId, ApiError> {
        Ok(self.room(room)?.created_by.clone())
    }

    /// An invite-only room takes the invited, its admin, deployment admins, and its members
    /// (joining again changes nothing); any other room takes anyone the policy lets in.
    fn may_join(&self, principal: &Principal, room: &RoomName) -> Result<(), ApiError> {
        let record = self.room(room)?;
        if record.invite_only
            && !record.invited.contains(principal.id())
            && record.created_by != *principal.id()
            && !principal.member().admin
            && self.is_member(principal, room).is_err()
        {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("{room} is invite-only; ask its admin to invite you"),
            ));
        }
        Ok(())
    }

    fn is_member(&self, principal: &Principal, room: &RoomName) -> Result<(), ApiError> {
        if self
            .store
            .get(&keys::room_member(room, principal.id()))?
            .is_none()
        {
            return Err(not_a_member(room));
        }
        Ok(())
    }

    /// Whether the gate would allow `A` on `resource`, for showing capabilities (a TAXII
    /// collection's `can_write`); not an attempt, so a "no" is not audited.
    pub fn permits<A: Action>(&self, principal: &Principal, resource: A::Resource) -> bool {
        self.quietly::<A>(principal, resource).is_some()
    }

    /// The decision without auditing a refusal: for skipping, not refusing, what a principal may
    /// not do (the rooms a search looks through).
    pub fn quietly<A: Action>(
        &self,
        principal: &Principal,
        resource: A::Resource,
    ) -> Option<Authorized<A>> {
        self.decide::<A>(principal, resource, "probe").ok()
    }

    /// Whether `principal`, already allowed to read the event's room, may see this event now:
    /// the room's history visibility for joiners, then the TLP 2.0 rule for indicators. Every
    /// path that hands out a stored event (history, search, export, TAXII) asks here; live
    /// delivery asks [`Gate::admit`], which applies the same rules ([`Gate::event_visible`]).
    pub fn may_read_event(
        &self,
        principal: &Principal,
        event: &escape_proto::Event,
    ) -> Result<bool, ApiError> {
        let shares_history = self.room(&event.room)?.shares_history();
        self.event_visible(principal, shares_history, event, || {
            self.joined_at(&event.room, principal.id())
        })
    }

    /// What `member`'s deliveries from `room` are decided on: its record (it must be active),
    /// the room and the membership, read once and kept by the subscription while
    /// [`Gate::still_current`] says so; [`Gate::admit`] then asks the policy and the event's
    /// own rules for every event. Errors end the subscription (the member was suspended, the
    /// room is gone, the member left).
    pub fn deliveries(
        &self,
        registry: &crate::registry::Registry,
        member: &escape_proto::MemberId,
        certificate_expiry: Option<time::OffsetDateTime>,
        room: &RoomName,
    ) -> Result<Deliveries, ApiError> {
        // Taken before reading: a write racing these reads moves the epoch past this value.
        let epoch = self.epoch.as_ref().map(Epoch::now);
        let principal =
            Principal::resolve_id(registry, member)?.with_certificate_expiry(certificate_expiry);
        let known = self.known_room(room)?;
        let Some(joined_at) = self.joined_at(room, principal.id())? else {
            return Err(not_a_member(room));
        };
        Ok(Deliveries {
            shares_history: known.record.shares_history(),
            target: known.target,
            joined_at,
            principal,
            epoch,
        })
    }

    /// The member behind a session, for its next request: what `known` holds while nothing that
    /// decides access was written since it was read (as a subscription keeps its
    /// [`Deliveries`]), else read afresh, refusing a member no longer active. Saves each frame
    /// of a busy session looking up and decoding its member's record.
    pub fn session_principal(
        &self,
        registry: &crate::registry::Registry,
        member: &escape_proto::MemberId,
        certificate_expiry: Option<time::OffsetDateTime>,
        known: &mut Option<KnownPrincipal>,
    ) -> Result<Principal, ApiError> {
        // Taken before reading: a write racing the read moves the epoch past this value.
        let epoch = self.epoch.as_ref().map(Epoch::now);
        if let (Some(now), Some(kept)) = (epoch, known.as_ref())
            && kept.epoch == now
        {
            return Ok(kept.principal.clone());
        }
        let principal =
            Principal::resolve_id(registry, member)?.with_certificate_expiry(certificate_expiry);
        *known = epoch.map(|epoch| KnownPrincipal {
            epoch,
            principal: principal.clone(),
        });
        Ok(principal)
    }

    /// Whether nothing that decides access was written since `deliveries` was read. Without
    /// an epoch (a gate over a store nobody counts writes of) it never is.
    pub fn still_current(&self, deliveries: &Deliveries) -> bool {
        matches!((&self.epoch, deliveries.epoch), (Some(epoch), Some(at)) if epoch.now() == at)
    }

    /// The per-recipient, per-event decision: the policy for delivering from the room (a
    /// refusal is `forbidden`: the event is withheld and the stream goes on), then the event's
    /// own rules (`false`: withheld by its label or the room's history setting).
    pub fn admit(
        &self,
        deliveries: &Deliveries,
        event: &escape_proto::Event,
    ) -> Result<bool, ApiError> {
        self.policy.decide(
            deliveries.principal.member(),
            ActionKind::Deliver,
            &deliveries.target,
            "event",
            deliveries.principal.cert_days_left(),
        )?;
        self.event_visible(
            &deliveries.principal,
            deliveries.shares_history,
            event,
            || Ok(Some(deliveries.joined_at)),
        )
    }

    /// The rules an event adds to reading its room: the room's history visibility for
    /// joiners, then the TLP 2.0 rule for indicators. `joined_at` is asked only when needed.
    fn event_visible(
        &self,
        principal: &Principal,
        shares_history: bool,
        event: &escape_proto::Event,
        joined_at: impl FnOnce() -> Result<Option<time::OffsetDateTime>, ApiError>,
    ) -> Result<bool, ApiError> {
        let indicator = match &event.body {
            escape_proto::Body::Indicator(indicator) => Some(indicator),
            _ => None,
        };
        // The common case (a message in a room that shares its history) needs no more reads.
        if shares_history && indicator.is_none() {
            return Ok(true);
        }
        let joined_at = joined_at()?;
        // A room whose history is for members only since they joined hides what came before.
        if !shares_history && joined_at.is_none_or(|joined| event.sent_at < joined) {
            return Ok(false);
        }
        let Some(indicator) = indicator else {
            return Ok(true);
        };
        let (label, labelled_at) = self
            .effective_label(event)?
            .unwrap_or((indicator.tlp, event.sent_at));
        let mut effective = indicator.as_ref().clone();
        effective.tlp = label;
        Ok(tlp_allows(
            &effective,
            &principal.member().attributes.organisation,
            joined_at,
            labelled_at,
        ))
    }

    /// When `member` joined `room` (this membership), if it is a member.
    fn joined_at(
        &self,
        room: &RoomName,
        member: &escape_proto::MemberId,
    ) -> Result<Option<time::OffsetDateTime>, ApiError> {
        let key = keys::room_member(room, member);
        Ok(match self.store.get(&key)? {
            Some(bytes) => Some(
                crate::store::value::decode::<crate::rooms::Membership>(&key, &bytes)?.joined_at,
            ),
            None => None,
        })
    }

    /// The label that governs an indicator event now: its newest version's in the room, and
    /// when that was shared. `None` for events that are not indicators.
    pub fn effective_label(
        &self,
        event: &escape_proto::Event,
    ) -> Result<Option<(escape_proto::tlp::Tlp, time::OffsetDateTime)>, ApiError> {
        let escape_proto::Body::Indicator(indicator) = &event.body else {
            return Ok(None);
        };
        Ok(Some(
            match self.latest_version(&event.room, &indicator.id)? {
                Some(latest) => (latest.tlp, latest.at),
                None => (indicator.tlp, event.sent_at),
            },
        ))
    }

    /// The newest version's sequence of an indicator in a room, if it has been recorded.
    pub fn latest_version(
        &self,
        room: &RoomName,
        indicator: &str,
    ) -> Result<Option<LatestVersion>, ApiError> {
        let key = keys::indicator_latest(room, indicator);
        Ok(match self.store.get(&key)? {
            Some(bytes) => Some(crate::store::value::decode(&key, &bytes)?),
            None => None,
        })
    }

    pub fn policy(&self) -> &crate::policy::PolicyEngine {
        &self.policy
    }
}

fn not_a_member(room: &RoomName) -> ApiError {
    ApiError::new(
        ErrorCode::NotAMember,
        format!("you are not a member of {room}; join it first"),
    )
}

/// A session's member as read at one epoch; see [`Gate::session_principal`].
#[derive(Debug)]
pub struct KnownPrincipal {
    epoch: u64,
    principal: Principal,
}

/// What one subscriber's deliveries from one room are decided on (see [`Gate::deliveries`]).
#[derive(Debug)]
pub struct Deliveries {
    principal: Principal,
    target: Arc<Target>,
    shares_history: bool,
    joined_at: time::OffsetDateTime,
    /// The epoch before these were read; `None` when the gate counts no epoch.
    epoch: Option<u64>,
}

/// The newest version of an indicator in a room (see [`keys::indicator_latest`]).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LatestVersion {
    pub seq: u64,
    pub tlp: escape_proto::tlp::Tlp,
    #[serde(with = "time::serde::rfc3339")]
    pub at: time::OffsetDateTime,
}

/// The TLP 2.0 rule (FIRST): who may receive an indicator, measured from its source.
/// - CLEAR and GREEN: any active member allowed into the room (GREEN never leaves the deployment:
///   nothing here serves unauthenticated readers);
/// - AMBER: members of the source organisation and of the clients it declared;
/// - AMBER+STRICT: members of the source organisation only;
/// - RED: only those who were members of the room when it was shared (a member who joined, or
///   rejoined, later does not see it).
pub fn tlp_allows(
    indicator: &escape_proto::indicator::Indicator,
    organisation: &str,
    joined_at: Option<time::OffsetDateTime>,
    shared_at: time::OffsetDateTime,
) -> bool {
    match indicator.tlp {
        escape_proto::tlp::Tlp::Red => {
            indicator.forwarded_from.is_none()
                && joined_at.is_some_and(|joined| joined <= shared_at)
        }
        tlp => tlp_reaches(
            tlp,
            &indicator.source_organisation,
            &indicator.source_clients,
            organisation,
        ),
    }
}

/// The organisational half of the TLP rule, shared by indicators and alerts: whether a member
/// of `organisation` may receive what `source` (which declared `clients`) labelled `tlp`.
/// TLP:RED is not decided here (it names recipients: the room's members when an indicator was
/// shared, an alert's audience), so it passes.
pub fn tlp_reaches(
    tlp: escape_proto::tlp::Tlp,
    source: &str,
    clients: &[String],
    organisation: &str,
) -> bool {
    use escape_proto::tlp::Tlp;
    // Organisation names compare as vetting compares them: trimmed, case-insensitive; an empty
    // one (an unvetted record) matches nothing.
    let same = |a: &str, b: &str| {
        let (a, b) = (a.trim(), b.trim());
        !a.is_empty() && a.eq_ignore_ascii_case(b)
    };
    match tlp {
        Tlp::Clear | Tlp::Green | Tlp::Red => true,
        Tlp::Amber => same(organisation, source) || clients.iter().any(|c| same(organisation, c)),
        Tlp::AmberStrict => same(organisation, source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;
    use crate::store::{Batch, MemoryStore, value};
    use escape_proto::{Member, MemberId, MemberStatus};

    fn member(registry: &Registry, name: &str, status: MemberStatus) -> MemberId {
        let id = MemberId::parse(name).expect("id");
        registry
            .put(&Member {
                status,
                ..Member::new(id.clone(), name)
            })
            .expect("put");
        id
    }

    /// A session reuses its member while nothing that decides access was written, and reads it
    /// again after such a write: new attributes, or a suspension, count from the next frame.
    #[test]
    fn a_session_keeps_its_member_only_until_a_write_that_decides_access() {
        let (_, registry, gate) = counting();
        let id = member(&registry, "m1", MemberStatus::Active);
        let mut known = None;
        let first = gate
            .session_principal(&registry, &id, None, &mut known)
            .expect("active");
        let kept = gate
            .session_principal(&registry, &id, None, &mut known)
            .expect("active");
        assert!(
            std::ptr::eq(first.member(), kept.member()),
            "the same record, reused while the epoch stands"
        );
        // A write through the store moves the epoch: the next frame reads the member again.
        registry
            .update(&id, &id, "test", |m| m.status = MemberStatus::Suspended)
            .expect("update");
        let refused = gate
            .session_principal(&registry, &id, None, &mut known)
            .expect_err("suspended");
        assert_eq!(refused.code, ErrorCode::MemberInactive);
    }

    /// A room's record is decoded once for every session while nothing that decides access was
    /// written, and read again after such a write (its settings changed).
    #[test]
    fn room_records_are_kept_only_until_a_write_that_decides_access() {
        let (store, registry, gate) = counting();
        let admin = member(&registry, "m1", MemberStatus::Active);
        let room = RoomName::parse("ops").expect("room");
        let put = |tlp: &str| {
            store
                .put(
                    &keys::room(&room),
                    &value::encode(&room_record(&room, &admin, tlp)).expect("encode"),
                )
                .expect("put");
        };
        put("AMBER");
        let first = gate.room(&room).expect("room");
        let kept = gate.room(&room).expect("room");
        assert!(
            Arc::ptr_eq(&first, &kept),
            "decoded once while the epoch stands"
        );
        let target = |gate: &Gate| gate.known_room(&room).expect("room").target;
        assert!(
            Arc::ptr_eq(&target(&gate), &target(&gate)),
            "and its target made once"
        );
        put("RED");
        assert_eq!(gate.room(&room).expect("room").tlp_max, "RED");
    }

    /// Rooms with thousands of invitations each cannot make the kept records outgrow their
    /// budget: it is counted in bytes, not in rooms.
    #[test]
    fn kept_room_records_stay_within_their_budget() {
        let (store, registry, gate) = counting();
        let admin = member(&registry, "m1", MemberStatus::Active);
        let invited: Vec<MemberId> = (0..10_000)
            .map(|i| MemberId::parse(&format!("m{i:059}")).expect("id"))
            .collect();
        let rooms: Vec<RoomName> = (0..12)
            .map(|n| RoomName::parse(&format!("big-{n}")).expect("room"))
            .collect();
        for room in &rooms {
            let mut record = room_record(room, &admin, "AMBER");
            record.invited = invited.clone();
            store
                .put(&keys::room(room), &value::encode(&record).expect("encode"))
                .expect("put");
        }
        for room in &rooms {
            assert_eq!(gate.room(room).expect("room").invited.len(), 10_000);
            let kept = gate.rooms.lock().expect("lock");
            assert!(
                kept.bytes() <= KNOWN_ROOM_BYTES,
                "{} bytes kept",
                kept.bytes()
            );
            assert!(kept.len() < rooms.len());
        }
    }

    /// A gate over a store that counts writes deciding access, as the server's is.
    fn counting() -> (Arc<dyn Store>, Registry, Gate) {
        let counted = Arc::new(crate::store::EpochStore::new(Arc::new(MemoryStore::new())));
        let epoch = counted.epoch();
        let store: Arc<dyn Store> = counted;
        let policy = Arc::new(PolicyEngine::load(store.clone()).expect("policy"));
        let gate = Gate::new(store.clone(), policy).with_epoch(epoch);
        (store.clone(), Registry::new(store), gate)
    }

    fn room_record(room: &RoomName, admin: &MemberId, tlp: &str) -> crate::rooms::RoomRecord {
        crate::rooms::RoomRecord {
            name: room.clone(),
            topic: String::new(),
            created_by: admin.clone(),
            created_at: time::OffsetDateTime::now_utc(),
            tlp_max: tlp.into(),
            classification: 0,
            owner_organisation: String::new(),
            tags: Vec::new(),
            history_for_joiners: None,
            history: None,
            retention_days: None,
            invite_only: false,
            invited: Vec::new(),
        }
    }

    /// Every room action: allowed for a member of the room, denied for anyone else.
    #[test]
    fn every_room_action_needs_membership_and_an_existing_room() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let registry = Registry::new(store.clone());
        let policy = Arc::new(PolicyEngine::load(store.clone()).expect("policy"));
        let gate = Gate::new(store.clone(), policy);
        let inside = member(&registry, "inside", MemberStatus::Active);
        let outside = member(&registry, "outside", MemberStatus::Active);
        let room = RoomName::parse("ops").expect("room");
        let mut batch = Batch::default();
        batch
            .put(
                keys::room(&room),
                value::encode(&room_record(&room, &inside, "AMBER")).expect("encode"),
            )
            .put(
                keys::room_member(&room, &inside),
                value::encode(&"m").expect("encode"),
            );
        store.apply(batch).expect("apply");
        let inside = Principal::resolve_id(&registry, &inside).expect("active");
        let outside = Principal::resolve_id(&registry, &outside).expect("active");
        let missing = RoomName::parse("nowhere").expect("room");

        fn check<A: Action<Resource = RoomName>>(
            gate: &Gate,
            inside: &Principal,
            outside: &Principal,
            room: &RoomName,
            missing: &RoomName,
            outsider_allowed: bool,
        ) {
            assert!(
                gate.authorize::<A>(inside, room.clone()).is_ok(),
                "{:?} member",
                A::KIND
            );
            let as_outsider = gate.authorize::<A>(outside, room.clone());
            if outsider_allowed {
                assert!(as_outsider.is_ok(), "{:?} outsider", A::KIND);
            } else {
                let code = as_outsider.expect_err("denied").code;
                assert_eq!(code, ErrorCode::NotAMember, "{:?} outsider", A::KIND);
            }
            let code = gate
                .authorize::<A>(inside, missing.clone())
                .expect_err("no room")
                .code;
            assert_eq!(code, ErrorCode::RoomNotFound, "{:?} missing room", A::KIND);
        }
        check::<action::JoinRoom>(&gate, &inside, &outside, &room, &missing, true);
        check::<action::LeaveRoom>(&gate, &inside, &outside, &room, &missing, false);
        check::<action::ReadHistory>(&gate, &inside, &outside, &room, &missing, false);
        check::<action::Subscribe>(&gate, &inside, &outside, &room, &missing, false);
        check::<action::Send>(&gate, &inside, &outside, &room, &missing, false);
        check::<action::Deliver>(&gate, &inside, &outside, &room, &missing, false);
    }

    #[test]
    fn inactive_members_never_become_principals() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let registry = Registry::new(store);
        for status in [MemberStatus::Suspended, MemberStatus::Revoked] {
            let id = member(&registry, &format!("{status:?}").to_lowercase(), status);
            let err = Principal::resolve_id(&registry, &id).expect_err("inactive");
            assert_eq!(err.code, ErrorCode::MemberInactive);
        }
        let unknown = MemberId::parse("ghost").expect("id");
        assert_eq!(
            Principal::resolve_id(&registry, &unknown)
                .expect_err("unknown")
                .code,
            ErrorCode::UnknownMember
        );
    }
}
