//! Reading indicators from files people already have: a plain list (one value per line), CSV
//! with a header, or a STIX 2.1 bundle. Each line or object becomes a draft or a reason, with
//! its line number (or object position), so a report can point at what was refused.

use escape_proto::indicator::{IndicatorDraft, ObservableType};
use escape_proto::tlp::Tlp;

/// Where an item came from in the file, for reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Line(usize),
    Object(usize),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Line(n) => write!(f, "line {n}"),
            Origin::Object(n) => write!(f, "object {n}"),
        }
    }
}

/// One item of a file.
pub type Item = (Origin, Result<IndicatorDraft, String>);

/// Reads a file's text; `template` gives the label and the fields a line does not set.
pub fn parse(text: &str, template: &IndicatorDraft) -> Vec<Item> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        return parse_stix(text, template);
    }
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .unwrap_or_default();
    let header = split_csv(first);
    if header.len() > 1
        && header
            .iter()
            .any(|h| h.trim().eq_ignore_ascii_case("value"))
    {
        return parse_csv(text, template);
    }
    text.lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let value = line.trim();
            if value.is_empty() || value.starts_with('#') {
                return None;
            }
            Some((
                Origin::Line(i + 1),
                Ok(IndicatorDraft {
                    value: value.to_owned(),
                    ..template.clone()
                }),
            ))
        })
        .collect()
}

fn parse_stix(text: &str, template: &IndicatorDraft) -> Vec<Item> {
    let document: serde_json::Value = match serde_json::from_str(text) {
        Ok(d) => d,
        Err(e) => return vec![(Origin::Line(e.line()), Err(format!("not JSON: {e}")))],
    };
    let objects = match &document {
        serde_json::Value::Array(objects) => objects.as_slice(),
        other => match escape_proto::stix::objects_of(other) {
            Ok(objects) => objects,
            Err(e) => return vec![(Origin::Object(0), Err(e))],
        },
    };
    let default = Tlp::parse(&template.tlp);
    escape_proto::stix::drafts_from_objects(objects, default)
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            (
                Origin::Object(i + 1),
                item.map_err(|(id, e)| format!("{id}: {e}")),
            )
        })
        .collect()
}

fn parse_csv(text: &str, template: &IndicatorDraft) -> Vec<Item> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
    let Some((_, header)) = lines.next() else {
        return Vec::new();
    };
    let columns: Vec<String> = split_csv(header)
        .into_iter()
        .map(|c| c.trim().to_ascii_lowercase())
        .collect();
    lines
        .map(|(i, line)| {
            let fields = split_csv(line);
            let mut draft = template.clone();
            let mut result = Ok(());
            for (column, field) in columns.iter().zip(fields.iter()) {
                let field = field.trim();
                if field.is_empty() {
                    continue;
                }
                match column.as_str() {
                    "value" | "indicator" | "ioc" => draft.value = field.to_owned(),
                    "type" => match ObservableType::parse(field) {
                        Some(kind) => draft.kind = Some(kind),
                        None => result = Err(format!("type: {field:?} is not an observable type")),
                    },
                    "tlp" => draft.tlp = field.to_owned(),
                    "confidence" => match field.parse() {
                        Ok(c) => draft.confidence = Some(c),
                        Err(_) => result = Err("confidence: 0 to 100".into()),
                    },
                    "description" | "comment" => draft.description = field.to_owned(),
                    "tags" | "labels" => {
                        draft.tags = field.split(';').map(|t| t.trim().to_owned()).collect()
                    }
                    "kill_chain_phase" | "phase" => draft.kill_chain_phase = Some(field.to_owned()),
                    "valid_from" | "valid_until" => {
                        match time::OffsetDateTime::parse(
                            field,
                            &time::format_description::well_known::Rfc3339,
                        ) {
                            Ok(t) if column == "valid_from" => draft.valid_from = Some(t),
                            Ok(t) => draft.valid_until = Some(t),
                            Err(_) => result = Err(format!("{column}: not an RFC 3339 time")),
                        }
                    }
                    _ => {}
                }
            }
            (Origin::Line(i + 1), result.map(|()| draft))
        })
        .collect()
}

/// Splits one CSV line, with double-quoted fields ("" inside quotes is a quote).
fn split_csv(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    fields.push(field);
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> IndicatorDraft {
        IndicatorDraft {
            tlp: "AMBER".into(),
            ..IndicatorDraft::default()
        }
    }

    #[test]
    fn plain_lists_skip_blanks_and_comments() {
        let items = parse(
            "# from the sandbox\n198.51.100.7\n\nevil[.]example\n",
            &template(),
        );
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].0, Origin::Line(2));
        assert_eq!(items[1].1.clone().expect("draft").value, "evil[.]example");
    }

    #[test]
    fn csv_columns_fill_the_draft() {
        let text = "value,type,tlp,confidence,tags,description\n\
                    198.51.100.7,ipv4,GREEN,90,c2;botnet,\"beacon, every 60s\"\n\
                    x,ipv4,AMBER,lots,,\n";
        let items = parse(text, &template());
        let first = items[0].1.clone().expect("draft");
        assert_eq!(first.kind, Some(ObservableType::Ipv4));
        assert_eq!(first.tlp, "GREEN");
        assert_eq!(first.confidence, Some(90));
        assert_eq!(first.tags, ["c2", "botnet"]);
        assert_eq!(first.description, "beacon, every 60s");
        assert_eq!(items[1].0, Origin::Line(3));
        assert!(items[1].1.clone().expect_err("bad").contains("confidence"));
    }
}
