//! Behaviour of the store: revisions, no-op writes, watches, compaction, durability across reopen.

use std::convert::Infallible;

use serde_json::{Value, json};
use vmsnap_store::{EventType, Mutation, ObjectKey, Store, StoreConfig, WatchError};

fn key(name: &str) -> ObjectKey {
    ObjectKey::new("snapshot.kubevirt.io/virtualmachinesnapshots", "default", name)
}

async fn put(store: &Store, name: &str, value: Value) -> Value {
    let outcome =
        store.mutate(key(name), move |_| Ok::<_, Infallible>(Mutation::Put(value))).await.unwrap().unwrap();
    (*outcome.object.unwrap()).clone()
}

fn rv(v: &Value) -> u64 {
    v["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn each_write_gets_the_next_global_revision_as_resource_version() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    let a = put(&store, "a", json!({"metadata": {"name": "a"}, "spec": 1})).await;
    let b = put(&store, "b", json!({"metadata": {"name": "b"}, "spec": 1})).await;
    assert_eq!(rv(&a), 1);
    assert_eq!(rv(&b), 2);
    assert_eq!(store.revision(), 2);
}

#[tokio::test]
async fn writing_an_identical_object_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    put(&store, "a", json!({"metadata": {"name": "a"}, "spec": 1})).await;
    let outcome = store
        .mutate(key("a"), |_| {
            Ok::<_, Infallible>(Mutation::Put(json!({"metadata": {"name": "a"}, "spec": 1})))
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outcome.event, None);
    assert_eq!(store.revision(), 1);
}

#[tokio::test]
async fn a_refused_mutation_returns_the_callers_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    let result = store.mutate(key("a"), |_| Err::<Mutation, _>("conflict")).await.unwrap();
    assert_eq!(result.unwrap_err(), "conflict");
    assert_eq!(store.revision(), 0);
    assert!(store.get(&key("a")).await.unwrap().is_none());
}

#[tokio::test]
async fn concurrent_writes_are_all_applied_with_distinct_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            put(&store, &format!("o{i}"), json!({"metadata": {"name": i}})).await
        }));
    }
    let mut revs: Vec<u64> = Vec::new();
    for t in tasks {
        revs.push(rv(&t.await.unwrap()));
    }
    revs.sort();
    revs.dedup();
    assert_eq!(revs.len(), 200);
    let (items, list_rev) =
        store.list("snapshot.kubevirt.io/virtualmachinesnapshots", Some("default")).await.unwrap();
    assert_eq!(items.len(), 200);
    assert_eq!(list_rev, 200);
}

#[tokio::test]
async fn a_watch_replays_history_then_follows_live_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    put(&store, "a", json!({"metadata": {"name": "a"}, "v": 1})).await;
    put(&store, "a", json!({"metadata": {"name": "a"}, "v": 2})).await;
    let mut watch = store.watch("snapshot.kubevirt.io/virtualmachinesnapshots", None, 1);
    let first = watch.next().await.unwrap();
    assert_eq!((first.revision, first.event_type), (2, EventType::Modified));
    assert_eq!(first.previous.as_ref().unwrap()["v"], 1);
    store.mutate(key("a"), |_| Ok::<_, Infallible>(Mutation::Delete)).await.unwrap().unwrap();
    let deleted = watch.next().await.unwrap();
    assert_eq!((deleted.revision, deleted.event_type), (3, EventType::Deleted));
    assert_eq!(rv(&deleted.object), 3);
}

#[tokio::test]
async fn a_watch_ignores_other_resources_and_namespaces() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    let mut watch = store.watch("snapshot.kubevirt.io/virtualmachinesnapshots", Some("default"), 0);
    let other = ObjectKey::new("kubevirt.io/virtualmachines", "default", "vm");
    store.mutate(other, |_| Ok::<_, Infallible>(Mutation::Put(json!({})))).await.unwrap().unwrap();
    let elsewhere = ObjectKey::new("snapshot.kubevirt.io/virtualmachinesnapshots", "other", "x");
    store.mutate(elsewhere, |_| Ok::<_, Infallible>(Mutation::Put(json!({})))).await.unwrap().unwrap();
    put(&store, "mine", json!({"metadata": {"name": "mine"}})).await;
    let event = watch.next().await.unwrap();
    assert_eq!(event.key.name, "mine");
    assert_eq!(watch.progress(), 3);
}

