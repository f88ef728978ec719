//! Vetting commands: invitations, enrollment, vouching, admin decisions, the member lifecycle,
//! the directory and renewal.

use std::time::Duration;

use escape_client::enroll::{self, Outcome};
use escape_client::{Client, ClientError, ProfileStore};
use escape_proto::vetting::{
    Application, ApplicationStatus, AttributeUpdate, Claims, DirectoryQuery, StatusChange,
};
use escape_proto::{MemberId, Published};

use super::output::{clean, print, timestamp};

/// `7d`, `12h`, `30m`, `90s` (or plain seconds).
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: use a number and s, m, h or d (7d)"))?;
    let factor = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: the unit is s, m, h or d")),
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("{text:?} is too long"))
}

pub async fn invite(client: &Client, json: bool, expires: Option<u64>) -> Result<(), ClientError> {
    let invite = client.create_invite(expires).await?;
    print(json, &invite, || {
        format!(
            "invitation code (single use, until {}):\n\n  {}\n\nThe applicant runs:\n  escape enroll --server {} --invite {} --name ... --email ... --org ... --country ...",
            timestamp(invite.expires_at),
            invite.code,
            invite.enroll_address,
            invite.code
        )
    });
    Ok(())
}

pub async fn apply(
    store: &ProfileStore,
    json: bool,
    server: &str,
    invite: &str,
    claims: Claims,
    profile: &str,
) -> Result<(), ClientError> {
    let pending = enroll::apply(store, server, invite, claims, profile).await?;
    print(
        json,
        &serde_json::json!({"application": pending.id, "status": "pending"}),
        || {
            format!(
                "application {} submitted; your keys stay in {}\nSponsors vouch with `escape vouch {}`; check progress with `escape enroll status`.",
                pending.id,
                store.root().join("enrollments").display(),
                pending.id
            )
        },
    );
    Ok(())
}

/// The pending enrollment named, or the only one.
fn choose(store: &ProfileStore, id: Option<&str>) -> Result<enroll::Pending, ClientError> {
    let all = enroll::pending(store)?;
    let chosen = match id {
        Some(id) => all.into_iter().find(|p| p.id == id),
        None if all.len() <= 1 => all.into_iter().next(),
        None => {
            let ids: Vec<String> = all.into_iter().map(|p| p.id).collect();
            return Err(ClientError::BadProfile(format!(
                "several enrollments are pending ({}); name one",
                ids.join(", ")
            )));
        }
    };
    chosen.ok_or_else(|| {
        ClientError::BadProfile(
            "no enrollment is pending here; start one with `escape enroll`".into(),
        )
    })
}

/// Prints the login link of an identity provider (or the providers there are).
pub async fn verify(
    store: &ProfileStore,
    json: bool,
    id: Option<&str>,
    provider: Option<&str>,
) -> Result<(), ClientError> {
    let pending = choose(store, id)?;
    let Some(provider) = provider else {
        let names = enroll::providers(&pending).await?;
        print(json, &names, || {
            if names.is_empty() {
                "this deployment trusts no identity provider".into()
            } else {
                format!(
                    "identity providers: {}\nchoose one with --provider NAME",
                    names.join(", ")
                )
            }
        });
        return Ok(());
    };
    let url = enroll::start_verification(&pending, provider).await?;
    print(json, &serde_json::json!({"authorization_url": url}), || {
        format!(
            "open this link in a browser and log in (valid for 10 minutes):\n\n  {url}\n\nthen check with `escape enroll status`"
        )
    });
    Ok(())
}

