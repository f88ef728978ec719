//! Every key the server writes, in one place. Components are separated by `/`; room names and
//! member ids cannot contain `/`, so no key of one kind can be mistaken for another's.
//! Sequence numbers are big-endian so that key order is sequence order.

use escape_proto::{MemberId, RoomName};

pub fn member(id: &MemberId) -> Vec<u8> {
    join(&[b"member/", id.as_str().as_bytes()])
}

pub const MEMBER_PREFIX: &[u8] = b"member/";

pub fn room(name: &RoomName) -> Vec<u8> {
    join(&[b"room/", name.as_str().as_bytes()])
}

pub const ROOM_PREFIX: &[u8] = b"room/";

/// Membership, listed by room.
pub fn room_member(room: &RoomName, member: &MemberId) -> Vec<u8> {
    join(&[
        room_members_prefix(room).as_slice(),
        member.as_str().as_bytes(),
    ])
}

pub fn room_members_prefix(room: &RoomName) -> Vec<u8> {
    join(&[b"room-member/", room.as_str().as_bytes(), b"/"])
}

/// Membership, listed by member (the same fact as [`room_member`], written in the same batch).
pub fn member_room(member: &MemberId, room: &RoomName) -> Vec<u8> {
    join(&[
        member_rooms_prefix(member).as_slice(),
        room.as_str().as_bytes(),
    ])
}

pub fn member_rooms_prefix(member: &MemberId) -> Vec<u8> {
    join(&[b"member-room/", member.as_str().as_bytes(), b"/"])
}

pub fn message(room: &RoomName, seq: u64) -> Vec<u8> {
    join(&[messages_prefix(room).as_slice(), &seq.to_be_bytes()])
}

pub fn messages_prefix(room: &RoomName) -> Vec<u8> {
    join(&[b"msg/", room.as_str().as_bytes(), b"/"])
}

/// The sequence a client message id was stored under, so a retried send stores nothing new.
pub fn client_msg(room: &RoomName, member: &MemberId, client_msg_id: &str) -> Vec<u8> {
    join(&[
        b"client-msg/",
        room.as_str().as_bytes(),
        b"/",
        member.as_str().as_bytes(),
        b"/",
        client_msg_id.as_bytes(),
    ])
}

/// A certificate the CA issued, by serial (lower-case hex).
pub fn issued_cert(serial: &str) -> Vec<u8> {
    join(&[b"cert/", serial.as_bytes()])
}

/// The certificates of one member, by serial.
pub fn member_cert(member: &MemberId, serial: &str) -> Vec<u8> {
    join(&[member_certs_prefix(member).as_slice(), serial.as_bytes()])
}

pub fn member_certs_prefix(member: &MemberId) -> Vec<u8> {
    join(&[b"member-cert/", member.as_str().as_bytes(), b"/"])
}

/// A revoked certificate, by serial.
pub fn revoked_cert(serial: &str) -> Vec<u8> {
    join(&[REVOKED_PREFIX, serial.as_bytes()])
}

pub const REVOKED_PREFIX: &[u8] = b"revoked/";

/// The number of the last revocation list issued.
pub const CRL_NUMBER: &[u8] = b"pki/crl-number";

/// One recorded change of a member, by version (big-endian so versions sort).
pub fn member_change(member: &MemberId, version: u64) -> Vec<u8> {
    join(&[
        member_changes_prefix(member).as_slice(),
        &version.to_be_bytes(),
    ])
}

pub fn member_changes_prefix(member: &MemberId) -> Vec<u8> {
    join(&[b"member-change/", member.as_str().as_bytes(), b"/"])
}

/// An invitation, by the SHA-256 (hex) of its secret: the store never holds a usable code.
pub fn invite(secret_hash: &str) -> Vec<u8> {
    join(&[b"invite/", secret_hash.as_bytes()])
}

/// An application, by id.
pub fn application(id: &str) -> Vec<u8> {
    join(&[APPLICATION_PREFIX, id.as_bytes()])
}

pub const APPLICATION_PREFIX: &[u8] = b"application/";

/// The deployment's policy text.
pub const DEPLOYMENT_POLICY: &[u8] = b"policy/deployment";

