//! Decoding into the Rust types, where vmsnap has them: what a real API server's typed decoding
//! would refuse (a string where a number belongs, ...) is refused here as a 400.

use serde::de::DeserializeOwned;
use serde_json::Value;
use vmsnap_api::registry::ResourceType;
use vmsnap_api::{cdi, kubevirt, snapshot, volumesnapshot};

use crate::error::ApiError;

fn check<T: DeserializeOwned>(obj: &Value) -> Result<(), String> {
    serde_json::from_value::<T>(obj.clone()).map(|_| ()).map_err(|e| e.to_string())
}

/// Decodes `obj` into the kind's Rust type and reports why it does not fit.
pub fn decode_check(rt: &ResourceType, version: &str, obj: &Value) -> Result<(), ApiError> {
    use vmsnap_api::k8s_openapi::api::core::v1 as core;
    let result = match (rt.group, rt.kind.as_str()) {
        ("snapshot.kubevirt.io", "VirtualMachineSnapshot") => check::<snapshot::VirtualMachineSnapshot>(obj),
        ("snapshot.kubevirt.io", "VirtualMachineSnapshotContent") => {
            check::<snapshot::VirtualMachineSnapshotContent>(obj)
        }
        ("snapshot.kubevirt.io", "VirtualMachineRestore") => check::<snapshot::VirtualMachineRestore>(obj),
        ("kubevirt.io", "VirtualMachine") => check::<kubevirt::VirtualMachine>(obj),
        ("kubevirt.io", "VirtualMachineInstance") => check::<kubevirt::VirtualMachineInstance>(obj),
        ("cdi.kubevirt.io", "DataVolume") => check::<cdi::DataVolume>(obj),
        ("snapshot.storage.k8s.io", "VolumeSnapshot") => check::<volumesnapshot::VolumeSnapshot>(obj),
        ("", "PersistentVolumeClaim") => check::<core::PersistentVolumeClaim>(obj),
        ("", "Namespace") => check::<core::Namespace>(obj),
        _ => Ok(()),
    };
    result.map_err(|e| {
        ApiError::bad_request(format!(
            "{} in version \"{version}\" cannot be handled as a {}: {e}",
            rt.kind, rt.kind
        ))
    })
}
