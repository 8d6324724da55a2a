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
