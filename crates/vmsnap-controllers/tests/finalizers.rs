//! The finalizer patches against the API server: an object already gone has no finalizer left
//! to remove, and adding one to it is still an error.

use kube::api::{Api, DeleteParams, PostParams};
use vmsnap_api::snapshot::VirtualMachineSnapshot;
use vmsnap_controllers::kube_util::{add_finalizer, remove_finalizer};
use vmsnap_testing::TestServer;

const FINALIZER: &str = "test.vmsnap.io/hold";

#[tokio::test]
async fn removing_a_finalizer_of_an_object_already_gone_is_done_and_adding_one_is_not_found() {
    let server = TestServer::start().await.unwrap();
    let api: Api<VirtualMachineSnapshot> = Api::namespaced(server.client().await.unwrap(), "default");
    let snapshot: VirtualMachineSnapshot = serde_json::from_value(serde_json::json!({
        "apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineSnapshot",
        "metadata": {"name": "held", "namespace": "default", "finalizers": [FINALIZER]},
        "spec": {"source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "vm"}}
    }))
    .unwrap();
    let stale = api.create(&PostParams::default(), &snapshot).await.unwrap();
    api.delete("held", &DeleteParams::default()).await.unwrap();
    assert!(api.get_opt("held").await.unwrap().is_some(), "the finalizer holds the object");

    remove_finalizer(&api, &stale, FINALIZER).await.unwrap();
    assert!(api.get_opt("held").await.unwrap().is_none(), "the last finalizer gone, so is the object");
    // A second reconcile, on the same stale copy: the object is gone, and its finalizer with it.
    remove_finalizer(&api, &stale, FINALIZER).await.unwrap();

    let error = add_finalizer(&api, &stale, "test.vmsnap.io/other").await.unwrap_err();
    assert!(matches!(&error, kube::Error::Api(status) if status.code == 404), "{error:?}");
}

/// A reconcile's write to the object it works on, after that object was deleted, is told apart
/// from a 404 of any other object by the API server's answer itself: the VM's status patch (the
/// `volumeSnapshotStatuses` controller) and a core object's finalizer patch (the claim controller).
#[tokio::test]
async fn the_api_server_s_404_names_the_deleted_object_and_only_it() {
    use k8s_openapi::api::core::v1::PersistentVolumeClaim;
    use kube::api::{Patch, PatchParams};
    use vmsnap_api::kubevirt::VirtualMachine;
    use vmsnap_contracts::controller::{is_gone, is_not_found};

    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    let vms: Api<VirtualMachine> = Api::namespaced(client.clone(), "default");
    let vm: VirtualMachine = serde_json::from_value(serde_json::json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": "vm", "namespace": "default"},
        "spec": {"runStrategy": "Halted", "template": {"spec": {"domain": {"devices": {}}}}}
    }))
    .unwrap();
    let stale = vms.create(&PostParams::default(), &vm).await.unwrap();
    vms.delete("vm", &DeleteParams::default()).await.unwrap();
    let patch = serde_json::json!({"status": {"volumeSnapshotStatuses": []}});
    let error = vms.patch_status("vm", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap_err();
    assert!(is_gone(&error, &stale), "{error:?}");

    // Another VM's 404 is not this one's.
    let error = vms.patch_status("other", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap_err();
    assert!(is_not_found(&error) && !is_gone(&error, &stale), "{error:?}");

    // A core object (its group is ""), and a claim with the VM's name is not the VM.
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client, "default");
    let claim: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "vm", "namespace": "default"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    }))
    .unwrap();
    let claim = claims.create(&PostParams::default(), &claim).await.unwrap();
    claims.delete("vm", &DeleteParams::default()).await.unwrap();
    let error = add_finalizer(&claims, &claim, FINALIZER).await.unwrap_err();
    assert!(is_gone(&error, &claim), "{error:?}");
    assert!(!is_gone(&error, &stale), "a claim named like the VM is another object: {error:?}");
}
