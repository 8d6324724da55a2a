//! kubectl's typed `create` commands send their object in Kubernetes' protobuf encoding (observed:
//! `Content-Type: application/vnd.kubernetes.protobuf` on `POST .../secrets`, with no fallback to
//! JSON). The server decodes the kinds it serves that kubectl creates this way.

use vmsnap_testing::TestServer;

#[tokio::test]
async fn kubectl_creates_secrets_configmaps_namespaces_and_rbac_objects() {
    let server = TestServer::start().await.unwrap();
    let k = server.kubectl();
    let out = k.run_async(&["create", "secret", "generic", "s", "--from-literal=a=b"]).await;
    assert_eq!(out.ok().trim(), "secret/s created");
    let data = k.run_async(&["get", "secret", "s", "-o", "jsonpath={.data.a}"]).await;
    assert_eq!(data.ok(), "Yg==", "base64 of the literal value");
    let kind = k.run_async(&["get", "secret", "s", "-o", "jsonpath={.type}"]).await;
    assert_eq!(kind.ok(), "Opaque");

    let out = k.run_async(&["create", "configmap", "c", "--from-literal=key=value with spaces"]).await;
    assert_eq!(out.ok().trim(), "configmap/c created");
    let data = k.run_async(&["get", "configmap", "c", "-o", "jsonpath={.data.key}"]).await;
    assert_eq!(data.ok(), "value with spaces");

    let out = k.run_async(&["create", "namespace", "backups"]).await;
    assert_eq!(out.ok().trim(), "namespace/backups created");
    let phase = k.run_async(&["get", "namespace", "backups", "-o", "jsonpath={.status.phase}"]).await;
    assert_eq!(phase.ok(), "Active");

    let out = k.run_async(&["create", "serviceaccount", "backup", "-n", "backups"]).await;
    assert_eq!(out.ok().trim(), "serviceaccount/backup created");
    let out = k
        .run_async(&["create", "role", "reader", "--verb=get,list", "--resource=secrets", "-n", "backups"])
        .await;
    assert_eq!(out.ok().trim(), "role.rbac.authorization.k8s.io/reader created");
    let verbs =
        k.run_async(&["get", "role", "reader", "-n", "backups", "-o", "jsonpath={.rules[0].verbs}"]).await;
    assert_eq!(verbs.ok(), r#"["get","list"]"#);
    let out = k
        .run_async(&[
            "create",
            "rolebinding",
            "read",
            "--role=reader",
            "--serviceaccount=backups:backup",
            "-n",
            "backups",
        ])
        .await;
    assert_eq!(out.ok().trim(), "rolebinding.rbac.authorization.k8s.io/read created");
}

#[tokio::test]
async fn a_kind_the_server_cannot_decode_is_refused_with_a_way_out() {
    let server = TestServer::start().await.unwrap();
    let out = server.kubectl().run_async(&["create", "deployment", "web", "--image=nginx"]).await;
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("the protobuf encoding of Deployment (apps/v1) is not supported")
            && out.stderr.contains("application/json"),
        "{}",
        out.stderr
    );
}
