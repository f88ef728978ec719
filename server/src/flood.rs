//! Flood control: per-member token buckets for sends, joins and alerts, so that one member (or
//! one stolen certificate) cannot drown a room or the server, and the token buckets the
//! listener keeps per address for new connections. A refusal says when to retry.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use escape_proto::{ErrorCode, MemberId};

use crate::config::Limits;
use crate::error::ApiError;

/// What is being limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Send,
    Join,
    Alert,
    /// Typing notices: one a second, over all rooms and sessions of a member.
    Typing,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// One token bucket per key (a member and what it does, an address): each fills at `rate`
/// tokens a second up to `burst`, and starts full. Memory stays bounded: past 100,000 keys,
/// buckets untouched for ten minutes (full again by then) are forgotten.
#[derive(Debug)]
pub struct Buckets<K> {
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K> Default for Buckets<K> {
    fn default() -> Self {
        Self {
            buckets: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq> Buckets<K> {
    /// Takes `cost` tokens from `key`'s bucket, or says how long until it holds them.
    pub fn take(&self, key: K, rate: f64, burst: f64, cost: f64) -> Result<(), Duration> {
        let now = Instant::now();
        // A panic while holding the lock leaves every bucket valid: keep counting.
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() > 100_000 {
            buckets.retain(|_, b| now.duration_since(b.at) < Duration::from_secs(600));
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        bucket.tokens =
            (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate).min(burst);
        bucket.at = now;
        if bucket.tokens >= cost {
            bucket.tokens -= cost;
            return Ok(());
        }
        Err(if rate > 0.0 {
            Duration::from_secs_f64((cost - bucket.tokens) / rate)
        } else {
            Duration::from_secs(3600)
        })
    }
}

/// Token buckets per member and kind: `rate` tokens a second up to `burst`.
#[derive(Debug)]
pub struct Flood {
    buckets: Buckets<(MemberId, Kind)>,
    limits: Limits,
}

impl Flood {
    pub fn new(limits: Limits) -> Self {
        Self {
            buckets: Buckets::default(),
            limits,
        }
    }

    fn shape(&self, kind: Kind) -> (f64, f64) {
        let l = &self.limits;
        match kind {
            Kind::Send => (
                f64::from(l.sends_per_second),
                f64::from(l.send_burst.max(1)),
            ),
            Kind::Join => (
                f64::from(l.joins_per_minute) / 60.0,
                f64::from(l.joins_per_minute.max(1)),
            ),
            Kind::Alert => (
                f64::from(l.alerts_per_minute) / 60.0,
                f64::from(l.alerts_per_minute.max(1)),
            ),
            Kind::Typing => (1.0, 3.0),
        }
    }

    /// Takes one token for `member`, or says how long to wait.
    pub fn check(&self, member: &MemberId, kind: Kind) -> Result<(), ApiError> {
        self.check_n(member, kind, 1)
    }

    /// Takes `cost` tokens (at most a full burst: a request as large as the burst waits for a
    /// full bucket, never forever).
    pub fn check_n(&self, member: &MemberId, kind: Kind, cost: u32) -> Result<(), ApiError> {
        let (rate, burst) = self.shape(kind);
        let cost = f64::from(cost.max(1)).min(burst);
        let Err(wait) = self.buckets.take((member.clone(), kind), rate, burst, cost) else {
            return Ok(());
        };
        Err(rate_limited(
            match kind {
                Kind::Send => "you are sending faster than this server allows",
                Kind::Join => "you are joining rooms faster than this server allows",
                Kind::Alert => "you are sending alerts faster than this server allows",
                Kind::Typing => "typing notices are limited to one a second",
            },
            wait,
        ))
    }
}

/// A `rate_limited` error that says when to retry (the HTTP answer also carries Retry-After).
pub fn rate_limited(what: &str, wait: Duration) -> ApiError {
    let millis = wait.as_millis().max(1);
    ApiError::new(
        ErrorCode::RateLimited,
        format!("{what}; retry in {millis} ms"),
    )
    .with_retry_after(wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_applies() {
        let limits = Limits {
            sends_per_second: 10,
            send_burst: 3,
            ..Limits::default()
        };
        let flood = Flood::new(limits);
        let m = MemberId::parse("m1").expect("id");
        for _ in 0..3 {
            flood.check(&m, Kind::Send).expect("burst");
        }
        let err = flood.check(&m, Kind::Send).expect_err("limited");
        assert_eq!(err.code, ErrorCode::RateLimited);
        assert!(err.message.contains("retry in"), "{}", err.message);
        // Another member has its own bucket.
        flood
            .check(&MemberId::parse("m2").expect("id"), Kind::Send)
            .expect("own bucket");
        std::thread::sleep(Duration::from_millis(120));
        flood.check(&m, Kind::Send).expect("refilled");
    }
}
