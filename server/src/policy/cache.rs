//! Decisions remembered for a second, keyed by everything they depend on except the time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use escape_proto::Member;

use super::Target;
use crate::gate::ActionKind;

/// How long a decision may be reused: bounds staleness for policies that read the time.
const TTL: Duration = Duration::from_secs(1);
/// Entries kept at most; the cache is emptied when it grows past this.
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    member: String,
    member_version: u64,
    action: ActionKind,
    target: String,
    /// Policies can read it (`context.frame`): a decision for one kind of frame is not one for
    /// another.
    frame: &'static str,
    epoch: u64,
    cert_days_left: i64,
}

impl Key {
    pub fn new(
        member: &Member,
        action: ActionKind,
        target: &Target,
        frame: &'static str,
        epoch: u64,
        cert_days_left: i64,
    ) -> Self {
        let target = match target {
            Target::Deployment => String::new(),
            // Room attributes are part of the key: changing them changes the decision at once.
            Target::Room(r) => format!(
                "room/{}/{}/{}/{}/{}",
                r.name,
                r.classification,
                r.tlp_max,
                r.owner_organisation,
                r.tags.join(",")
            ),
            Target::Application(id) => format!("application/{id}"),
            Target::Member(m) => format!("member/{}/{}", m.id, m.version),
        };
        Self {
            member: member.id.as_str().to_owned(),
            member_version: member.version,
            action,
            target,
            frame,
            epoch,
            cert_days_left,
        }
    }
}

#[derive(Debug, Default)]
pub struct DecisionCache {
    entries: Mutex<HashMap<Key, (bool, Instant)>>,
    /// Bumped by every policy change: older entries no longer match.
    epoch: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl DecisionCache {
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub fn invalidate(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }

    pub fn get(&self, key: &Key) -> Option<bool> {
        let found = self
            .entries
            .lock()
            .ok()
            .and_then(|e| e.get(key).copied())
            .filter(|(_, at)| at.elapsed() < TTL)
            .map(|(allowed, _)| allowed);
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    pub fn put(&self, key: Key, allowed: bool) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(key, (allowed, Instant::now()));
        }
    }

    /// (hits, misses) since start.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }
}
