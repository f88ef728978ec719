//! What an applicant or an admin hands the vetting endpoints: applications, invitation codes,
//! attribute updates, room names, member ids, alert audiences.
#![no_main]

use escape_proto::alert::audience_condition;
use escape_proto::vetting::{AttributeUpdate, InviteCode, SubmitApplication, base32_decode};
use escape_proto::{MemberId, RoomName};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = serde_json::from_str::<SubmitApplication>(text);
    let _ = InviteCode::parse(text);
    let _ = base32_decode(text);
    let _ = AttributeUpdate::from_pairs(text.split(' '));
    let _ = MemberId::parse(text);
    let _ = audience_condition(text);
    if let Ok(room) = RoomName::parse(text) {
        assert_eq!(std::path::Path::new(room.as_str()).components().count(), 1);
    }
});
