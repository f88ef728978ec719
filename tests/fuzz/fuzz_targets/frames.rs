//! Real-time frames as a member's connection sends them: what decodes re-encodes to itself.
#![no_main]

use escape_proto::ClientRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(request) = ClientRequest::decode(text) {
        assert_eq!(ClientRequest::decode(&request.encode()), Ok(request));
    }
});
