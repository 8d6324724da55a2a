//! Object names follow each kind's Kubernetes rule: DNS-1123 subdomains of up to 253 characters
//! for most kinds (custom resources included), DNS-1123 labels for namespaces, DNS-1035 labels
//! for services, path segments for RBAC kinds (apimachinery's validation, kube-apiserver's
//! registry strategies).

mod support;

use serde_json::{Value, json};
use support::post;
use vmsnap_testing::TestServer;

fn object(api_version: &str, kind: &str, name: &str) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": name}})
}

#[tokio::test]
async fn a_volume_snapshot_named_after_a_long_volume_is_created() {
    let server = TestServer::start().await.unwrap();
    let c = server.client().await.unwrap();
    // The name the snapshot controller gives the VolumeSnapshot of a volume named `rootdisk-data`:
    // longer than 63 characters, with no dot.
    let name = "vmsnapshot-0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0-volume-rootdisk-data";
    let mut vs = object("snapshot.storage.k8s.io/v1", "VolumeSnapshot", name);
    vs["spec"] = json!({"source": {"persistentVolumeClaimName": "rootdisk-data"}});
    let (code, body) =
        post(&c, "/apis/snapshot.storage.k8s.io/v1/namespaces/default/volumesnapshots", &vs).await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["metadata"]["name"], name);

    let long = "a".repeat(253);
    let (code, body) =
        post(&c, "/api/v1/namespaces/default/configmaps", &object("v1", "ConfigMap", &long)).await;
    assert_eq!(code, 201, "{body}");
    let too_long = "a".repeat(254);
    let (code, body) =
        post(&c, "/api/v1/namespaces/default/configmaps", &object("v1", "ConfigMap", &too_long)).await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["details"]["causes"][0]["field"], "metadata.name");
    assert!(body["message"].as_str().unwrap().ends_with("must be no more than 253 characters"), "{body}");
}

#[tokio::test]
async fn namespaces_services_and_roles_take_their_own_rules() {
    let server = TestServer::start().await.unwrap();
    let c = server.client().await.unwrap();
    let (code, body) = post(&c, "/api/v1/namespaces", &object("v1", "Namespace", &"n".repeat(64))).await;
    assert_eq!(code, 422, "{body}");
    assert!(body["message"].as_str().unwrap().contains("must be no more than 63 characters"), "{body}");

    let (code, body) =
        post(&c, "/api/v1/namespaces/default/services", &object("v1", "Service", "1-web")).await;
    assert_eq!(code, 422, "{body}");
    assert!(body["message"].as_str().unwrap().contains("a DNS-1035 label must consist of"), "{body}");

    let rbac = "/apis/rbac.authorization.k8s.io/v1/clusterroles";
    let role = object("rbac.authorization.k8s.io/v1", "ClusterRole", "system:vmsnap:Viewer");
    let (code, body) = post(&c, rbac, &role).await;
    assert_eq!(code, 201, "{body}");
    let (code, body) = post(&c, rbac, &object("rbac.authorization.k8s.io/v1", "ClusterRole", "a/b")).await;
    assert_eq!(code, 422, "{body}");
    assert!(body["message"].as_str().unwrap().contains("may not contain '/'"), "{body}");
}
