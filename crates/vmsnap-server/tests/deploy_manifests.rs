//! `kubectl apply -k deploy/` succeeds against the embedded server (the manifests are valid
//! Kubernetes objects), and applying them again changes nothing.

use vmsnap_testing::TestServer;

#[tokio::test]
async fn the_deploy_kustomization_applies_cleanly_twice() {
    let server = TestServer::start().await.unwrap();
    let k = server.kubectl();
    let deploy = format!("{}/../../deploy", env!("CARGO_MANIFEST_DIR"));
    let first = k.run_async(&["apply", "-k", &deploy]).await;
    let out = first.ok();
    for expected in [
        "namespace/vmsnap-system created",
        "customresourcedefinition.apiextensions.k8s.io/virtualmachinesnapshots.snapshot.kubevirt.io created",
        "clusterrole.rbac.authorization.k8s.io/vmsnap-controller created",
        "deployment.apps/vmsnap-controller created",
        "validatingwebhookconfiguration.admissionregistration.k8s.io/vmsnap-validator created",
        "service/vmsnap-webhook created",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    let second = k.run_async(&["apply", "-k", &deploy]).await;
    assert!(second.ok().lines().all(|l| l.ends_with(" unchanged")), "{}", second.stdout);
    let replicas = k
        .run_async(&[
            "get",
            "deployment",
            "-n",
            "vmsnap-system",
            "vmsnap-controller",
            "-o",
            "jsonpath={.spec.replicas}",
        ])
        .await;
    assert_eq!(replicas.ok(), "2");
}
