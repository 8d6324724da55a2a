//! The waits and checks KubeVirt's tests share (`tests/libstorage`, `tests/libvmops`,
//! `tests/events`, `tests/framework/matcher`), with their timeouts.

use std::time::Duration;

use serde_json::{Value, json};

use super::libvmi::{blank_data_volume, name_of};
use super::{Api, Cluster, DV, EVENT, POLL, VM, VMI, eventually, items, rand_string, secs};
use crate::support::BOOT_TIMEOUT;

/// `libstorage.NewSnapshot(vm, ns)`: a VirtualMachineSnapshot named `snapshot-<vm>`.
pub fn new_snapshot(vm: &str) -> Value {
    json!({
        "apiVersion": "snapshot.kubevirt.io/v1beta1",
        "kind": "VirtualMachineSnapshot",
        "metadata": {"name": format!("snapshot-{vm}")},
        "spec": {"source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": vm}}
    })
}

/// The condition `kind` of an object.
pub fn condition<'a>(object: &'a Value, kind: &str) -> Option<&'a Value> {
    object["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == kind)
}

/// `matcher.HaveConditionTrue`.
pub fn has_condition_true(object: &Value, kind: &str) -> bool {
    condition(object, kind).is_some_and(|c| c["status"] == "True")
}

/// `matcher.HaveConditionMissingOrFalse`.
pub fn has_condition_missing_or_false(object: &Value, kind: &str) -> bool {
    condition(object, kind).is_none_or(|c| c["status"] == "False")
}

/// Whether the conditions include one of `kind` with `status` and, if given, `reason`
/// (`gstruct.MatchFields(IgnoreExtras, {Type, Status, Reason})` in `ContainElements`).
pub fn has_condition(object: &Value, kind: &str, status: &str, reason: Option<&str>) -> bool {
    object["status"]["conditions"].as_array().is_some_and(|list| {
        list.iter()
            .any(|c| c["type"] == kind && c["status"] == status && reason.is_none_or(|r| c["reason"] == r))
    })
}

/// The `status` of an object, pretty, for failure messages.
pub fn status_of(object: &Value) -> String {
    serde_json::to_string_pretty(&object["status"]).unwrap_or_default()
}

/// `libstorage.WaitSnapshotSucceeded`: ready to use, `Ready=True (Ready)` and
/// `Progressing=False (Operation complete)`, within 180 s.
pub async fn wait_snapshot_succeeded(api: &Api, name: &str) -> Value {
    eventually(&format!("snapshot {name} to succeed"), secs(180), POLL, async || {
        let snapshot = api.get(super::SNAPSHOT, name).await;
        let done = snapshot["status"]["readyToUse"] == true
            && has_condition(&snapshot, "Ready", "True", Some("Ready"))
            && has_condition(&snapshot, "Progressing", "False", Some("Operation complete"));
        if done { Ok(snapshot) } else { Err(status_of(&snapshot)) }
    })
    .await
}

/// The VMI of `vm`, once its phase is `phase` (`Eventually(ThisVMIWith(ns, name)).Should(BeInPhase)`).
pub async fn wait_vmi_phase(api: &Api, vm: &str, phase: &str, timeout: Duration) -> Value {
    eventually(&format!("VMI {vm} to be {phase}"), timeout, POLL, async || match api.get_opt(VMI, vm).await {
        Some(vmi) if vmi["status"]["phase"] == phase => Ok(vmi),
        Some(vmi) => Err(status_of(&vmi)),
        None => Err("no VMI".into()),
    })
    .await
}

