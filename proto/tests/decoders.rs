//! Every decoder that takes a peer's input, fed generated input: random text, random JSON, and
//! valid samples with bytes changed. None may panic; each either accepts or says why not, and
//! what it accepts keeps its promises (a safe file name has no separators, a normalised value
//! normalises to itself).
//!
//! The normal test command runs a bounded number of cases (proptest's default, 256 per
//! property). For a long run, the command in SECURITY.md:
//! `PROPTEST_CASES=200000 cargo test -q -p escape-proto -p escape-certs --test decoders`.

use escape_proto::alert::{Severity, audience_condition};
use escape_proto::file::safe_file_name;
use escape_proto::indicator::{IndicatorDraft, ObservableType, infer_type, normalise, refang};
use escape_proto::stix::{drafts_from_objects, objects_of, parse_pattern};
use escape_proto::taxii::{Filters, MAX_LIMIT};
use escape_proto::tlp::Tlp;
use escape_proto::vetting::{AttributeUpdate, InviteCode, SubmitApplication, base32_decode};
use escape_proto::{ClientRequest, MemberId, RoomName};
use proptest::prelude::*;
use serde_json::Value;

/// Valid inputs to mutate: each decoder's happy path, so mutations reach deep code.
const FRAMES: &[&str] = &[
    r#"{"v":1,"id":"1","type":"subscribe","room":"ops","since":4}"#,
    r#"{"v":1,"id":"2","type":"send","room":"ops","client_msg_id":"c-1","body":{"kind":"text","text":"hi","reply_to":3,"mentions":["m-1"]}}"#,
    r#"{"v":1,"id":"3","type":"share_indicator","room":"ops","indicators":[{"value":"198.51.100.7","tlp":"AMBER"}]}"#,
    r#"{"v":1,"id":"4","type":"send","room":"ops","client_msg_id":"c-2","body":{"kind":"edit","target":1,"text":"x"}}"#,
    r#"{"v":1,"id":"5","type":"ping"}"#,
];
const VALUES: &[&str] = &[
    "198.51.100.7",
    "2001:db8::1",
    "10.0.0.0/8",
    "evil.example.com",
    "hxxps://evil[.]example/path?q=1",
    "bad@evil.example",
    "d41d8cd98f00b204e9800998ecf8427e",
    "CVE-2024-3094",
    "AS64500",
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
];
const PATTERNS: &[&str] = &[
    "[ipv4-addr:value = '198.51.100.7']",
    "[domain-name:value = 'evil.example']",
    "[file:hashes.'SHA-256' = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855']",
    "[url:value = 'http://x.example/a\\'b']",
    "[ipv4-addr:value ISSUBSET '10.0.0.0/8']",
];

const QUERIES: &[&str] = &[
    "added_after=2026-01-02T03%3A04%3A05.123Z&limit=2&next=41",
    "match%5Btype%5D=indicator,malware&match[version]=first,last&match[spec_version]=2.1",
    "match[id]=indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f&limit=1000",
];

/// `text` with every byte outside the unreserved set written as `%XX`, as a TAXII client
/// builds a query.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Valid filters, as a TAXII client could ask for them: list items without commas or the
/// surrounding spaces the decoder trims.
fn filters() -> impl Strategy<Value = Filters> {
    let item = "[^,]{0,12}".prop_map(|s| s.trim().to_owned());
    let list = move || prop::collection::vec(item.clone(), 0..4);
    (
        proptest::option::of((0i64..4_000_000_000, 0u32..1_000_000_000)),
        1usize..=MAX_LIMIT,
        proptest::option::of(any::<u64>()),
        (list(), list(), list(), list()),
    )
        .prop_map(
            |(after, limit, next, (ids, types, versions, spec_versions))| Filters {
                added_after: after.map(|(secs, nanos)| {
                    time::OffsetDateTime::from_unix_timestamp(secs)
                        .expect("in range")
                        .replace_nanosecond(nanos)
                        .expect("in range")
                }),
                limit,
                next,
                ids,
                types,
                versions,
                spec_versions,
            },
        )
}

