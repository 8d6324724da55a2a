//! The manifests of the VMs the agent tests apply: each runs the test guest (a kernel boot
//! from the `vmsnap.local/test-guest` container disk) with PVC-backed disks.

use serde_json::{Value, json};

/// The kernel-boot image every test VM boots from.
pub const TEST_GUEST_IMAGE: &str = "vmsnap.local/test-guest:latest";

/// One disk of a test VM, backed by a PVC.
pub struct GuestDisk<'a> {
    /// The disk's (and its volume's) name.
    pub name: &'a str,
    /// `virtio`, `scsi` or `sata`.
    pub bus: &'a str,
    /// The PVC behind it.
    pub claim: &'a str,
    /// The serial the guest sees, when set.
    pub serial: Option<&'a str>,
}

impl<'a> GuestDisk<'a> {
    /// A virtio disk `name` on PVC `claim`.
    pub fn virtio(name: &'a str, claim: &'a str) -> Self {
        GuestDisk { name, bus: "virtio", claim, serial: None }
    }
}

/// A VirtualMachine `name` with `run_strategy` that boots the test guest with 256 MiB and
/// `disks`, as a manifest for `kubectl apply` (JSON, which is YAML).
pub fn guest_vm_yaml(name: &str, run_strategy: &str, disks: &[GuestDisk<'_>]) -> String {
    let devices: Vec<Value> = disks
        .iter()
        .map(|d| {
            let mut disk = json!({"name": d.name, "disk": {"bus": d.bus}});
            if let Some(serial) = d.serial {
                disk["serial"] = json!(serial);
            }
            disk
        })
        .collect();
    let volumes: Vec<Value> = disks
        .iter()
        .map(|d| json!({"name": d.name, "persistentVolumeClaim": {"claimName": d.claim}}))
        .collect();
    json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name},
        "spec": {
            "runStrategy": run_strategy,
            "template": {"spec": {
                "domain": {
                    "firmware": {"kernelBoot": {"container": {"image": TEST_GUEST_IMAGE}}},
                    "memory": {"guest": "256Mi"},
                    "devices": {"disks": devices},
                },
                "volumes": volumes,
            }},
        },
    })
    .to_string()
}
