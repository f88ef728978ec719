//! What peers hand the PKI code: signing requests at enrollment and renewal, certificates in
//! handshakes. Generated and mutated input must be refused with a reason, never panic.
//!
//! Bounded in the normal test command; for a long run, the command in SECURITY.md
//! (`PROPTEST_CASES=200000 cargo test -q -p escape-proto -p escape-certs --test decoders`).

use std::sync::OnceLock;

use proptest::prelude::*;
use rustls_pki_types::CertificateDer;

fn valid_request() -> &'static str {
    static REQUEST: OnceLock<String> = OnceLock::new();
    REQUEST.get_or_init(|| {
        escape_certs::signing_request("Ana Tamm")
            .expect("signing request")
            .0
    })
}

fn valid_certificate() -> &'static [u8] {
    static CERT: OnceLock<Vec<u8>> = OnceLock::new();
    CERT.get_or_init(|| {
        let ca = escape_certs::Ca::generate("Fuzz", escape_certs::Validity::days_from_now(1))
            .expect("ca");
        let pem = ca.cert_pem().to_owned();
        rustls_pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
            .map(|c: CertificateDer<'static>| c.to_vec())
            .expect("der")
    })
}

fn mutate(mut bytes: Vec<u8>, edits: Vec<(usize, u8, bool)>) -> Vec<u8> {
    for (at, byte, insert) in edits {
        if bytes.is_empty() {
            bytes.push(byte);
            continue;
        }
        let at = at % bytes.len();
        if insert {
            bytes.insert(at, byte);
        } else {
            bytes[at] = byte;
        }
    }
    bytes
}

proptest! {
    #[test]
    fn signing_requests_verify_or_say_why(
        text in any::<String>(),
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<bool>()), 0..6),
    ) {
        prop_assert!(escape_certs::check_signing_request(valid_request()).is_ok());
        let mutated = mutate(valid_request().as_bytes().to_vec(), edits);
        for input in [text, String::from_utf8_lossy(&mutated).into_owned()] {
            if let Err(e) = escape_certs::check_signing_request(&input) {
                prop_assert!(!e.to_string().is_empty(), "a refusal says why");
            }
        }
    }

    #[test]
    fn certificates_from_handshakes_parse_or_say_why(
        random in prop::collection::vec(any::<u8>(), 0..512),
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<bool>()), 0..6),
    ) {
        let valid = CertificateDer::from(valid_certificate().to_vec());
        prop_assert!(escape_certs::not_after(&valid).is_ok());
        for der in [random, mutate(valid_certificate().to_vec(), edits)] {
            let cert = CertificateDer::from(der);
            if let Err(e) = escape_certs::member_id_of(&cert) {
                prop_assert!(!e.to_string().is_empty(), "a refusal says why");
            }
            if let Err(e) = escape_certs::not_after(&cert) {
                prop_assert!(!e.to_string().is_empty(), "a refusal says why");
            }
        }
    }
}
