//! The attribute-based policy: Cedar policies over the schema in `schema.cedarschema`, asked by
//! the gate (and only by the gate) for every decision that attributes can change.
//!
//! Two layers are evaluated together: the deployment's policy set, and for room actions the
//! room's own set (a template, "open community" unless its room admin chose another). Cedar
//! denies by default and a `forbid` beats any `permit`, so a deployment-wide forbid holds in
//! every room. Every edit is parsed and validated against the schema first; an invalid policy
//! is refused with Cedar's diagnostics and never stored.
//!
//! Decisions are cached by (member, member version, action, resource, policy epoch) for one
//! second: a changed attribute or policy takes effect on the very next decision, and policies
//! that read the time are at most a second stale.

mod cache;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid,
    PolicySet, Request, RestrictedExpression, Schema, ValidationMode, Validator,
};
use escape_proto::room::AccessChange;
use escape_proto::{ErrorCode, Member, MemberId, RoomName};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::gate::ActionKind;
use crate::store::{Store, StoreError, keys, value};

pub use cache::DecisionCache;

const SCHEMA: &str = include_str!("schema.cedarschema");

/// The deployment's policy when none was set.
pub const DEPLOYMENT_DEFAULT: &str = include_str!("templates/deployment-default.cedar");

/// Room policies a deployment starts from: (name, what it admits, text).
pub const ROOM_TEMPLATES: &[(&str, &str, &str)] = &[
    (
        "open-community",
        "every active member",
        include_str!("templates/open-community.cedar"),
    ),
    (
        "national-certs-only",
        "members of the national-cert sector",
        include_str!("templates/national-certs-only.cedar"),
    ),
    (
        "energy-sector-amber",
        "energy sector and national CERTs, clearance 1+, rooms up to TLP:AMBER",
        include_str!("templates/energy-sector-amber.cedar"),
    ),
    (
        "law-enforcement-only",
        "members of the law-enforcement sector",
        include_str!("templates/law-enforcement-only.cedar"),
    ),
];

/// The room policy when the room has none of its own.
pub const ROOM_DEFAULT: &str = include_str!("templates/open-community.cedar");

/// A stored policy text.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyRecord {
    pub text: String,
    pub version: u64,
    pub updated_by: Option<MemberId>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub updated_at: Option<OffsetDateTime>,
}

/// What a room is, as policies see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomAttributes {
    pub name: RoomName,
    pub classification: u8,
    pub tlp_max: String,
    pub owner_organisation: String,
    pub tags: Vec<String>,
}

/// The resource of a decision.
#[derive(Debug, Clone)]
pub enum Target {
    Deployment,
    Room(RoomAttributes),
    Application(String),
    Member(Box<Member>),
}

struct Loaded {
    deployment: PolicySet,
    rooms: HashMap<RoomName, PolicySet>,
}

