//! Context "[storage-req]": a snapshot created before its VM, and Context "with independent
//! DataVolume".

use serde_json::json;

use super::online::create_deny_volume_snapshot_create_webhook;
use crate::kubevirt_support::guest::Image;
use crate::kubevirt_support::libstorage::*;
use crate::kubevirt_support::libvmi::*;
use crate::kubevirt_support::*;

/// "snapshot create before source wait for volume bound, then continues and succeeds"
#[tokio::test(flavor = "multi_thread")]
async fn snapshot_create_before_source_wait_for_volume_bound_then_continues_and_succeeds() {
    let Some(cluster) = Cluster::start().await else { return };
    // Stand alone dv
    let dv = blank_data_volume(Some("16Mi"));
    let dv = cluster.create(DV, &dv.0).await;
    // DV for datavolumetemplate
    let dv2 = DataVolume::new()
        .with_namespace(TEST_NAMESPACE)
        .with_import_source(&Image::Alpine.import_url(&cluster))
        .with_storage(SNAPSHOT_STORAGE_CLASS, Some(Image::Alpine.volume_size()));
    let vmi = Vmi::new()
        .with_data_volume("disk0", &name_of(&dv))
        .with_data_volume("disk1", &dv2.name())
        .with_memory_request("128Mi")
        .without_guest_agent();
    let vm = with_run_strategy(with_data_volume_template(new_virtual_machine(vmi), &dv2.0), "Halted");
    let vm_name = name_of(&vm);

    // "Create Snapshot before source VM"
    let webhook = create_deny_volume_snapshot_create_webhook(&cluster, &vm_name).await;
    let snapshot = cluster.create(SNAPSHOT, &new_snapshot(&vm_name)).await;
    let snapshot_name = name_of(&snapshot);

    // "Wait Snapshot conditions to reflect source doesnt exist"
    eventually("the snapshot to wait for its source", secs(30), POLL, async || {
        let snapshot = cluster.get(SNAPSHOT, &snapshot_name).await;
        let waiting = has_condition(&snapshot, "Progressing", "False", Some("Source does not exist"))
            && has_condition(&snapshot, "Ready", "False", None)
            && snapshot["status"]["phase"] == "InProgress";
        if waiting { Ok(()) } else { Err(status_of(&snapshot)) }
    })
    .await;

    // "Create offline VM" (the StorageClass binds immediately: no wait for a first consumer).
    let vm = cluster.create(VM, &vm).await;
    let snapshot = eventually("the snapshot to lock its source", secs(120), POLL, async || {
        let snapshot = cluster.get(SNAPSHOT, &snapshot_name).await;
        let locked = has_condition(&snapshot, "Ready", "False", None)
            && has_condition(
                &snapshot,
                "Progressing",
                "True",
                Some("Source locked and operation in progress"),
            )
            && snapshot["status"]["phase"] == "InProgress";
        if locked { Ok(snapshot) } else { Err(status_of(&snapshot)) }
    })
    .await;
    let updated = cluster.get(VM, &vm_name).await;
    assert_eq!(updated["status"]["snapshotInProgress"], json!(snapshot_name), "{:#}", updated["status"]);
    assert!(snapshot["status"]["creationTime"].is_null(), "{snapshot:#}");

    expect_event(
        &cluster,
        "VirtualMachineSnapshot",
        &snapshot_name,
        "Normal",
        "SuccessfulVirtualMachineSnapshotContentCreate",
    )
    .await;
    let content_name = format!("vmsnapshot-content-{}", uid_of(&snapshot));
    let content = cluster.get(CONTENT, &content_name).await;
    assert!(content["status"].is_null(), "the content has no status yet: {content:#}");

    cluster.delete(WEBHOOK, &webhook).await;
    let snapshot = wait_snapshot_succeeded(&cluster, &snapshot_name).await;
    assert!(snapshot["status"]["creationTime"].is_string(), "{snapshot:#}");
    assert_eq!(items(&snapshot["status"]["snapshotVolumes"]["includedVolumes"]).len(), 2, "{snapshot:#}");
    let content = cluster.get(CONTENT, &content_name).await;
    assert_eq!(content["spec"]["virtualMachineSnapshotName"], json!(snapshot_name));
    assert_json_eq(
        &content["spec"]["source"]["virtualMachine"]["spec"],
        &vm["spec"],
        "the content's source VM spec",
    );
    let volumes = items(&vm["spec"]["template"]["spec"]["volumes"]);
    assert_eq!(items(&content["spec"]["volumeBackups"]).len(), volumes.len(), "{content:#}");
}

/// How the VM refers to its independent DataVolume (the table's `storageOptFun`).
#[derive(Clone, Copy)]
enum Reference {
    DataVolume,
    PersistentVolumeClaim,
}

/// `DescribeTable("should accurately report DataVolume provisioning", ...)`.
async fn should_accurately_report_data_volume_provisioning(reference: Reference, memory: &str) {
    let Some(cluster) = Cluster::start().await else { return };
    let dv = DataVolume::new()
        .with_import_source(&Image::Alpine.import_url(&cluster))
        .with_storage(SNAPSHOT_STORAGE_CLASS, None);
    let vmi = Vmi::new().with_masquerade_networking().with_memory_request(memory).without_guest_agent();
    let vmi = match reference {
        Reference::DataVolume => vmi.with_data_volume("disk0", &dv.name()),
        Reference::PersistentVolumeClaim => vmi.with_persistent_volume_claim("disk0", &dv.name()),
    };
    let vm = cluster.create(VM, &new_virtual_machine(vmi)).await;
    let name = name_of(&vm);
    let wait_enabled = async |enabled: bool| {
        eventually(
            &format!("the volume's snapshot status to be enabled={enabled}"),
            secs(180),
            POLL,
            async || {
                let statuses = items(&cluster.get(VM, &name).await["status"]["volumeSnapshotStatuses"]);
                if statuses.len() == 1 && statuses[0]["enabled"] == enabled {
                    Ok(())
                } else {
                    Err(format!("{statuses:?}"))
                }
            },
        )
        .await
    };
    wait_enabled(false).await;
    cluster.create(DV, &dv.0).await;
    wait_enabled(true).await;
}

/// "should accurately report DataVolume provisioning" / Entry "with DataVolume volume"
#[tokio::test(flavor = "multi_thread")]
async fn should_accurately_report_data_volume_provisioning_with_data_volume_volume() {
    should_accurately_report_data_volume_provisioning(Reference::DataVolume, "1Gi").await;
}

/// "should accurately report DataVolume provisioning" / Entry "with PVC volume"
#[tokio::test(flavor = "multi_thread")]
async fn should_accurately_report_data_volume_provisioning_with_pvc_volume() {
    should_accurately_report_data_volume_provisioning(Reference::PersistentVolumeClaim, "128Mi").await;
}
