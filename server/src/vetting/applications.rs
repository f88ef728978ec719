//! Applications: submitted on the enrollment listener with an invitation, vouched for by
//! sponsors, decided by an admin. Approval issues a certificate for the key the applicant
//! generated on its own machine and registers the member with the attributes the admin fixed.

use std::str::FromStr;
use std::sync::Arc;

use escape_proto::vetting::{
    Application, ApplicationReceipt, ApplicationStatus, Approve, AttributeUpdate, Claims,
    Credentials, Decision, EnrollmentStatus, SubmitApplication, VerifiedClaims, Vouch,
};
use escape_proto::{Attributes, ErrorCode, Member};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::invites::Invites;
use super::{random, sha256_hex};
use crate::config::Vetting;
use crate::error::ApiError;
use crate::gate::{Authorized, action};
use crate::pki::Pki;
use crate::registry::Registry;
use crate::store::{Store, Swap, keys, value};

/// An application as stored: what admins see plus what only the server needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ApplicationRecord {
    application: Application,
    csr_pem: String,
    age_recipient: String,
    poll_token_hash: String,
    #[serde(default)]
    cert_pem: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Applications {
    store: Arc<dyn Store>,
    registry: Registry,
    invites: Invites,
    pki: Arc<Pki>,
    settings: Vetting,
    /// The main listener's address and certificate name, for the applicant's profile.
    public: (String, String),
    /// Serialises changes of applications: a decision has side effects (a certificate, a
    /// member) that must happen once.
    changing: Arc<std::sync::Mutex<()>>,
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("there is no application {id}"))
}

impl Applications {
    pub fn new(
        store: Arc<dyn Store>,
        registry: Registry,
        invites: Invites,
        pki: Arc<Pki>,
        settings: Vetting,
        public: (String, String),
    ) -> Self {
        Self {
            store,
            registry,
            invites,
            pki,
            settings,
            public,
            changing: Arc::new(std::sync::Mutex::new(())),
        }
    }

    /// Takes an application from someone who holds an invitation. Anonymous by design: the
    /// invitation is the capability, and it is spent here.
    pub fn submit(&self, request: SubmitApplication) -> Result<ApplicationReceipt, ApiError> {
        validate_claims(&request.claims)?;
        escape_certs::check_signing_request(&request.csr_pem)
            .map_err(|e| ApiError::invalid(format!("csr_pem: {e}")))?;
        age::x25519::Recipient::from_str(request.age_recipient.trim()).map_err(|e| {
            ApiError::invalid(format!("age_recipient: not an age X25519 recipient ({e})"))
        })?;
        let id = uuid::Uuid::new_v4().to_string();
        let invite = self.invites.consume(&request.invite, &id)?;
        let poll_token = escape_certs::hex_encode(&random::<32>()?);
        let record = ApplicationRecord {
            application: Application {
                id: id.clone(),
                status: ApplicationStatus::Pending,
                claims: request.claims,
                invited_by: invite.sponsor,
                submitted_at: OffsetDateTime::now_utc(),
                vouches: Vec::new(),
                vouches_needed: self.settings.sponsors_required,
                decision: None,
                member_id: None,
                verified: None,
            },
            csr_pem: request.csr_pem,
            age_recipient: request.age_recipient.trim().to_owned(),
            poll_token_hash: sha256_hex(poll_token.as_bytes()),
            cert_pem: None,
        };
        self.store
            .put(&keys::application(&id), &value::encode(&record)?)?;
        tracing::info!(application = %id, invited_by = %record.application.invited_by, "application submitted");
        Ok(ApplicationReceipt {
            id,
            poll_token,
            status: ApplicationStatus::Pending,
        })
    }

    /// Loads an application for its applicant, who proves itself with the poll token.
    fn for_applicant(&self, id: &str, poll_token: &str) -> Result<ApplicationRecord, ApiError> {
        let (_, record) = self.load(id)?;
        if sha256_hex(poll_token.as_bytes()) != record.poll_token_hash {
            // The same answer as for an unknown id: a wrong token reveals nothing.
            return Err(not_found(id));
        }
        Ok(record)
    }

