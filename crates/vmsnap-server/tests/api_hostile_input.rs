//! Input meant to hurt the server: bodies nested too deep to read back, bodies over the size
//! limit, watch parameters out of range, requests that never finish, and paths that try to slip
//! past authentication. Each is refused with a `Status` and the server keeps serving.

mod support;

use http::Method;
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};
use support::{curl, get, send};
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

#[tokio::test]
async fn a_body_over_3_mib_is_a_413_status() {
    let server = TestServer::start().await.unwrap();
    let c = server.client().await.unwrap();
    let big = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"},
                     "data": {"x": "a".repeat(3 * 1024 * 1024)}});
    let (code, status) =
        send(&c, Method::POST, "/api/v1/namespaces/default/configmaps", "application/json", &big.to_string())
            .await;
    assert_eq!(code, 413, "{status}");
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "RequestEntityTooLarge");
    // kube-apiserver's words (apimachinery NewRequestEntityTooLargeError, limit MaxRequestBodyBytes).
    assert_eq!(status["message"], "Request entity too large: limit is 3145728");

    // Without a Content-Length (chunked), the limit applies as the bytes arrive.
    let body = std::env::temp_dir().join(format!("vmsnap-big-body-{}", std::process::id()));
    std::fs::write(&body, big.to_string()).unwrap();
    let data = format!("@{}", body.display());
    let headers =
        ["-H", "Content-Type: application/json", "-H", "Transfer-Encoding: chunked", "--data-binary", &data];
    let url = format!("http://{}/api/v1/namespaces/default/configmaps", server.api.addr);
    let (code, status) = curl("POST", &url, Some(&server.api.token), &headers).await;
    std::fs::remove_file(&body).unwrap();
    assert_eq!((code, status["code"].as_u64()), (413, Some(413)), "{status}");
    let (code, _) = get(&c, "/api/v1/namespaces/default/configmaps/big").await;
    assert_eq!(code, 404, "nothing was stored");
}

#[tokio::test]
async fn watch_parameters_are_checked_and_a_future_revision_is_too_large() {
    let server = TestServer::start().await.unwrap();
    let c = server.client().await.unwrap();
    let snaps = "/apis/snapshot.kubevirt.io/v1beta1/namespaces/default/virtualmachinesnapshots";
    let (code, status) = get(&c, &format!("{snaps}?watch=true&timeoutSeconds=abc")).await;
    assert_eq!((code, status["reason"].as_str()), (400, Some("BadRequest")), "{status}");
    assert_eq!(status["message"], "strconv.ParseInt: parsing \"abc\": invalid syntax");
    let (code, status) = get(&c, &format!("{snaps}?limit=many")).await;
    assert_eq!((code, status["reason"].as_str()), (400, Some("BadRequest")), "{status}");

    // Before: the watch stayed open and never delivered anything.
    let (_, list) = get(&c, snaps).await;
    let current: u64 = list["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
    let future = current + 1000;
    let started = std::time::Instant::now();
    // curl: kube-rs retries a 504 (after the Retry-After delay), as client-go does.
    let base = format!("http://{}{snaps}", server.api.addr);
    let token = Some(server.api.token.as_str());
    let (code, status) =
        curl("GET", &format!("{base}?watch=true&resourceVersion={future}"), token, &[]).await;
    assert_eq!(code, 504, "{status}");
    assert!(started.elapsed() >= std::time::Duration::from_secs(3), "waits like the watch cache");
    assert_eq!(status["reason"], "Timeout");
    assert_eq!(status["message"], format!("Too large resource version: {future}, current: {current}"));
    assert_eq!(status["details"]["causes"][0]["reason"], "ResourceVersionTooLarge");
    let (code, status) = curl("GET", &format!("{base}?resourceVersion={future}"), token, &[]).await;
    assert_eq!((code, status["reason"].as_str()), (504, Some("Timeout")), "a list too");
}

#[tokio::test]
async fn odd_paths_are_authenticated_before_routing() {
    let server = TestServer::start().await.unwrap();
    let base = format!("http://{}", server.api.addr);
    for path in ["//api/v1/namespaces", "/version/../api/v1/secrets", "/nothing-here", "/api/../apis"] {
        let (code, status) = curl("GET", &format!("{base}{path}"), None, &[]).await;
        assert_eq!(code, 401, "{path}: {status}");
        assert_eq!(status["reason"], "Unauthorized", "{path}");
        let (code, status) = curl("GET", &format!("{base}{path}"), Some(&server.api.token), &[]).await;
        assert_eq!(code, 404, "{path} with the token: {status}");
        assert_eq!(status["kind"], "Status", "{path}");
    }
}
