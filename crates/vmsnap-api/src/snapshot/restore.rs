//! `VirtualMachineRestore`: put a VM back to a snapshot, in place or as a new VM.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::TypedLocalObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use crate::custom_resource::custom_resource;

use super::Condition;

custom_resource! {
    /// The desired restore.
    #[kube(group = "snapshot.kubevirt.io", version = "v1beta1", kind = "VirtualMachineRestore")]
    #[kube(namespaced, status = "VirtualMachineRestoreStatus")]
    #[kube(shortname = "vmrestore", shortname = "vmrestores", category = "all")]
    #[kube(doc = "VirtualMachineRestore defines the operation of restoring a VM")]
    #[kube(printcolumn(name = "TargetKind", type_ = "string", json_path = ".spec.target.kind"))]
    #[kube(printcolumn(name = "TargetName", type_ = "string", json_path = ".spec.target.name"))]
    #[kube(printcolumn(name = "Complete", type_ = "boolean", json_path = ".status.complete"))]
    #[kube(printcolumn(name = "RestoreTime", type_ = "date", json_path = ".status.restoreTime"))]
    #[serde(rename_all = "camelCase")]
    pub struct VirtualMachineRestoreSpec {
        /// The VM to restore into (existing: in place; absent: created).
        pub target: TypedLocalObjectReference,
        /// The snapshot to restore from.
        pub virtual_machine_snapshot_name: String,
        /// What to do when the target VM is running: StopTarget, WaitGracePeriod (default), FailImmediate, WaitEventually.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "target_readiness_policy_schema")]
        pub target_readiness_policy: Option<String>,
        /// How restored PVCs are named: RandomizeNames (default), InPlace, PrefixTargetName.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "crate::schema::volume_restore_policy")]
        pub volume_restore_policy: Option<String>,
        /// Whether restored PVCs are owned by the VM: Vm (default) or None.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "crate::schema::volume_ownership_policy")]
        pub volume_ownership_policy: Option<String>,
        /// Per-volume name, label and annotation overrides.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub volume_restore_overrides: Vec<VolumeRestoreOverride>,
        /// JSON patches (one operation per string) applied when the target VM is created.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub patches: Vec<String>,
    }
}

fn target_readiness_policy_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "default": "WaitGracePeriod",
        "enum": ["StopTarget", "WaitGracePeriod", "FailImmediate", "WaitEventually"]
    })
}

/// Target readiness policies.
pub mod target_readiness_policy {
    /// Stop the target VM.
    pub const STOP_TARGET: &str = "StopTarget";
    /// Wait up to five minutes for the target to stop, then fail.
    pub const WAIT_GRACE_PERIOD: &str = "WaitGracePeriod";
    /// Fail at once if the target runs.
    pub const FAIL_IMMEDIATE: &str = "FailImmediate";
    /// Wait for the target to stop, however long it takes.
    pub const WAIT_EVENTUALLY: &str = "WaitEventually";
}

/// Volume restore policies.
pub mod volume_restore_policy {
    /// `restore-<restore uid>-<volume>` (default).
    pub const RANDOMIZE_NAMES: &str = "RandomizeNames";
    /// Replace the original PVCs under their names.
    pub const IN_PLACE: &str = "InPlace";
    /// `<target VM>-<volume>`.
    pub const PREFIX_TARGET_NAME: &str = "PrefixTargetName";
}

/// Volume ownership policies.
pub mod volume_ownership_policy {
    /// Restored PVCs are owned by the target VM (default).
    pub const VM: &str = "Vm";
    /// Restored PVCs have no owner.
    pub const NONE: &str = "None";
}

/// Overrides for one restored volume.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeRestoreOverride {
    /// The volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_name: Option<String>,
    /// Name of the restored PVC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_name: Option<String>,
    /// Extra labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Extra annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// The observed restore.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineRestoreStatus {
    /// One entry per restored volume.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restores: Vec<VolumeRestore>,
    /// When the restore completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::timestamp")]
    pub restore_time: Option<Time>,
    /// DataVolumes of the old VM that were deleted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deleted_data_volumes: Vec<String>,
    /// The restore is done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete: Option<bool>,
    /// Progressing, Ready, Failure.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// One restored volume.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeRestore {
    /// The VM volume.
    pub volume_name: String,
    /// The restored PVC.
    pub persistent_volume_claim: String,
    /// The VolumeSnapshot it came from.
    pub volume_snapshot_name: String,
    /// The DataVolume that adopts the PVC, for DataVolume templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_volume_name: Option<String>,
}
