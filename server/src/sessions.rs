//! Live sessions per member, so that suspending or revoking a member cuts every open
//! connection and WebSocket of that member at once instead of waiting for its next request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use escape_proto::{ErrorCode, MemberId};

/// How to end one session: for a WebSocket, with an error frame and a close frame.
pub type Closer = Box<dyn Fn(ErrorCode, String) + Send + Sync>;

#[derive(Default)]
pub struct Sessions {
    open: Mutex<HashMap<MemberId, HashMap<u64, Closer>>>,
    next: AtomicU64,
    /// WebSocket sessions per member (the connections above include plain HTTP ones).
    websockets: Mutex<HashMap<MemberId, usize>>,
    /// Members who said they are away (while connected).
    away: Mutex<std::collections::HashSet<MemberId>>,
}

/// Counts one WebSocket session of a member while it lives.
pub struct WebSocketSlot {
    sessions: Arc<Sessions>,
    member: MemberId,
}

impl std::fmt::Debug for WebSocketSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocketSlot")
            .field("member", &self.member)
            .finish()
    }
}

impl Drop for WebSocketSlot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.sessions.websockets.lock()
            && let Some(count) = open.get_mut(&self.member)
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.member);
                drop(open);
                self.sessions.set_away(&self.member, false);
            }
        }
    }
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = self
            .open
            .lock()
            .map(|o| o.values().map(HashMap::len).sum::<usize>())
            .unwrap_or(0);
        f.debug_struct("Sessions").field("open", &count).finish()
    }
}

/// Keeps a session registered; dropping it unregisters.
pub struct Registration {
    sessions: Arc<Sessions>,
    member: MemberId,
    id: u64,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("member", &self.member)
            .finish()
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut open) = self.sessions.open.lock()
            && let Some(of_member) = open.get_mut(&self.member)
        {
            of_member.remove(&self.id);
            if of_member.is_empty() {
                open.remove(&self.member);
            }
        }
    }
}

impl Sessions {
    pub fn register(self: &Arc<Self>, member: &MemberId, closer: Closer) -> Registration {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut open) = self.open.lock() {
            open.entry(member.clone()).or_default().insert(id, closer);
        }
        Registration {
            sessions: self.clone(),
            member: member.clone(),
            id,
        }
    }

    /// Online (a live session, not away), away, or offline.
    pub fn presence(&self, member: &MemberId) -> escape_proto::room::PresenceStatus {
        use escape_proto::room::PresenceStatus;
        let connected = self
            .websockets
            .lock()
            .map(|w| w.get(member).copied().unwrap_or(0) > 0)
            .unwrap_or(false);
        if !connected {
            PresenceStatus::Offline
        } else if self
            .away
            .lock()
            .map(|a| a.contains(member))
            .unwrap_or(false)
        {
            PresenceStatus::Away
        } else {
            PresenceStatus::Online
        }
    }

    pub fn set_away(&self, member: &MemberId, away: bool) {
        if let Ok(mut set) = self.away.lock() {
            if away {
                set.insert(member.clone());
            } else {
                set.remove(member);
            }
        }
    }

    /// Takes one of `member`'s `limit` WebSocket slots, or `None` if all are in use.
    pub fn websocket(self: &Arc<Self>, member: &MemberId, limit: usize) -> Option<WebSocketSlot> {
        let mut open = self.websockets.lock().ok()?;
        let count = open.entry(member.clone()).or_insert(0);
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(WebSocketSlot {
            sessions: self.clone(),
            member: member.clone(),
        })
    }

    /// Ends every session of `member`; returns how many there were.
    pub fn cut(&self, member: &MemberId, code: ErrorCode, message: &str) -> usize {
        let closers = match self.open.lock() {
            Ok(mut open) => open.remove(member).unwrap_or_default(),
            Err(_) => return 0,
        };
        for closer in closers.values() {
            closer(code, message.to_owned());
        }
        closers.len()
    }
}
