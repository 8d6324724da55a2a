//! The webhook over TLS answers AdmissionReviews with KubeVirt's decisions and messages.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};
use vmsnap_admission::RestoreContext;
use vmsnap_api::snapshot::VirtualMachineRestore;
use vmsnap_webhook::{Lookup, WebhookConfig, serve};

struct NothingExists;

#[async_trait]
impl Lookup for NothingExists {
    async fn restore_context(&self, _: &VirtualMachineRestore) -> Result<RestoreContext, String> {
        Ok(RestoreContext::default())
    }
}

async fn post(url: &str, ca: &std::path::Path, body: &Value) -> Value {
    let out = tokio::process::Command::new("curl")
        .args(["-s", "--fail-with-body", "--cacert"])
        .arg(ca)
        .args(["-H", "Content-Type: application/json", "-d", &body.to_string(), url])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn review(resource: &str, operation: &str, object: Value, old: Value) -> Value {
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "7f0e-1", "operation": operation, "resource": {"group": "snapshot.kubevirt.io", "version": "v1beta1", "resource": resource},
        "object": object, "oldObject": old
    }})
}

fn snapshot(kind: &str, name: &str) -> Value {
    json!({"apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineSnapshot", "metadata": {"name": "s", "namespace": "default"},
           "spec": {"source": {"apiGroup": "kubevirt.io", "kind": kind, "name": name}}})
}

#[tokio::test]
async fn snapshot_and_restore_reviews_get_kubevirts_answers_over_tls() {
    let running = serve(
        Arc::new(NothingExists),
        WebhookConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            tls_dir: None,
            host: "vmsnap-webhook.vmsnap-system.svc".into(),
        },
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, running.self_signed_pem.clone().unwrap()).unwrap();
    let base = format!("https://127.0.0.1:{}", running.addr.port());

    let ok = post(
        &format!("{base}/virtualmachinesnapshots-validate"),
        &ca,
        &review("virtualmachinesnapshots", "CREATE", snapshot("VirtualMachine", "vm"), Value::Null),
    )
    .await;
    assert_eq!(ok["response"]["allowed"], true);
    assert_eq!(ok["response"]["uid"], "7f0e-1");

    let denied = post(
        &format!("{base}/virtualmachinesnapshots-validate"),
        &ca,
        &review("virtualmachinesnapshots", "CREATE", snapshot("Pod", "vm"), Value::Null),
    )
    .await;
    assert_eq!(denied["response"]["allowed"], false);
    assert_eq!(denied["response"]["status"]["code"], 422);
    assert_eq!(denied["response"]["status"]["message"], "invalid kind");
    assert_eq!(denied["response"]["status"]["details"]["causes"][0]["field"], "spec.source.kind");

    let changed = post(
        &format!("{base}/virtualmachinesnapshots-validate"),
        &ca,
        &review(
            "virtualmachinesnapshots",
            "UPDATE",
            snapshot("VirtualMachine", "other"),
            snapshot("VirtualMachine", "vm"),
        ),
    )
    .await;
    assert_eq!(changed["response"]["status"]["message"], "spec in immutable after creation");

    let restore = json!({"apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineRestore", "metadata": {"name": "r", "namespace": "default"},
        "spec": {"target": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "vm"}, "virtualMachineSnapshotName": "s", "volumeRestorePolicy": "Shuffle"}});
    let bad_policy = post(
        &format!("{base}/virtualmachinerestores-validate"),
        &ca,
        &review("virtualmachinerestores", "CREATE", restore, Value::Null),
    )
    .await;
    assert_eq!(
        bad_policy["response"]["status"]["message"],
        "volume restore policy \"Shuffle\" doesn't exist"
    );

    let schedule = json!({"apiVersion": "schedule.vmsnap.io/v1alpha1", "kind": "VirtualMachineSnapshotSchedule", "metadata": {"name": "nightly", "namespace": "default"},
        "spec": {"vmName": "vm", "cron": "30 25 * * *"}});
    let bad_cron = post(
        &format!("{base}/virtualmachinesnapshotschedules-validate"),
        &ca,
        &review("virtualmachinesnapshotschedules", "CREATE", schedule, Value::Null),
    )
    .await;
    assert_eq!(bad_cron["response"]["allowed"], false);
    assert_eq!(bad_cron["response"]["status"]["details"]["causes"][0]["field"], "spec.cron");
    let message = bad_cron["response"]["status"]["message"].as_str().unwrap();
    assert!(message.starts_with("spec.cron: cron hour field: "), "{message}");

    // The backup kinds: each path runs its kind's rules, on create and on update.
    let repository = json!({"apiVersion": "backup.vmsnap.io/v1alpha1", "kind": "VirtualMachineBackupRepository", "metadata": {"name": "off-site", "namespace": "default"},
        "spec": {"s3": {"endpoint": "http://10.0.0.5:8333", "bucket": "vm-backups", "credentialsSecretRef": {"name": "c"}}, "passphraseSecretRef": {"name": "p"}}});
    let plain_http = post(
        &format!("{base}/virtualmachinebackuprepositories-validate"),
        &ca,
        &review("virtualmachinebackuprepositories", "CREATE", repository, Value::Null),
    )
    .await;
    assert_eq!(plain_http["response"]["allowed"], false);
    assert_eq!(plain_http["response"]["status"]["details"]["causes"][0]["field"], "spec.s3.endpoint");
    let backup = |force: bool| {
        json!({"apiVersion": "backup.vmsnap.io/v1alpha1", "kind": "VirtualMachineRepositoryBackup", "metadata": {"name": "b", "namespace": "default"},
        "spec": {"repository": "off-site", "forceFull": force, "source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "vm"}}})
    };
    let changed = post(
        &format!("{base}/virtualmachinerepositorybackups-validate"),
        &ca,
        &review("virtualmachinerepositorybackups", "UPDATE", backup(true), backup(false)),
    )
    .await;
    assert_eq!(changed["response"]["allowed"], false);
    assert_eq!(changed["response"]["status"]["details"]["causes"][0]["field"], "spec");
    let created = post(
        &format!("{base}/virtualmachinerepositorybackups-validate"),
        &ca,
        &review("virtualmachinerepositorybackups", "CREATE", backup(false), Value::Null),
    )
    .await;
    assert_eq!(created["response"]["allowed"], true);
    let restore = json!({"apiVersion": "backup.vmsnap.io/v1alpha1", "kind": "VirtualMachineRepositoryRestore", "metadata": {"name": "r", "namespace": "default"},
        "spec": {"backupName": "b", "target": {"apiGroup": "kubevirt.io", "kind": "VirtualMachineInstance", "name": "vm"}}});
    let bad_target = post(
        &format!("{base}/virtualmachinerepositoryrestores-validate"),
        &ca,
        &review("virtualmachinerepositoryrestores", "CREATE", restore, Value::Null),
    )
    .await;
    assert_eq!(bad_target["response"]["status"]["details"]["causes"][0]["field"], "spec.target.kind");
}
