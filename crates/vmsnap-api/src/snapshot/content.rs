//! `VirtualMachineSnapshotContent`: the VM spec and the volume snapshots of one VirtualMachineSnapshot.

use k8s_openapi::api::core::v1::PersistentVolumeClaimSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::custom_resource::custom_resource;

use super::SnapshotError;
use crate::kubevirt::{VirtualMachineSpec, VirtualMachineStatus};

custom_resource! {
    /// What a snapshot holds.
    #[kube(group = "snapshot.kubevirt.io", version = "v1beta1", kind = "VirtualMachineSnapshotContent")]
    #[kube(namespaced, status = "VirtualMachineSnapshotContentStatus")]
    #[kube(shortname = "vmsnapshotcontent", shortname = "vmsnapshotcontents", category = "all")]
    #[kube(doc = "VirtualMachineSnapshotContent contains the snapshot data")]
    #[kube(printcolumn(name = "ReadyToUse", type_ = "boolean", json_path = ".status.readyToUse"))]
    #[kube(printcolumn(name = "CreationTime", type_ = "date", json_path = ".status.creationTime"))]
    #[kube(printcolumn(name = "Error", type_ = "string", json_path = ".status.error.message"))]
    #[serde(rename_all = "camelCase")]
    pub struct VirtualMachineSnapshotContentSpec {
        /// The VirtualMachineSnapshot this content belongs to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub virtual_machine_snapshot_name: Option<String>,
        /// The VM as it was.
        pub source: SourceSpec,
        /// One backup per snapshotted volume.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub volume_backups: Vec<VolumeBackup>,
    }
}

/// `spec.source`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceSpec {
    /// The VM's metadata, spec and status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_machine: Option<SnapshotVirtualMachine>,
}

/// A stored copy of a VM (not a `kubevirt.io/v1` object: no kind, no apiVersion).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotVirtualMachine {
    /// The VM's metadata (without managedFields).
    #[serde(default)]
    #[schemars(schema_with = "crate::schema::nested_metadata")]
    pub metadata: ObjectMeta,
    /// The VM's spec.
    #[serde(default)]
    pub spec: VirtualMachineSpec,
    /// The VM's status (empty for offline snapshots).
    #[serde(default)]
    pub status: VirtualMachineStatus,
}

/// One snapshotted volume.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeBackup {
    /// The VM volume's name.
    pub volume_name: String,
    /// The PVC as it was.
    pub persistent_volume_claim: PersistentVolumeClaimCopy,
    /// The VolumeSnapshot holding the data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_snapshot_name: Option<String>,
}

/// A stored copy of a PVC.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersistentVolumeClaimCopy {
    /// The PVC's metadata (without managedFields).
    #[serde(default)]
    #[schemars(schema_with = "crate::schema::nested_metadata")]
    pub metadata: ObjectMeta,
    /// The PVC's spec.
    #[schemars(schema_with = "crate::schema::pvc_spec")]
    pub spec: PersistentVolumeClaimSpec,
}

/// The observed content.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineSnapshotContentStatus {
    /// When every VolumeSnapshot had its point in time fixed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::timestamp")]
    pub creation_time: Option<Time>,
    /// Every VolumeSnapshot is ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_to_use: Option<bool>,
    /// The last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<SnapshotError>,
    /// The state of each VolumeSnapshot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_snapshot_status: Vec<VolumeSnapshotStatus>,
}

/// The state of one VolumeSnapshot, copied from it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotStatus {
    /// The VolumeSnapshot.
    pub volume_snapshot_name: String,
    /// Its creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::timestamp")]
    pub creation_time: Option<Time>,
    /// Its readiness.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_to_use: Option<bool>,
    /// Its error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<SnapshotError>,
}