/// A room's policy text.
pub fn room_policy(room: &RoomName) -> Vec<u8> {
    join(&[ROOM_POLICY_PREFIX, room.as_str().as_bytes()])
}

pub const ROOM_POLICY_PREFIX: &[u8] = b"policy/room/";

/// An audit entry, by sequence (big-endian, so key order is chain order).
pub fn audit(seq: u64) -> Vec<u8> {
    join(&[AUDIT_PREFIX, &seq.to_be_bytes()])
}

pub const AUDIT_PREFIX: &[u8] = b"audit/entry/";

/// A signed checkpoint, by the entry count it covers.
pub fn audit_checkpoint(count: u64) -> Vec<u8> {
    join(&[AUDIT_CHECKPOINT_PREFIX, &count.to_be_bytes()])
}

pub const AUDIT_CHECKPOINT_PREFIX: &[u8] = b"audit/checkpoint/";

/// One generation of a room's file key (its public recipient and the sealed copies).
pub fn room_key(room: &RoomName, generation: u32) -> Vec<u8> {
    join(&[room_keys_prefix(room).as_slice(), &generation.to_be_bytes()])
}

pub fn room_keys_prefix(room: &RoomName) -> Vec<u8> {
    join(&[b"room-key/", room.as_str().as_bytes(), b"/"])
}

/// Which generation uploads use, and whether membership shrank since it was made.
pub fn room_key_state(room: &RoomName) -> Vec<u8> {
    join(&[b"room-key-state/", room.as_str().as_bytes()])
}

/// A shared file's record (name, size, sender; the ciphertext itself is a file on disk).
pub fn file(room: &RoomName, id: &str) -> Vec<u8> {
    join(&[files_prefix(room).as_slice(), id.as_bytes()])
}

pub fn files_prefix(room: &RoomName) -> Vec<u8> {
    join(&[FILES_PREFIX, room.as_str().as_bytes(), b"/"])
}

pub const FILES_PREFIX: &[u8] = b"file/";

/// The secret that keys the indicator index: values are indexed by an HMAC of their normalised
/// form, so the index reveals neither values nor which ones are equal without it.
pub const INDICATOR_INDEX_SECRET: &[u8] = b"ioc-index/secret";

/// One place an indicator value was shared: by the HMAC of the value, then room and sequence.
pub fn indicator_index(mac: &str, room: &RoomName, seq: u64) -> Vec<u8> {
    join(&[
        indicator_index_prefix(mac).as_slice(),
        room.as_str().as_bytes(),
        b"/",
        &seq.to_be_bytes(),
    ])
}

pub fn indicator_index_prefix(mac: &str) -> Vec<u8> {
    join(&[b"ioc-index/entry/", mac.as_bytes(), b"/"])
}

/// One member's sighting of an indicator (by STIX id, so every copy and version counts once).
pub fn sighting(indicator: &str, member: &MemberId) -> Vec<u8> {
    join(&[
        sightings_prefix(indicator).as_slice(),
        member.as_str().as_bytes(),
    ])
}

pub fn sightings_prefix(indicator: &str) -> Vec<u8> {
    join(&[b"sighting/", indicator.as_bytes(), b"/"])
}

/// The newest version of an indicator in a room: its sequence and label, which govern every
/// older version there (a label narrowed by its sharer narrows them all).
pub fn indicator_latest(room: &RoomName, indicator: &str) -> Vec<u8> {
    join(&[
        b"ioc-latest/",
        room.as_str().as_bytes(),
        b"/",
        indicator.as_bytes(),
    ])
}

/// An alert: its text, label, audience condition and recipients.
pub fn alert(id: &str) -> Vec<u8> {
    join(&[b"alert/", id.as_bytes()])
}

/// An alert `member` has not acknowledged yet.
pub fn alert_inbox(member: &MemberId, id: &str) -> Vec<u8> {
    join(&[alert_inbox_prefix(member).as_slice(), id.as_bytes()])
}

pub fn alert_inbox_prefix(member: &MemberId) -> Vec<u8> {
    join(&[b"alert-inbox/", member.as_str().as_bytes(), b"/"])
}

