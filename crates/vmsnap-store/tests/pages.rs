//! Lists in pages: each page is consistent with the first one, whatever changes in between.

use std::convert::Infallible;

use serde_json::{Value, json};
use vmsnap_store::{Mutation, ObjectKey, Page, PageRequest, Store, StoreConfig, WatchError};

const RESOURCE: &str = "snapshot.kubevirt.io/virtualmachinesnapshots";

fn key(ns: &str, name: &str) -> ObjectKey {
    ObjectKey::new(RESOURCE, ns, name)
}

async fn put(store: &Store, ns: &str, name: &str, spec: u64) {
    let value = json!({"metadata": {"name": name, "namespace": ns}, "spec": spec});
    store.mutate(key(ns, name), move |_| Ok::<_, Infallible>(Mutation::Put(value))).await.unwrap().unwrap();
}

async fn delete(store: &Store, ns: &str, name: &str) {
    store.mutate(key(ns, name), |_| Ok::<_, Infallible>(Mutation::Delete)).await.unwrap().unwrap();
}

async fn page(store: &Store, ns: Option<&str>, request: PageRequest) -> Result<Page<Value>, WatchError> {
    store.list_page(RESOURCE, ns, request, Box::new(Some)).await.unwrap()
}

fn names_and_specs(page: &Page<Value>) -> Vec<(String, u64)> {
    page.items
        .iter()
        .map(|v| (v["metadata"]["name"].as_str().unwrap().to_owned(), v["spec"].as_u64().unwrap()))
        .collect()
}

fn next<T>(page: &Page<T>, limit: usize) -> PageRequest {
    PageRequest { at: Some(page.revision), after: page.next_after.clone(), limit: Some(limit) }
}

async fn store_with(names: &[&str]) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    for name in names {
        put(&store, "default", name, 1).await;
    }
    (dir, store)
}

#[tokio::test]
async fn pages_follow_each_other_in_name_order_and_the_last_one_says_so() {
    let (_dir, store) = store_with(&["e", "a", "d", "b", "c"]).await;
    let first = page(&store, None, PageRequest { limit: Some(2), ..Default::default() }).await.unwrap();
    assert_eq!(names_and_specs(&first), [("a".into(), 1), ("b".into(), 1)]);
    assert_eq!(first.next_after, Some(("default".into(), "b".into())));
    assert_eq!(first.revision, 5);
    let second = page(&store, None, next(&first, 2)).await.unwrap();
    assert_eq!(names_and_specs(&second), [("c".into(), 1), ("d".into(), 1)]);
    let third = page(&store, None, next(&second, 2)).await.unwrap();
    assert_eq!(names_and_specs(&third), [("e".into(), 1)]);
    assert_eq!(third.next_after, None, "nothing follows the last page");

    let exact = page(&store, None, PageRequest { limit: Some(5), ..Default::default() }).await.unwrap();
    assert_eq!((exact.items.len(), exact.next_after), (5, None), "a page that holds everything is the last");
}

#[tokio::test]
async fn later_pages_show_the_objects_as_they_were_at_the_first() {
    let (_dir, store) = store_with(&["a", "b", "c", "d", "e"]).await;
    let first = page(&store, None, PageRequest { limit: Some(2), ..Default::default() }).await.unwrap();
    // Between the pages: a change, a deletion, a creation, and a change of one changed again.
    put(&store, "default", "c", 2).await;
    delete(&store, "default", "d").await;
    put(&store, "default", "bb", 1).await;
    put(&store, "default", "e", 2).await;
    put(&store, "default", "e", 3).await;

    let rest = page(&store, None, next(&first, 10)).await.unwrap();
    assert_eq!(names_and_specs(&rest), [("c".into(), 1), ("d".into(), 1), ("e".into(), 1)]);
    assert_eq!(rest.revision, first.revision);
    let now = page(&store, None, PageRequest::default()).await.unwrap();
    assert_eq!(
        names_and_specs(&now),
        [("a".into(), 1), ("b".into(), 1), ("bb".into(), 1), ("c".into(), 2), ("e".into(), 3)]
    );
}

#[tokio::test]
async fn a_filter_and_a_namespace_apply_before_the_limit() {
    let (_dir, store) = store_with(&["a", "b", "c", "d"]).await;
    put(&store, "other", "a", 7).await;
    let odd =
        || Box::new(|v: Value| (v["metadata"]["name"] != "b").then_some(v)) as vmsnap_store::Select<Value>;
    let request = PageRequest { limit: Some(2), ..Default::default() };
    let first = store.list_page(RESOURCE, Some("default"), request, odd()).await.unwrap().unwrap();
    assert_eq!(names_and_specs(&first), [("a".into(), 1), ("c".into(), 1)]);
    let rest = store.list_page(RESOURCE, Some("default"), next(&first, 2), odd()).await.unwrap().unwrap();
    assert_eq!(names_and_specs(&rest), [("d".into(), 1)]);
    assert_eq!(rest.next_after, None);
}

#[tokio::test]
async fn a_list_whose_revision_left_the_log_has_expired() {
    let (_dir, store) = store_with(&["a", "b", "c"]).await;
    let first = page(&store, None, PageRequest { limit: Some(1), ..Default::default() }).await.unwrap();
    put(&store, "default", "b", 2).await;
    store.compact(store.revision()).await.unwrap();
    let expired = page(&store, None, next(&first, 1)).await;
    assert!(matches!(expired, Err(WatchError::Expired { requested: 3, .. })), "{expired:?}");
}
