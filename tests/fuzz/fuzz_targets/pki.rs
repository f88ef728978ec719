//! Signing requests (enrollment, renewal) and certificates (handshakes): refused with a
//! reason, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rustls_pki_types::CertificateDer;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = escape_certs::check_signing_request(text);
    }
    let cert = CertificateDer::from(bytes);
    let _ = escape_certs::member_id_of(&cert);
    let _ = escape_certs::not_after(&cert);
});
