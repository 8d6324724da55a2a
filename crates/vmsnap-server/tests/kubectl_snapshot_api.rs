//! The real kubectl against the embedded API server: the snapshot workflow commands work unchanged,
//! with default (strict, server-side) validation.

use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use vmsnap_api::snapshot::VirtualMachineSnapshot;
use vmsnap_testing::TestServer;

const SNAPSHOT_V1BETA1: &str = "apiVersion: snapshot.kubevirt.io/v1beta1
kind: VirtualMachineSnapshot
metadata:
  name: my-vmsnapshot
spec:
  source:
    apiGroup: kubevirt.io
    kind: VirtualMachine
    name: my-vm
";

const SNAPSHOT_V1ALPHA1: &str = "apiVersion: snapshot.kubevirt.io/v1alpha1
kind: VirtualMachineSnapshot
metadata:
  name: alpha-snapshot
spec:
  source:
    apiGroup: kubevirt.io
    kind: VirtualMachine
    name: my-vm
";

#[tokio::test]
async fn kubectl_creates_lists_and_shows_snapshots_in_both_versions() {
    let server = TestServer::start().await.unwrap();
    let k = server.kubectl();
    let out = k.run_stdin_async(&["create", "-f", "-"], SNAPSHOT_V1BETA1).await;
    assert_eq!(out.ok().trim(), "virtualmachinesnapshot.snapshot.kubevirt.io/my-vmsnapshot created");
    k.run_stdin_async(&["create", "-f", "-"], SNAPSHOT_V1ALPHA1).await.ok();

    let table = k.run_async(&["get", "vmsnapshot"]).await;
    let lines: Vec<&str> = table.ok().lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["NAME", "SOURCEKIND", "SOURCENAME", "PHASE", "READYTOUSE", "CREATIONTIME", "ERROR"]);
    assert!(lines.iter().any(|l| l.starts_with("alpha-snapshot ") && l.contains("VirtualMachine   my-vm")));
    assert_eq!(lines.len(), 3);

    let yaml = k.run_async(&["get", "vmsnapshot", "my-vmsnapshot", "-o", "yaml"]).await;
    let obj: serde_json::Value = serde_norway::from_str(yaml.ok()).unwrap();
    assert_eq!(obj["apiVersion"], "snapshot.kubevirt.io/v1beta1");
    assert_eq!(obj["spec"]["source"]["name"], "my-vm");
    assert!(obj["metadata"]["uid"].as_str().is_some_and(|u| u.len() == 36));

    let alpha = k
        .run_async(&[
            "get",
            "virtualmachinesnapshots.v1alpha1.snapshot.kubevirt.io",
            "my-vmsnapshot",
            "-o",
            "jsonpath={.apiVersion}",
        ])
        .await;
    assert_eq!(alpha.ok(), "snapshot.kubevirt.io/v1alpha1");

    let all = k.run_async(&["get", "all"]).await;
    assert!(all.ok().contains("virtualmachinesnapshot.snapshot.kubevirt.io/my-vmsnapshot"));
    let restores = k.run_async(&["get", "vmrestore"]).await;
    assert!(restores.stderr.contains("No resources found in default namespace."), "{restores:?}");
}

