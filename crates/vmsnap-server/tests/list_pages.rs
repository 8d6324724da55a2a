//! Lists in pages (`limit` and `continue`), as kubectl (`--chunk-size`, 500 by default) and
//! kube-rs informers (500 per page) ask for them: every page is consistent with the first.

use kube::api::{Api, DeleteParams, ListParams, PostParams};
use vmsnap_api::snapshot::VirtualMachineSnapshot;
use vmsnap_testing::TestServer;

fn snapshot(name: &str) -> VirtualMachineSnapshot {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "snapshot.kubevirt.io/v1beta1",
        "kind": "VirtualMachineSnapshot",
        "metadata": {"name": name},
        "spec": {"source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "vm"}}
    }))
    .unwrap()
}

async fn server_with(names: &[&str]) -> (TestServer, Api<VirtualMachineSnapshot>) {
    let server = TestServer::start().await.unwrap();
    let api: Api<VirtualMachineSnapshot> = Api::namespaced(server.client().await.unwrap(), "default");
    for name in names {
        api.create(&PostParams::default(), &snapshot(name)).await.unwrap();
    }
    (server, api)
}

fn names(list: &kube::core::ObjectList<VirtualMachineSnapshot>) -> Vec<String> {
    list.items.iter().map(|s| s.metadata.name.clone().unwrap()).collect()
}

#[tokio::test]
async fn kubectl_lists_every_object_in_small_chunks() {
    let (server, _api) = server_with(&["s5", "s1", "s4", "s2", "s3", "s7", "s6"]).await;
    let out = server.kubectl().run_async(&["get", "vmsnapshot", "--chunk-size=3", "-o", "name"]).await;
    let listed: Vec<&str> = out.ok().lines().collect();
    let expected: Vec<String> =
        (1..=7).map(|i| format!("virtualmachinesnapshot.snapshot.kubevirt.io/s{i}")).collect();
    assert_eq!(listed, expected);

    let table = server.kubectl().run_async(&["get", "vmsnapshot", "--chunk-size=2"]).await;
    let rows: Vec<&str> = table.ok().lines().collect();
    assert_eq!(rows.len(), 8, "one header, then every snapshot once: {rows:?}");
    assert_eq!(rows.iter().filter(|r| r.starts_with("NAME ")).count(), 1);
}

#[tokio::test]
async fn later_pages_are_read_at_the_first_pages_revision() {
    let (_server, api) = server_with(&["a", "b", "c", "d", "e"]).await;
    let first = api.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(names(&first), ["a", "b"]);
    let token = first.metadata.continue_.clone().expect("a continue token");

    api.delete("d", &DeleteParams::default()).await.unwrap();
    api.create(&PostParams::default(), &snapshot("cc")).await.unwrap();

    let second = api.list(&ListParams::default().limit(2).continue_token(&token)).await.unwrap();
    assert_eq!(names(&second), ["c", "d"], "as they were when the list began");
    assert_eq!(second.metadata.resource_version, first.metadata.resource_version);
    let token = second.metadata.continue_.clone().expect("a continue token");
    let last = api.list(&ListParams::default().limit(2).continue_token(&token)).await.unwrap();
    assert_eq!(names(&last), ["e"]);
    assert!(last.metadata.continue_.is_none(), "the last page has no continue token");

    let now = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(names(&now), ["a", "b", "c", "cc", "e"]);
    assert!(now.metadata.continue_.is_none());
}

#[tokio::test]
async fn a_continue_token_past_compaction_is_410_and_a_foreign_one_400() {
    let (server, api) = server_with(&["a", "b", "c"]).await;
    let first = api.list(&ListParams::default().limit(1)).await.unwrap();
    let token = first.metadata.continue_.clone().unwrap();
    api.delete("b", &DeleteParams::default()).await.unwrap();
    let store = server.api.core();
    store.store().compact(store.store().revision()).await.unwrap();

    let expired = api.list(&ListParams::default().limit(1).continue_token(&token)).await.unwrap_err();
    let kube::Error::Api(status) = expired else { panic!("{expired:?}") };
    assert_eq!((status.code, status.reason.as_str()), (410, "Expired"), "{status:?}");
    assert!(status.message.contains("continue parameter is too old"), "{}", status.message);

    let foreign = api.list(&ListParams::default().limit(1).continue_token("not-ours")).await.unwrap_err();
    let kube::Error::Api(status) = foreign else { panic!("{foreign:?}") };
    assert_eq!((status.code, status.reason.as_str()), (400, "BadRequest"), "{status:?}");
    assert!(status.message.starts_with("continue key is not valid"), "{}", status.message);
}
