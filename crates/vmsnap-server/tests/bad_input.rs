//! Bad requests get the matching 4xx `Status` (never a 500), and the server keeps serving.

use http::{Method, Request};
use kube::Client;
use serde_json::{Value, json};
use vmsnap_testing::TestServer;

const SNAPS: &str = "/apis/snapshot.kubevirt.io/v1beta1/namespaces/default/virtualmachinesnapshots";

async fn send(client: &Client, method: Method, path: &str, content_type: &str, body: &str) -> (u16, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(body.as_bytes().to_vec().into())
        .unwrap();
    let resp = client.send(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(resp.into_body()).await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn snapshot(name: &str) -> String {
    json!({"apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineSnapshot", "metadata": {"name": name},
           "spec": {"source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "vm"}}})
    .to_string()
}

#[tokio::test]
async fn bad_requests_get_4xx_statuses_with_reasons() {
    let server = TestServer::start().await.unwrap();
    let c = server.client().await.unwrap();
    let json_ct = "application/json";
    let (code, _) = send(&c, Method::POST, SNAPS, json_ct, &snapshot("ok")).await;
    assert_eq!(code, 201);

    let cases: Vec<(Method, String, &str, String, u16, &str)> = vec![
        (Method::POST, SNAPS.into(), json_ct, "{\"apiVersion\": ".into(), 400, "BadRequest"),
        (Method::POST, SNAPS.into(), "application/yaml", "kind: [unclosed".into(), 400, "BadRequest"),
        (Method::POST, SNAPS.into(), json_ct, "".into(), 400, "BadRequest"),
        (Method::POST, SNAPS.into(), json_ct, "[1,2]".into(), 400, "BadRequest"),
        (Method::POST, SNAPS.into(), json_ct, snapshot("x").replace("VirtualMachineSnapshot", "Pod"), 400, "BadRequest"),
        (Method::POST, SNAPS.into(), json_ct, snapshot("Not_Valid"), 422, "Invalid"),
        (Method::POST, format!("{SNAPS}?fieldValidation=Strict"), json_ct, snapshot("s").replace("\"spec\":{", "\"spec\":{\"typo\":1,"), 400, "BadRequest"),
        (Method::POST, format!("{SNAPS}?fieldValidation=Sometimes"), json_ct, snapshot("s"), 400, "BadRequest"),
        (Method::POST, SNAPS.into(), json_ct, snapshot("ok"), 409, "AlreadyExists"),
        (Method::POST, SNAPS.into(), json_ct, json!({"apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineSnapshot", "metadata": {"name": "n"}, "spec": {"source": "vm"}}).to_string(), 422, "Invalid"),
        (Method::PATCH, format!("{SNAPS}/ok"), "application/merge-patch+json", "{\"spec\":{\"source\":{\"name\":\"y\"}}}".into(), 422, "Invalid"),
        (Method::PATCH, format!("{SNAPS}/ok"), "application/json-patch+json", "{\"op\":\"add\"}".into(), 400, "BadRequest"),
        (Method::PATCH, format!("{SNAPS}/ok"), "application/merge-patch+json", "[1]".into(), 400, "BadRequest"),
        (Method::PATCH, format!("{SNAPS}/ok"), "application/json-patch+json", "[{\"op\":\"test\",\"path\":\"/metadata/name\",\"value\":\"no\"}]".into(), 422, "Invalid"),
        (Method::PATCH, format!("{SNAPS}/ok"), "application/strategic-merge-patch+json", "{}".into(), 415, "UnsupportedMediaType"),
        (Method::PATCH, format!("{SNAPS}/ok"), "text/plain", "{}".into(), 415, "UnsupportedMediaType"),
        (Method::PATCH, format!("{SNAPS}/ok"), "application/apply-patch+yaml", snapshot("ok"), 400, "BadRequest"),
        (Method::PATCH, format!("{SNAPS}/missing"), "application/merge-patch+json", "{}".into(), 404, "NotFound"),
        (Method::PUT, format!("{SNAPS}/ok"), json_ct, snapshot("ok"), 422, "Invalid"),
        (Method::PUT, format!("{SNAPS}/ok"), json_ct, snapshot("other"), 400, "BadRequest"),
        (Method::GET, format!("{SNAPS}?labelSelector=a%20in%20(b"), json_ct, String::new(), 400, "BadRequest"),
        (Method::GET, format!("{SNAPS}?fieldSelector=spec.x%3D1"), json_ct, String::new(), 400, "BadRequest"),
        (Method::GET, format!("{SNAPS}?watch=true&resourceVersion=abc"), json_ct, String::new(), 400, "BadRequest"),
        (Method::GET, "/apis/snapshot.kubevirt.io/v1beta1/namespaces/default/nothings".into(), json_ct, String::new(), 404, "NotFound"),
        (Method::GET, format!("{SNAPS}/missing"), json_ct, String::new(), 404, "NotFound"),
        (Method::POST, "/apis/snapshot.kubevirt.io/v1beta1/namespaces/nowhere/virtualmachinesnapshots".into(), json_ct, snapshot("z"), 404, "NotFound"),
        (Method::POST, format!("{SNAPS}/ok"), json_ct, snapshot("ok"), 405, "MethodNotAllowed"),
    ];
    for (method, path, ct, body, want_code, want_reason) in cases {
        let (code, status) = send(&c, method.clone(), &path, ct, &body).await;
        assert_eq!(code, want_code, "{method} {path} {body:?} -> {status}");
        assert_eq!(status["kind"], "Status", "{method} {path}");
        assert_eq!(status["reason"], want_reason, "{method} {path} -> {status}");
        assert!(status["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let (code, _) = send(&c, Method::GET, &format!("{SNAPS}/ok"), json_ct, "").await;
    assert_eq!(code, 200, "the server stopped serving");
}

#[tokio::test]
async fn requests_without_the_token_are_refused() {
    let server = TestServer::start().await.unwrap();
    let url = format!("http://{}{SNAPS}", server.api.addr);
    let out = tokio::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &url])
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "401");
    let health = format!("http://{}/healthz", server.api.addr);
    let out = tokio::process::Command::new("curl").args(["-s", &health]).output().await.unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok");
}
