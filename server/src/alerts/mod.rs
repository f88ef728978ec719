//! Early-warning alerts addressed by attributes.
//!
//! The audience is resolved by the policy engine at send time: the sender's `to` becomes the
//! condition of a one-off Cedar policy on the `receive_alert` action, validated against the
//! schema like every policy, and evaluated for every active member. The TLP label then narrows
//! it as it narrows every share (AMBER to the sender's organisation and its clients,
//! AMBER+STRICT to its organisation; RED goes to the named audience only). Whether a member may
//! send at all is the gate's `send_alert` decision.
//!
//! Delivery: every WebSocket session of a recipient gets the alert at once; a recipient who is
//! offline gets every unacknowledged alert when it next connects. Acknowledgements are stored
//! per recipient, and the sender (or an admin) sees who has and who has not.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use escape_proto::alert::{
    Alert, AlertReport, AlertStatus, Recipient, SendAlert, audience_condition,
};
use escape_proto::tlp::Tlp;
use escape_proto::{ErrorCode, Member, MemberId, MemberStatus};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::broadcast;

use crate::error::ApiError;
use crate::gate::{Authorized, action};
use crate::identity::Principal;
use crate::policy::{PolicyEngine, Target};
use crate::registry::Registry;
use crate::store::{Batch, Store, keys, value};

/// The largest alert text.
const MAX_TEXT: usize = 4096;

