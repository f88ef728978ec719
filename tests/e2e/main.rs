//! End-to-end tests: every test starts a real server over real mutual TLS on 127.0.0.1 with an
//! ephemeral port and a temporary data dir (see the harness in `tests/src/lib.rs`).

mod abuse;
mod alerts;
mod at_rest;
mod audit;
mod bad_input;
mod certificates;
mod channel;
mod durability;
mod files;
mod flood;
mod indicators;
mod messaging;
mod oidc;
mod policy;
mod resume;
mod taxii;
mod vetting;