    /// Checks that the applicant may start an identity verification now.
    pub fn may_verify(&self, id: &str, poll_token: &str) -> Result<(), ApiError> {
        let record = self.for_applicant(id, poll_token)?;
        if record.application.status != ApplicationStatus::Pending {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                "this application has already been decided",
            ));
        }
        Ok(())
    }

    /// Records what an identity provider proved about the applicant.
    pub fn record_verified(
        &self,
        id: &str,
        verified: VerifiedClaims,
    ) -> Result<Application, ApiError> {
        self.modify(id, |record| {
            if record.application.status != ApplicationStatus::Pending {
                return Err(ApiError::new(
                    ErrorCode::Conflict,
                    "this application has already been decided",
                ));
            }
            record.application.verified = Some(verified);
            Ok(())
        })
    }

    /// What the applicant may know: progress, the decision, and once approved its credentials.
    pub fn status(&self, id: &str, poll_token: &str) -> Result<EnrollmentStatus, ApiError> {
        let record = self.for_applicant(id, poll_token)?;
        let app = &record.application;
        let credentials = match (&app.member_id, &record.cert_pem) {
            (Some(member_id), Some(cert_pem)) => Some(Credentials {
                member_id: member_id.clone(),
                cert_pem: cert_pem.clone(),
                ca_pem: self.pki.ca_pem().to_owned(),
                server: self.public.0.clone(),
                server_name: self.public.1.clone(),
            }),
            _ => None,
        };
        Ok(EnrollmentStatus {
            id: app.id.clone(),
            status: app.status,
            vouches: app.vouches.len() as u32,
            vouches_needed: app.vouches_needed,
            reason: app
                .decision
                .as_ref()
                .filter(|d| !d.approved)
                .map(|d| d.reason.clone()),
            credentials,
        })
    }

    pub fn vouch(
        &self,
        auth: &Authorized<action::Vouch>,
        comment: String,
    ) -> Result<Application, ApiError> {
        if comment.len() > 2000 {
            return Err(ApiError::invalid("a vouch comment is at most 2000 bytes"));
        }
        let sponsor = auth.principal().member().clone();
        self.modify(&auth.resource().0, |record| {
            let app = &mut record.application;
            if app.status != ApplicationStatus::Pending {
                return Err(ApiError::new(
                    ErrorCode::Conflict,
                    "this application has already been decided",
                ));
            }
            if app.vouches.iter().any(|v| v.sponsor == sponsor.id) {
                return Err(ApiError::new(
                    ErrorCode::Conflict,
                    "you have already vouched for this applicant",
                ));
            }
            app.vouches.push(Vouch {
                sponsor: sponsor.id.clone(),
                sponsor_name: sponsor.name.clone(),
                organisation: sponsor.attributes.organisation.clone(),
                comment,
                at: OffsetDateTime::now_utc(),
            });
            Ok(())
        })
    }

    pub fn list(
        &self,
        _auth: &Authorized<action::ManageApplications>,
        status: Option<ApplicationStatus>,
    ) -> Result<Vec<Application>, ApiError> {
        let mut out = Vec::new();
        for (key, bytes) in self
            .store
            .scan_prefix(keys::APPLICATION_PREFIX, usize::MAX)?
        {
            let record: ApplicationRecord = value::decode(&key, &bytes)?;
            if status.is_none_or(|s| s == record.application.status) {
                out.push(record.application);
            }
        }
        out.sort_by_key(|a| a.submitted_at);
        Ok(out)
    }

    pub fn show(
        &self,
        _auth: &Authorized<action::ManageApplications>,
        id: &str,
    ) -> Result<Application, ApiError> {
        Ok(self.load(id)?.1.application)
    }

    /// Approves: checks the sponsors, fixes the attributes, issues the certificate for the
    /// applicant's key, registers the member.
    pub fn approve(
        &self,
        auth: &Authorized<action::ManageApplications>,
        id: &str,
        request: Approve,
    ) -> Result<Application, ApiError> {
        let admin = auth.principal().id().clone();
        self.modify(id, |record| {
            let app = &mut record.application;
            if app.status != ApplicationStatus::Pending {
                return Err(ApiError::new(ErrorCode::Conflict, "this application has already been decided"));
            }
            let mut member = Member::new(crate::deployment::new_member_id(), app.claims.name.clone());
            member.email = app.claims.email.clone();
            member.attributes = Attributes::from(&app.claims);
            member.age_recipient = Some(record.age_recipient.clone());
            apply_update(&mut member, &request.attributes)?;
            check_sponsors(app, &member.attributes.organisation, self.settings.sponsors_required)?;
            check_verification(app, &member.attributes.organisation, &self.settings.require_verified)?;
            let signed = self
                .pki
                .sign_member_request(&record.csr_pem, &member.id, &member.name, self.settings.member_cert_days)
                .map_err(|e| ApiError::invalid(format!("the application's signing request: {e}")))?;
            self.registry
                .create(&member, &admin, &format!("approved application {}", app.id))?;
            app.status = ApplicationStatus::Approved;
            app.member_id = Some(member.id.clone());
            app.decision = Some(Decision {
                by: admin.clone(),
                at: OffsetDateTime::now_utc(),
                approved: true,
                reason: String::new(),
            });
            record.cert_pem = Some(signed.cert_pem);
            tracing::info!(application = %app.id, member = %member.id, by = %admin, "application approved");
            Ok(())
        })
    }

    pub fn reject(
        &self,
        auth: &Authorized<action::ManageApplications>,
        id: &str,
        reason: String,
    ) -> Result<Application, ApiError> {
        if reason.trim().is_empty() {
            return Err(ApiError::invalid("a rejection needs a reason"));
        }
        let admin = auth.principal().id().clone();
        self.modify(id, |record| {
            let app = &mut record.application;
            if app.status != ApplicationStatus::Pending {
                return Err(ApiError::new(
                    ErrorCode::Conflict,
                    "this application has already been decided",
                ));
            }
            app.status = ApplicationStatus::Rejected;
            app.decision = Some(Decision {
                by: admin.clone(),
                at: OffsetDateTime::now_utc(),
                approved: false,
                reason,
            });
            tracing::info!(application = %app.id, by = %admin, "application rejected");
            Ok(())
        })
    }

    fn load(&self, id: &str) -> Result<(Vec<u8>, ApplicationRecord), ApiError> {
        let key = keys::application(id);
        let bytes = self.store.get(&key)?.ok_or_else(|| not_found(id))?;
        let record = value::decode(&key, &bytes)?;
        Ok((bytes, record))
    }

    /// Read-modify-write under the change lock, so two admins (or two sponsors) never overwrite
    /// each other; the compare-and-swap guards against any writer outside this process.
    fn modify(
        &self,
        id: &str,
        change: impl FnOnce(&mut ApplicationRecord) -> Result<(), ApiError>,
    ) -> Result<Application, ApiError> {
        let _guard = self
            .changing
            .lock()
            .map_err(|_| ApiError::internal(&"application lock poisoned"))?;
        let (current, mut record) = self.load(id)?;
        change(&mut record)?;
        let key = keys::application(id);
        match self
            .store
            .compare_and_swap(&key, Some(&current), Some(&value::encode(&record)?))?
        {
            Swap::Done => Ok(record.application),
            Swap::Conflict => Err(ApiError::new(
                ErrorCode::Conflict,
                "the application changed meanwhile; look again and retry",
            )),
        }
    }
}

