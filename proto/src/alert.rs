//! Early-warning alerts: addressed by attributes, delivered at once to those online and on
//! connect to the others, acknowledged by each recipient.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::member::MemberId;
use crate::tlp::Tlp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text.trim().to_ascii_lowercase().as_str() {
            "low" => Self::Low,
            "medium" => Self::Medium,
            "high" => Self::High,
            "critical" => Self::Critical,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

/// `POST /v1/alerts`. `to` selects the audience: a Cedar condition on `principal`
/// (`principal.sector == "energy" && ["KE","UG"].contains(principal.country)`) or the short
/// form `sector=energy,country=KE|UG,clearance>=2` (comma = and, `|` = or).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendAlert {
    pub to: String,
    pub tlp: String,
    pub severity: Severity,
    pub text: String,
    /// Resolve and count the audience, send nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// One member of an audience, as the sender sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    pub member: MemberId,
    pub name: String,
    pub organisation: String,
    pub country: String,
    /// When they acknowledged, if they did.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub acknowledged_at: Option<OffsetDateTime>,
}

/// An alert as recipients get it. The label comes first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub tlp: Tlp,
    pub severity: Severity,
    pub id: String,
    pub text: String,
    pub sender: MemberId,
    pub sender_name: String,
    pub sender_organisation: String,
    /// The audience expression as the sender wrote it.
    pub to: String,
    #[serde(with = "time::serde::rfc3339")]
    pub sent_at: OffsetDateTime,
}

/// The answer to a send (or a dry run: no alert, the audience only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertReport {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<Alert>,
    /// The audience expression as Cedar evaluated it.
    pub condition: String,
    /// How many members it reaches.
    pub audience_size: usize,
    /// Those of them the directory shows the sender.
    pub audience: Vec<Recipient>,
}

/// `GET /v1/alerts/{id}`: who acknowledged and who has not (for its sender and admins).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertStatus {
    pub alert: Alert,
    pub acknowledged: Vec<Recipient>,
    pub pending: Vec<Recipient>,
}

/// The short audience form as a Cedar condition; a Cedar condition is returned as it is.
pub fn audience_condition(to: &str) -> Result<String, String> {
    let to = to.trim();
    if to.is_empty() {
        return Err("to: give an audience (for example sector=energy,country=KE|UG)".into());
    }
    if to.len() > 1024 {
        return Err("to: at most 1024 characters".into());
    }
    let mut depth = 0usize;
    for c in to.chars() {
        match c {
            '(' | '[' | '{' => {
                depth += 1;
                if depth > 16 {
                    return Err("to: nested too deeply".into());
                }
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    if to.contains("principal.") {
        return Ok(to.to_owned());
    }
    if to == "*" || to.eq_ignore_ascii_case("everyone") {
        return Ok("true".into());
    }
    let mut parts = Vec::new();
    for clause in to.split(',') {
        let clause = clause.trim();
        if let Some((key, value)) = clause.split_once(">=") {
            let key = key.trim();
            let n: u8 = value
                .trim()
                .parse()
                .map_err(|_| format!("to: {clause:?}: expected a number after >="))?;
            if key != "clearance" {
                return Err(format!("to: only clearance compares with >= ({clause:?})"));
            }
            parts.push(format!("principal.clearance >= {n}"));
            continue;
        }
        let (key, value) = clause
            .split_once('=')
            .ok_or_else(|| format!("to: {clause:?} is not key=value"))?;
        let key = key.trim();
        if !matches!(
            key,
            "organisation" | "country" | "sector" | "role" | "vetting"
        ) {
            return Err(format!(
                "to: {key:?} is not an attribute (organisation, country, sector, role, vetting, clearance>=N)"
            ));
        }
        let values: Vec<&str> = value.split('|').map(str::trim).collect();
        if values
            .iter()
            .any(|v| v.is_empty() || v.contains(['"', '\\']) || v.chars().any(char::is_control))
        {
            return Err(format!("to: {clause:?} has an empty or unusable value"));
        }
        let upper = key == "country";
        let quoted: Vec<String> = values
            .iter()
            .map(|v| {
                let v = if upper {
                    v.to_ascii_uppercase()
                } else {
                    (*v).to_owned()
                };
                format!("\"{v}\"")
            })
            .collect();
        parts.push(if quoted.len() == 1 {
            format!("principal.{key} == {}", quoted[0])
        } else {
            format!("[{}].contains(principal.{key})", quoted.join(", "))
        });
    }
    Ok(parts.join(" && "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_short_form_becomes_a_cedar_condition() {
        assert_eq!(
            audience_condition("sector=energy, country=ke|ug|tz, clearance>=2").expect("ok"),
            "principal.sector == \"energy\" && [\"KE\", \"UG\", \"TZ\"].contains(principal.country) && principal.clearance >= 2"
        );
        assert_eq!(
            audience_condition("principal.role == \"CERT lead\"").expect("cedar"),
            "principal.role == \"CERT lead\""
        );
        assert!(audience_condition("colour=red").is_err());
        assert!(audience_condition("sector=\"x\" || true").is_err());
        assert!(audience_condition("").is_err());
        assert!(
            audience_condition(&format!("principal.sector == \"{}\"", "x".repeat(2000))).is_err()
        );
        assert!(
            audience_condition(&format!(
                "principal.clearance > {}1{}",
                "(".repeat(40),
                ")".repeat(40)
            ))
            .is_err()
        );
    }
}
