//! STIX 2.1 bundles of a room's indicators: what leaves through an export or TAXII.

use escape_proto::indicator::IndicatorRecord;
use escape_proto::tlp::Tlp;
use serde_json::Value;

/// SHA-256, for the name-based ids of organisations' identities.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Whether an indicator may leave the platform in an export: never TLP:RED (it does not leave
/// its room by any path); every other label only to the member the gate already let read it.
pub fn exportable(record: &IndicatorRecord) -> bool {
    record.indicator.tlp != Tlp::Red
}

/// A bundle of the latest version of each exportable indicator.
pub fn export(records: &[IndicatorRecord]) -> Value {
    let latest = super::latest(records);
    escape_proto::stix::bundle(
        latest
            .into_iter()
            .filter(|r| exportable(r))
            .map(|r| &r.indicator),
        &uuid::Uuid::new_v4().to_string(),
        sha256,
    )
}