/// A frame on its way to some members' live sessions (an alert, a mention).
#[derive(Debug)]
pub struct Delivery {
    pub recipients: HashSet<MemberId>,
    /// For alerts: sent once per session (a session that already has it from its backlog
    /// skips it). Passing notices (mentions, typing) have none and are not remembered.
    pub key: Option<String>,
    pub frame: escape_proto::ServerFrame,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct AlertRecord {
    alert: Alert,
    condition: String,
    recipients: Vec<MemberId>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Ack {
    #[serde(with = "time::serde::rfc3339")]
    at: OffsetDateTime,
}

/// Alerts: sending, pending inboxes, acknowledgements, and the hub live sessions listen to.
#[derive(Debug)]
pub struct Alerts {
    store: Arc<dyn Store>,
    registry: Registry,
    hub: broadcast::Sender<Arc<Delivery>>,
}

fn recipient(member: &Member, acknowledged_at: Option<OffsetDateTime>) -> Recipient {
    Recipient {
        member: member.id.clone(),
        name: member.name.clone(),
        organisation: member.attributes.organisation.clone(),
        country: member.attributes.country.clone(),
        acknowledged_at,
    }
}

impl Alerts {
    pub fn new(store: Arc<dyn Store>, registry: Registry) -> Self {
        let (hub, _) = broadcast::channel(256);
        Self {
            store,
            registry,
            hub,
        }
    }

    /// Live sessions listen here; see [`Alerts::pending`] for what they missed.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Delivery>> {
        self.hub.subscribe()
    }

    /// Resolves the audience and, unless it is a dry run, sends.
    pub fn send(
        &self,
        gate: &crate::gate::Gate,
        auth: &Authorized<action::SendAlert>,
        request: SendAlert,
    ) -> Result<AlertReport, ApiError> {
        let policy: &PolicyEngine = gate.policy();
        let sender = auth.principal().member();
        let tlp = Tlp::parse(&request.tlp).ok_or_else(|| {
            ApiError::invalid("tlp: one of CLEAR, GREEN, AMBER, AMBER+STRICT, RED")
        })?;
        let text = request.text.trim();
        if text.is_empty()
            || text.len() > MAX_TEXT
            || text.chars().any(|c| c.is_control() && c != '\n')
        {
            return Err(ApiError::invalid(format!(
                "text: 1 to {MAX_TEXT} bytes, no control characters"
            )));
        }
        let condition = audience_condition(&request.to).map_err(ApiError::invalid)?;
        let set = policy.compile(&format!(
            "permit(principal, action == Action::\"receive_alert\", resource)\nwhen {{ {condition} }};"
        ))?;
        // One condition, one policy: a `to` that closes the clause and adds policies of its own
        // is refused rather than evaluated.
        if set.policies().count() != 1 || set.templates().count() != 0 {
            return Err(ApiError::invalid(
                "to: one condition on principal, not policies",
            ));
        }
        // The deployment's policy has its say on who may receive alerts at all.
        let deployment = policy.deployment_set()?;
        let mut audience = Vec::new();
        for member in self.registry.all()? {
            if member.status != MemberStatus::Active || member.id == sender.id {
                continue;
            }
            let receives = |set: &cedar_policy::PolicySet| {
                policy.evaluate(
                    &member,
                    "receive_alert",
                    &Target::Deployment,
                    "alert",
                    set,
                    None,
                )
            };
            if receives(&set)?
                && receives(&deployment)?
                && crate::gate::tlp_reaches(
                    tlp,
                    &sender.attributes.organisation,
                    &sender.attributes.clients,
                    &member.attributes.organisation,
                )
            {
                audience.push(member);
            }
        }
        // The sender learns the size of the audience; names only of members the directory
        // would show it.
        let recipients: Vec<Recipient> = audience
            .iter()
            .filter(|m| gate.permits::<action::SeeMember>(auth.principal(), m.id.clone()))
            .map(|m| recipient(m, None))
            .collect();
        let audience_size = audience.len();
        if request.dry_run {
            return Ok(AlertReport {
                alert: None,
                condition,
                audience_size,
                audience: recipients,
            });
        }
        if audience.is_empty() {
            return Err(ApiError::new(
                ErrorCode::Precondition,
                "nobody matches this audience (and its label); nothing was sent",
            ));
        }
        let alert = Alert {
            tlp,
            severity: request.severity,
            id: uuid::Uuid::new_v4().simple().to_string(),
            text: text.to_owned(),
            sender: sender.id.clone(),
            sender_name: sender.name.clone(),
            sender_organisation: sender.attributes.organisation.clone(),
            to: request.to.trim().to_owned(),
            sent_at: OffsetDateTime::now_utc(),
        };
        let record = AlertRecord {
            alert: alert.clone(),
            condition: condition.clone(),
            recipients: audience.iter().map(|m| m.id.clone()).collect(),
        };
        let mut batch = Batch::default();
        batch.put(keys::alert(&alert.id), value::encode(&record)?);
        for member in &audience {
            batch.put(keys::alert_inbox(&member.id, &alert.id), Vec::new());
        }
        self.store.apply(batch)?;
        // No live session listening is fine: they get it on connect.
        let _ = self.hub.send(Arc::new(Delivery {
            recipients: record.recipients.iter().cloned().collect(),
            key: Some(alert.id.clone()),
            frame: escape_proto::ServerFrame::Alert {
                alert: alert.clone(),
            },
        }));
        Ok(AlertReport {
            alert: Some(alert),
            condition,
            audience_size,
            audience: recipients,
        })
    }

    /// Sends a frame to the live sessions of `recipients` (not kept for offline ones).
    pub fn notify(&self, recipients: HashSet<MemberId>, frame: escape_proto::ServerFrame) {
        if !recipients.is_empty() {
            let _ = self.hub.send(Arc::new(Delivery {
                recipients,
                key: None,
                frame,
            }));
        }
    }

    fn record(&self, id: &str) -> Result<AlertRecord, ApiError> {
        let key = keys::alert(id);
        match self.store.get(&key)? {
            Some(bytes) => Ok(value::decode(&key, &bytes)?),
            None => Err(ApiError::new(
                ErrorCode::NotFound,
                format!("there is no alert {id}"),
            )),
        }
    }

    /// The alerts `member` has not acknowledged yet, oldest first.
    pub fn pending(&self, member: &MemberId) -> Result<Vec<Alert>, ApiError> {
        let prefix = keys::alert_inbox_prefix(member);
        let mut alerts = Vec::new();
        for (key, _) in self.store.scan_prefix(&prefix, 1000)? {
            let Ok(id) = std::str::from_utf8(&key[prefix.len()..]) else {
                continue;
            };
            if let Ok(record) = self.record(id) {
                alerts.push(record.alert);
            }
        }
        alerts.sort_by_key(|a| a.sent_at);
        Ok(alerts)
    }

    /// Records that `member` acknowledged the alert.
    pub fn ack(&self, member: &MemberId, id: &str) -> Result<(), ApiError> {
        let record = self.record(id)?;
        if !record.recipients.contains(member) {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!("there is no alert {id} for you"),
            ));
        }
        let mut batch = Batch::default();
        batch
            .put(
                keys::alert_ack(id, member),
                value::encode(&Ack {
                    at: OffsetDateTime::now_utc(),
                })?,
            )
            .delete(keys::alert_inbox(member, id));
        self.store.apply(batch)?;
        Ok(())
    }

    /// Who acknowledged and who has not; for the sender and deployment admins.
    pub fn status(&self, principal: &Principal, id: &str) -> Result<AlertStatus, ApiError> {
        let record = self.record(id)?;
        if record.alert.sender != *principal.id() && !principal.member().admin {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "only the sender of an alert and deployment admins see who acknowledged it",
            ));
        }
        let mut acks = BTreeMap::new();
        let prefix = keys::alert_acks_prefix(id);
        for (key, bytes) in self.store.scan_prefix(&prefix, usize::MAX)? {
            let ack: Ack = value::decode(&key, &bytes)?;
            acks.insert(key[prefix.len()..].to_vec(), ack.at);
        }
        let (mut acknowledged, mut pending) = (Vec::new(), Vec::new());
        for id in &record.recipients {
            let member = self
                .registry
                .get(id)?
                .unwrap_or_else(|| Member::new(id.clone(), id.as_str()));
            match acks.get(id.as_str().as_bytes()) {
                Some(at) => acknowledged.push(recipient(&member, Some(*at))),
                None => pending.push(recipient(&member, None)),
            }
        }
        Ok(AlertStatus {
            alert: record.alert,
            acknowledged,
            pending,
        })
    }
}
