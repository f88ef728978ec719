//! Checking a whole log: the chain entry by entry, then every checkpoint's signature and head.

use escape_certs::hex_decode;

use super::{Checkpoint, Entry, GENESIS};
use crate::store::{Store, StoreError, keys, value};

/// The result of a verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Every entry and checkpoint holds.
    Intact { entries: u64, checkpoints: u64 },
    /// The first thing that does not hold.
    Broken { seq: u64, reason: String },
}

/// Verifies every entry and checkpoint in `store` against the server certificate's public key
/// (`server_cert_pem`), reporting the first problem.
pub fn verify(store: &dyn Store, server_cert_pem: &str) -> Result<Finding, StoreError> {
    let mut expected_prev = GENESIS.to_owned();
    let mut expected_seq = 1;
    let mut hashes = std::collections::HashMap::new();
    for (key, bytes) in store.scan_prefix(keys::AUDIT_PREFIX, usize::MAX)? {
        let key_seq = keys::seq_of_message_key(&key).unwrap_or(0);
        let entry: Entry = match value::decode(&key, &bytes) {
            Ok(entry) => entry,
            Err(e) => return Ok(broken(key_seq, format!("unreadable: {e}"))),
        };
        if entry.seq != key_seq {
            return Ok(broken(
                key_seq,
                format!("stored under {key_seq} but numbered {}: moved", entry.seq),
            ));
        }
        if entry.seq != expected_seq {
            return Ok(broken(
                expected_seq,
                format!("missing: the next entry is {}", entry.seq),
            ));
        }
        if entry.prev != expected_prev {
            return Ok(broken(
                entry.seq,
                "does not follow the previous entry (reordered or replaced)".into(),
            ));
        }
        if super::compute_hash(&entry) != entry.hash {
            return Ok(broken(
                entry.seq,
                "its contents do not match its hash (modified)".into(),
            ));
        }
        hashes.insert(entry.seq, entry.hash.clone());
        expected_prev = entry.hash;
        expected_seq += 1;
    }
    let entries = expected_seq - 1;
    let public_key = server_public_key(server_cert_pem)?;
    let mut checkpoints = 0;
    for (key, bytes) in store.scan_prefix(keys::AUDIT_CHECKPOINT_PREFIX, usize::MAX)? {
        let checkpoint: Checkpoint = value::decode(&key, &bytes)?;
        let message = Checkpoint::message(checkpoint.count, &checkpoint.head, checkpoint.at);
        let signature = hex_decode(&checkpoint.signature).unwrap_or_default();
        let key = ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_ASN1,
            &public_key,
        );
        if key.verify(&message, &signature).is_err() {
            return Ok(broken(
                checkpoint.count,
                "a checkpoint's signature is not the server's".into(),
            ));
        }
        match hashes.get(&checkpoint.count) {
            Some(hash) if *hash == checkpoint.head => {}
            Some(_) => {
                return Ok(broken(
                    checkpoint.count,
                    "differs from what the server signed at a checkpoint (rewritten)".into(),
                ));
            }
            None => {
                return Ok(broken(
                    checkpoint.count,
                    format!(
                        "signed at a checkpoint but missing (the log has {entries} entries: truncated)"
                    ),
                ));
            }
        }
        checkpoints += 1;
    }
    Ok(Finding::Intact {
        entries,
        checkpoints,
    })
}

fn broken(seq: u64, reason: String) -> Finding {
    Finding::Broken { seq, reason }
}

fn server_public_key(cert_pem: &str) -> Result<Vec<u8>, StoreError> {
    let der = escape_certs::cert_der_from_pem(cert_pem)
        .map_err(|e| StoreError::Backend(e.to_string()))?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| StoreError::Backend(e.to_string()))?;
    Ok(cert.public_key().subject_public_key.data.to_vec())
}
