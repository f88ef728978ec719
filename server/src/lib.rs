//! The Escape server as a library: the `escape-server` binary is a thin shell around it, and the
//! end-to-end tests start it in-process on an ephemeral port.
//!
//! Follow a message from the socket to the store by module:
//! [`listener`] (TCP + mutual TLS, member id from the certificate) → [`http`] (routes) or
//! [`ws`] (real-time frames) → [`identity`] (the member's current record) → [`gate`] (the one
//! authorization decision) → [`rooms`] (sequencing, group commit, history) → [`store`].
//! Delivery goes back through [`gate`] once per recipient and event (`ws::subscription`).
#![forbid(unsafe_code)]

pub mod alerts;
pub mod audit;
pub mod config;
pub mod deployment;
pub mod disk;
pub mod error;
pub mod files;
pub mod flood;
pub mod gate;
pub mod http;
pub mod identity;
pub mod indicators;
pub mod listener;
pub mod pki;
pub mod policy;
pub mod registry;
pub mod rooms;
pub mod seal;
pub mod server;
pub mod sessions;
pub mod state;
pub mod store;
pub mod taxii;
pub mod tls;
pub mod vetting;
pub mod ws;

pub use config::{Config, Limits};
pub use server::{RunningServer, StartError, StoreLayer, start, start_layered};