/// The query string a client sends for `f`, parameters in a generated order.
fn query_of(f: &Filters) -> Vec<String> {
    let mut pairs = vec![format!("limit={}", f.limit)];
    if let Some(after) = f.added_after {
        let text = after
            .format(&time::format_description::well_known::Rfc3339)
            .expect("formats");
        pairs.push(format!("added_after={}", percent_encode(&text)));
    }
    if let Some(next) = f.next {
        pairs.push(format!("next={next}"));
    }
    for (name, list) in [
        ("match[id]", &f.ids),
        ("match[type]", &f.types),
        ("match[version]", &f.versions),
        ("match[spec_version]", &f.spec_versions),
    ] {
        if !list.is_empty() {
            let values: Vec<String> = list.iter().map(|v| percent_encode(v)).collect();
            pairs.push(format!("{}={}", percent_encode(name), values.join(",")));
        }
    }
    pairs
}

/// A valid sample with up to eight bytes replaced, inserted or removed (kept as UTF-8 where
/// the decoder takes text).
fn mutated(samples: &'static [&'static str]) -> impl Strategy<Value = String> {
    (
        prop::sample::select(samples),
        prop::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 0..8),
    )
        .prop_map(|(sample, edits)| {
            let mut bytes = sample.as_bytes().to_vec();
            for (at, byte, op) in edits {
                let at = if bytes.is_empty() {
                    0
                } else {
                    at % bytes.len()
                };
                match op {
                    0 if !bytes.is_empty() => bytes[at] = byte,
                    1 => bytes.insert(at, byte),
                    _ if !bytes.is_empty() => {
                        bytes.remove(at);
                    }
                    _ => bytes.push(byte),
                }
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
}

/// Any JSON value, nested a few levels, with STIX-looking keys often enough to matter.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        prop::sample::select(PATTERNS).prop_map(Value::from),
        prop::sample::select(&["indicator", "vulnerability", "marking-definition", "bundle"][..])
            .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    prop::sample::select(
                        &[
                            "type",
                            "id",
                            "pattern",
                            "objects",
                            "object_marking_refs",
                            "name",
                            "valid_from",
                            "confidence",
                            "spec_version",
                            "extensions",
                            "external_references",
                        ][..]
                    )
                    .prop_map(str::to_owned),
                    any::<String>(),
                ],
                inner,
                0..8
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn observable() -> impl Strategy<Value = ObservableType> {
    prop::sample::select(
        &[
            ObservableType::Ipv4,
            ObservableType::Ipv6,
            ObservableType::Cidr,
            ObservableType::Domain,
            ObservableType::Url,
            ObservableType::Email,
            ObservableType::Md5,
            ObservableType::Sha1,
            ObservableType::Sha256,
            ObservableType::Cve,
            ObservableType::Asn,
        ][..],
    )
}

proptest! {
    #[test]
    fn frames_decode_or_say_why(text in prop_oneof![any::<String>(), mutated(FRAMES)]) {
        if let Ok(request) = ClientRequest::decode(&text) {
            // What decodes, encodes and decodes to the same request.
            prop_assert_eq!(ClientRequest::decode(&request.encode()), Ok(request));
        }
    }

    #[test]
    fn indicator_values_normalise_to_a_fixed_point(
        value in prop_oneof![any::<String>(), mutated(VALUES)],
        kind in observable(),
    ) {
        let refanged = refang(&value);
        let _ = infer_type(&refanged);
        if let Ok(normal) = normalise(kind, &refanged) {
            prop_assert_eq!(normalise(kind, &normal), Ok(normal.clone()), "{}", value);
        }
    }

    #[test]
    fn indicator_drafts_are_checked_without_panicking(
        value in prop_oneof![any::<String>(), mutated(VALUES)],
        tlp in any::<String>(),
        description in any::<String>(),
        tags in prop::collection::vec(any::<String>(), 0..4),
        kill_chain in proptest::option::of(any::<String>()),
        confidence in proptest::option::of(any::<u8>()),
    ) {
        let draft = IndicatorDraft {
            value,
            tlp,
            description,
            tags,
            kill_chain_phase: kill_chain,
            confidence,
            ..IndicatorDraft::default()
        };
        let _ = draft.check();
    }

    #[test]
    fn stix_documents_import_or_say_why(document in json(), default in proptest::option::of(Just(Tlp::Amber))) {
        if let Ok(objects) = objects_of(&document) {
            let _ = drafts_from_objects(objects, default);
        }
        let bundle = serde_json::json!({"type": "bundle", "id": "bundle--x", "objects": [document]});
        if let Ok(objects) = objects_of(&bundle) {
            let _ = drafts_from_objects(objects, default);
        }
    }

    #[test]
    fn stix_patterns_parse_or_say_why(pattern in prop_oneof![any::<String>(), mutated(PATTERNS)]) {
        let _ = parse_pattern(&pattern);
    }

    #[test]
    fn alert_audiences_parse_or_say_why(to in prop_oneof![
        any::<String>(),
        mutated(&["sector=energy,country=KE|UG|TZ,clearance>=2", "principal.country == \"KE\""]),
    ]) {
        let _ = audience_condition(&to);
        let _ = Severity::parse(&to);
        let _ = Tlp::parse(&to);
    }

    #[test]
    fn names_and_ids_parse_or_say_why(text in any::<String>()) {
        if let Ok(room) = RoomName::parse(&text) {
            // One normal path component (room folders are named after rooms): no separator,
            // never `.` or `..` (it starts with a letter or digit; `0..` is a plain name).
            let name = room.as_str();
            prop_assert!(!name.contains(['/', '\\']) && !name.starts_with('.'));
            prop_assert!(std::path::Path::new(name).components().count() == 1);
        }
        let _ = MemberId::parse(&text);
        let _ = InviteCode::parse(&text);
        let _ = base32_decode(&text);
        let _ = AttributeUpdate::from_pairs(text.split(' '));
    }

    #[test]
    fn file_names_from_peers_become_safe(name in any::<String>()) {
        let safe = safe_file_name(&name, "download");
        prop_assert!(!safe.is_empty());
        prop_assert!(!safe.contains(['/', '\\']));
        prop_assert!(!safe.starts_with('.'));
        let bidi = '\u{202a}'..='\u{202e}';
        let unsafe_char = safe.chars().any(|c| c.is_control() || bidi.contains(&c));
        prop_assert!(!unsafe_char, "{:?} from {:?}", safe, name);
    }

    #[test]
    fn enrollment_requests_decode_or_say_why(text in prop_oneof![
        any::<String>(),
        mutated(&[r#"{"invite":"esc1-abc-123","csr_pem":"-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n","claims":{"name":"Ana","email":"a@x.example","organisation":"CERT-EE","country":"EE"},"age_recipient":"age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq"}"#]),
    ]) {
        let _ = serde_json::from_str::<SubmitApplication>(&text);
    }

    #[test]
    fn taxii_queries_decode_or_say_why(query in prop_oneof![any::<String>(), mutated(QUERIES)]) {
        match Filters::parse(Some(&query)) {
            Ok(f) => prop_assert!((1..=MAX_LIMIT).contains(&f.limit), "{:?}", f),
            Err(e) => prop_assert!(!e.to_string().is_empty(), "a refusal says why"),
        }
    }

    #[test]
    fn taxii_queries_a_client_builds_decode_to_what_it_asked(
        f in filters(),
        order in any::<prop::sample::Index>(),
        noise in proptest::option::of("[a-z_]{1,8}=[a-z0-9%]{0,8}"),
    ) {
        let mut pairs = query_of(&f);
        let rotate = order.index(pairs.len());
        pairs.rotate_left(rotate);
        // Parameters the server does not know change nothing.
        pairs.extend(noise.filter(|n| !n.starts_with("limit=") && !n.starts_with("next=")));
        prop_assert_eq!(Filters::parse(Some(&pairs.join("&"))), Ok(f));
    }
}
