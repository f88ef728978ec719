//! One suite every [`Store`] implementation must pass.

use std::ops::Bound;

use super::{Batch, MemoryStore, Order, Range, SledStore, Store, Swap};

fn suite(store: &dyn Store) {
    // get / put / delete
    assert_eq!(store.get(b"a").expect("get"), None);
    store.put(b"a", b"1").expect("put");
    assert_eq!(store.get(b"a").expect("get"), Some(b"1".to_vec()));
    store.put(b"a", b"2").expect("overwrite");
    assert_eq!(store.get(b"a").expect("get"), Some(b"2".to_vec()));
    store.delete(b"a").expect("delete");
    assert_eq!(store.get(b"a").expect("get"), None);
    store
        .delete(b"never-there")
        .expect("deleting a missing key is fine");

    // atomic batch, with the later write to one key winning
    let mut batch = Batch::default();
    batch
        .put(b"p/1", b"x")
        .put(b"p/2", b"y")
        .put(b"p/3", b"z")
        .put(b"q", b"q");
    batch.delete(b"q");
    store.apply(batch).expect("batch");
    assert_eq!(store.get(b"q").expect("get"), None);

    // an in-order batch: every write, in order
    let mut batch = Batch::in_order();
    batch.put(b"o/1", b"x").put(b"o/2", b"y").put(b"o/1", b"z");
    batch.delete(b"o/2");
    assert!(batch.is_in_order());
    store.apply(batch).expect("in-order batch");
    assert_eq!(store.get(b"o/1").expect("get"), Some(b"z".to_vec()));
    assert_eq!(store.get(b"o/2").expect("get"), None);
    store.delete(b"o/1").expect("delete");

    // prefix and range scans, both orders, limits
    store.put(b"p", b"not under p/").expect("put");
    store.put(b"p0", b"after p/ range").expect("put");
    let keys =
        |entries: Vec<(Vec<u8>, Vec<u8>)>| entries.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(
        keys(store.scan_prefix(b"p/", 10).expect("scan")),
        vec![b"p/1".to_vec(), b"p/2".to_vec(), b"p/3".to_vec()]
    );
    assert_eq!(keys(store.scan_prefix(b"p/", 2).expect("scan")).len(), 2);
    assert_eq!(
        keys(
            store
                .scan(&Range::prefix(b"p/"), Order::Descending, 2)
                .expect("scan")
        ),
        vec![b"p/3".to_vec(), b"p/2".to_vec()]
    );
    let range = Range {
        start: Bound::Excluded(b"p/1".to_vec()),
        end: Bound::Included(b"p/3".to_vec()),
    };
    assert_eq!(
        keys(store.scan(&range, Order::Ascending, 10).expect("scan")),
        vec![b"p/2".to_vec(), b"p/3".to_vec()]
    );
    assert!(store.scan_prefix(b"none/", 10).expect("scan").is_empty());
    // A prefix ending in 0xff still finds its keys.
    store.put(&[0x70, 0xff, 0x01], b"v").expect("put");
    assert_eq!(store.scan_prefix(&[0x70, 0xff], 10).expect("scan").len(), 1);

    // compare-and-swap: create if absent, replace if equal, refuse otherwise, delete
    assert_eq!(
        store.compare_and_swap(b"c", None, Some(b"1")).expect("cas"),
        Swap::Done
    );
    assert_eq!(
        store.compare_and_swap(b"c", None, Some(b"2")).expect("cas"),
        Swap::Conflict
    );
    assert_eq!(
        store
            .compare_and_swap(b"c", Some(b"9"), Some(b"2"))
            .expect("cas"),
        Swap::Conflict
    );
    assert_eq!(store.get(b"c").expect("get"), Some(b"1".to_vec()));
    assert_eq!(
        store
            .compare_and_swap(b"c", Some(b"1"), Some(b"2"))
            .expect("cas"),
        Swap::Done
    );
    assert_eq!(
        store.compare_and_swap(b"c", Some(b"2"), None).expect("cas"),
        Swap::Done
    );
    assert_eq!(store.get(b"c").expect("get"), None);

    store.flush().expect("flush");
}

#[test]
fn memory_store_conforms() {
    suite(&MemoryStore::new());
}

#[test]
fn sealed_store_conforms() {
    let dir = tempfile::tempdir().expect("dir");
    let (master, _) = crate::seal::MasterKey::load_or_create(&crate::seal::MasterKeyOptions {
        path: dir.path().join("master-key"),
        passphrase: None,
    })
    .expect("master key");
    let sealed = crate::seal::open(&dir.path().join("store"), &master).expect("open");
    suite(sealed.as_ref());
}

#[test]
fn sled_store_conforms() {
    let dir = tempfile::tempdir().expect("tempdir");
    suite(&SledStore::open(dir.path()).expect("open"));
}

#[test]
fn sled_store_keeps_flushed_writes_across_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = SledStore::open(dir.path()).expect("open");
        store.put(b"k", b"v").expect("put");
        store.flush().expect("flush");
    }
    let store = SledStore::open(dir.path()).expect("reopen");
    assert_eq!(store.get(b"k").expect("get"), Some(b"v".to_vec()));
}
