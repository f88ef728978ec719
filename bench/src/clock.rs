//! One clock for the whole load generator, so a receiver can subtract the send time a publisher
//! wrote into a message: both run in this process and read the same monotonic origin.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

static ORIGIN: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since the first call in this process.
pub fn now_ns() -> u64 {
    let origin = *ORIGIN.get_or_init(Instant::now);
    u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// The first bytes of every payload: a marker, then the send time in 20 decimal digits.
const MARK: &[u8] = b"@T";
/// Marker, 20 digits, closing marker.
pub const STAMP_LEN: usize = 2 + 20 + 1;

/// A payload of `size` bytes (at least [`STAMP_LEN`]) that carries its send time, padded with
/// printable filler so that it is valid text for every protocol measured.
pub fn stamped_payload(size: usize) -> Vec<u8> {
    stamped_at(now_ns(), size)
}

/// A payload stamped with a given time: the time it was due, for open-loop senders, so that a
/// sender falling behind does not hide the wait from the latency (no coordinated omission).
pub fn stamped_at(due_ns: u64, size: usize) -> Vec<u8> {
    let mut payload = format!("@T{due_ns:020}@").into_bytes();
    payload.resize(size.max(STAMP_LEN), b'x');
    payload
}

/// The send time stamped into a received frame, wherever the protocol put the payload.
pub fn find_stamp(frame: &[u8]) -> Option<u64> {
    let at = frame.windows(MARK.len()).position(|w| w == MARK)?;
    let digits = frame.get(at + MARK.len()..at + MARK.len() + 20)?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// A duration as nanoseconds on this clock.
pub fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_is_found_inside_any_framing() {
        let payload = stamped_payload(64);
        assert_eq!(payload.len(), 64);
        let sent = find_stamp(&payload).expect("stamp");
        let mut framed = b"{\"type\":\"event\",\"text\":\"".to_vec();
        framed.extend_from_slice(&payload);
        framed.extend_from_slice(b"\"}");
        assert_eq!(find_stamp(&framed), Some(sent));
        assert_eq!(find_stamp(b"no stamp here"), None);
        assert_eq!(find_stamp(b"@T123"), None, "a cut stamp is not read");
    }
}
