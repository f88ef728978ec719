//! `escape alert ...`: warn an audience chosen by attributes, and follow who acknowledged.

use escape_client::{Client, ClientError};
use escape_proto::alert::{Alert, Recipient, SendAlert, Severity};

use super::output::{clean, print, timestamp};

pub enum Command {
    Send {
        to: String,
        tlp: String,
        severity: Severity,
        dry_run: bool,
        text: String,
    },
    List,
    Ack(String),
    Status(String),
}

/// One alert on one line: label and severity first.
pub fn line(alert: &Alert) -> String {
    format!(
        "{} ALERT [{}] {} from {} ({}): {}  -- escape alert ack {}",
        alert.tlp.as_str(),
        alert.severity.as_str(),
        timestamp(alert.sent_at),
        clean(&alert.sender_name),
        clean(&alert.sender_organisation),
        clean(&alert.text),
        alert.id
    )
}

fn who(r: &Recipient) -> String {
    format!(
        "{} ({}, {}) {}",
        clean(&r.name),
        clean(&r.organisation),
        clean(&r.country),
        r.member
    )
}

pub async fn run(client: &Client, json: bool, command: Command) -> Result<(), ClientError> {
    match command {
        Command::Send {
            to,
            tlp,
            severity,
            dry_run,
            text,
        } => {
            let report = client
                .send_alert(&SendAlert {
                    to,
                    tlp,
                    severity,
                    text,
                    dry_run,
                })
                .await?;
            print(json, &report, || {
                let mut out = vec![format!("audience: {}", clean(&report.condition))];
                match &report.alert {
                    Some(alert) => out.push(format!(
                        "sent {} to {} member(s); follow with: escape alert status {}",
                        alert.id, report.audience_size, alert.id
                    )),
                    None => {
                        out.push(format!(
                            "dry run: {} member(s) would receive it{}",
                            report.audience_size,
                            if report.audience.len() < report.audience_size {
                                format!(
                                    " ({} shown; the others are not in your directory)",
                                    report.audience.len()
                                )
                            } else {
                                String::new()
                            }
                        ));
                        out.extend(report.audience.iter().map(|r| format!("  {}", who(r))));
                    }
                }
                out.join("\n")
            });
        }
        Command::List => {
            let alerts = client.pending_alerts().await?;
            print(json, &alerts, || {
                if alerts.is_empty() {
                    "no alerts waiting for you".to_owned()
                } else {
                    alerts.iter().map(line).collect::<Vec<_>>().join("\n")
                }
            });
        }
        Command::Ack(id) => {
            client.ack_alert(&id).await?;
            print(json, &serde_json::json!({"acknowledged": id}), || {
                format!("acknowledged {id}")
            });
        }
        Command::Status(id) => {
            let status = client.alert_status(&id).await?;
            print(json, &status, || {
                let mut out = vec![line(&status.alert)];
                out.push(format!(
                    "acknowledged by {} of {}:",
                    status.acknowledged.len(),
                    status.acknowledged.len() + status.pending.len()
                ));
                for r in &status.acknowledged {
                    let at = r.acknowledged_at.map(timestamp).unwrap_or_default();
                    out.push(format!("  {at}  {}", who(r)));
                }
                out.push(format!("not yet ({}):", status.pending.len()));
                out.extend(status.pending.iter().map(|r| format!("  {}", who(r))));
                out.join("\n")
            });
        }
    }
    Ok(())
}