#[tokio::test]
async fn kubectl_describe_shows_events_from_the_kube_recorder_format() {
    let server = TestServer::start().await.unwrap();
    let k = server.kubectl();
    k.run_stdin_async(&["create", "-f", "-"], SNAPSHOT_V1BETA1).await.ok();
    let client = server.client().await.unwrap();
    let snaps: Api<VirtualMachineSnapshot> = Api::namespaced(client.clone(), "default");
    let snap = snaps.get("my-vmsnapshot").await.unwrap();
    let events: Api<Event> = Api::namespaced(client, "default");
    let ev: Event = serde_json::from_value(json!({
        "metadata": {"name": "my-vmsnapshot.18a0"},
        "regarding": {"apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineSnapshot", "name": "my-vmsnapshot",
                      "namespace": "default", "uid": snap.metadata.uid},
        "note": "Successfully created VirtualMachineSnapshotContent vmsnapshot-content-x",
        "reason": "SuccessfulVirtualMachineSnapshotContentCreate", "type": "Normal", "action": "Create",
        "eventTime": "2026-11-25T03:25:00.000000Z", "reportingController": "snapshot-controller", "reportingInstance": "vmsnap"
    }))
    .unwrap();
    events.create(&PostParams::default(), &ev).await.unwrap();
    let out = k.run_async(&["describe", "vmsnapshot", "my-vmsnapshot"]).await;
    let text = out.ok();
    assert!(text.contains("Events:"), "{text}");
    assert!(text.contains("SuccessfulVirtualMachineSnapshotContentCreate"), "{text}");
    assert!(text.contains("snapshot-controller"), "{text}");
    assert!(
        text.contains("Successfully created VirtualMachineSnapshotContent vmsnapshot-content-x"),
        "{text}"
    );
}

