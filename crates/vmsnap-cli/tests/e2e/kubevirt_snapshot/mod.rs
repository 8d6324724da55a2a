//! Port of KubeVirt's `tests/storage/snapshot.go` ("VirtualMachineSnapshot Tests"): one test per
//! `It` and per `DescribeTable` entry, named after it, asserting the same fields and strings.
//! The `It`s that need what vmsnap does not offer (instancetypes, memory dumps, persistent TPM)
//! are listed in `docs/compatibility.md` instead.
//!
//! KubeVirt's guests are mapped to vmsnap's test guest as `kubevirt_support::guest` says; where
//! the original logs in on the console, so does the port.

mod complicated_vm;
mod online;
mod simple_vm;
mod storage_req;

use serde_json::Value;

use crate::kubevirt_support::{Api, CONTENT, assert_json_eq, items};

/// The name of the content of a snapshot (`status.virtualMachineSnapshotContentName`).
pub fn content_name_of(snapshot: &Value) -> String {
    snapshot["status"]["virtualMachineSnapshotContentName"].as_str().expect("a content name").to_owned()
}

/// `checkOnlineSnapshotExpectedContentSource` on the content the snapshot names: the content
/// names the snapshot, its source VM is `vm` with the volumes and disks the content recorded, it
/// has a UID, and it backs up every DataVolume template (or nothing).
pub async fn check_online_snapshot_expected_content_source(
    api: &Api,
    vm: &Value,
    snapshot: &Value,
    expect_volume_backups: bool,
) {
    let content = api.get(CONTENT, &content_name_of(snapshot)).await;
    let source = &content["spec"]["source"]["virtualMachine"];
    let mut vm = vm.clone();
    vm["spec"]["template"]["spec"]["volumes"] = source["spec"]["template"]["spec"]["volumes"].clone();
    vm["spec"]["template"]["spec"]["domain"]["devices"]["disks"] =
        source["spec"]["template"]["spec"]["domain"]["devices"]["disks"].clone();
    assert_eq!(content["spec"]["virtualMachineSnapshotName"], snapshot["metadata"]["name"], "{content:#}");
    assert_json_eq(&source["spec"], &vm["spec"], "the content's source VM spec is the VM's");
    assert!(source["metadata"]["uid"].as_str().is_some_and(|u| !u.is_empty()), "{content:#}");
    let backups = items(&content["spec"]["volumeBackups"]);
    if expect_volume_backups {
        let templates = items(&vm["spec"]["dataVolumeTemplates"]);
        assert_eq!(backups.len(), templates.len(), "one volume backup per DataVolume template: {content:#}");
    } else {
        assert!(backups.is_empty(), "no volume backups: {content:#}");
    }
}