/// Creates `vm` with `runStrategy: Always` and waits for its VMI to run (the `createAndStartVM`
/// of snapshot.go; restore.go's also sets a grace period of 10 s). Returns the VM as created and
/// the running VMI.
pub async fn create_and_start_vm(
    cluster: &Cluster,
    mut vm: Value,
    grace_period: Option<i64>,
) -> (Value, Value) {
    vm["spec"]["runStrategy"] = json!("Always");
    if let Some(seconds) = grace_period {
        vm["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = json!(seconds);
    }
    let vm = cluster.create(VM, &vm).await;
    let name = super::libvmi::name_of(&vm);
    let vmi = wait_vmi_phase(cluster, &name, "Running", BOOT_TIMEOUT).await;
    (vm, vmi)
}

/// `Eventually(ThisVMI(vmi), timeout).Should(HaveConditionTrue(AgentConnected))`.
pub async fn wait_agent_connected(api: &Api, vm: &str) -> Value {
    eventually(&format!("the guest agent of {vm}"), BOOT_TIMEOUT, POLL, async || {
        let vmi = api.get(VMI, vm).await;
        if has_condition_true(&vmi, "AgentConnected") { Ok(vmi) } else { Err(status_of(&vmi)) }
    })
    .await
}

/// `libvmops.StartVirtualMachine`: the start subresource, the VMI exists, the VM is ready.
pub async fn start_virtual_machine(api: &Api, vm: &str) -> Value {
    api.start_vm(vm).await.unwrap_or_else(|e| panic!("start VM {vm}: {e}"));
    eventually(&format!("VMI {vm} to exist"), BOOT_TIMEOUT, POLL, async || {
        match api.get_opt(VMI, vm).await {
            Some(_) => Ok(()),
            None => Err(format!(
                "no VMI; the VM: {}; warnings: {}",
                status_of(&api.get(VM, vm).await),
                warnings(api).await
            )),
        }
    })
    .await;
    eventually(&format!("VM {vm} to be ready"), BOOT_TIMEOUT, POLL, async || {
        let object = api.get(VM, vm).await;
        if object["status"]["ready"] == true { Ok(()) } else { Err(status_of(&object)) }
    })
    .await;
    api.get(VM, vm).await
}

/// The messages of the namespace's Warning events, for failure messages.
pub async fn warnings(api: &Api) -> String {
    let events = api.list(EVENT, "", "type=Warning").await;
    events.iter().map(|e| format!("\n  {}: {}", e["reason"], e["message"])).collect()
}

/// `libvmops.StopVirtualMachine`: the stop subresource (a VM not running is fine), the VMI gone,
/// the VM not ready.
pub async fn stop_virtual_machine(api: &Api, vm: &str) -> Value {
    if let Err(e) = api.stop_vm(vm).await
        && !e.message.contains("VM is not running")
    {
        panic!("stop VM {vm}: {e}");
    }
    eventually(&format!("VMI {vm} to disappear"), secs(120), POLL, async || {
        match api.get_opt(VMI, vm).await {
            None => Ok(()),
            Some(vmi) => Err(status_of(&vmi)),
        }
    })
    .await;
    eventually(&format!("VM {vm} to stop"), secs(120), POLL, async || {
        let object = api.get(VM, vm).await;
        if object["status"]["ready"] != true { Ok(()) } else { Err(status_of(&object)) }
    })
    .await;
    api.get(VM, vm).await
}

/// `libstorage.EventuallyDVWith(ns, name, timeout, HaveSucceeded())`.
pub async fn wait_dv_succeeded(api: &Api, name: &str, timeout: Duration) -> Value {
    eventually(&format!("DataVolume {name} to succeed"), timeout, POLL, async || {
        match api.get_opt(DV, name).await {
            Some(dv) if dv["status"]["phase"] == "Succeeded" => Ok(dv),
            Some(dv) => Err(status_of(&dv)),
            None => Err("no DataVolume".into()),
        }
    })
    .await
}

/// `waitDataVolumePopulated` of snapshot.go: the DataVolume succeeded and its PVC is bound to a
/// volume.
pub async fn wait_data_volume_populated(api: &Api, name: &str) {
    wait_dv_succeeded(api, name, secs(180)).await;
    eventually(&format!("PVC {name} to have a volume"), secs(180), POLL, async || {
        let pvc = api.get(super::PVC, name).await;
        if pvc["spec"]["volumeName"].as_str().is_some_and(|v| !v.is_empty()) {
            Ok(())
        } else {
            Err(status_of(&pvc))
        }
    })
    .await;
}

/// The events of an object with `type` and `reason`, by the field selector of `events.ExpectEvent`.
pub async fn events_of(api: &Api, kind: &str, name: &str, event_type: &str, reason: &str) -> Vec<Value> {
    let selector =
        format!("involvedObject.kind={kind},involvedObject.name={name},type={event_type},reason={reason}");
    api.list(EVENT, "", &selector).await
}

/// `events.ExpectEvent(object, type, reason)`: such an event within 30 s.
pub async fn expect_event(api: &Api, kind: &str, name: &str, event_type: &str, reason: &str) {
    eventually(&format!("a {event_type} event {reason} of {kind} {name}"), secs(30), POLL, async || {
        let events = events_of(api, kind, name, event_type, reason).await;
        if events.is_empty() { Err("no such event".into()) } else { Ok(()) }
    })
    .await;
}

/// A ValidatingWebhookConfiguration that fails closed on a service that does not exist
/// (`createDenyVolumeSnapshotCreateWebhook` and the inline ones of restore.go): every request it
/// matches is refused.
pub fn deny_webhook(
    name: &str,
    webhook: &str,
    operation: &str,
    rule: Value,
    selector_label: (&str, &str),
) -> Value {
    let mut rule = rule;
    rule["operations"] = json!([operation]);
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [{
            "name": webhook,
            "admissionReviewVersions": ["v1", "v1beta1"],
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "rules": [rule],
            "clientConfig": {"service": {"namespace": super::TEST_NAMESPACE, "name": "nonexistent", "path": "/foobar"}},
            "objectSelector": {"matchLabels": {selector_label.0: selector_label.1}}
        }]
    })
}