pub async fn status(
    store: &ProfileStore,
    json: bool,
    id: Option<&str>,
    wait: bool,
) -> Result<(), ClientError> {
    let pending = choose(store, id)?;
    loop {
        match enroll::poll(store, &pending).await? {
            Outcome::Waiting(status) if wait => {
                if !json {
                    eprintln!(
                        "pending: {} of {} vouches; waiting for an admin's decision",
                        status.vouches, status.vouches_needed
                    );
                }
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            Outcome::Waiting(status) => {
                print(json, &status, || {
                    format!(
                        "application {} is pending: {} of {} vouches; then an admin decides",
                        status.id, status.vouches, status.vouches_needed
                    )
                });
                return Ok(());
            }
            Outcome::Rejected(status) => {
                print(json, &status, || {
                    format!(
                        "application {} was rejected: {}",
                        status.id,
                        clean(status.reason.as_deref().unwrap_or("no reason given"))
                    )
                });
                return Ok(());
            }
            Outcome::Approved(profile) => {
                let value = serde_json::json!({"status": "approved", "profile": profile.name, "member_id": profile.member_id});
                print(json, &value, || {
                    format!(
                        "approved: you are member {}; profile {} is ready (try `escape --profile {} whoami`)",
                        profile.member_id, profile.name, profile.name
                    )
                });
                return Ok(());
            }
        }
    }
}

pub async fn vouch(
    client: &Client,
    json: bool,
    id: &str,
    comment: String,
) -> Result<(), ClientError> {
    let app = client.vouch(id, comment).await?;
    print(json, &app, || {
        format!(
            "vouched for {} ({}); {} of {} vouches",
            clean(&app.claims.name),
            clean(&app.claims.organisation),
            app.vouches.len(),
            app.vouches_needed
        )
    });
    Ok(())
}

pub fn application_line(app: &Application) -> String {
    format!(
        "{}  {:<8}  {} <{}>  {} ({})  vouches {}/{}",
        app.id,
        format!("{:?}", app.status).to_lowercase(),
        clean(&app.claims.name),
        clean(&app.claims.email),
        clean(&app.claims.organisation),
        clean(&app.claims.country),
        app.vouches.len(),
        app.vouches_needed
    )
}

pub fn application_detail(app: &Application) -> String {
    let c = &app.claims;
    let mut lines = vec![
        format!("application {}  ({:?})", app.id, app.status),
        format!("  submitted     {}", timestamp(app.submitted_at)),
        format!("  invited by    {}", app.invited_by),
        "  claims (self-declared, not verified):".into(),
        format!("    name          {}", clean(&c.name)),
        format!("    email         {}", clean(&c.email)),
        format!("    organisation  {}", clean(&c.organisation)),
        format!("    country       {}", clean(&c.country)),
        format!("    sector        {}", clean(&c.sector)),
        format!("    role          {}", clean(&c.role)),
        format!(
            "  vouches ({} of {} needed):",
            app.vouches.len(),
            app.vouches_needed
        ),
    ];
    for v in &app.vouches {
        lines.push(format!(
            "    {} ({}) at {}: {}",
            clean(&v.sponsor_name),
            clean(&v.organisation),
            timestamp(v.at),
            clean(&v.comment)
        ));
    }
    if let Some(d) = &app.decision {
        lines.push(format!(
            "  decision: {} by {} at {}{}",
            if d.approved { "approved" } else { "rejected" },
            d.by,
            timestamp(d.at),
            if d.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", clean(&d.reason))
            }
        ));
    }
    if let Some(member) = &app.member_id {
        lines.push(format!("  member id: {member}"));
    }
    lines.join("\n")
}

pub async fn applications(
    client: &Client,
    json: bool,
    status: Option<ApplicationStatus>,
) -> Result<(), ClientError> {
    let apps = client.applications(status).await?;
    print(json, &apps, || {
        if apps.is_empty() {
            return "no applications".into();
        }
        apps.iter()
            .map(application_line)
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(())
}

pub fn attributes(pairs: &[String]) -> Result<AttributeUpdate, ClientError> {
    AttributeUpdate::from_pairs(pairs.iter().map(String::as_str)).map_err(|e| ClientError::Server {
        status: 0,
        code: escape_proto::ErrorCode::InvalidRequest,
        message: e,
    })
}

pub async fn lifecycle(
    client: &Client,
    json: bool,
    member: &MemberId,
    change: StatusChange,
    reason: String,
) -> Result<(), ClientError> {
    let updated = client.set_status(member, change, reason).await?;
    print(json, &updated, || {
        format!(
            "{} ({}) is now {:?}",
            clean(&updated.name),
            updated.id,
            updated.status
        )
    });
    Ok(())
}

pub async fn directory(
    client: &Client,
    json: bool,
    query: &DirectoryQuery,
) -> Result<(), ClientError> {
    let directory = client.directory(query).await?;
    print(json, &directory, || {
        if directory.members.is_empty() {
            return "nobody matches".into();
        }
        directory
            .members
            .iter()
            .map(|m| {
                let mut parts = vec![clean(&m.name), clean(&m.organisation)];
                for value in [&m.country, &m.sector, &m.role, &m.email]
                    .into_iter()
                    .flatten()
                {
                    parts.push(clean(value));
                }
                format!("{}  {}", m.id, parts.join(" | "))
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(())
}

pub async fn publish(client: &Client, json: bool, published: Published) -> Result<(), ClientError> {
    let me = client.publish(&published).await?;
    print(json, &me.published, || {
        format!("the directory now shows: {:?}", me.published)
    });
    Ok(())
}

/// A new certificate, for the current key or a new one; the profile is updated in place.
pub async fn renew(
    client: &Client,
    store: &ProfileStore,
    json: bool,
    new_key: bool,
) -> Result<(), ClientError> {
    let profile = client.profile();
    let (csr, key) = if new_key {
        let (csr, key) = escape_certs::signing_request(&profile.name)
            .map_err(|e| ClientError::BadProfile(e.to_string()))?;
        (csr, Some(key))
    } else {
        let csr = escape_certs::signing_request_for_key(&profile.name, &profile.key_pem)
            .map_err(|e| ClientError::BadProfile(e.to_string()))?;
        (csr, None)
    };
    let renewed = client.renew(csr).await?;
    store.replace_certificate(&profile.name, &renewed.cert_pem, key.as_deref())?;
    print(
        json,
        &serde_json::json!({"not_after": renewed.not_after, "new_key": new_key}),
        || {
            format!(
                "renewed: profile {} now holds a certificate valid until {}{}",
                profile.name,
                timestamp(renewed.not_after),
                if new_key { " for a new key" } else { "" }
            )
        },
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("7d"), Ok(7 * 86_400));
        assert_eq!(parse_duration("90"), Ok(90));
        assert_eq!(parse_duration("2h"), Ok(7200));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3w").is_err());
    }
}