/// N vouches, at least one from an organisation other than the applicant's.
fn check_sponsors(app: &Application, organisation: &str, required: u32) -> Result<(), ApiError> {
    if (app.vouches.len() as u32) < required {
        return Err(ApiError::new(
            ErrorCode::Precondition,
            format!(
                "the application has {} of the {required} vouches it needs",
                app.vouches.len()
            ),
        ));
    }
    if required > 0
        && !app.vouches.iter().any(|v| {
            !v.organisation
                .trim()
                .eq_ignore_ascii_case(organisation.trim())
        })
    {
        return Err(ApiError::new(
            ErrorCode::Precondition,
            format!(
                "every sponsor is from {organisation}; at least one must be from another organisation"
            ),
        ));
    }
    Ok(())
}

/// For organisations that demand it, a login at a provider that vouches for that organisation.
fn check_verification(
    app: &Application,
    organisation: &str,
    required_for: &[String],
) -> Result<(), ApiError> {
    if !required_for
        .iter()
        .any(|o| o.trim().eq_ignore_ascii_case(organisation.trim()))
    {
        return Ok(());
    }
    let proven = app
        .verified
        .as_ref()
        .and_then(|v| v.organisation.as_deref())
        .is_some_and(|o| o.trim().eq_ignore_ascii_case(organisation.trim()));
    if proven {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::Precondition,
            format!(
                "{organisation} requires a verified identity: the applicant must log in at an identity provider that vouches for {organisation} (`escape enroll verify`)"
            ),
        ))
    }
}

