//! Who's who: active members, each showing only what it publishes.

use escape_proto::MemberStatus;
use escape_proto::vetting::{DirectoryEntry, DirectoryQuery};

use crate::error::ApiError;
use crate::gate::{Authorized, Gate, action};
use crate::registry::Registry;

/// The directory as `auth`'s principal may see it: every entry passes the gate on its own
/// (`see_member`), so a policy can hide members from some readers.
pub fn list(
    registry: &Registry,
    gate: &Gate,
    auth: &Authorized<action::ReadDirectory>,
    query: &DirectoryQuery,
) -> Result<Vec<DirectoryEntry>, ApiError> {
    let matches = |filter: &Option<String>, value: &str| {
        filter
            .as_ref()
            .is_none_or(|f| f.trim().eq_ignore_ascii_case(value.trim()))
    };
    let mut entries: Vec<DirectoryEntry> = registry
        .all()?
        .into_iter()
        .filter(|m| m.status == MemberStatus::Active)
        .filter(|m| {
            gate.authorize::<action::SeeMember>(auth.principal(), m.id.clone())
                .is_ok()
        })
        // Filters only see what is published, so a filter cannot reveal a hidden attribute.
        .filter(|m| query.country.is_none() || m.published.country)
        .filter(|m| query.sector.is_none() || m.published.sector)
        .filter(|m| matches(&query.country, &m.attributes.country))
        .filter(|m| matches(&query.sector, &m.attributes.sector))
        .filter(|m| matches(&query.organisation, &m.attributes.organisation))
        .map(|m| DirectoryEntry {
            id: m.id.clone(),
            name: m.name.clone(),
            organisation: m.attributes.organisation.clone(),
            email: m.published.email.then(|| m.email.clone()),
            country: m.published.country.then(|| m.attributes.country.clone()),
            sector: m.published.sector.then(|| m.attributes.sector.clone()),
            role: m.published.role.then(|| m.attributes.role.clone()),
        })
        .collect();
    entries.sort_by(|a, b| {
        a.organisation
            .cmp(&b.organisation)
            .then(a.name.cmp(&b.name))
    });
    Ok(entries)
}