#[tokio::test]
async fn a_watch_far_behind_catches_up_in_order_without_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig { broadcast_capacity: 8, ..StoreConfig::default() };
    let store = Store::open(dir.path(), config).unwrap();
    let mut watch = store.watch("snapshot.kubevirt.io/virtualmachinesnapshots", Some("default"), 0);
    // More than a few log batches, interleaved with changes the watch does not select.
    for i in 0..700 {
        put(&store, &format!("s{i}"), json!({"metadata": {"name": format!("s{i}")}})).await;
        if i % 3 == 0 {
            let elsewhere = ObjectKey::new("snapshot.kubevirt.io/virtualmachinesnapshots", "other", "x");
            let value = json!({"v": i});
            store
                .mutate(elsewhere, move |_| Ok::<_, Infallible>(Mutation::Put(value)))
                .await
                .unwrap()
                .unwrap();
        }
    }
    let mut seen = Vec::new();
    while seen.len() < 700 {
        let event = watch.next().await.unwrap();
        assert_eq!(event.key.namespace, "default");
        seen.push(event.key.name.clone());
    }
    assert_eq!(seen, (0..700).map(|i| format!("s{i}")).collect::<Vec<_>>());
    put(&store, "live", json!({"metadata": {"name": "live"}})).await;
    assert_eq!(watch.next().await.unwrap().key.name, "live");
}

#[tokio::test]
async fn a_watch_from_a_compacted_revision_expires() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    for i in 0..10 {
        put(&store, "a", json!({"metadata": {"name": "a"}, "v": i})).await;
    }
    store.compact(8).await.unwrap();
    let mut old = store.watch("snapshot.kubevirt.io/virtualmachinesnapshots", None, 3);
    assert_eq!(old.next().await.unwrap_err(), WatchError::Expired { requested: 3, oldest: 8 });
    let mut recent = store.watch("snapshot.kubevirt.io/virtualmachinesnapshots", None, 8);
    assert_eq!(recent.next().await.unwrap().revision, 9);
}

#[tokio::test]
async fn the_log_is_trimmed_to_its_retention() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreConfig { log_retention: 20, ..Default::default() }).unwrap();
    for i in 0..100 {
        put(&store, "a", json!({"metadata": {"name": "a"}, "v": i})).await;
    }
    assert!(store.compacted_revision() >= 60, "compacted at {}", store.compacted_revision());
    assert!(store.compacted_revision() <= 80);
}

#[tokio::test]
async fn everything_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        put(&store, "a", json!({"metadata": {"name": "a"}, "v": 1})).await;
        put(&store, "b", json!({"metadata": {"name": "b"}, "v": 2})).await;
    }
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    assert_eq!(store.revision(), 2);
    let a = store.get(&key("a")).await.unwrap().unwrap();
    assert_eq!(a["v"], 1);
    let mut watch = store.watch("snapshot.kubevirt.io/virtualmachinesnapshots", None, 0);
    assert_eq!(watch.next().await.unwrap().key.name, "a");
    assert_eq!(put(&store, "c", json!({})).await["metadata"]["resourceVersion"], "3");
}

fn nested(depth: usize) -> Value {
    let mut v = json!({});
    for _ in 1..depth {
        v = json!({ "a": v });
    }
    v
}

#[tokio::test]
async fn a_value_nested_too_deep_to_read_back_is_refused_and_the_rest_of_its_batch_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    put(&store, "deep", json!({"metadata": {"name": "deep"}, "spec": 1})).await;
    let deep = json!({"metadata": {"name": "deep"}, "spec": nested(vmsnap_store::MAX_NESTING)});
    let (refused, other) = tokio::join!(
        store.mutate(key("deep"), move |_| Ok::<_, Infallible>(Mutation::Put(deep))),
        store
            .mutate(key("other"), |_| Ok::<_, Infallible>(Mutation::Put(json!({"metadata": {"name": "o"}})))),
    );
    match refused {
        Err(vmsnap_store::StoreError::TooDeep { depth, limit }) => {
            assert_eq!((depth, limit), (vmsnap_store::MAX_NESTING + 1, vmsnap_store::MAX_NESTING));
        }
        other => panic!("expected TooDeep, got {other:?}"),
    }
    assert!(other.unwrap().is_ok(), "the other write of the batch is applied");
    let kept = store.get(&key("deep")).await.unwrap().unwrap();
    assert_eq!(kept["spec"], 1, "the stored object is unchanged and still readable");
    let at_limit = json!({"metadata": {"name": "deep"}, "spec": nested(vmsnap_store::MAX_NESTING - 1)});
    put(&store, "deep", at_limit).await;
    drop(store);
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    assert!(store.get(&key("deep")).await.unwrap().is_some(), "read back after a restart");
}
