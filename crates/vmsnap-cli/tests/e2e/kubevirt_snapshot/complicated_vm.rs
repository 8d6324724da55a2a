//! Context "[storage-req]" / "With more complicated VM": a stopped VM that boots from a
//! DataVolume template importing Alpine.

use serde_json::{Value, json};

use super::online::{check_volume_backups, create_deny_volume_snapshot_create_webhook};
use crate::kubevirt_support::guest::Image;
use crate::kubevirt_support::libstorage::*;
use crate::kubevirt_support::libvmi::*;
use crate::kubevirt_support::*;

/// The `BeforeEach`: the VM created stopped (the StorageClass binds immediately), its
/// DataVolumes populated.
async fn complicated_vm() -> Option<(Cluster, Value)> {
    let cluster = Cluster::start().await?;
    let url = Image::Alpine.import_url(&cluster);
    let vm = render_vm_with_registry_import_data_volume(&url, Image::Alpine);
    let vm = with_run_strategy(vm, "Halted");
    let vm = cluster.create(VM, &vm).await;
    for template in items(&vm["spec"]["dataVolumeTemplates"]) {
        wait_data_volume_populated(&cluster, &name_of(&template)).await;
    }
    Some((cluster, vm))
}

async fn snapshot_and_wait(cluster: &Cluster, vm: &str) -> Value {
    cluster.create(SNAPSHOT, &new_snapshot(vm)).await;
    wait_snapshot_succeeded(cluster, &format!("snapshot-{vm}")).await
}

/// "[test_id:4611] should successfully create a snapshot"
#[tokio::test(flavor = "multi_thread")]
async fn test_id_4611_should_successfully_create_a_snapshot() {
    let Some((cluster, vm)) = complicated_vm().await else { return };
    let snapshot = snapshot_and_wait(&cluster, &name_of(&vm)).await;
    assert!(snapshot["status"]["creationTime"].is_string(), "{snapshot:#}");
    let content_name = snapshot["status"]["virtualMachineSnapshotContentName"].as_str().expect("a content");
    let content = cluster.get(CONTENT, content_name).await;
    assert_eq!(content["spec"]["virtualMachineSnapshotName"], snapshot["metadata"]["name"]);
    assert_json_eq(
        &content["spec"]["source"]["virtualMachine"]["spec"],
        &vm["spec"],
        "the content's source VM spec",
    );
    let backups = items(&content["spec"]["volumeBackups"]);
    assert_eq!(backups.len(), items(&vm["spec"]["dataVolumeTemplates"]).len(), "{content:#}");
    check_volume_backups(&cluster, &vm, &backups, true).await;
}

/// Conditions without their times (`clearConditionsTimestamps`).
fn without_times(conditions: &Value) -> Vec<Value> {
    items(conditions)
        .into_iter()
        .map(|mut c| {
            c["lastProbeTime"] = Value::Null;
            c["lastTransitionTime"] = Value::Null;
            c
        })
        .collect()
}

/// "should successfully recreate status"
#[tokio::test(flavor = "multi_thread")]
async fn should_successfully_recreate_status() {
    let Some((cluster, vm)) = complicated_vm().await else { return };
    let name = format!("snapshot-{}", name_of(&vm));
    snapshot_and_wait(&cluster, &name_of(&vm)).await;
    let mut snapshot = cluster.get(SNAPSHOT, &name).await;
    let original = snapshot["status"].clone();
    snapshot.as_object_mut().expect("an object").remove("status");
    let updated = cluster.try_update_status(SNAPSHOT, &snapshot).await.expect("UpdateStatus");
    assert!(updated["status"].is_null(), "the status is gone: {updated:#}");

    eventually("the status to be recreated", secs(180), POLL, async || {
        let snapshot = cluster.get(SNAPSHOT, &name).await;
        let status = &snapshot["status"];
        let same = !status.is_null()
            && status["sourceUID"] == original["sourceUID"]
            && status["virtualMachineSnapshotContentName"] == original["virtualMachineSnapshotContentName"]
            && status["creationTime"] == original["creationTime"]
            && status["phase"] == original["phase"]
            && status["readyToUse"] == original["readyToUse"]
            && without_times(&status["conditions"]) == without_times(&original["conditions"])
            && items(&status["indications"]) == items(&original["indications"]);
        if same { Ok(()) } else { Err(format!("{status:#} (was {original:#})")) }
    })
    .await;
}

/// "VM should contain snapshot status for all volumes"
#[tokio::test(flavor = "multi_thread")]
async fn vm_should_contain_snapshot_status_for_all_volumes() {
    let Some((cluster, vm)) = complicated_vm().await else { return };
    let name = name_of(&vm);
    let volumes = items(&vm["spec"]["template"]["spec"]["volumes"]).len();
    eventually("a snapshot status per volume", secs(180), POLL, async || {
        let statuses = items(&cluster.get(VM, &name).await["status"]["volumeSnapshotStatuses"]);
        if statuses.len() == volumes { Ok(()) } else { Err(format!("{statuses:?}")) }
    })
    .await;
    eventually("every volume can be snapshotted", secs(180), POLL, async || {
        let statuses = items(&cluster.get(VM, &name).await["status"]["volumeSnapshotStatuses"]);
        if statuses.len() == 1 && statuses[0]["enabled"] == true {
            Ok(())
        } else {
            Err(format!("{statuses:?}"))
        }
    })
    .await;
}