/// When `member` acknowledged alert `id`.
pub fn alert_ack(id: &str, member: &MemberId) -> Vec<u8> {
    join(&[alert_acks_prefix(id).as_slice(), member.as_str().as_bytes()])
}

pub fn alert_acks_prefix(id: &str) -> Vec<u8> {
    join(&[b"alert-ack/", id.as_bytes(), b"/"])
}

/// The newest sequence retention deleted from a room: once a room's newest messages are gone,
/// it keeps their sequences from being handed out again.
pub fn room_last(room: &RoomName) -> Vec<u8> {
    join(&[b"room-last/", room.as_str().as_bytes()])
}

/// How far a member has read a room.
pub fn read_marker(room: &RoomName, member: &MemberId) -> Vec<u8> {
    join(&[
        b"read-marker/",
        room.as_str().as_bytes(),
        b"/",
        member.as_str().as_bytes(),
    ])
}

/// A scope's data key, wrapped with age to the master identity (the only values stored unsealed).
pub fn data_key(scope: &[u8]) -> Vec<u8> {
    join(&[DATA_KEY_PREFIX, scope])
}

pub const DATA_KEY_PREFIX: &[u8] = b"datakey/";

/// Key kinds whose second component is a room name: their values are sealed under that room's
/// data key. Every other value is sealed under the deployment's.
const ROOM_SCOPED_PREFIXES: &[&[u8]] = &[
    b"room/",
    b"room-member/",
    b"msg/",
    b"client-msg/",
    ROOM_POLICY_PREFIX,
    b"room-key/",
    b"room-key-state/",
    b"file/",
    b"ioc-latest/",
    b"read-marker/",
    b"room-last/",
];

/// The room a key belongs to, for choosing its data key; `None` for deployment-wide keys.
pub fn room_scope(key: &[u8]) -> Option<&[u8]> {
    let prefix = ROOM_SCOPED_PREFIXES.iter().find(|p| key.starts_with(p))?;
    let rest = &key[prefix.len()..];
    let room = rest.split(|b| *b == b'/').next().unwrap_or(rest);
    (!room.is_empty()).then_some(room)
}

/// The sequence number at the end of a message key (or any key ending in a big-endian u64).
pub fn seq_of_message_key(key: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}

fn join(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Key kinds a delivery decision is derived from: member records, room records, memberships,
/// revocations and policies. A write to any of them moves the [`Epoch`](super::Epoch), which
/// tells a live subscription that what it derived is stale.
const ACCESS_PREFIXES: &[&[u8]] = &[
    MEMBER_PREFIX,
    ROOM_PREFIX,
    b"room-member/",
    b"member-room/",
    REVOKED_PREFIX,
    b"policy/",
];

/// Whether writing `key` can change who may read what.
pub fn affects_access(key: &[u8]) -> bool {
    ACCESS_PREFIXES.iter().any(|p| key.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_keys_sort_by_sequence() {
        let room = RoomName::parse("ops").expect("room");
        let keys: Vec<_> = [1u64, 2, 255, 256, 70_000]
            .iter()
            .map(|s| message(&room, *s))
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(seq_of_message_key(&keys[3]), Some(256));
    }

    #[test]
    fn room_scoped_keys_name_their_room() {
        let room = RoomName::parse("ops").expect("room");
        let member = MemberId::parse("m1").expect("member");
        for key in [
            self::room(&room),
            room_member(&room, &member),
            message(&room, 7),
            client_msg(&room, &member, "c1"),
            room_policy(&room),
        ] {
            assert_eq!(room_scope(&key), Some(&b"ops"[..]), "{key:?}");
        }
        assert_eq!(room_scope(&self::member(&member)), None);
        assert_eq!(room_scope(&member_room(&member, &room)), None);
        assert_eq!(room_scope(DEPLOYMENT_POLICY), None);
        assert_eq!(room_scope(&audit(1)), None);
    }

    #[test]
    fn prefixes_of_different_rooms_do_not_overlap() {
        let a = RoomName::parse("ops").expect("room");
        let b = RoomName::parse("ops2").expect("room");
        assert!(!message(&b, 1).starts_with(&messages_prefix(&a)));
    }
}
