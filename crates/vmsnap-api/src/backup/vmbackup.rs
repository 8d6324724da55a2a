//! `VirtualMachineRepositoryBackup`: one backup of one VM at one point in time, in a repository.

use k8s_openapi::api::core::v1::TypedLocalObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::custom_resource::custom_resource;

use super::{BackupPhase, TransferCounters, VerifyResult};
use crate::snapshot::{Condition, SnapshotError};

custom_resource! {
    /// A backup of a VM to a repository. Its source is a `VirtualMachineSnapshot` that is (or will
    /// be) ready, or a `VirtualMachine`: a snapshot is then taken, labelled with the backup, and kept
    /// as the base of the VM's next incremental backup.
    #[kube(group = "backup.vmsnap.io", version = "v1alpha1", kind = "VirtualMachineRepositoryBackup")]
    #[kube(namespaced, status = "VirtualMachineRepositoryBackupStatus")]
    #[kube(shortname = "vmrbackup", shortname = "vmrbackups", category = "all")]
    #[kube(doc = "VirtualMachineRepositoryBackup is a backup of a VM, at one point in time, in a VirtualMachineBackupRepository")]
    #[kube(printcolumn(name = "VM", type_ = "string", json_path = ".status.vmName"))]
    #[kube(printcolumn(name = "Repository", type_ = "string", json_path = ".spec.repository"))]
    #[kube(printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"))]
    #[kube(printcolumn(name = "Type", type_ = "string", json_path = ".status.type"))]
    #[kube(printcolumn(name = "Size", type_ = "string", json_path = ".status.size"))]
    #[kube(printcolumn(name = "Progress", type_ = "string", json_path = ".status.progress.percent"))]
    #[kube(printcolumn(name = "Point In Time", type_ = "date", json_path = ".status.pointInTime"))]
    #[serde(rename_all = "camelCase")]
    pub struct VirtualMachineRepositoryBackupSpec {
        /// The `VirtualMachineBackupRepository` (in this namespace) to back up to.
        pub repository: String,
        /// What to back up: a `VirtualMachine` (`kubevirt.io`) or a `VirtualMachineSnapshot`
        /// (`snapshot.kubevirt.io`). Unset on backups found in a repository.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub source: Option<TypedLocalObjectReference>,
        /// Read every allocated byte even when an incremental is possible.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub force_full: Option<bool>,
        /// `Delete` (default): deleting this object deletes the backup from the repository;
        /// `Retain`: it stays there (and reappears if the repository is added again).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub deletion_policy: Option<String>,
    }
}

/// The observed backup.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineRepositoryBackupStatus {
    /// `Pending`, `InProgress`, `Succeeded` or `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<BackupPhase>,
    /// `Full` or `Incremental`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Why a backup that could have been incremental read everything (the base's snapshot was
    /// deleted or compacted away, `forceFull`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_reason: Option<String>,
    /// The backup's id in the repository (its manifest's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<String>,
    /// The VM backed up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_name: Option<String>,
    /// The snapshot read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_name: Option<String>,
    /// The backup this one is incremental to (object name), and its id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_backup: Option<String>,
    /// The base backup's id in the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_backup_id: Option<String>,
    /// The point in time the backup holds (its snapshot's creation time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::timestamp")]
    pub point_in_time: Option<Time>,
    /// When the backup was committed to the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::timestamp")]
    pub completion_time: Option<Time>,
    /// The disks' virtual sizes in all, for people (`10Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// The disks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<BackupDiskStatus>,
    /// Bytes read, uploaded, deduplicated and reused: while it runs, and the totals once done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<TransferCounters>,
    /// The result of the last verify of this backup's chunks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verify: Option<VerifyResult>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<SnapshotError>,
    /// `Ready` (committed), `Progressing` (what it awaits or does), `Failure`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// One disk of a backup.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupDiskStatus {
    /// The disk's (volume's) name in the VM.
    pub name: String,
    /// Its virtual size in bytes.
    pub size_bytes: i64,
    /// The disk's tree digest: the SHA-256 of its chunks' SHA-256 digests in order, for every
    /// backup, full or incremental (`docs/backup-repository.md` shows how to compute it from an
    /// image with coreutils).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256_tree: Option<String>,
}
