//! Server-side apply detects field-manager conflicts (before: two managers silently overwrote
//! each other): a second manager that sets a field another applied to a different value gets a
//! 409 with apiserver's `Apply failed with 1 conflict: conflict with "m": .path`, and `force`
//! takes the field over.

mod support;

use http::Method;
use kube::Client;
use serde_json::{Value, json};
use support::{get, send};
use vmsnap_testing::TestServer;

const APPLY: &str = "application/apply-patch+yaml";

const PATH: &str = "/api/v1/namespaces/default/configmaps/shared";

/// Server-side applies ConfigMap `shared` with `data` as `manager` (which may carry `&force=true`).
async fn apply(c: &Client, manager: &str, data: Value) -> (u16, Value) {
    let configmap =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared"}, "data": data});
    send(c, Method::PATCH, &format!("{PATH}?fieldManager={manager}"), APPLY, &configmap.to_string()).await
}

#[tokio::test]
async fn a_second_manager_conflicts_until_it_forces() {
    let server = TestServer::start().await.unwrap();
    let c = server.client().await.unwrap();
    let (code, body) = apply(&c, "alice", json!({"color": "red", "size": "s"})).await;
    assert_eq!(code, 201, "{body}");

    // Same value: shared ownership, no conflict.
    let (code, body) = apply(&c, "bob", json!({"size": "s"})).await;
    assert_eq!(code, 200, "{body}");

    let (code, status) = apply(&c, "bob", json!({"color": "blue"})).await;
    assert_eq!((code, status["reason"].as_str()), (409, Some("Conflict")), "{status}");
    assert_eq!(status["message"], "Apply failed with 1 conflict: conflict with \"alice\": .data.color");
    assert_eq!(status["details"]["causes"][0]["reason"], "FieldManagerConflict");
    assert_eq!(status["details"]["causes"][0]["field"], ".data.color");
    let (_, live) = get(&c, PATH).await;
    assert_eq!(live["data"]["color"], "red", "nothing was written");

    let (code, status) = apply(&c, "bob", json!({"color": "blue", "size": "m"})).await;
    assert_eq!(code, 409, "{status}");
    assert_eq!(
        status["message"],
        "Apply failed with 2 conflicts: conflicts with \"alice\":\n- .data.color\n- .data.size"
    );

    let (code, forced) = apply(&c, "bob&force=true", json!({"color": "blue"})).await;
    assert_eq!(code, 200, "{forced}");
    assert_eq!(forced["data"], json!({"color": "blue", "size": "s"}));
    // alice no longer owns the color: re-applying her configuration conflicts with bob now.
    let (code, status) = apply(&c, "alice", json!({"color": "red", "size": "s"})).await;
    assert_eq!(code, 409, "{status}");
    assert_eq!(status["message"], "Apply failed with 1 conflict: conflict with \"bob\": .data.color");
}
