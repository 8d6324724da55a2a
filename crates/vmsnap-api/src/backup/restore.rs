//! `VirtualMachineRepositoryRestore`: a VM made again from a backup, as a new VM or in place.

use k8s_openapi::api::core::v1::TypedLocalObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::custom_resource::custom_resource;

use super::{RestorePhase, TransferCounters};
use crate::snapshot::{Condition, SnapshotError};

custom_resource! {
    /// A restore of a backup. A `target` VM that does not exist is created from the backup's VM
    /// spec with new disks (a new VM: firmware UUID and MAC addresses are not copied); a target that
    /// is the backed-up VM itself must be stopped, and gets new disks with the backup's content
    /// (in place, as a `VirtualMachineRestore` of a snapshot does).
    #[kube(group = "backup.vmsnap.io", version = "v1alpha1", kind = "VirtualMachineRepositoryRestore")]
    #[kube(namespaced, status = "VirtualMachineRepositoryRestoreStatus")]
    #[kube(shortname = "vmrrestore", shortname = "vmrrestores", category = "all")]
    #[kube(doc = "VirtualMachineRepositoryRestore restores a VirtualMachineRepositoryBackup to a new VM or in place")]
    #[kube(printcolumn(name = "Backup", type_ = "string", json_path = ".spec.backupName"))]
    #[kube(printcolumn(name = "Target", type_ = "string", json_path = ".spec.target.name"))]
    #[kube(printcolumn(name = "Complete", type_ = "boolean", json_path = ".status.complete"))]
    #[kube(printcolumn(name = "Progress", type_ = "string", json_path = ".status.progress.percent"))]
    #[kube(printcolumn(name = "RestoreTime", type_ = "date", json_path = ".status.restoreTime"))]
    #[serde(rename_all = "camelCase")]
    pub struct VirtualMachineRepositoryRestoreSpec {
        /// The `VirtualMachineRepositoryBackup` (in this namespace) to restore.
        pub backup_name: String,
        /// The VM to restore to (`kubevirt.io`, `VirtualMachine`).
        pub target: TypedLocalObjectReference,
    }
}

/// The observed restore.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineRepositoryRestoreStatus {
    /// `Pending`, `InProgress`, `Succeeded` or `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RestorePhase>,
    /// True once the target VM exists with the restored disks (KubeVirt's restore field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete: Option<bool>,
    /// When it completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::timestamp")]
    pub restore_time: Option<Time>,
    /// The DataVolumes made, one per disk.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<RestoredDiskStatus>,
    /// Bytes written so far and in all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<TransferCounters>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<SnapshotError>,
    /// `Ready`, `Progressing` (what it awaits or does), `Failure`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// One restored disk.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoredDiskStatus {
    /// The disk's (volume's) name in the VM.
    pub name: String,
    /// The DataVolume holding it.
    pub data_volume_name: String,
}
