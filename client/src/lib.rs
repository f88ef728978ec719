//! The Escape client as a library: profiles, the HTTP API and the real-time channel. The
//! `escape` binary is built on it, and so are the end-to-end tests.
#![forbid(unsafe_code)]

pub mod api;
pub mod channel;
pub mod enroll;
pub mod error;
mod file_threads;
pub mod files;
pub mod indicators;
pub mod profile;
pub mod tail;
pub mod text;
pub mod tls;
pub mod tui;

pub use api::Client;
pub use channel::{Ack, Channel, new_client_msg_id};
pub use error::ClientError;
pub use profile::{Profile, ProfileStore};