pub struct PolicyEngine {
    schema: Schema,
    validator: Validator,
    authorizer: Authorizer,
    store: Arc<dyn Store>,
    loaded: RwLock<Loaded>,
    cache: DecisionCache,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine").finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("the built-in schema is invalid: {0}")]
    Schema(String),
    #[error("the stored policy {what} no longer validates: {message}")]
    Stored { what: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The Cedar name of an action kind; `None` for actions no policy governs (reading oneself,
/// leaving a room, managing a room one administers: structural rules only).
pub fn action_name(kind: ActionKind) -> Option<&'static str> {
    Some(match kind {
        ActionKind::ListRooms => "list_rooms",
        ActionKind::CreateRoom => "create_room",
        ActionKind::CreateInvite => "invite",
        ActionKind::ReadDirectory => "read_directory",
        ActionKind::ManageSelf => "manage_self",
        ActionKind::ManageApplications => "manage_applications",
        ActionKind::JoinRoom => "join",
        ActionKind::ReadHistory => "read",
        ActionKind::Subscribe => "subscribe",
        ActionKind::Send => "send",
        ActionKind::Deliver => "deliver",
        ActionKind::Vouch => "vouch",
        ActionKind::ManageMembers => "manage_members",
        ActionKind::SeeMember => "see_member",
        ActionKind::UploadFile => "upload",
        ActionKind::DownloadFile => "download",
        ActionKind::ShareIndicator => "share_indicator",
        ActionKind::SendAlert => "send_alert",
        ActionKind::ReadSelf
        | ActionKind::LeaveRoom
        | ActionKind::ManageRoom
        | ActionKind::ManagePolicy
        | ActionKind::ManageKeys => {
            return None;
        }
    })
}

fn uid(kind: &str, id: &str) -> Result<EntityUid, ApiError> {
    let ty: EntityTypeName = kind.parse().map_err(|e| ApiError::internal(&e))?;
    Ok(EntityUid::from_type_name_and_id(ty, EntityId::new(id)))
}

fn string(s: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(s.to_owned())
}

fn strings<'a>(items: impl IntoIterator<Item = &'a String>) -> RestrictedExpression {
    RestrictedExpression::new_set(items.into_iter().map(|s| string(s)))
}

fn member_entity(member: &Member) -> Result<Entity, ApiError> {
    let a = &member.attributes;
    let status = match member.status {
        escape_proto::MemberStatus::Active => "active",
        escape_proto::MemberStatus::Suspended => "suspended",
        escape_proto::MemberStatus::Revoked => "revoked",
    };
    let attrs = HashMap::from([
        ("name".to_owned(), string(&member.name)),
        ("organisation".to_owned(), string(&a.organisation)),
        ("country".to_owned(), string(&a.country)),
        ("sector".to_owned(), string(&a.sector)),
        ("role".to_owned(), string(&a.role)),
        (
            "clearance".to_owned(),
            RestrictedExpression::new_long(i64::from(a.clearance)),
        ),
        ("vetting".to_owned(), string(&a.vetting)),
        ("status".to_owned(), string(status)),
        (
            "admin".to_owned(),
            RestrictedExpression::new_bool(member.admin),
        ),
        ("clients".to_owned(), strings(&a.clients)),
    ]);
    Entity::new(uid("Member", member.id.as_str())?, attrs, HashSet::new())
        .map_err(|e| ApiError::internal(&e))
}

fn diagnostics(errors: impl IntoIterator<Item = impl std::fmt::Display>) -> String {
    errors
        .into_iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

impl PolicyEngine {
    pub fn load(store: Arc<dyn Store>) -> Result<Self, PolicyError> {
        let (schema, _warnings) =
            Schema::from_cedarschema_str(SCHEMA).map_err(|e| PolicyError::Schema(e.to_string()))?;
        let validator = Validator::new(schema.clone());
        let mut engine = Self {
            schema,
            validator,
            authorizer: Authorizer::new(),
            store,
            loaded: RwLock::new(Loaded {
                deployment: PolicySet::new(),
                rooms: HashMap::new(),
            }),
            cache: DecisionCache::default(),
        };
        let deployment_text = engine
            .stored(keys::DEPLOYMENT_POLICY)?
            .map_or(DEPLOYMENT_DEFAULT.to_owned(), |r| r.text);
        let deployment = engine
            .compile(&deployment_text)
            .map_err(|e| PolicyError::Stored {
                what: "of the deployment".into(),
                message: e.message,
            })?;
        let mut rooms = HashMap::new();
        for (key, bytes) in engine
            .store
            .scan_prefix(keys::ROOM_POLICY_PREFIX, usize::MAX)?
        {
            let record: PolicyRecord = value::decode(&key, &bytes)?;
            let name = String::from_utf8_lossy(&key[keys::ROOM_POLICY_PREFIX.len()..]).into_owned();
            let Ok(room) = RoomName::parse(&name) else {
                continue;
            };
            let set = engine
                .compile(&record.text)
                .map_err(|e| PolicyError::Stored {
                    what: format!("of room {room}"),
                    message: e.message,
                })?;
            rooms.insert(room, set);
        }
        engine.loaded = RwLock::new(Loaded { deployment, rooms });
        Ok(engine)
    }

    fn stored(&self, key: &[u8]) -> Result<Option<PolicyRecord>, StoreError> {
        self.store
            .get(key)?
            .map(|bytes| value::decode(key, &bytes))
            .transpose()
    }

    /// Parses and validates a policy text against the schema. The error carries Cedar's own
    /// diagnostics.
    pub fn compile(&self, text: &str) -> Result<PolicySet, ApiError> {
        let set: PolicySet = text.parse().map_err(|e: cedar_policy::ParseErrors| {
            ApiError::invalid(format!("policy does not parse: {}", diagnostics(e.iter())))
        })?;
        let result = self.validator.validate(&set, ValidationMode::Strict);
        if !result.validation_passed() {
            return Err(ApiError::invalid(format!(
                "policy does not validate against the schema: {}",
                diagnostics(result.validation_errors())
            )));
        }
        Ok(set)
    }

    /// The deployment's policy text (the default when none was set).
    pub fn deployment_policy(&self) -> Result<PolicyRecord, ApiError> {
        Ok(self
            .stored(keys::DEPLOYMENT_POLICY)?
            .unwrap_or(PolicyRecord {
                text: DEPLOYMENT_DEFAULT.to_owned(),
                version: 0,
                updated_by: None,
                updated_at: None,
            }))
    }

    pub fn room_policy(&self, room: &RoomName) -> Result<PolicyRecord, ApiError> {
        Ok(self
            .stored(&keys::room_policy(room))?
            .unwrap_or(PolicyRecord {
                text: ROOM_DEFAULT.to_owned(),
                version: 0,
                updated_by: None,
                updated_at: None,
            }))
    }

    /// Validates and stores a policy; `room` `None` is the deployment's.
    pub fn set(
        &self,
        room: Option<&RoomName>,
        text: &str,
        by: &MemberId,
    ) -> Result<PolicyRecord, ApiError> {
        let set = self.compile(text)?;
        let current = match room {
            Some(room) => self.room_policy(room)?,
            None => self.deployment_policy()?,
        };
        let record = PolicyRecord {
            text: text.to_owned(),
            version: current.version + 1,
            updated_by: Some(by.clone()),
            updated_at: Some(OffsetDateTime::now_utc()),
        };
        let key = room.map_or_else(|| keys::DEPLOYMENT_POLICY.to_vec(), keys::room_policy);
        self.store.put(&key, &value::encode(&record)?)?;
        self.store.flush()?;
        let mut loaded = self
            .loaded
            .write()
            .map_err(|_| ApiError::internal(&"policy lock poisoned"))?;
        match room {
            Some(room) => {
                loaded.rooms.insert(room.clone(), set);
            }
            None => loaded.deployment = set,
        }
        drop(loaded);
        self.cache.invalidate();
        tracing::info!(room = ?room.map(RoomName::as_str), by = %by, version = record.version, "policy changed");
        Ok(record)
    }

    /// The current policy sets for a decision on `target`.
    fn current(&self, target: &Target) -> Result<(PolicySet, Option<PolicySet>), ApiError> {
        let loaded = self
            .loaded
            .read()
            .map_err(|_| ApiError::internal(&"policy lock poisoned"))?;
        let room = match target {
            Target::Room(room) => Some(
                loaded
                    .rooms
                    .get(&room.name)
                    .cloned()
                    .unwrap_or_else(|| ROOM_DEFAULT.parse().unwrap_or_default()),
            ),
            _ => None,
        };
        Ok((loaded.deployment.clone(), room))
    }

    /// Asks the policies. `Ok(())` is a permit; a denial says which action on what was refused.
    pub fn decide(
        &self,
        member: &Member,
        kind: ActionKind,
        target: &Target,
        frame: &'static str,
        cert_days_left: i64,
    ) -> Result<(), ApiError> {
        let Some(action) = action_name(kind) else {
            return Ok(());
        };
        let key = cache::Key::new(
            member,
            kind,
            target,
            frame,
            self.cache.epoch(),
            cert_days_left,
        );
        let allowed = match self.cache.get(&key) {
            Some(allowed) => allowed,
            None => {
                let (deployment, room) = self.current(target)?;
                let allowed = self.evaluate_at(
                    member,
                    action,
                    target,
                    frame,
                    cert_days_left,
                    &deployment,
                    room.as_ref(),
                )?;
                self.cache.put(key, allowed);
                allowed
            }
        };
        if allowed {
            return Ok(());
        }
        let what = match target {
            Target::Room(room) => format!("room {}", room.name),
            Target::Deployment => "this deployment".to_owned(),
            Target::Application(id) => format!("application {id}"),
            Target::Member(m) => format!("member {}", m.id),
        };
        Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("the policy of {what} does not allow you to {action}"),
        ))
    }

