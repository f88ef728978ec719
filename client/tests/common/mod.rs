//! Deployments for the client's tests: a fresh data dir with its master key in another
//! temporary dir, and members registered as the operator's `add-member` does.
// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use escape_proto::member::Attributes;
use escape_proto::{Member, MemberId};
use escape_server::config::Config;
use escape_server::deployment::{self, InitOptions, Layout};
use escape_server::seal::{MasterKey, MasterKeyOptions};
use escape_server::store::Store;

/// A fresh deployment (data dir, and its master key in another temporary dir) and its config.
pub fn new_deployment() -> (
    tempfile::TempDir,
    tempfile::TempDir,
    deployment::Initialised,
    Config,
) {
    let data = tempfile::tempdir().expect("tempdir");
    let keys = tempfile::tempdir().expect("tempdir");
    let options = InitOptions {
        public_address: "127.0.0.1:0".into(),
        ..InitOptions::default()
    };
    let master_key = MasterKeyOptions {
        path: keys.path().join("master-key"),
        passphrase: None,
    };
    let (master, _) = MasterKey::load_or_create(&master_key).expect("master key");
    let done = deployment::init(data.path(), &options, &master).expect("init");
    let mut config = Config::ephemeral(data.path());
    config.master_key = master_key;
    (data, keys, done, config)
}

/// Registers an active, vetted member (the server must be stopped); returns its id and the
/// path of its profile bundle.
pub fn add_member(
    config: &Config,
    data: &Path,
    name: &str,
    attributes: Attributes,
) -> (MemberId, PathBuf) {
    let layout = Layout::new(data);
    let (store, _) =
        escape_server::seal::open_deployment(data, &layout.store(), &config.master_key)
            .expect("open store");
    let mut member = Member::new(deployment::new_member_id(), name);
    member.attributes = attributes;
    let path = deployment::add_member_with(
        &layout,
        &layout.ca().expect("ca"),
        &escape_server::registry::Registry::new(store.clone()),
        member.clone(),
        name,
    )
    .expect("add member");
    store.flush().expect("flush");
    (member.id, path)
}
