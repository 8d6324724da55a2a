//! The restored VM's spec, from the VM spec a backup recorded: a pure function over JSON, so that
//! fields of KubeVirt's API that vmsnap does not model survive a restore unchanged.
//!
//! Each backed-up volume becomes a `dataVolume` volume whose `dataVolumeTemplates` entry imports
//! the disk's staging file (`http.url: file:///...`, which the embedded importer reads from its
//! import roots), sized to the disk and keeping the access modes, volume mode and storage class of
//! the template the volume had. Templates of the replaced volumes go (their names belong to the
//! backed-up VM); every other field stays as recorded.
//!
//! Run strategy, as KubeVirt's `VirtualMachineRestore` (`restore.go`, the target that does not
//! exist): a new VM is created stopped, `running: false` when the recorded spec used `running`,
//! else `runStrategy: Halted`; the user starts it (`virtctl start`, `vmsnap vm start`), so a copy
//! never boots beside its original by surprise, and its disks can be checked first. An in-place
//! restore keeps the existing VM's run strategy (the caller sets it; the VM is stopped then).

use serde_json::{Map, Value, json};

/// One disk of the restored VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoredDisk {
    /// The volume's name in the VM (the disk's name in the backup).
    pub volume: String,
    /// The DataVolume (template) that imports it.
    pub data_volume: String,
    /// The disk's size in bytes.
    pub size: u64,
    /// The URL the DataVolume imports (`file:///<staging file>`).
    pub url: String,
}

/// Whose identity the restored VM has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// A new VM beside the original, created stopped: the firmware UUID and the interfaces' MAC
    /// addresses are removed, so that KubeVirt (the node agent) gives it its own.
    New,
    /// The backed-up VM restored in place: its identity stays.
    Keep,
}

/// Why the recorded VM spec cannot be restored; each names the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The recorded spec is not a VirtualMachine spec.
    #[error("the backup's recorded VM spec {0}")]
    NotAVmSpec(String),
    /// A disk of the backup is not a volume of the recorded spec.
    #[error("disk {0:?} of the backup is not a volume of the recorded VM spec (spec.template.spec.volumes)")]
    UnknownDisk(String),
}

/// The VirtualMachine spec inside what a backup recorded: the VM's spec itself, or a whole
/// VirtualMachine (`{metadata, spec}`, as a `VirtualMachineSnapshotContent` holds its source).
pub fn recorded_spec(recorded: &Value) -> Result<&Value, SpecError> {
    let spec = match recorded.get("spec") {
        Some(spec) if recorded.get("template").is_none() => spec,
        _ => recorded,
    };
    if !spec.is_object() {
        return Err(SpecError::NotAVmSpec("is not a JSON object".into()));
    }
    if !spec.pointer("/template/spec").is_some_and(Value::is_object) {
        return Err(SpecError::NotAVmSpec("has no spec.template.spec".into()));
    }
    Ok(spec)
}

/// The labels and annotations of the recorded VM, when it recorded a whole VirtualMachine.
pub fn recorded_metadata(recorded: &Value, field: &str) -> Map<String, Value> {
    recorded.pointer(&format!("/metadata/{field}")).and_then(Value::as_object).cloned().unwrap_or_default()
}

/// The spec of the restored VM: `recorded` (see [`recorded_spec`]) with each of `disks`'
/// volumes imported from its staging file, and with a new identity for [`Identity::New`].
pub fn restored_vm_spec(
    recorded: &Value,
    disks: &[RestoredDisk],
    identity: Identity,
) -> Result<Value, SpecError> {
    let mut spec = recorded_spec(recorded)?.clone();
    let volumes = spec
        .pointer_mut("/template/spec/volumes")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| SpecError::NotAVmSpec("has no spec.template.spec.volumes".into()))?;
    // The template each replaced volume used (by its old name), in the order of `disks`.
    let mut replaced_templates: Vec<Option<String>> = Vec::new();
    for disk in disks {
        let volume = volumes
            .iter_mut()
            .find(|v| v.get("name").and_then(Value::as_str) == Some(disk.volume.as_str()))
            .ok_or_else(|| SpecError::UnknownDisk(disk.volume.clone()))?;
        let object = volume.as_object_mut().expect("a volume with a name is an object");
        replaced_templates.push(
            object.get("dataVolume").and_then(|dv| dv.get("name")).and_then(Value::as_str).map(str::to_owned),
        );
        // A volume has exactly one source: the old one (PVC, DataVolume, ...) goes.
        object.retain(|key, _| key == "name");
        object.insert("dataVolume".into(), json!({"name": disk.data_volume}));
    }
    let old_templates: Vec<Value> =
        spec.get("dataVolumeTemplates").and_then(Value::as_array).cloned().unwrap_or_default();
    let template_name = |t: &Value| t.pointer("/metadata/name").and_then(Value::as_str).map(str::to_owned);
    let mut templates: Vec<Value> = old_templates
        .iter()
        .filter(|t| template_name(t).is_none_or(|name| !replaced_templates.contains(&Some(name))))
        .cloned()
        .collect();
    for (disk, old) in disks.iter().zip(&replaced_templates) {
        let old_template = old
            .as_ref()
            .and_then(|old| old_templates.iter().find(|t| template_name(t).as_ref() == Some(old)));
        templates.push(import_template(disk, old_template));
    }
    let object = spec.as_object_mut().expect("checked by recorded_spec");
    object.insert("dataVolumeTemplates".into(), Value::Array(templates));
    if identity == Identity::New {
        remove_identity(&mut spec);
        let object = spec.as_object_mut().expect("checked by recorded_spec");
        if object.contains_key("running") {
            object.insert("running".into(), Value::Bool(false));
        } else {
            object.insert("runStrategy".into(), Value::String("Halted".into()));
        }
    }
    Ok(spec)
}