    /// One uncached evaluation against the given policy sets (dry runs pass proposed ones).
    pub fn evaluate(
        &self,
        member: &Member,
        action: &str,
        target: &Target,
        frame: &str,
        deployment: &PolicySet,
        room: Option<&PolicySet>,
    ) -> Result<bool, ApiError> {
        self.evaluate_at(member, action, target, frame, 9999, deployment, room)
    }

    #[allow(clippy::too_many_arguments)]
    fn evaluate_at(
        &self,
        member: &Member,
        action: &str,
        target: &Target,
        frame: &str,
        cert_days_left: i64,
        deployment: &PolicySet,
        room: Option<&PolicySet>,
    ) -> Result<bool, ApiError> {
        let principal = member_entity(member)?;
        let (resource_uid, resource_entity) = match target {
            Target::Deployment => (uid("Deployment", "escape")?, None),
            Target::Application(id) => (uid("Application", id)?, None),
            Target::Member(target) => {
                let entity = member_entity(target)?;
                (entity.uid(), Some(entity))
            }
            Target::Room(room) => {
                let attrs = HashMap::from([
                    ("name".to_owned(), string(room.name.as_str())),
                    (
                        "classification".to_owned(),
                        RestrictedExpression::new_long(i64::from(room.classification)),
                    ),
                    ("tlp_max".to_owned(), string(&room.tlp_max)),
                    (
                        "owner_organisation".to_owned(),
                        string(&room.owner_organisation),
                    ),
                    ("tags".to_owned(), strings(&room.tags)),
                ]);
                let entity = Entity::new(uid("Room", room.name.as_str())?, attrs, HashSet::new())
                    .map_err(|e| ApiError::internal(&e))?;
                (entity.uid(), Some(entity))
            }
        };
        let mut entities = vec![principal.clone()];
        if let Some(entity) = resource_entity
            && entity.uid() != principal.uid()
        {
            entities.push(entity);
        }
        let entities = Entities::from_entities(entities, Some(&self.schema))
            .map_err(|e| ApiError::internal(&e))?;
        let context = Context::from_pairs([
            (
                "time".to_owned(),
                RestrictedExpression::new_long(OffsetDateTime::now_utc().unix_timestamp()),
            ),
            ("frame".to_owned(), string(frame)),
            (
                "cert_days_left".to_owned(),
                RestrictedExpression::new_long(cert_days_left),
            ),
        ])
        .map_err(|e| ApiError::internal(&e))?;
        let request = Request::new(
            principal.uid(),
            uid("Action", action)?,
            resource_uid,
            context,
            Some(&self.schema),
        )
        .map_err(|e| ApiError::internal(&e))?;
        let mut policies = deployment.clone();
        if let Some(room) = room {
            policies
                .merge(room, true)
                .map_err(|e| ApiError::internal(&e))?;
        }
        let response = self
            .authorizer
            .is_authorized(&request, &policies, &entities);
        let errors: Vec<String> = response
            .diagnostics()
            .errors()
            .map(ToString::to_string)
            .collect();
        if !errors.is_empty() {
            // A policy that fails to evaluate grants nothing; say so in the log.
            tracing::warn!(action, errors = %errors.join("; "), "policy evaluation errors");
        }
        Ok(response.decision() == Decision::Allow)
    }

