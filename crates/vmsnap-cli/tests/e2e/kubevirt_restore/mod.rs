//! Port of KubeVirt's `tests/storage/restore.go` ("VirtualMachineRestore Tests"): one test per
//! `It` and per `DescribeTable` entry, named after it, asserting the same fields and strings.
//! The `It`s that need what vmsnap does not offer (instancetypes, memory dumps, persistent TPM,
//! VirtualMachineClone, a provisioner that rounds sizes up) are listed in
//! `docs/compatibility.md` instead.

mod boot_sources;
mod cross_namespace_clone;
mod flows;
mod online;
mod simple_vm;
mod volume_policies;

use serde_json::{Value, json};

pub use crate::kubevirt_support::items;
use crate::kubevirt_support::libstorage::{
    has_condition_missing_or_false, has_condition_true, status_of, wait_vmi_phase,
};
use crate::kubevirt_support::libvmi::name_of;
use crate::kubevirt_support::{Api, Cluster, DV, POLL, RESTORE, SNAPSHOT, VM, VMI, eventually, secs};
use crate::support::BOOT_TIMEOUT;

/// `createRestoreDef`: `restore-<vm>` of `snapshot` onto VM `vm`.
pub fn create_restore_def(vm: &str, snapshot: &str) -> Value {
    json!({
        "apiVersion": "snapshot.kubevirt.io/v1beta1",
        "kind": "VirtualMachineRestore",
        "metadata": {"name": format!("restore-{vm}")},
        "spec": {
            "target": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": vm},
            "virtualMachineSnapshotName": snapshot
        }
    })
}

/// `createSnapshot`: `snapshot-<vm>`, once ready and the VM no longer locked by it.
pub async fn create_snapshot(api: &Api, vm: &Value) -> Value {
    let vm_name = name_of(vm);
    let name = format!("snapshot-{vm_name}");
    api.create(
        SNAPSHOT,
        &json!({
            "metadata": {"name": name},
            "spec": {"source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": vm_name}}
        }),
    )
    .await;
    eventually(&format!("snapshot {name} to be ready"), secs(180), POLL, async || {
        let snapshot = api.get(SNAPSHOT, &name).await;
        let vm = api.get(VM, &vm_name).await;
        if snapshot["status"]["readyToUse"] == true && vm["status"]["snapshotInProgress"].is_null() {
            Ok(snapshot)
        } else {
            Err(format!("{} / VM: {}", status_of(&snapshot), status_of(&vm)))
        }
    })
    .await
}

/// restore.go's `createAndStartVM`: `runStrategy: Always`, a grace period of 10 s, created, and
/// its VMI running. Fails at once if one of its DataVolumes failed (KubeVirt would wait out its
/// 360 s for a VMI that cannot start).
pub async fn create_and_start_vm(cluster: &Cluster, mut vm: Value) -> (Value, Value) {
    vm["spec"]["runStrategy"] = json!("Always");
    vm["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = json!(10);
    let vm = cluster.create(VM, &vm).await;
    let name = name_of(&vm);
    let volumes = items(&vm["spec"]["template"]["spec"]["volumes"]);
    eventually(&format!("VMI {name} to run"), BOOT_TIMEOUT, POLL, async || {
        for dv in volumes.iter().filter_map(|v| v["dataVolume"]["name"].as_str()) {
            if let Some(dv) = cluster.get_opt(DV, dv).await
                && dv["status"]["phase"] == "Failed"
            {
                panic!("DataVolume {} of VM {name} failed: {}", name_of(&dv), status_of(&dv));
            }
        }
        match cluster.get_opt(VMI, &name).await {
            Some(vmi) if vmi["status"]["phase"] == "Running" => Ok(()),
            Some(vmi) => Err(status_of(&vmi)),
            None => Err(format!(
                "no VMI; the VM: {}; warnings: {}",
                status_of(&cluster.get(VM, &name).await),
                crate::kubevirt_support::libstorage::warnings(cluster).await
            )),
        }
    })
    .await;
    let vmi = wait_vmi_phase(cluster, &name, "Running", secs(1)).await;
    (cluster.get(VM, &name).await, vmi)
}

/// `waitRestoreComplete`: complete within 180 s, owned by the target VM (with `vm_uid` when
/// known), with a restore time and exactly two conditions: not Progressing, Ready.
pub async fn wait_restore_complete(api: &Api, restore: &str, vm_name: &str, vm_uid: Option<&str>) -> Value {
    let r = eventually(&format!("restore {restore} to complete"), secs(180), POLL, async || {
        let r = api.get(RESTORE, restore).await;
        if r["status"]["complete"] == true { Ok(r) } else { Err(status_of(&r)) }
    })
    .await;
    let owners = items(&r["metadata"]["ownerReferences"]);
    assert_eq!(owners.len(), 1, "one owner: {r:#}");
    assert_eq!(owners[0]["apiVersion"], "kubevirt.io/v1", "{r:#}");
    assert_eq!(owners[0]["kind"], "VirtualMachine", "{r:#}");
    assert_eq!(owners[0]["name"], vm_name, "{r:#}");
    if let Some(uid) = vm_uid {
        assert_eq!(owners[0]["uid"], uid, "{r:#}");
    }
    assert!(!r["status"]["restoreTime"].is_null(), "{r:#}");
    assert_eq!(items(&r["status"]["conditions"]).len(), 2, "{r:#}");
    assert!(has_condition_missing_or_false(&r, "Progressing"), "{r:#}");
    assert!(has_condition_true(&r, "Ready"), "{r:#}");
    r
}

/// `deleteRestore`: deleted, and gone within 30 s.
pub async fn delete_restore(api: &Api, restore: &str) {
    api.delete(RESTORE, restore).await;
    eventually(&format!("restore {restore} to be gone"), secs(30), POLL, async || {
        match api.get_opt(RESTORE, restore).await {
            None => Ok(()),
            Some(r) => Err(format!("{:#}", r["metadata"])),
        }
    })
    .await;
}

/// `getMacAddressCloningPatch`: without KubeMacPool (no MAC in the source VM), a fixed MAC.
pub fn mac_address_cloning_patch(source_vm: &Value) -> String {
    let interfaces = items(&source_vm["spec"]["template"]["spec"]["domain"]["devices"]["interfaces"]);
    assert!(!interfaces.is_empty(), "the source VM has interfaces: {source_vm:#}");
    let mac = if interfaces[0]["macAddress"].as_str().unwrap_or_default().is_empty() {
        "DE-AD-00-00-BE-AF"
    } else {
        ""
    };
    format!(
        r#"{{"op": "replace", "path": "/spec/template/spec/domain/devices/interfaces/0/macAddress", "value": "{mac}"}}"#
    )
}

/// `createRestoreDefWithMacAddressPatch`: to another VM, with the MAC address patch.
pub fn create_restore_def_with_mac_address_patch(source_vm: &Value, vm: &str, snapshot: &str) -> Value {
    let mut restore = create_restore_def(vm, snapshot);
    if vm != name_of(source_vm) {
        restore["spec"]["patches"] = json!([mac_address_cloning_patch(source_vm)]);
    }
    restore
}

/// `expectNewVMCreation`: the VM appears within 90 s.
pub async fn expect_new_vm_creation(api: &Api, name: &str) -> Value {
    eventually(&format!("new VM ({name}) is not being created"), secs(90), POLL, async || {
        match api.get_opt(VM, name).await {
            Some(vm) => Ok(vm),
            // What the restores say, for the failure message.
            None => Err(api.list(RESTORE, "", "").await.iter().map(status_of).collect::<Vec<_>>().join("\n")),
        }
    })
    .await
}