/// A `dataVolumeTemplates` entry importing `disk`, with the storage settings of `old`.
fn import_template(disk: &RestoredDisk, old: Option<&Value>) -> Value {
    let old_claim = old.and_then(|t| t.pointer("/spec/storage").or_else(|| t.pointer("/spec/pvc")));
    let mut storage = Map::new();
    for key in ["accessModes", "volumeMode", "storageClassName"] {
        if let Some(value) = old_claim.and_then(|c| c.get(key)) {
            storage.insert(key.into(), value.clone());
        }
    }
    storage.insert("resources".into(), json!({"requests": {"storage": disk.size.to_string()}}));
    json!({
        "metadata": {"name": disk.data_volume},
        "spec": {"source": {"http": {"url": disk.url}}, "storage": storage},
    })
}

/// Removes the firmware UUID and the interfaces' MAC addresses.
fn remove_identity(spec: &mut Value) {
    if let Some(firmware) = spec.pointer_mut("/template/spec/domain/firmware").and_then(Value::as_object_mut)
    {
        firmware.remove("uuid");
    }
    if let Some(interfaces) =
        spec.pointer_mut("/template/spec/domain/devices/interfaces").and_then(Value::as_array_mut)
    {
        for interface in interfaces.iter_mut().filter_map(Value::as_object_mut) {
            interface.remove("macAddress");
        }
    }
}

#[cfg(test)]
mod tests {
    //! Against KubeVirt's own examples (`examples/vm-alpine-datavolume.yaml` and
    //! `vm-alpine-multipvc.yaml` of kubevirt/kubevirt at d923fdb8, as JSON under `testdata/`).

    use super::*;

    fn example(name: &str) -> Value {
        let text = match name {
            "datavolume" => include_str!("testdata/vm-alpine-datavolume.json"),
            "multipvc" => include_str!("testdata/vm-alpine-multipvc.json"),
            _ => unreachable!(),
        };
        serde_json::from_str(text).unwrap()
    }

    fn disk(volume: &str, data_volume: &str, size: u64) -> RestoredDisk {
        RestoredDisk {
            volume: volume.into(),
            data_volume: data_volume.into(),
            size,
            url: format!("file:///staging/uid/{volume}.raw"),
        }
    }

    /// The example as a VM that ran: KubeVirt wrote a firmware UUID into its spec, and its
    /// interface has a fixed MAC address.
    fn with_identity(mut vm: Value) -> Value {
        vm["spec"]["template"]["spec"]["domain"]["firmware"] =
            json!({"uuid": "5d307ca9-b3ef-428c-8861-06e72d69f223"});
        vm["spec"]["template"]["spec"]["domain"]["devices"]["interfaces"] =
            json!([{"name": "default", "masquerade": {}, "macAddress": "de:ad:00:00:be:af"}]);
        vm["spec"]["template"]["spec"]["networks"] = json!([{"name": "default", "pod": {}}]);
        vm
    }

    #[test]
    fn a_data_volume_template_becomes_an_import_of_the_staged_disk_with_its_storage_settings() {
        let recorded = example("datavolume");
        let disks = [disk("datavolumedisk1", "copy-datavolumedisk1", 2 << 30)];
        let spec = restored_vm_spec(&recorded, &disks, Identity::New).unwrap();
        assert_eq!(
            spec["template"]["spec"]["volumes"],
            json!([{"name": "datavolumedisk1", "dataVolume": {"name": "copy-datavolumedisk1"}}])
        );
        assert_eq!(
            spec["dataVolumeTemplates"],
            json!([{
                "metadata": {"name": "copy-datavolumedisk1"},
                "spec": {
                    "source": {"http": {"url": "file:///staging/uid/datavolumedisk1.raw"}},
                    "storage": {
                        "accessModes": ["ReadWriteOnce"],
                        "storageClassName": "local",
                        "resources": {"requests": {"storage": "2147483648"}},
                    },
                },
            }]),
            "the registry import of alpine-dv is gone, its access modes and class stay"
        );
        // Everything else is as recorded: the domain, the template's labels.
        assert_eq!(spec["template"]["spec"]["domain"], recorded["spec"]["template"]["spec"]["domain"]);
        assert_eq!(spec["template"]["metadata"], recorded["spec"]["template"]["metadata"]);
        assert_eq!(spec["template"]["spec"]["terminationGracePeriodSeconds"], 0);
        // A bare spec (rather than a whole VirtualMachine) is restored the same way.
        assert_eq!(restored_vm_spec(&recorded["spec"], &disks, Identity::New).unwrap(), spec);
    }

