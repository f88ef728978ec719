//! STIX 2.1 documents posted to TAXII or imported by a member, and their patterns.
#![no_main]

use escape_proto::stix::{drafts_from_objects, objects_of, parse_pattern};
use escape_proto::tlp::Tlp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(document) = serde_json::from_slice::<serde_json::Value>(bytes)
        && let Ok(objects) = objects_of(&document)
    {
        for drafts in [
            drafts_from_objects(objects, None),
            drafts_from_objects(objects, Some(Tlp::Amber)),
        ] {
            for draft in drafts.into_iter().flatten() {
                let _ = draft.check();
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = parse_pattern(text);
    }
});
