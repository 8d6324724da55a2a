//! Input meant to hurt the server: bodies nested too deep to read back, bodies over the size
//! limit, watch parameters out of range, requests that never finish, and paths that try to slip
//! past authentication. Each is refused with a `Status` and the server keeps serving.

mod support;

use http::Method;
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};
use support::{get, send};
use vmsnap_api::kubevirt::VirtualMachine;
use vmsnap_testing::TestServer;
use vmsnap_testing::fixtures::VmBuilder;

const VMS: &str = "/apis/kubevirt.io/v1/namespaces/default/virtualmachines";

fn nested(depth: usize) -> Value {
    let mut v = json!({});
    for _ in 1..depth {
        v = json!({ "a": v });
    }
    v
}

#[tokio::test]
async fn a_patch_that_would_nest_the_object_too_deep_is_refused_and_the_object_stays_readable() {
    let server = TestServer::start().await.unwrap();
    let c = server.client().await.unwrap();
    let vms: Api<VirtualMachine> = Api::namespaced(c.clone(), "default");
    vms.create(&PostParams::default(), &VmBuilder::new("vm").build()).await.unwrap();
    let features = "/spec/template/spec/domain/features";

    // The body itself is within the limit; the object it makes (6 levels down) is not.
    let patch = json!([{"op": "add", "path": features, "value": {"x": nested(97)}}]);
    let (code, status) =
        send(&c, Method::PATCH, &format!("{VMS}/vm"), "application/json-patch+json", &patch.to_string())
            .await;
    assert_eq!((code, status["reason"].as_str()), (400, Some("BadRequest")), "{status}");
    assert_eq!(status["message"], "the object is nested 103 levels deep; at most 100 are allowed");

    // Deeper than serde_json reads back: before the limit, this was stored and every later GET,
    // LIST and DELETE of the VM answered 500 "stored object is not valid JSON".
    let patch = json!([{"op": "add", "path": features, "value": {"x": nested(124)}}]);
    let (code, status) =
        send(&c, Method::PATCH, &format!("{VMS}/vm"), "application/json-patch+json", &patch.to_string())
            .await;
    assert_eq!((code, status["reason"].as_str()), (400, Some("BadRequest")), "{status}");
    assert_eq!(status["message"], "the request body is nested 127 levels deep; at most 100 are allowed");

    let (code, vm) = get(&c, &format!("{VMS}/vm")).await;
    assert_eq!(code, 200, "{vm}");
    assert!(vm.pointer(features).is_none());
    let (code, list) = get(&c, VMS).await;
    assert_eq!((code, list["items"].as_array().map(Vec::len)), (200, Some(1)));
    let (code, _) = send(&c, Method::DELETE, &format!("{VMS}/vm"), "application/json", "").await;
    assert_eq!(code, 200);
}