/// Applies an admin's attribute update, validating every field it sets.
pub fn apply_update(member: &mut Member, update: &AttributeUpdate) -> Result<(), ApiError> {
    let attrs = &mut member.attributes;
    if let Some(name) = &update.name {
        member.name = text_field("name", name, 100, true)?;
    }
    if let Some(v) = &update.organisation {
        attrs.organisation = text_field("organisation", v, 100, true)?;
    }
    if let Some(v) = &update.country {
        attrs.country = country(v)?;
    }
    if let Some(v) = &update.sector {
        attrs.sector = text_field("sector", v, 64, false)?;
    }
    if let Some(v) = &update.role {
        attrs.role = text_field("role", v, 64, false)?;
    }
    if let Some(v) = &update.vetting {
        attrs.vetting = text_field("vetting", v, 64, false)?;
    }
    if let Some(v) = update.clearance {
        attrs.clearance = v;
    }
    if let Some(v) = update.admin {
        member.admin = v;
    }
    if let Some(clients) = &update.clients {
        if clients.len() > 64 {
            return Err(ApiError::invalid("clients: at most 64 organisations"));
        }
        attrs.clients = clients
            .iter()
            .map(|c| text_field("clients", c, 100, true))
            .collect::<Result<_, _>>()?;
    }
    Ok(())
}

fn text_field(field: &str, value: &str, max: usize, required: bool) -> Result<String, ApiError> {
    let value = value.trim();
    if required && value.is_empty() {
        return Err(ApiError::invalid(format!("{field}: must not be empty")));
    }
    if value.len() > max || value.chars().any(char::is_control) {
        return Err(ApiError::invalid(format!(
            "{field}: at most {max} bytes, no control characters"
        )));
    }
    Ok(value.to_owned())
}

fn country(value: &str) -> Result<String, ApiError> {
    let value = value.trim().to_uppercase();
    if value.len() != 2 || !value.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ApiError::invalid(
            "country: an ISO 3166-1 alpha-2 code such as DE or EE",
        ));
    }
    Ok(value)
}

fn validate_claims(claims: &Claims) -> Result<(), ApiError> {
    text_field("name", &claims.name, 100, true)?;
    text_field("organisation", &claims.organisation, 100, true)?;
    text_field("sector", &claims.sector, 64, false)?;
    text_field("role", &claims.role, 64, false)?;
    country(&claims.country)?;
    let email = text_field("email", &claims.email, 254, true)?;
    match email.split_once('@') {
        Some((local, domain))
            if !local.is_empty() && domain.contains('.') && !domain.contains('@') =>
        {
            Ok(())
        }
        _ => Err(ApiError::invalid(
            "email: an address such as ana@cert.example",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use escape_proto::MemberId;

    fn app_with(orgs: &[&str]) -> Application {
        Application {
            id: "a".into(),
            status: ApplicationStatus::Pending,
            claims: Claims::default(),
            invited_by: MemberId::parse("admin").expect("id"),
            submitted_at: OffsetDateTime::now_utc(),
            vouches: orgs
                .iter()
                .enumerate()
                .map(|(i, org)| Vouch {
                    sponsor: MemberId::parse(&format!("s{i}")).expect("id"),
                    sponsor_name: format!("s{i}"),
                    organisation: (*org).into(),
                    comment: String::new(),
                    at: OffsetDateTime::now_utc(),
                })
                .collect(),
            vouches_needed: 2,
            decision: None,
            member_id: None,
            verified: None,
        }
    }

    #[test]
    fn sponsors_must_be_enough_and_not_all_from_the_applicants_organisation() {
        assert_eq!(
            check_sponsors(&app_with(&["CERT-B"]), "CERT-A", 2)
                .expect_err("one")
                .code,
            ErrorCode::Precondition
        );
        assert_eq!(
            check_sponsors(&app_with(&["CERT-A", "cert-a "]), "CERT-A", 2)
                .expect_err("same org")
                .code,
            ErrorCode::Precondition
        );
        assert!(check_sponsors(&app_with(&["CERT-A", "CERT-B"]), "CERT-A", 2).is_ok());
        assert!(check_sponsors(&app_with(&[]), "CERT-A", 0).is_ok());
    }

    #[test]
    fn claims_are_validated_field_by_field() {
        let good = Claims {
            name: "Ana".into(),
            email: "ana@cert.example".into(),
            organisation: "CERT-EE".into(),
            country: "ee".into(),
            sector: "government".into(),
            role: "analyst".into(),
        };
        assert!(validate_claims(&good).is_ok());
        for (field, bad) in [
            (
                "email",
                Claims {
                    email: "nope".into(),
                    ..good.clone()
                },
            ),
            (
                "country",
                Claims {
                    country: "Estonia".into(),
                    ..good.clone()
                },
            ),
            (
                "name",
                Claims {
                    name: " ".into(),
                    ..good.clone()
                },
            ),
            (
                "organisation",
                Claims {
                    organisation: "x\u{0}".into(),
                    ..good.clone()
                },
            ),
        ] {
            let err = validate_claims(&bad).expect_err(field);
            assert!(err.message.starts_with(field), "{}", err.message);
        }
    }
}
