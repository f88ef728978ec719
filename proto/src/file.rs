//! End-to-end encrypted files and the room keys they are encrypted to.
//!
//! A room has key *generations*: each is an age X25519 identity made by a member's client,
//! whose secret is sealed (age) to the age recipient of every current member. Files are
//! encrypted by the uploader's client to the current generation's recipient; the server keeps
//! ciphertext and sealed copies only, and never holds a secret that opens either.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::member::MemberId;
use crate::room::RoomName;

/// The encrypted payload of a file starts with this line, then one JSON line of
/// [`FileHeader`] (name and size), then the file's `size` bytes, then one JSON line of
/// [`FileTrailer`] (the SHA-256 of those bytes). The digest comes last so that a file is read
/// once, its digest computed while it is encrypted.
pub const FILE_MAGIC: &str = "escape-file/2";

/// The first format, still read: the digest was in the header and nothing followed the bytes.
pub const FILE_MAGIC_V1: &str = "escape-file/1";

/// What travels inside the encryption with the file's bytes, checked after decryption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileHeader {
    pub name: String,
    pub size: u64,
    /// SHA-256 of the plaintext, lower-case hex. Written in the header by the first format only
    /// (in the trailer since); always filled in once a file is encrypted or decrypted.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sha256: String,
}

/// What follows a file's bytes inside the encryption (format 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTrailer {
    /// SHA-256 of the plaintext, lower-case hex.
    pub sha256: String,
}

/// One generation of a room's key, as a member sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyGeneration {
    pub generation: u32,
    /// The age recipient files of this generation are encrypted to.
    pub recipient: String,
    pub created_by: MemberId,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The generation's identity sealed to the caller's age recipient, if the caller holds it.
    pub copy: Option<String>,
}

/// A member who should hold a generation and does not yet: any holder's client can seal a
/// copy for them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingCopy {
    pub generation: u32,
    pub member: MemberId,
    pub age_recipient: String,
}

/// A current member who can receive sealed copies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyHolder {
    pub member: MemberId,
    pub age_recipient: String,
}

/// `GET /v1/rooms/{room}/keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomKeys {
    pub room: RoomName,
    /// The generation uploads must use; `None` before the first file.
    pub current: Option<u32>,
    /// Membership shrank since `current` was made: the next upload needs a new generation.
    pub rotation_needed: bool,
    /// Whether members who join later get the older generations too (a room setting).
    pub history_for_joiners: bool,
    pub generations: Vec<KeyGeneration>,
    /// Every active member of the room with an age recipient: who a new generation is sealed to.
    pub holders: Vec<KeyHolder>,
    pub missing: Vec<MissingCopy>,
}

/// `POST /v1/rooms/{room}/keys`: a new generation, sealed to every current holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewGeneration {
    pub generation: u32,
    pub recipient: String,
    pub copies: BTreeMap<MemberId, String>,
}

/// `POST /v1/rooms/{room}/keys/{generation}/copies`: copies for members who lack them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddCopies {
    pub copies: BTreeMap<MemberId, String>,
}

/// `POST /v1/rooms/{room}/files`: announce an upload of `size` bytes of ciphertext.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartUpload {
    pub name: String,
    pub size: u64,
    pub generation: u32,
}

/// Where an upload stands: the next byte the server expects is `received`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadStatus {
    pub file_id: String,
    pub received: u64,
    pub size: u64,
    /// The largest chunk one `PUT` may carry.
    pub chunk_bytes: u64,
    pub complete: bool,
}

/// A shared file, as listed and as announced in the room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    pub id: String,
    pub room: RoomName,
    pub name: String,
    /// Bytes of ciphertext.
    pub size: u64,
    pub generation: u32,
    pub sender: MemberId,
    pub sender_name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub shared_at: OffsetDateTime,
}

/// A name that is safe to create in the current directory: the last path component, without
/// control characters or leading dots; `fallback` if nothing is left.
pub fn safe_file_name(name: &str, fallback: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last
        .chars()
        // Control characters, bidirectional overrides (which make `exe.pdf` read as `fdp.exe`)
        // and the characters Windows gives meaning to.
        .filter(|c| {
            !c.is_control()
                && !matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
                && !matches!(c, ':' | '*' | '?' | '"' | '<' | '>' | '|')
        })
        .collect::<String>()
        .trim()
        .trim_start_matches('.')
        .trim_end_matches(['.', ' '])
        .to_owned();
    let cleaned: String = cleaned.chars().take(200).collect();
    if cleaned.is_empty() {
        return fallback.to_owned();
    }
    let stem = cleaned
        .split('.')
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase();
    let reserved = matches!(stem.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || ((stem.starts_with("COM") || stem.starts_with("LPT"))
            && stem.len() == 4
            && stem.as_bytes()[3].is_ascii_digit());
    if reserved {
        format!("_{cleaned}")
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_peers_cannot_leave_the_directory() {
        assert_eq!(safe_file_name("../../etc/passwd", "f"), "passwd");
        assert_eq!(safe_file_name("..\\..\\boot.ini", "f"), "boot.ini");
        assert_eq!(
            safe_file_name("re\u{7}port\u{1b}[2J.pdf", "f"),
            "report[2J.pdf"
        );
        assert_eq!(safe_file_name("..", "f"), "f");
        assert_eq!(safe_file_name("/", "f"), "f");
        assert_eq!(safe_file_name(".bashrc", "f"), "bashrc");
        assert_eq!(safe_file_name("ioc list.csv", "f"), "ioc list.csv");
        assert_eq!(
            safe_file_name("invoice\u{202e}fdp.exe", "f"),
            "invoicefdp.exe"
        );
        assert_eq!(safe_file_name("CON.txt", "f"), "_CON.txt");
        assert_eq!(safe_file_name("report.pdf:stream", "f"), "report.pdfstream");
        assert_eq!(safe_file_name("trailing. ", "f"), "trailing");
    }
}