    /// A proposed policy as a set, for dry runs.
    pub fn deployment_set(&self) -> Result<PolicySet, ApiError> {
        Ok(self.current(&Target::Deployment)?.0)
    }

    pub fn room_set(&self, room: &RoomName) -> Result<PolicySet, ApiError> {
        let loaded = self
            .loaded
            .read()
            .map_err(|_| ApiError::internal(&"policy lock poisoned"))?;
        match loaded.rooms.get(room) {
            Some(set) => Ok(set.clone()),
            None => self.compile(ROOM_DEFAULT),
        }
    }

    pub fn cache(&self) -> &DecisionCache {
        &self.cache
    }

    /// Who would gain or lose what if `proposed` replaced the policy of `room` (or of the
    /// deployment when `None`). Only active members are considered; structural rules (room
    /// membership) are left aside: this is what the policy itself changes.
    pub fn impact(
        &self,
        room: Option<&RoomName>,
        proposed: &PolicySet,
        members: &[Member],
        rooms: &[RoomAttributes],
    ) -> Result<Vec<AccessChange>, ApiError> {
        const ROOM_ACTIONS: &[&str] = &["join", "read", "send"];
        const DEPLOYMENT_ACTIONS: &[&str] =
            &["list_rooms", "create_room", "invite", "read_directory"];
        let deployment_now = self.deployment_set()?;
        let mut changes = Vec::new();
        for member in members
            .iter()
            .filter(|m| m.status == escape_proto::MemberStatus::Active)
        {
            let (mut gains, mut loses) = (Vec::new(), Vec::new());
            let mut compare = |label: String, before: bool, after: bool| match (before, after) {
                (false, true) => gains.push(label),
                (true, false) => loses.push(label),
                _ => {}
            };
            match room {
                Some(name) => {
                    let Some(attrs) = rooms.iter().find(|r| &r.name == name) else {
                        return Err(ApiError::new(
                            ErrorCode::RoomNotFound,
                            format!("there is no room {name}"),
                        ));
                    };
                    let target = Target::Room(attrs.clone());
                    let room_now = self.room_set(name)?;
                    for action in ROOM_ACTIONS {
                        let before = self.evaluate(
                            member,
                            action,
                            &target,
                            "http",
                            &deployment_now,
                            Some(&room_now),
                        )?;
                        let after = self.evaluate(
                            member,
                            action,
                            &target,
                            "http",
                            &deployment_now,
                            Some(proposed),
                        )?;
                        compare(format!("{action} {name}"), before, after);
                    }
                }
                None => {
                    for action in DEPLOYMENT_ACTIONS {
                        let before = self.evaluate(
                            member,
                            action,
                            &Target::Deployment,
                            "http",
                            &deployment_now,
                            None,
                        )?;
                        let after = self.evaluate(
                            member,
                            action,
                            &Target::Deployment,
                            "http",
                            proposed,
                            None,
                        )?;
                        compare((*action).to_owned(), before, after);
                    }
                    for attrs in rooms {
                        let target = Target::Room(attrs.clone());
                        let room_set = self.room_set(&attrs.name)?;
                        for action in ROOM_ACTIONS {
                            let before = self.evaluate(
                                member,
                                action,
                                &target,
                                "http",
                                &deployment_now,
                                Some(&room_set),
                            )?;
                            let after = self.evaluate(
                                member,
                                action,
                                &target,
                                "http",
                                proposed,
                                Some(&room_set),
                            )?;
                            compare(format!("{action} {}", attrs.name), before, after);
                        }
                    }
                }
            }
            if !gains.is_empty() || !loses.is_empty() {
                changes.push(AccessChange {
                    member: member.id.clone(),
                    name: member.name.clone(),
                    gains,
                    loses,
                });
            }
        }
        Ok(changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn engine() -> PolicyEngine {
        PolicyEngine::load(Arc::new(MemoryStore::new())).expect("engine")
    }

    /// One member per sector: the cache keys decisions by member id and version.
    fn member(sector: &str) -> Member {
        let mut m = Member::new(MemberId::parse(sector).expect("id"), sector);
        m.attributes.sector = sector.into();
        m.attributes.clearance = 1;
        m
    }

    fn room() -> Target {
        Target::Room(RoomAttributes {
            name: RoomName::parse("ops").expect("room"),
            classification: 0,
            tlp_max: "AMBER".into(),
            owner_organisation: "CERT-A".into(),
            tags: Vec::new(),
        })
    }

    #[test]
    fn every_template_validates() {
        let engine = engine();
        engine
            .compile(DEPLOYMENT_DEFAULT)
            .expect("deployment default");
        for (name, _, text) in ROOM_TEMPLATES {
            engine
                .compile(text)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn invalid_policies_are_refused_with_diagnostics() {
        let engine = engine();
        let err = engine
            .compile("permit(principal, action, resource) when { principal.colour == \"red\" };")
            .expect_err("unknown attribute");
        assert!(
            err.message.contains("validate") && err.message.contains("colour"),
            "{}",
            err.message
        );
        let err = engine
            .compile("permit(principal, action")
            .expect_err("syntax");
        assert!(err.message.contains("parse"), "{}", err.message);
        let err = engine
            .compile("permit(principal, action == Action::\"fly\", resource);")
            .expect_err("unknown action");
        assert!(err.message.contains("fly"), "{}", err.message);
    }

    #[test]
    fn templates_admit_whom_they_say() {
        let engine = engine();
        let by = MemberId::parse("admin").expect("id");
        let ops = RoomName::parse("ops").expect("room");
        assert!(
            engine
                .decide(&member("energy"), ActionKind::Send, &room(), "http", 9999)
                .is_ok()
        );
        engine
            .set(Some(&ops), ROOM_TEMPLATES[1].2, &by)
            .expect("national CERTs only");
        assert!(
            engine
                .decide(&member("energy"), ActionKind::Send, &room(), "http", 9999)
                .is_err()
        );
        assert!(
            engine
                .decide(
                    &member("national-cert"),
                    ActionKind::Send,
                    &room(),
                    "http",
                    9999
                )
                .is_ok()
        );
        // A deployment-wide forbid beats the room's permit.
        let forbid = format!(
            "{DEPLOYMENT_DEFAULT}\nforbid(principal, action == Action::\"send\", resource is Room) when {{ principal.clearance < 2 }};"
        );
        engine.set(None, &forbid, &by).expect("deployment policy");
        let err = engine
            .decide(
                &member("national-cert"),
                ActionKind::Send,
                &room(),
                "http",
                9999,
            )
            .expect_err("forbidden");
        assert_eq!(err.code, ErrorCode::Forbidden);
        assert!(
            engine
                .decide(
                    &member("national-cert"),
                    ActionKind::ReadHistory,
                    &room(),
                    "http",
                    9999
                )
                .is_ok()
        );
        // Context: a policy can treat a certificate about to expire differently, and one kind
        // of frame differently from another. Each refusal comes right after an allowed send:
        // a decision kept for a second is not reused for another context.
        let cert = member("national-cert");
        for (condition, frame, days_left) in [
            ("context.cert_days_left < 7", "send", 3),
            ("context.frame == \"typing\"", "typing", 30),
        ] {
            let policy = format!(
                "{DEPLOYMENT_DEFAULT}\nforbid(principal, action == Action::\"send\", resource is Room) when {{ {condition} }};"
            );
            engine.set(None, &policy, &by).expect("deployment policy");
            assert!(
                engine
                    .decide(&cert, ActionKind::Send, &room(), "send", 30)
                    .is_ok(),
                "{condition}: allowed"
            );
            assert!(
                engine
                    .decide(&cert, ActionKind::Send, &room(), frame, days_left)
                    .is_err(),
                "{condition}: refused"
            );
        }
        // Stored policies come back after a reload.
        let reloaded = PolicyEngine::load(engine.store.clone()).expect("reload");
        assert!(
            reloaded
                .decide(
                    &member("energy"),
                    ActionKind::ReadHistory,
                    &room(),
                    "http",
                    9999
                )
                .is_err()
        );
    }
}
