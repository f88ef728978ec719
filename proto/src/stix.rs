//! STIX 2.1: indicators to bundles and back.
//!
//! Export writes what experts' tools read: an `indicator` with a STIX pattern per observable (a
//! `vulnerability` with a CVE reference for CVEs), the producing organisation as an `identity`,
//! and the TLP 2.0 marking definitions by their official ids. Import reads single-comparison
//! patterns of the same observables; anything else is reported, not guessed.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::indicator::{FieldError, Indicator, IndicatorDraft, ObservableType};
use crate::tlp::{TLP_EXTENSION, Tlp};

/// The media type of STIX 2.1 content.
pub const STIX_MEDIA_TYPE: &str = "application/stix+json;version=2.1";

/// When the TLP 2.0 marking definitions were published; part of their fixed form.
const TLP_MARKINGS_CREATED: &str = "2022-10-01T00:00:00.000Z";

/// RFC 3339 UTC with millisecond precision, as STIX wants timestamps.
pub fn timestamp(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// A UUID-shaped id derived from a name (SHA-256 truncated, version and variant bits set as for
/// a name-based UUID), so the same organisation always gets the same identity id.
pub fn name_uuid(namespace: &str, name: &str, sha256: impl Fn(&[u8]) -> [u8; 32]) -> String {
    let digest = sha256(format!("{namespace}\n{name}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The official STIX 2.1 marking definition of a TLP 2.0 label.
pub fn marking_definition(tlp: Tlp) -> Value {
    json!({
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": tlp.marking_definition(),
        "created": TLP_MARKINGS_CREATED,
        "name": tlp.as_str(),
        "extensions": {
            TLP_EXTENSION: {
                "extension_type": "property-extension",
                "tlp_2_0": tlp.stix_value()
            }
        }
    })
}

/// The `identity` of an organisation that produced indicators.
pub fn identity(organisation: &str, sha256: &impl Fn(&[u8]) -> [u8; 32]) -> Value {
    json!({
        "type": "identity",
        "spec_version": "2.1",
        "id": identity_id(organisation, sha256),
        "created": TLP_MARKINGS_CREATED,
        "modified": TLP_MARKINGS_CREATED,
        "name": if organisation.is_empty() { "unknown organisation" } else { organisation },
        "identity_class": "organization"
    })
}

pub fn identity_id(organisation: &str, sha256: &impl Fn(&[u8]) -> [u8; 32]) -> String {
    format!(
        "identity--{}",
        name_uuid("escape-organisation", organisation, sha256)
    )
}

/// One indicator as a STIX object: an `indicator`, or a `vulnerability` for a CVE.
pub fn object(indicator: &Indicator, sha256: &impl Fn(&[u8]) -> [u8; 32]) -> Value {
    let mut object = serde_json::Map::new();
    let id_uuid = indicator
        .id
        .strip_prefix("indicator--")
        .unwrap_or(&indicator.id);
    let common = |object: &mut serde_json::Map<String, Value>| {
        object.insert("spec_version".into(), json!("2.1"));
        object.insert("created".into(), json!(timestamp(indicator.created)));
        object.insert("modified".into(), json!(timestamp(indicator.modified)));
        object.insert(
            "created_by_ref".into(),
            json!(identity_id(&indicator.source_organisation, sha256)),
        );
        object.insert(
            "object_marking_refs".into(),
            json!([indicator.tlp.marking_definition()]),
        );
        if !indicator.description.is_empty() {
            object.insert("description".into(), json!(indicator.description));
        }
        if !indicator.tags.is_empty() {
            object.insert("labels".into(), json!(indicator.tags));
        }
        object.insert("confidence".into(), json!(indicator.confidence));
    };
    match indicator.stix_pattern() {
        None => {
            object.insert("type".into(), json!("vulnerability"));
            object.insert("id".into(), json!(format!("vulnerability--{id_uuid}")));
            common(&mut object);
            object.insert("name".into(), json!(indicator.value));
            object.insert(
                "external_references".into(),
                json!([{"source_name": "cve", "external_id": indicator.value}]),
            );
        }
        Some(pattern) => {
            object.insert("type".into(), json!("indicator"));
            object.insert("id".into(), json!(indicator.id));
            common(&mut object);
            object.insert(
                "name".into(),
                json!(format!("{} {}", indicator.kind, indicator.value)),
            );
            object.insert("indicator_types".into(), json!(["malicious-activity"]));
            object.insert("pattern".into(), json!(pattern));
            object.insert("pattern_type".into(), json!("stix"));
            object.insert("pattern_version".into(), json!("2.1"));
            object.insert("valid_from".into(), json!(timestamp(indicator.valid_from)));
            if let Some(until) = indicator.valid_until {
                object.insert("valid_until".into(), json!(timestamp(until)));
            }
            if let Some(phase) = &indicator.kill_chain_phase {
                let (chain, name) = phase
                    .split_once(':')
                    .unwrap_or(("lockheed-martin-cyber-kill-chain", phase.as_str()));
                object.insert(
                    "kill_chain_phases".into(),
                    json!([{"kill_chain_name": chain, "phase_name": name}]),
                );
            }
        }
    }
    Value::Object(object)
}

/// A bundle of indicators with the identities and marking definitions they refer to.
pub fn bundle<'a>(
    indicators: impl IntoIterator<Item = &'a Indicator>,
    bundle_uuid: &str,
    sha256: impl Fn(&[u8]) -> [u8; 32],
) -> Value {
    let mut objects = Vec::new();
    let mut identities = BTreeMap::new();
    let mut markings = BTreeMap::new();
    for indicator in indicators {
        identities
            .entry(indicator.source_organisation.clone())
            .or_insert_with(|| identity(&indicator.source_organisation, &sha256));
        markings
            .entry(indicator.tlp)
            .or_insert_with(|| marking_definition(indicator.tlp));
        objects.push(object(indicator, &sha256));
    }
    let mut all: Vec<Value> = markings.into_values().collect();
    all.extend(identities.into_values());
    all.extend(objects);
    json!({"type": "bundle", "id": format!("bundle--{bundle_uuid}"), "objects": all})
}

/// What an imported object became.
pub type Imported = Result<IndicatorDraft, (String, FieldError)>;

fn reject(what: &str, field: &str, reason: impl Into<String>) -> (String, FieldError) {
    (
        what.to_owned(),
        FieldError {
            field: field.to_owned(),
            reason: reason.into(),
        },
    )
}

/// Reads the indicators (and CVE vulnerabilities) of a bundle, or of a bare list of objects.
/// Objects of other types (identities, marking definitions, relationships) are skipped; each
/// indicator or vulnerability becomes a draft or a reason. An object without a TLP marking
/// takes `default_tlp`.
pub fn drafts_from_objects(objects: &[Value], default_tlp: Option<Tlp>) -> Vec<Imported> {
    objects
        .iter()
        .filter(|o| matches!(o["type"].as_str(), Some("indicator" | "vulnerability")))
        .map(|o| draft_from_object(o, default_tlp))
        .collect()
}

/// The objects of a bundle (`{"type":"bundle","objects":[...]}`) or of a TAXII envelope.
pub fn objects_of(document: &Value) -> Result<&[Value], String> {
    match document["objects"].as_array() {
        Some(objects) => Ok(objects),
        None => Err("expected a STIX bundle (or envelope) with an \"objects\" array".into()),
    }
}

fn draft_from_object(o: &Value, default_tlp: Option<Tlp>) -> Imported {
    let id = o["id"].as_str().unwrap_or("(no id)").to_owned();
    if o["spec_version"].as_str().is_some_and(|v| v != "2.1") {
        return Err(reject(
            &id,
            "spec_version",
            "only STIX 2.1 objects are read",
        ));
    }
    let (kind, value) = if o["type"] == "vulnerability" {
        let cve = o["external_references"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["source_name"].as_str() == Some("cve"))
            .and_then(|r| r["external_id"].as_str())
            .ok_or_else(|| {
                reject(
                    &id,
                    "external_references",
                    "a vulnerability without a CVE id",
                )
            })?;
        (ObservableType::Cve, cve.to_owned())
    } else {
        if o["pattern_type"].as_str().unwrap_or("stix") != "stix" {
            return Err(reject(&id, "pattern_type", "only STIX patterns are read"));
        }
        let pattern = o["pattern"]
            .as_str()
            .ok_or_else(|| reject(&id, "pattern", "missing"))?;
        parse_pattern(pattern).map_err(|why| reject(&id, "pattern", why))?
    };
    let labels: Vec<Tlp> = o["object_marking_refs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter_map(tlp_of_marking)
        .collect();
    if o["granular_markings"].is_array() {
        return Err(reject(
            &id,
            "granular_markings",
            "granular markings are not read; mark the whole object",
        ));
    }
    let tlp = match labels.as_slice() {
        [] => default_tlp.ok_or_else(|| {
            reject(
                &id,
                "object_marking_refs",
                "no TLP marking; give a default label",
            )
        })?,
        [one] => *one,
        _ => {
            return Err(reject(
                &id,
                "object_marking_refs",
                "more than one TLP marking; an object has exactly one label",
            ));
        }
    };
    let parse_time = |field: &str| -> Result<Option<OffsetDateTime>, (String, FieldError)> {
        match o[field].as_str() {
            None => Ok(None),
            Some(text) => {
                OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                    .map(Some)
                    .map_err(|e| reject(&id, field, format!("not an RFC 3339 time ({e})")))
            }
        }
    };
    let confidence = match o["confidence"].as_u64() {
        None => None,
        Some(c) => Some(u8::try_from(c).map_err(|_| reject(&id, "confidence", "0 to 100"))?),
    };
    let kill_chain_phase = o["kill_chain_phases"]
        .as_array()
        .and_then(|p| p.first())
        .and_then(|p| {
            Some(format!(
                "{}:{}",
                p["kill_chain_name"].as_str()?,
                p["phase_name"].as_str()?
            ))
        });
    // Keep the object's identity: a CVE travels as vulnerability--<uuid>, stored as
    // indicator--<uuid> and exported back under the same uuid.
    let stix_id = id
        .split_once("--")
        .map(|(_, uuid)| format!("indicator--{uuid}"))
        .filter(|i| crate::indicator::is_stix_uuid(&i["indicator--".len()..]));
    Ok(IndicatorDraft {
        stix_id,
        kind: Some(kind),
        value,
        tlp: tlp.as_str().to_owned(),
        confidence,
        valid_from: parse_time("valid_from")?,
        valid_until: parse_time("valid_until")?,
        description: o["description"].as_str().unwrap_or_default().to_owned(),
        tags: o["labels"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        kill_chain_phase,
    })
}

/// The label of a TLP marking definition: TLP 2.0's ids, and TLP 1.0's (which STIX libraries
/// still write; WHITE is CLEAR).
fn tlp_of_marking(id: &str) -> Option<Tlp> {
    Tlp::from_marking_definition(id).or(match id {
        "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed" => Some(Tlp::Red),
        "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82" => Some(Tlp::Amber),
        "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da" => Some(Tlp::Green),
        "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9" => Some(Tlp::Clear),
        _ => None,
    })
}

/// Reads `[object:property = 'value']` (one comparison; `ISSUBSET` for networks) into a type
/// and a raw value.
pub fn parse_pattern(pattern: &str) -> Result<(ObservableType, String), String> {
    let inner = pattern
        .trim()
        .strip_prefix('[')
        .and_then(|p| p.strip_suffix(']'))
        .ok_or("a pattern is one [comparison]")?
        .trim();
    // Brackets, or a boolean or other operator outside quotes, mean something other than one
    // equality.
    let outside_quotes: String = inner.split('\'').step_by(2).collect::<Vec<_>>().join(" ");
    let upper = format!(" {} ", outside_quotes.to_ascii_uppercase());
    if outside_quotes.contains('[')
        || outside_quotes.contains(']')
        || [
            " AND ",
            " OR ",
            " FOLLOWEDBY ",
            "<",
            ">",
            "!=",
            " LIKE ",
            " MATCHES ",
            " NOT ",
        ]
        .iter()
        .any(|op| upper.contains(op))
    {
        return Err("only single-comparison patterns are read".into());
    }
    let (path, value) = match inner.split_once(" ISSUBSET ") {
        Some((path, value)) => (path, value),
        None => inner
            .split_once('=')
            .ok_or("expected object:property = value")?,
    };
    let path = path.trim().replace('"', "'");
    let value = value.trim();
    let text = if let Some(quoted) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
        quoted.replace("\\'", "'").replace("\\\\", "\\")
    } else {
        value.to_owned()
    };
    let kind = match path.as_str() {
        _ if text.contains('/') && path.ends_with("-addr:value") => ObservableType::Cidr,
        "ipv4-addr:value" => ObservableType::Ipv4,
        "ipv6-addr:value" => ObservableType::Ipv6,
        "domain-name:value" => ObservableType::Domain,
        "url:value" => ObservableType::Url,
        "email-addr:value" => ObservableType::Email,
        "file:hashes.'MD5'" | "file:hashes.MD5" => ObservableType::Md5,
        "file:hashes.'SHA-1'" | "file:hashes.SHA1" | "file:hashes.'SHA1'" => ObservableType::Sha1,
        "file:hashes.'SHA-256'" | "file:hashes.SHA256" | "file:hashes.'SHA256'" => {
            ObservableType::Sha256
        }
        "autonomous-system:number" => ObservableType::Asn,
        other => return Err(format!("{other} is not an observable Escape reads")),
    };
    Ok((kind, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_sha(bytes: &[u8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, b) in bytes.iter().enumerate() {
            out[i % 32] ^= b.wrapping_mul(31).wrapping_add(i as u8);
        }
        out
    }

    fn indicator(kind: ObservableType, value: &str, tlp: Tlp) -> Indicator {
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("time");
        Indicator {
            tlp,
            kind,
            value: value.into(),
            id: "indicator--6ba7b810-9dad-41d1-80b4-00c04fd430c8".into(),
            confidence: 80,
            valid_from: now,
            valid_until: None,
            description: "seen in phishing".into(),
            tags: vec!["phishing".into()],
            kill_chain_phase: Some("lockheed-martin-cyber-kill-chain:delivery".into()),
            sharer: crate::MemberId::parse("m1").expect("id"),
            source_organisation: "CERT-A".into(),
            source_clients: Vec::new(),
            created: now,
            modified: now,
            forwarded_from: None,
        }
    }

    #[test]
    fn exported_indicators_import_back_to_the_same_drafts() {
        let cases = [
            (ObservableType::Ipv4, "198.51.100.7"),
            (ObservableType::Cidr, "198.51.100.0/24"),
            (ObservableType::Ipv6, "2001:db8::1"),
            (ObservableType::Domain, "evil.example"),
            (ObservableType::Url, "https://evil.example/a'b"),
            (ObservableType::Email, "x@evil.example"),
            (ObservableType::Sha256, &"ab".repeat(32)),
            (ObservableType::Asn, "AS64500"),
            (ObservableType::Cve, "CVE-2024-3094"),
        ];
        for (kind, value) in cases {
            let i = indicator(kind, value, Tlp::Amber);
            let bundle = bundle([&i], "00000000-0000-4000-8000-000000000000", fake_sha);
            let objects = objects_of(&bundle).expect("objects");
            assert!(
                objects
                    .iter()
                    .any(|o| o["id"] == Tlp::Amber.marking_definition())
            );
            assert!(objects.iter().any(|o| o["type"] == "identity"));
            let drafts = drafts_from_objects(objects, None);
            assert_eq!(drafts.len(), 1, "{kind}");
            let draft = drafts[0].clone().expect("imports");
            assert_eq!(draft.kind, Some(kind));
            let checked = draft.check().expect("valid");
            assert_eq!(checked.value, value, "{kind}");
            assert_eq!(checked.tlp, Tlp::Amber);
            assert_eq!(checked.confidence, 80);
        }
    }

    #[test]
    fn an_object_has_exactly_one_label_and_tlp_1_ids_are_read() {
        let object = |markings: Value| {
            json!({"type":"indicator","id":"indicator--1","spec_version":"2.1",
                   "pattern":"[domain-name:value = 'x.example']","pattern_type":"stix",
                   "valid_from":"2024-01-01T00:00:00Z","object_marking_refs": markings})
        };
        let two = object(json!([
            Tlp::Clear.marking_definition(),
            Tlp::Red.marking_definition()
        ]));
        let err = drafts_from_objects(&[two], Some(Tlp::Clear))[0]
            .clone()
            .expect_err("two labels");
        assert_eq!(err.1.field, "object_marking_refs");
        let old_red = object(json!([
            "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed"
        ]));
        let draft = drafts_from_objects(&[old_red], Some(Tlp::Clear))[0]
            .clone()
            .expect("TLP 1.0 red");
        assert_eq!(
            draft.tlp, "TLP:RED",
            "the default never overrides a marking"
        );
        assert!(parse_pattern("[url:value='a']OR[url:value='b']").is_err());
        assert!(parse_pattern("[ipv4-addr:value != '1.2.3.4']").is_err());
        assert_eq!(
            parse_pattern("[ipv4-addr:value ISSUBSET '10.0.0.0/8']").expect("subset"),
            (ObservableType::Cidr, "10.0.0.0/8".to_owned())
        );
    }

    #[test]
    fn timestamps_have_milliseconds_and_z() {
        let t = OffsetDateTime::from_unix_timestamp(0).expect("t");
        assert_eq!(timestamp(t), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn unreadable_objects_are_reported_with_a_reason() {
        let objects = vec![
            json!({"type":"indicator","id":"indicator--1","spec_version":"2.1",
                   "pattern":"[ipv4-addr:value = '1.2.3.4'] AND [domain-name:value = 'x.example']",
                   "pattern_type":"stix","valid_from":"2024-01-01T00:00:00Z"}),
            json!({"type":"indicator","id":"indicator--2","spec_version":"2.1",
                   "pattern":"[ipv4-addr:value = '1.2.3.4']","pattern_type":"stix",
                   "valid_from":"2024-01-01T00:00:00Z"}),
            json!({"type":"identity","id":"identity--x"}),
        ];
        let drafts = drafts_from_objects(&objects, None);
        assert_eq!(drafts.len(), 2, "identities are skipped");
        assert_eq!(drafts[0].clone().expect_err("and").1.field, "pattern");
        assert_eq!(
            drafts[1].clone().expect_err("no label").1.field,
            "object_marking_refs"
        );
        let with_default = drafts_from_objects(&objects[1..2], Some(Tlp::Green));
        assert_eq!(with_default[0].clone().expect("default").tlp, "TLP:GREEN");
    }
}