#[tokio::test]
async fn kubectl_wait_returns_when_the_ready_condition_turns_true() {
    let server = TestServer::start().await.unwrap();
    let k = server.kubectl();
    k.run_stdin_async(&["create", "-f", "-"], SNAPSHOT_V1BETA1).await.ok();
    let waiter = {
        let k = k.clone();
        tokio::spawn(async move {
            k.run_async(&["wait", "vmsnapshot", "my-vmsnapshot", "--for", "condition=Ready", "--timeout=60s"])
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let snaps: Api<VirtualMachineSnapshot> = Api::namespaced(server.client().await.unwrap(), "default");
    let status = json!({"status": {"phase": "Succeeded", "readyToUse": true, "conditions": [
        {"type": "Ready", "status": "True", "reason": "Ready", "lastProbeTime": null, "lastTransitionTime": "2026-11-25T03:25:00Z"}
    ]}});
    snaps.patch_status("my-vmsnapshot", &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
    let out = waiter.await.unwrap();
    assert_eq!(out.ok().trim(), "virtualmachinesnapshot.snapshot.kubevirt.io/my-vmsnapshot condition met");
    let table = k.run_async(&["get", "vmsnapshot"]).await;
    assert!(table.ok().contains("Succeeded   true"), "{table:?}");
}

#[tokio::test]
async fn kubectl_delete_waits_for_finalizers_to_be_removed() {
    let server = TestServer::start().await.unwrap();
    let k = server.kubectl();
    k.run_stdin_async(&["create", "-f", "-"], SNAPSHOT_V1BETA1).await.ok();
    let snaps: Api<VirtualMachineSnapshot> = Api::namespaced(server.client().await.unwrap(), "default");
    let fin = json!({"metadata": {"finalizers": ["snapshot.kubevirt.io/vmsnapshot-protection"]}});
    snaps.patch("my-vmsnapshot", &PatchParams::default(), &Patch::Merge(&fin)).await.unwrap();
    let deleter = {
        let k = k.clone();
        tokio::spawn(
            async move { k.run_async(&["delete", "vmsnapshot", "my-vmsnapshot", "--timeout=60s"]).await },
        )
    };
    let deleting = vmsnap_testing::await_value(&snaps, "my-vmsnapshot", Duration::from_secs(30), |s| {
        s.metadata.deletion_timestamp.clone()
    })
    .await;
    assert!(deleting.is_ok());
    assert!(!deleter.is_finished(), "kubectl delete returned while a finalizer still held the object");
    snaps
        .patch(
            "my-vmsnapshot",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    let out = deleter.await.unwrap();
    assert_eq!(out.ok().trim(), "virtualmachinesnapshot.snapshot.kubevirt.io \"my-vmsnapshot\" deleted");
    assert!(snaps.get_opt("my-vmsnapshot").await.unwrap().is_none());
}

#[tokio::test]
async fn kubectl_apply_twice_server_side_apply_and_merge_patch() {
    let server = TestServer::start().await.unwrap();
    let k = server.kubectl();
    assert!(k.run_stdin_async(&["apply", "-f", "-"], SNAPSHOT_V1BETA1).await.ok().contains("created"));
    assert!(k.run_stdin_async(&["apply", "-f", "-"], SNAPSHOT_V1BETA1).await.ok().contains("unchanged"));
    let labelled = SNAPSHOT_V1BETA1
        .replace("  name: my-vmsnapshot\n", "  name: my-vmsnapshot\n  labels:\n    app: demo\n");
    assert!(k.run_stdin_async(&["apply", "-f", "-"], &labelled).await.ok().contains("configured"));
    let ssa = SNAPSHOT_V1BETA1.replace("my-vmsnapshot", "ssa-snapshot");
    assert!(
        k.run_stdin_async(&["apply", "--server-side", "-f", "-"], &ssa)
            .await
            .ok()
            .contains("serverside-applied")
    );
    assert!(
        k.run_stdin_async(&["apply", "--server-side", "-f", "-"], &ssa)
            .await
            .ok()
            .contains("serverside-applied")
    );
    let patched = k
        .run_async(&[
            "patch",
            "vmsnapshot",
            "ssa-snapshot",
            "--type",
            "merge",
            "-p",
            r#"{"metadata":{"labels":{"tier":"gold"}}}"#,
        ])
        .await;
    assert!(patched.ok().contains("patched"));
    let labels = k.run_async(&["get", "vmsnapshot", "-l", "tier=gold", "-o", "name"]).await;
    assert_eq!(labels.ok().trim(), "virtualmachinesnapshot.snapshot.kubevirt.io/ssa-snapshot");
    let demo = k.run_async(&["get", "vmsnapshot", "-l", "app in (demo)", "-o", "name"]).await;
    assert_eq!(demo.ok().trim(), "virtualmachinesnapshot.snapshot.kubevirt.io/my-vmsnapshot");
}

#[tokio::test]
async fn kubectl_api_resources_and_explain_use_discovery_and_openapi() {
    let server = TestServer::start().await.unwrap();
    let k = server.kubectl();
    let out = k.run_async(&["api-resources"]).await;
    let text = out.ok();
    let line = text.lines().find(|l| l.starts_with("virtualmachinesnapshots ")).expect("vmsnapshots listed");
    assert!(
        line.contains("vmsnapshot,vmsnapshots")
            && line.contains("snapshot.kubevirt.io/v1beta1")
            && line.contains("true")
    );
    assert!(text.lines().any(|l| l.starts_with("virtualmachinerestores ")));
    assert!(text.lines().any(|l| l.starts_with("volumesnapshots ")));
    let explain = k.run_async(&["explain", "vmsnapshot.spec"]).await;
    let text = explain.ok();
    assert!(text.contains("KIND:       VirtualMachineSnapshot"), "{text}");
    assert!(text.contains("source\t<Object> -required-"), "{text}");
    assert!(text.contains("failureDeadline"), "{text}");
}

#[tokio::test]
async fn kubectl_reports_bad_input_readably() {
    let server = TestServer::start().await.unwrap();
    let k = server.kubectl();
    k.run_stdin_async(&["create", "-f", "-"], SNAPSHOT_V1BETA1).await.ok();
    let unknown =
        SNAPSHOT_V1BETA1.replace("spec:\n", "spec:\n  bogus: 1\n").replace("my-vmsnapshot", "other");
    let err = k.run_stdin_async(&["create", "-f", "-"], &unknown).await;
    assert!(err.err().contains("unknown field \"spec.bogus\""), "{err:?}");
    let bad_name = SNAPSHOT_V1BETA1.replace("my-vmsnapshot", "Bad_Name");
    let err = k.run_stdin_async(&["create", "-f", "-"], &bad_name).await;
    assert!(err.err().contains("metadata.name: Invalid value: \"Bad_Name\""), "{err:?}");
    let change = k
        .run_async(&[
            "patch",
            "vmsnapshot",
            "my-vmsnapshot",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"source":{"name":"x"}}}"#,
        ])
        .await;
    assert!(change.err().contains("spec in immutable after creation"), "{change:?}");
    let smp = k
        .run_async(&["patch", "vmsnapshot", "my-vmsnapshot", "-p", r#"{"metadata":{"labels":{"a":"b"}}}"#])
        .await;
    assert!(smp.err().contains("application/strategic-merge-patch+json is not supported"), "{smp:?}");
    let dup = k.run_stdin_async(&["create", "-f", "-"], SNAPSHOT_V1BETA1).await;
    assert!(dup.err().contains("AlreadyExists"), "{dup:?}");
    let kind = SNAPSHOT_V1BETA1
        .replace("kind: VirtualMachine\n", "kind: Pod\n")
        .replace("my-vmsnapshot", "pod-snap");
    let denied = k.run_stdin_async(&["create", "-f", "-"], &kind).await;
    assert!(denied.err().contains("spec.source.kind: invalid kind"), "{denied:?}");
}

#[tokio::test]
async fn a_failure_deadline_in_seconds_is_kept_and_a_bad_one_is_refused_naming_the_field() {
    let server = TestServer::start().await.unwrap();
    let k = server.kubectl();
    let seconds = SNAPSHOT_V1BETA1.replace("spec:\n", "spec:\n  failureDeadline: 20\n");
    k.run_stdin_async(&["create", "-f", "-"], &seconds).await.ok();
    let client = server.client().await.unwrap();
    let snap = Api::<VirtualMachineSnapshot>::default_namespaced(client).get("my-vmsnapshot").await.unwrap();
    assert_eq!(snap.spec.failure_deadline.as_deref(), Some("20"));
    assert_eq!(
        vmsnap_api::duration::parse_deadline(snap.spec.failure_deadline.as_deref().unwrap()).unwrap(),
        Duration::from_secs(20)
    );
    for bad in ["soon", "\"-20\"", "-1m"] {
        let manifest = SNAPSHOT_V1BETA1
            .replace("spec:\n", &format!("spec:\n  failureDeadline: {bad}\n"))
            .replace("my-vmsnapshot", "bad-deadline");
        let err = k.run_stdin_async(&["create", "-f", "-"], &manifest).await;
        let shown = bad.trim_matches('"');
        assert!(
            err.err().contains(&format!("spec.failureDeadline: invalid failureDeadline \"{shown}\"")),
            "{bad}: {err:?}"
        );
    }
}

#[tokio::test]
async fn an_admission_error_answer_is_a_400_without_causes_as_kubevirts_webhook_gives_it() {
    let server = TestServer::start().await.unwrap();
    let k = server.kubectl();
    k.run_stdin_async(&["create", "-f", "-"], SNAPSHOT_V1BETA1).await.ok();
    let client = server.client().await.unwrap();
    let snaps = Api::<VirtualMachineSnapshot>::default_namespaced(client.clone());
    let status = json!({"status": {"virtualMachineSnapshotContentName": "gone", "sourceUID": "other-uid"}});
    snaps.patch_status("my-vmsnapshot", &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
    let restore: vmsnap_api::snapshot::VirtualMachineRestore = serde_json::from_value(json!({
        "apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineRestore",
        "metadata": {"name": "r"},
        "spec": {"target": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "new-vm"},
                 "virtualMachineSnapshotName": "my-vmsnapshot"}
    }))
    .unwrap();
    let err = Api::<vmsnap_api::snapshot::VirtualMachineRestore>::default_namespaced(client)
        .create(&PostParams::default(), &restore)
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else { panic!("{err:?}") };
    assert_eq!(status.code, 400, "{status:?}");
    assert!(status.message.contains("not found"), "{status:?}");
}