/// `AddVolumeAndVerify`: a blank DataVolume hotplugged into the VM (SCSI, kept in its spec);
/// returns the volume's name.
pub async fn add_volume_and_verify(cluster: &Cluster, vm: &str) -> String {
    let dv = blank_data_volume(Some("16Mi"));
    let dv = cluster.create(DV, &dv.0).await;
    let volume = format!("test-volume-{}", rand_string(12));
    let options = json!({
        "name": volume,
        "disk": {"name": volume, "disk": {"bus": "scsi"}, "serial": volume},
        "volumeSource": {"dataVolume": {"name": name_of(&dv)}}
    });
    eventually("the volume to be added", secs(3), POLL, async || {
        cluster.subresource(VM, vm, "addvolume", &options).await.map_err(|e| e.to_string())
    })
    .await;
    // verifyVolumeAndDiskVMAdded
    eventually("the volume and disk in the VM's spec", secs(90), POLL, async || {
        let object = cluster.get(VM, vm).await;
        let spec = &object["spec"]["template"]["spec"];
        let requests = items(&object["status"]["volumeRequests"]);
        let volume_there = items(&spec["volumes"]).iter().any(|v| v["name"] == volume);
        let disk_there = items(&spec["domain"]["devices"]["disks"]).iter().any(|d| d["name"] == volume);
        if requests.is_empty() && volume_there && disk_there { Ok(()) } else { Err(format!("{object:#}")) }
    })
    .await;
    // libstorage.VerifyVolumeAndDiskInVMISpec
    eventually("the volume and disk in the VMI's spec", secs(90), POLL, async || {
        let vmi = cluster.get(VMI, vm).await;
        let volume_there = items(&vmi["spec"]["volumes"]).iter().any(|v| v["name"] == volume);
        let disk_there =
            items(&vmi["spec"]["domain"]["devices"]["disks"]).iter().any(|d| d["name"] == volume);
        if volume_there && disk_there { Ok(()) } else { Err(format!("{:#}", vmi["spec"])) }
    })
    .await;
    wait_dv_succeeded(cluster, &name_of(&dv), secs(240)).await;
    volume
}
