//! The pieces of the `escape` binary beyond argument parsing: how things are printed, and the
//! vetting commands.

pub mod alerts;
pub mod files;
pub mod ioc;
pub mod output;
pub mod vetting;
