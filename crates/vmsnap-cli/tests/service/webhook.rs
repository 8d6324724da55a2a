//! `vmsnap webhook`, started with the command line of `deploy/webhook.yaml` and a certificate made
//! as the docs say (a CA, and a key pair for the Service's name in `tls.crt`/`tls.key`), answers
//! AdmissionReviews on every path the manifest's ValidatingWebhookConfiguration calls, with
//! KubeVirt's decisions and messages, looking objects up through the API server of its kubeconfig.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

const SERVICE_HOST: &str = "vmsnap-webhook.vmsnap-system.svc";

/// The webhook Deployment's container arguments and the ValidatingWebhookConfiguration's paths.
fn manifest() -> (Vec<String>, Vec<String>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/webhook.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let (mut args, mut paths) = (Vec::new(), Vec::new());
    for document in serde_norway::Deserializer::from_str(&text) {
        let object: Value = serde::Deserialize::deserialize(document).unwrap();
        if let Some(container) = object.pointer("/spec/template/spec/containers/0") {
            args = container["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().into()).collect();
        }
        for webhook in object["webhooks"].as_array().into_iter().flatten() {
            paths.push(webhook.pointer("/clientConfig/service/path").unwrap().as_str().unwrap().into());
        }
    }
    (args, paths)
}

/// `openssl ARGS` in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA (`ca.crt`) and the webhook's `tls.crt`/`tls.key` for the Service's name, signed by it.
fn certificates(dir: &Path) {
    openssl(
        dir,
        &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test CA"]
            .into_iter()
            .chain(["-keyout", "ca.key", "-out", "ca.crt"])
            .collect::<Vec<_>>(),
    );
    let subject = format!("/CN={SERVICE_HOST}");
    openssl(
        dir,
        &["req", "-newkey", "rsa:2048", "-nodes", "-subj", &subject, "-keyout", "tls.key", "-out", "tls.csr"],
    );
    std::fs::write(dir.join("san.ext"), format!("subjectAltName=DNS:{SERVICE_HOST}\n")).unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "tls.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "san.ext",
            "-out",
            "tls.crt",
        ],
    );
}

/// POSTs `review` to `path` of the webhook as the API server would: to the Service's name,
/// verifying the certificate against the CA.
fn post(port: u16, ca: &Path, path: &str, review: &Value) -> Value {
    let out = Command::new("curl")
        .args(["-sS", "--fail-with-body", "--max-time", "10", "--cacert"])
        .arg(ca)
        .arg("--connect-to")
        .arg(format!("{SERVICE_HOST}:443:127.0.0.1:{port}"))
        .args(["-H", "Content-Type: application/json", "-d", &review.to_string()])
        .arg(format!("https://{SERVICE_HOST}{path}"))
        .output()
        .expect("curl runs");
    assert!(
        out.status.success(),
        "{path}: {}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn review(uid: &str, resource: &str, group: &str, object: Value, old: Value) -> Value {
    let operation = if old.is_null() { "CREATE" } else { "UPDATE" };
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": uid, "operation": operation,
        "resource": {"group": group, "version": "v1beta1", "resource": resource},
        "object": object, "oldObject": old
    }})
}

fn restore(name: &str, vm: &str) -> Value {
    json!({"apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineRestore",
           "metadata": {"name": name, "namespace": "default"},
           "spec": {"target": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": vm},
                    "virtualMachineSnapshotName": "nightly"}})
}

