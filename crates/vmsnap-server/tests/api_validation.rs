//! Validation that Kubernetes and KubeVirt do: enums of upstream CRDs, KubeVirt's run strategy
//! rule, quantities, label and annotation rules, `resourceVersion` on create, duplicate fields
//! under `fieldValidation=Strict`, missing `apiVersion`/`kind`, and strategic merge patch
//! directives. Each case asserts the code, the reason and upstream's message.

mod support;

use http::Method;
use serde_json::{Value, json};
use support::{get, post, send};
use vmsnap_testing::TestServer;

const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";
const VMS: &str = "/apis/kubevirt.io/v1/namespaces/default/virtualmachines";

fn vm(name: &str) -> Value {
    json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": {"name": name},
           "spec": {"runStrategy": "Halted", "template": {"spec": {"domain": {"devices": {}}}}}})
}

fn message(status: &Value) -> &str {
    status["message"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn enums_run_strategies_and_quantities_are_checked() {
    let server = TestServer::start().await.unwrap();
    let c = server.client().await.unwrap();

    // KubeVirt's vm-admitter: `Invalid RunStrategy (%s)` on spec.runStrategy.
    let mut bad = vm("bad-strategy");
    bad["spec"]["runStrategy"] = json!("Sometimes");
    let (code, status) = post(&c, VMS, &bad).await;
    assert_eq!((code, status["reason"].as_str()), (422, Some("Invalid")), "{status}");
    assert_eq!(
        message(&status),
        "admission webhook \"virtualmachine-validator.kubevirt.io\" denied the request: Invalid RunStrategy (Sometimes)"
    );
    assert_eq!(status["details"]["causes"][0]["field"], "spec.runStrategy");

    // The external-snapshotter CRD: deletionPolicy is an enum.
    let class = json!({"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass",
                       "metadata": {"name": "c"}, "driver": "d", "deletionPolicy": "Maybe"});
    let (code, status) = post(&c, "/apis/snapshot.storage.k8s.io/v1/volumesnapshotclasses", &class).await;
    assert_eq!((code, status["reason"].as_str()), (422, Some("Invalid")), "{status}");
    assert!(
        message(&status)
            .ends_with(r#"deletionPolicy: Unsupported value: "Maybe": supported values: "Delete", "Retain""#),
        "{status}"
    );

    let restore = json!({"apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineRestore",
        "metadata": {"name": "r"}, "spec": {"target": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "vm"},
        "virtualMachineSnapshotName": "s", "volumeRestorePolicy": "Shuffle"}});
    let (code, status) =
        post(&c, "/apis/snapshot.kubevirt.io/v1beta1/namespaces/default/virtualmachinerestores", &restore)
            .await;
    assert_eq!(code, 422, "{status}");
    assert!(
        message(&status).contains(r#"spec.volumeRestorePolicy: Unsupported value: "Shuffle""#),
        "{status}"
    );

    // A KubeVirt CRD quantity has controller-gen's pattern: `... in body should match '...'`.
    let mut garbage = vm("garbage-memory");
    garbage["spec"]["template"]["spec"]["domain"]["resources"] = json!({"requests": {"memory": "garbage"}});
    let (code, status) = post(&c, VMS, &garbage).await;
    assert_eq!((code, status["reason"].as_str()), (422, Some("Invalid")), "{status}");
    let field = "spec.template.spec.domain.resources.requests.memory";
    assert!(
        message(&status).contains(&format!(
            r#"{field}: Invalid value: "garbage": {field} in body should match '^(\+|-)?"#
        )),
        "{status}"
    );

    // A built-in kind's typed decoding refuses it first (Go's resource.ParseQuantity).
    let pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "p"},
                     "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "lots"}}}});
    let (code, status) = post(&c, "/api/v1/namespaces/default/persistentvolumeclaims", &pvc).await;
    assert_eq!((code, status["reason"].as_str()), (400, Some("BadRequest")), "{status}");
    assert_eq!(
        message(&status),
        "PersistentVolumeClaim in version \"v1\" cannot be handled as a PersistentVolumeClaim: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    );
}

#[tokio::test]
async fn labels_annotations_and_resource_versions_follow_object_meta_rules() {
    let server = TestServer::start().await.unwrap();
    let c = server.client().await.unwrap();
    let cm = |meta: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta});

    let (code, status) = post(&c, CONFIGMAPS, &cm(json!({"name": "k", "labels": {"bad key!": "v"}}))).await;
    assert_eq!((code, status["reason"].as_str()), (422, Some("Invalid")), "{status}");
    assert!(
        message(&status).contains(
            r#"metadata.labels: Invalid value: "bad key!": name part must consist of alphanumeric characters"#
        ),
        "{status}"
    );
    let (code, status) = post(&c, CONFIGMAPS, &cm(json!({"name": "v", "labels": {"app": "a b"}}))).await;
    assert_eq!(code, 422, "{status}");
    assert!(
        message(&status).contains(r#"Invalid value: "a b": a valid label must be an empty string"#),
        "{status}"
    );
    let (code, status) =
        post(&c, CONFIGMAPS, &cm(json!({"name": "l", "labels": {"app": "v".repeat(64)}}))).await;
    assert!(code == 422 && message(&status).contains("must be no more than 63 characters"), "{status}");

    let big = "x".repeat(200 * 1024);
    let (code, status) =
        post(&c, CONFIGMAPS, &cm(json!({"name": "a", "annotations": {"one": big, "two": big}}))).await;
    assert_eq!((code, status["reason"].as_str()), (422, Some("Invalid")), "{status}");
    assert!(
        message(&status).ends_with("metadata.annotations: Too long: may not be more than 262144 bytes"),
        "{status}"
    );

    // etcd3 storage's ErrResourceVersionSetOnCreate (a 500 there, the client's error here).
    let (code, status) = post(&c, CONFIGMAPS, &cm(json!({"name": "rv", "resourceVersion": "12"}))).await;
    assert_eq!((code, status["reason"].as_str()), (400, Some("BadRequest")), "{status}");
    assert_eq!(message(&status), "resourceVersion should not be set on objects to be created");
}

#[tokio::test]
async fn duplicate_and_unknown_fields_and_missing_type_meta() {
    let server = TestServer::start().await.unwrap();
    let c = server.client().await.unwrap();
    let dup = r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "d"}, "data": {"a": "1", "a": "2"}}"#;
    // sigs.k8s.io/json's strict error: `duplicate field "data.a"`, a 400 under Strict.
    let (code, status) =
        send(&c, Method::POST, &format!("{CONFIGMAPS}?fieldValidation=Strict"), "application/json", dup)
            .await;
    assert_eq!((code, status["reason"].as_str()), (400, Some("BadRequest")), "{status}");
    assert_eq!(
        message(&status),
        "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: duplicate field \"data.a\""
    );
    let (code, created) = send(&c, Method::POST, CONFIGMAPS, "application/json", dup).await;
    assert_eq!(code, 201, "Warn (the default) keeps the last value: {created}");
    assert_eq!(created["data"]["a"], "2");

    let snaps = "/apis/snapshot.kubevirt.io/v1beta1/namespaces/default/virtualmachinesnapshots";
    let typo = json!({"apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineSnapshot", "metadata": {"name": "s"},
                      "spec": {"typo": 1, "source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "vm"}}});
    let (code, status) = send(
        &c,
        Method::POST,
        &format!("{snaps}?fieldValidation=Strict"),
        "application/json",
        &typo.to_string(),
    )
    .await;
    assert_eq!((code, status["reason"].as_str()), (400, Some("BadRequest")), "{status}");
    assert_eq!(
        message(&status),
        "VirtualMachineSnapshot in version \"v1beta1\" cannot be handled as a VirtualMachineSnapshot: strict decoding error: unknown field \"spec.typo\""
    );

    // A custom resource needs both; a built-in kind takes them from the URL.
    let mut no_version = typo.clone();
    no_version.as_object_mut().unwrap().remove("apiVersion");
    let (code, status) = post(&c, snaps, &no_version).await;
    assert_eq!((code, status["reason"].as_str()), (400, Some("BadRequest")), "{status}");
    assert_eq!(
        message(&status),
        "the API version in the data () does not match the expected API version (snapshot.kubevirt.io/v1beta1)"
    );
    let mut no_kind = typo.clone();
    no_kind.as_object_mut().unwrap().remove("kind");
    let (code, status) = post(&c, snaps, &no_kind).await;
    assert!(code == 400 && message(&status).starts_with("Object 'Kind' is missing in '"), "{status}");
    let (code, created) =
        post(&c, CONFIGMAPS, &json!({"metadata": {"name": "bare"}, "data": {"k": "v"}})).await;
    assert_eq!(code, 201, "{created}");
    assert_eq!((created["kind"].as_str(), created["apiVersion"].as_str()), (Some("ConfigMap"), Some("v1")));
}

#[tokio::test]
async fn strategic_merge_patch_directives_of_the_wrong_shape_are_refused() {
    let server = TestServer::start().await.unwrap();
    let c = server.client().await.unwrap();
    let cm =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "p", "labels": {"a": "1"}}});
    assert_eq!(post(&c, CONFIGMAPS, &cm).await.0, 201);
    let smp = "application/strategic-merge-patch+json";
    let path = format!("{CONFIGMAPS}/p");
    // apimachinery mergepatch.ErrBadPatchType (kube-apiserver lets it through as a 500).
    let (code, status) =
        send(&c, Method::PATCH, &path, smp, r#"{"metadata": {"labels": {"$patch": "explode"}}}"#).await;
    assert_eq!((code, status["reason"].as_str()), (400, Some("BadRequest")), "{status}");
    assert!(message(&status).starts_with("unknown patch type: explode in map: "), "{status}");
    let (code, status) = send(&c, Method::PATCH, &path, smp, r#"{"metadata": {"$retainKeys": 7}}"#).await;
    assert_eq!((code, message(&status)), (400, "invalid patch format of retainKeys"), "{status}");
    let (code, status) =
        send(&c, Method::PATCH, &path, smp, r#"{"metadata": {"$setElementOrder/finalizers": {}}}"#).await;
    assert_eq!((code, message(&status)), (400, "invalid patch format of setElementOrder list"), "{status}");
    let (code, kept) = get(&c, &path).await;
    assert_eq!((code, &kept["metadata"]["labels"]), (200, &json!({"a": "1"})));
}
