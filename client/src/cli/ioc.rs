//! `escape ioc ...`: share, list, search, sight, relabel, forward and export threat indicators.
//! Wherever an indicator is shown, its TLP label comes first.

use std::path::{Path, PathBuf};

use escape_client::indicators::{self, Origin};
use escape_client::{Client, ClientError};
use escape_proto::RoomName;
use escape_proto::indicator::{
    IndicatorDraft, IndicatorRecord, ObservableType, ShareIndicators, ShareOutcome, ShareReport,
    Sighting,
};

use super::output::{clean, print};

/// One line per indicator: label, type, value, then what else is known.
pub fn record_line(r: &IndicatorRecord) -> String {
    let i = &r.indicator;
    let mut line = format!(
        "{:<16} {:<6} {}  confidence {}  {}#{}  from {}",
        i.tlp.as_str(),
        i.kind.as_str(),
        clean(&i.value),
        i.confidence,
        r.room,
        r.seq,
        clean(&i.source_organisation),
    );
    if r.sightings > 0 {
        line.push_str(&format!("  seen {}x", r.sightings));
    }
    if !i.description.is_empty() {
        line.push_str(&format!("  - {}", clean(&i.description)));
    }
    line
}

fn report_text(report: &ShareReport, origins: &[Origin]) -> String {
    let mut out = Vec::new();
    let mut accepted = 0;
    for outcome in &report.outcomes {
        match outcome {
            ShareOutcome::Accepted {
                seq,
                indicator,
                seen_in,
            } => {
                accepted += 1;
                let mut line = format!(
                    "{:<16} {:<6} {}  #{seq}",
                    indicator.tlp.as_str(),
                    indicator.kind.as_str(),
                    clean(&indicator.value)
                );
                if !seen_in.is_empty() {
                    let rooms: Vec<String> = seen_in.iter().map(ToString::to_string).collect();
                    line.push_str(&format!(
                        "  also in {} room(s) you can read: {}",
                        seen_in.len(),
                        rooms.join(", ")
                    ));
                }
                out.push(line);
            }
            ShareOutcome::Rejected {
                index,
                value,
                error,
            } => {
                let place = origins
                    .get(*index)
                    .map(ToString::to_string)
                    .unwrap_or_else(|| format!("item {}", index + 1));
                out.push(format!("rejected {place} ({}): {error}", clean(value)));
            }
        }
    }
    out.push(format!(
        "{accepted} accepted, {} rejected",
        report.outcomes.len() - accepted
    ));
    out.join("\n")
}

/// The fields given on the command line, for every indicator of a share.
pub struct Template {
    pub tlp: Option<String>,
    pub kind: Option<ObservableType>,
    pub confidence: Option<u8>,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub kill_chain_phase: Option<String>,
}

pub async fn share(
    client: &Client,
    json: bool,
    room: &RoomName,
    file: Option<&Path>,
    values: &[String],
    template: Template,
) -> Result<(), ClientError> {
    let draft = IndicatorDraft {
        kind: template.kind,
        tlp: template.tlp.clone().unwrap_or_default(),
        confidence: template.confidence,
        description: template.description.unwrap_or_default(),
        tags: template.tags,
        kill_chain_phase: template.kill_chain_phase,
        ..IndicatorDraft::default()
    };
    let mut items: Vec<indicators::Item> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            (
                Origin::Line(i + 1),
                Ok(IndicatorDraft {
                    value: v.clone(),
                    ..draft.clone()
                }),
            )
        })
        .collect();
    if let Some(file) = file {
        let text = if file == Path::new("-") {
            std::io::read_to_string(std::io::stdin()).map_err(|source| ClientError::Io {
                path: PathBuf::from("-"),
                source,
            })?
        } else {
            std::fs::read_to_string(file).map_err(|source| ClientError::Io {
                path: file.to_path_buf(),
                source,
            })?
        };
        items.extend(indicators::parse(&text, &draft));
    }
    let mut origins = Vec::new();
    let mut drafts = Vec::new();
    let mut local_rejections = Vec::new();
    for (origin, item) in items {
        match item {
            Ok(d) => {
                origins.push(origin);
                drafts.push(d);
            }
            Err(reason) => local_rejections.push(format!("rejected {origin}: {reason}")),
        }
    }
    if drafts.is_empty() && local_rejections.is_empty() {
        return Err(ClientError::File(
            "nothing to share: give values, or a file (a list, CSV, or a STIX bundle)".into(),
        ));
    }
    let report = client
        .share_indicators(room, &ShareIndicators { indicators: drafts })
        .await?;
    print(json, &report, || {
        let mut text = local_rejections.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        text + &report_text(&report, &origins)
    });
    Ok(())
}

pub async fn list(client: &Client, json: bool, room: &RoomName) -> Result<(), ClientError> {
    let records = client.indicators(room).await?;
    print(json, &records, || {
        if records.is_empty() {
            format!("no indicators in {room} that you may read")
        } else {
            records
                .iter()
                .map(record_line)
                .collect::<Vec<_>>()
                .join("\n")
        }
    });
    Ok(())
}

pub async fn search(
    client: &Client,
    json: bool,
    value: &str,
    kind: Option<ObservableType>,
) -> Result<(), ClientError> {
    let records = client.search_indicators(value, kind).await?;
    print(json, &records, || {
        if records.is_empty() {
            "not found in anything you may read".to_owned()
        } else {
            records
                .iter()
                .map(record_line)
                .collect::<Vec<_>>()
                .join("\n")
        }
    });
    Ok(())
}

pub async fn sight(
    client: &Client,
    json: bool,
    room: &RoomName,
    seq: u64,
    note: Option<String>,
) -> Result<(), ClientError> {
    let count = client
        .sight(
            room,
            seq,
            &Sighting {
                seen_at: None,
                note: note.unwrap_or_default(),
            },
        )
        .await?;
    print(json, &serde_json::json!({"sightings": count}), || {
        format!("sighting recorded; {room}#{seq} has been seen {count} time(s)")
    });
    Ok(())
}

pub async fn relabel(
    client: &Client,
    json: bool,
    room: &RoomName,
    seq: u64,
    tlp: &str,
) -> Result<(), ClientError> {
    let record = client.relabel(room, seq, tlp).await?;
    print(json, &record, || {
        format!("relabelled: {}", record_line(&record))
    });
    Ok(())
}

pub async fn forward(
    client: &Client,
    json: bool,
    room: &RoomName,
    seq: u64,
    to: &RoomName,
) -> Result<(), ClientError> {
    let record = client.forward(room, seq, to).await?;
    print(json, &record, || {
        format!("forwarded: {}", record_line(&record))
    });
    Ok(())
}

pub async fn export(
    client: &Client,
    room: &RoomName,
    output: Option<&Path>,
) -> Result<(), ClientError> {
    let bundle = client.export_stix(room).await?;
    let text =
        serde_json::to_string_pretty(&bundle).map_err(|e| ClientError::Protocol(e.to_string()))?;
    match output {
        Some(path) => {
            std::fs::write(path, text + "\n").map_err(|source| ClientError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            let count = bundle["objects"].as_array().map_or(0, |o| {
                o.iter()
                    .filter(|o| o["type"] != "marking-definition" && o["type"] != "identity")
                    .count()
            });
            eprintln!("{count} indicator(s) written to {}", path.display());
        }
        None => println!("{text}"),
    }
    Ok(())
}
