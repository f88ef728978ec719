//! End-to-end encrypted files: room key generations and resumable uploads of ciphertext.
//!
//! The server never holds a secret that opens a file. Clients make each key generation (an age
//! X25519 identity), seal its secret to every current member's age recipient, and encrypt files
//! to the generation's recipient before upload. What the server does is bookkeeping that keeps
//! the cryptography honest:
//! - a new generation must be sealed to exactly the room's current active members;
//! - when membership shrinks (a member leaves, is suspended or revoked) the room is marked
//!   `rotation_needed`, and no upload is accepted until a client made the next generation, so
//!   nothing shared afterwards is encrypted to a key a departed member holds;
//! - an upload must name the current generation; ciphertext arrives in chunks at an exact
//!   offset (resumable), and a file is listed and announced only once every byte is there.
//!
//! Every route passes the gate (`UploadFile` / `DownloadFile`) before reaching this module.

mod room_keys;
mod uploads;

pub(crate) use room_keys::{key_lock, mark_rotation};
pub use room_keys::{mark_departure, mark_return};

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::Limits;
use crate::registry::Registry;
use crate::store::Store;

/// The room keys and files of a deployment.
#[derive(Debug)]
pub struct Files {
    store: Arc<dyn Store>,
    registry: Registry,
    limits: Limits,
    /// Where ciphertext lives: `<dir>/<room>/<file id>.part` while uploading, `.age` when complete.
    dir: PathBuf,
    /// Serialises changes to upload records (an offset check and its append must not
    /// interleave). Key generations have their own lock, shared with membership changes.
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl Files {
    pub fn new(store: Arc<dyn Store>, registry: Registry, limits: Limits, dir: PathBuf) -> Self {
        Self {
            store,
            registry,
            limits,
            dir,
            lock: Arc::new(tokio::sync::Mutex::new(())),
        }
    }
}