/// The single volume backup of the snapshot's content.
async fn single_volume_backup(cluster: &Cluster, snapshot: &Value) -> (String, Value) {
    let content_name =
        snapshot["status"]["virtualMachineSnapshotContentName"].as_str().expect("a content").to_owned();
    let content = cluster.get(CONTENT, &content_name).await;
    let backups = items(&content["spec"]["volumeBackups"]);
    assert_eq!(backups.len(), 1, "{content:#}");
    assert!(backups[0]["volumeSnapshotName"].is_string(), "{content:#}");
    (content_name, backups[0].clone())
}

/// "should error if VolumeSnapshot deleted"
#[tokio::test(flavor = "multi_thread")]
async fn should_error_if_volume_snapshot_deleted() {
    let Some((cluster, vm)) = complicated_vm().await else { return };
    let snapshot = snapshot_and_wait(&cluster, &name_of(&vm)).await;
    let (_, backup) = single_volume_backup(&cluster, &snapshot).await;
    let volume_snapshot = backup["volumeSnapshotName"].as_str().expect("a name");
    cluster.delete(VOLUME_SNAPSHOT, volume_snapshot).await;

    let name = name_of(&snapshot);
    let snapshot = eventually("the snapshot to be no longer ready", secs(180), POLL, async || {
        let snapshot = cluster.get(SNAPSHOT, &name).await;
        if snapshot["status"]["readyToUse"] == false { Ok(snapshot) } else { Err(status_of(&snapshot)) }
    })
    .await;
    let expected = format!("VolumeSnapshots ({volume_snapshot}) missing");
    assert_eq!(snapshot["status"]["error"]["message"], json!(expected), "{snapshot:#}");
}

/// "should not error if VolumeSnapshot has error"
#[tokio::test(flavor = "multi_thread")]
async fn should_not_error_if_volume_snapshot_has_error() {
    let Some((cluster, vm)) = complicated_vm().await else { return };
    let snapshot = snapshot_and_wait(&cluster, &name_of(&vm)).await;
    let (content_name, backup) = single_volume_backup(&cluster, &snapshot).await;
    let volume_snapshot = backup["volumeSnapshotName"].as_str().expect("a name");

    let message = "bad stuff";
    eventually("the VolumeSnapshot's status to take an error", secs(180), POLL, async || {
        let mut object = cluster.get(VOLUME_SNAPSHOT, volume_snapshot).await;
        // Any time will do (`metav1.Now()` in the original): the object's own creation time.
        let time = object["metadata"]["creationTimestamp"].clone();
        object["status"]["error"] = json!({"time": time, "message": message});
        match cluster.try_update_status(VOLUME_SNAPSHOT, &object).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_conflict() => Err(e.to_string()),
            Err(e) => panic!("UpdateStatus of {volume_snapshot}: {e}"),
        }
    })
    .await;

    eventually("the content to report the VolumeSnapshot's error", secs(180), POLL, async || {
        let content = cluster.get(CONTENT, &content_name).await;
        let status = &content["status"];
        let reported =
            items(&status["volumeSnapshotStatus"]).iter().any(|s| s["error"]["message"] == message);
        if reported && status["error"].is_null() && status["readyToUse"] == true {
            Ok(())
        } else {
            Err(format!("{status:#}"))
        }
    })
    .await;
    let snapshot = cluster.get(SNAPSHOT, &name_of(&snapshot)).await;
    assert!(snapshot["status"]["error"].is_null(), "{snapshot:#}");
    assert_eq!(snapshot["status"]["readyToUse"], true, "{snapshot:#}");
}

/// "[test_id:6838]snapshot should fail when deadline exceeded due to volume snapshots failure"
#[tokio::test(flavor = "multi_thread")]
async fn test_id_6838_snapshot_should_fail_when_deadline_exceeded_due_to_volume_snapshots_failure() {
    let Some((cluster, vm)) = complicated_vm().await else { return };
    let name = name_of(&vm);
    let webhook = create_deny_volume_snapshot_create_webhook(&cluster, &name).await;
    let mut snapshot = new_snapshot(&name);
    snapshot["spec"]["failureDeadline"] = json!("40s");
    let snapshot = cluster.create(SNAPSHOT, &snapshot).await;
    // KubeVirt names the content after the snapshot it built locally, whose UID is still empty
    // there; the content it means is the created snapshot's.
    let content_name = format!("vmsnapshot-content-{}", uid_of(&snapshot));
    let snapshot_name = name_of(&snapshot);

    let snapshot =
        eventually("the snapshot to fail on its deadline, without a content", secs(60), POLL, async || {
            let snapshot = cluster.get(SNAPSHOT, &snapshot_name).await;
            if let Some(content) = cluster.get_opt(CONTENT, &content_name).await {
                return Err(format!("the content exists: {content:#}"));
            }
            let failed = has_condition(&snapshot, "Ready", "False", None)
                && has_condition(&snapshot, "Progressing", "False", Some("Operation failed"))
                && has_condition(&snapshot, "Failure", "True", Some("snapshot deadline exceeded"))
                && snapshot["status"]["phase"] == "Failed";
            if failed { Ok(snapshot) } else { Err(status_of(&snapshot)) }
        })
        .await;
    eventually("SnapshotInProgress should be empty", secs(30), POLL, async || {
        let vm = cluster.get(VM, &name).await;
        let unlocked = vm["status"]["snapshotInProgress"].is_null()
            && vm["metadata"]["finalizers"] == json!(["kubevirt.io/virtualMachineControllerFinalizer"]);
        if unlocked { Ok(()) } else { Err(format!("{:#} {:#}", vm["metadata"]["finalizers"], vm["status"])) }
    })
    .await;
    assert!(snapshot["status"]["creationTime"].is_null(), "{snapshot:#}");
    cluster.delete(WEBHOOK, &webhook).await;
}