/// The webhook process, killed on drop.
struct Webhook(std::process::Child);

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_webhook_of_the_deploy_manifest_answers_with_kubevirts_rules() {
    let cluster = vmsnap_testing::TestServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let (args, paths) = manifest();
    assert_eq!(
        paths,
        [
            "/virtualmachinesnapshots-validate",
            "/virtualmachinerestores-validate",
            "/virtualmachines-validate",
            "/virtualmachinesnapshotschedules-validate",
            "/virtualmachinebackuprepositories-validate",
            "/virtualmachinerepositorybackups-validate",
            "/virtualmachinerepositoryrestores-validate"
        ]
    );

    // The manifest's command line, with a local port and the test's certificate directory.
    let port = free_port();
    let mut line = args.clone();
    for (flag, value) in
        [("--listen", format!("127.0.0.1:{port}")), ("--tls-dir", dir.path().display().to_string())]
    {
        let at = line.iter().position(|a| a == flag).unwrap_or_else(|| panic!("no {flag} in {args:?}"));
        line[at + 1] = value;
    }
    let log = dir.path().join("webhook.log");
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new(vmsnap_binary())
        .args(&line)
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let _webhook = Webhook(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log).unwrap().contains("vmsnap webhook: serving") {
        assert!(
            Instant::now() < deadline,
            "vmsnap {line:?} did not start:\n{}",
            std::fs::read_to_string(&log).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ca = dir.path().join("ca.crt");

    // Snapshots: KubeVirt's answer to a snapshot of something that is not a VM.
    let snapshot = |kind: &str| {
        json!({"apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineSnapshot",
               "metadata": {"name": "s", "namespace": "default"},
               "spec": {"source": {"apiGroup": "kubevirt.io", "kind": kind, "name": "db"}}})
    };
    let denied = post(
        port,
        &ca,
        &paths[0],
        &review("u1", "virtualmachinesnapshots", "snapshot.kubevirt.io", snapshot("Pod"), Value::Null),
    );
    assert_eq!(denied["response"]["uid"], "u1");
    assert_eq!(denied["response"]["allowed"], false);
    assert_eq!(denied["response"]["status"]["code"], 422);
    assert_eq!(denied["response"]["status"]["message"], "invalid kind");
    let allowed = post(
        port,
        &ca,
        &paths[0],
        &review(
            "u2",
            "virtualmachinesnapshots",
            "snapshot.kubevirt.io",
            snapshot("VirtualMachine"),
            Value::Null,
        ),
    );
    assert_eq!(allowed["response"]["allowed"], true, "{allowed}");

    // Restores: looked up in the cluster, a second restore of a VM being restored is refused.
    let first = serde_norway::to_string(&restore("first", "db")).unwrap();
    cluster.kubectl().run_with_stdin(&["apply", "-f", "-"], Some(&first)).ok();
    let second = post(
        port,
        &ca,
        &paths[1],
        &review("u3", "virtualmachinerestores", "snapshot.kubevirt.io", restore("second", "db"), Value::Null),
    );
    assert_eq!(second["response"]["allowed"], false, "{second}");
    assert_eq!(second["response"]["status"]["message"], "VirtualMachineRestore \"first\" in progress");
    let other_vm = post(
        port,
        &ca,
        &paths[1],
        &review("u4", "virtualmachinerestores", "snapshot.kubevirt.io", restore("third", "web"), Value::Null),
    );
    assert_eq!(other_vm["response"]["allowed"], true, "{other_vm}");

    // VMs: an update of a VM with no snapshot in progress is allowed.
    let vm = json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
                    "metadata": {"name": "db", "namespace": "default"}, "spec": {"runStrategy": "Always"}});
    let update = post(port, &ca, &paths[2], &review("u5", "virtualmachines", "kubevirt.io", vm.clone(), vm));
    assert_eq!(update["response"]["allowed"], true, "{update}");

    // The backup kinds: each path of the manifest runs its kind's rules.
    let repository = json!({"apiVersion": "backup.vmsnap.io/v1alpha1", "kind": "VirtualMachineBackupRepository",
        "metadata": {"name": "main", "namespace": "default"},
        "spec": {"local": {"path": "relative/dir"}, "passphraseSecretRef": {"name": "main-passphrase"}}});
    let backup = json!({"apiVersion": "backup.vmsnap.io/v1alpha1", "kind": "VirtualMachineRepositoryBackup",
        "metadata": {"name": "b", "namespace": "default"},
        "spec": {"repository": "main", "deletionPolicy": "Orphan", "source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "db"}}});
    let restore = json!({"apiVersion": "backup.vmsnap.io/v1alpha1", "kind": "VirtualMachineRepositoryRestore",
        "metadata": {"name": "r", "namespace": "default"},
        "spec": {"backupName": "b", "target": {"apiGroup": "kubevirt.io", "kind": "VirtualMachineSnapshot", "name": "db"}}});
    let cases = [
        (&paths[4], "virtualmachinebackuprepositories", repository, "spec.local.path"),
        (&paths[5], "virtualmachinerepositorybackups", backup, "spec.deletionPolicy"),
        (&paths[6], "virtualmachinerepositoryrestores", restore, "spec.target.kind"),
    ];
    for (path, resource, object, field) in cases {
        let answer = post(port, &ca, path, &review("u6", resource, "backup.vmsnap.io", object, Value::Null));
        assert_eq!(answer["response"]["allowed"], false, "{answer}");
        assert_eq!(answer["response"]["status"]["details"]["causes"][0]["field"], field, "{answer}");
    }
}