    #[test]
    fn claims_are_replaced_by_data_volumes_and_a_new_vm_loses_its_identity() {
        let recorded = with_identity(example("multipvc"));
        let disks = [disk("pvcdisk1", "copy-pvcdisk1", 1 << 30), disk("pvcdisk2", "copy-pvcdisk2", 10 << 20)];
        let spec = restored_vm_spec(&recorded, &disks, Identity::New).unwrap();
        let volumes = spec["template"]["spec"]["volumes"].as_array().unwrap();
        assert_eq!(volumes.len(), 2);
        for (volume, d) in volumes.iter().zip(&disks) {
            assert_eq!(volume, &json!({"name": d.volume, "dataVolume": {"name": d.data_volume}}));
        }
        let templates = spec["dataVolumeTemplates"].as_array().unwrap();
        assert_eq!(templates.len(), 2);
        assert_eq!(
            templates[1]["spec"]["storage"],
            json!({"resources": {"requests": {"storage": "10485760"}}})
        );
        assert!(spec["template"]["spec"]["domain"]["firmware"].get("uuid").is_none());
        assert!(spec["template"]["spec"]["domain"]["devices"]["interfaces"][0].get("macAddress").is_none());
        assert_eq!(spec["template"]["spec"]["domain"]["devices"]["interfaces"][0]["masquerade"], json!({}));

        let in_place = restored_vm_spec(&recorded, &disks, Identity::Keep).unwrap();
        assert_eq!(
            in_place["template"]["spec"]["domain"]["firmware"]["uuid"],
            "5d307ca9-b3ef-428c-8861-06e72d69f223"
        );
        assert_eq!(
            in_place["template"]["spec"]["domain"]["devices"]["interfaces"][0]["macAddress"],
            "de:ad:00:00:be:af"
        );
    }

    #[test]
    fn a_new_vm_is_created_stopped_as_kubevirt_creates_a_restore_target() {
        let mut recorded = example("datavolume");
        let disks = [disk("datavolumedisk1", "c-d", 1 << 20)];
        recorded["spec"]["runStrategy"] = json!("Always");
        let spec = restored_vm_spec(&recorded, &disks, Identity::New).unwrap();
        assert_eq!((&spec["runStrategy"], spec.get("running")), (&json!("Halted"), None));
        let in_place = restored_vm_spec(&recorded, &disks, Identity::Keep).unwrap();
        assert_eq!(in_place["runStrategy"], "Always", "the caller decides in place");
        let object = recorded["spec"].as_object_mut().unwrap();
        object.remove("runStrategy");
        object.insert("running".into(), json!(true));
        let spec = restored_vm_spec(&recorded, &disks, Identity::New).unwrap();
        assert_eq!((spec.get("runStrategy"), &spec["running"]), (None, &json!(false)));
    }

    #[test]
    fn volumes_that_were_not_backed_up_and_other_templates_stay() {
        let mut recorded = example("datavolume");
        recorded["spec"]["template"]["spec"]["volumes"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "cloudinit", "cloudInitNoCloud": {"userData": "#cloud-config"}}));
        recorded["spec"]["dataVolumeTemplates"]
            .as_array_mut()
            .unwrap()
            .push(json!({"metadata": {"name": "scratch"}, "spec": {"source": {"blank": {}}}}));
        let spec =
            restored_vm_spec(&recorded, &[disk("datavolumedisk1", "c-d", 1 << 20)], Identity::New).unwrap();
        assert_eq!(spec["template"]["spec"]["volumes"][1]["cloudInitNoCloud"]["userData"], "#cloud-config");
        let names: Vec<&str> = spec["dataVolumeTemplates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["scratch", "c-d"]);
    }

    #[test]
    fn a_spec_that_does_not_fit_the_backup_is_refused_naming_the_problem() {
        let recorded = example("datavolume");
        let error = restored_vm_spec(&recorded, &[disk("root", "c-root", 1)], Identity::New).unwrap_err();
        assert_eq!(
            error.to_string(),
            "disk \"root\" of the backup is not a volume of the recorded VM spec (spec.template.spec.volumes)"
        );
        let error = restored_vm_spec(&json!({"spec": {"running": true}}), &[], Identity::New).unwrap_err();
        assert_eq!(error.to_string(), "the backup's recorded VM spec has no spec.template.spec");
        assert!(restored_vm_spec(&json!("text"), &[], Identity::New).is_err());
    }
}
