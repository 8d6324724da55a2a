//! vmsnap's backup API (`backup.vmsnap.io/v1alpha1`): backups of VMs off the machine, in a
//! repository (`docs/backup-repository.md`, engine in `vmsnap-backup`), and restores from them.
//!
//! KubeVirt's `backup.kubevirt.io` (`VirtualMachineBackup`, short name `vmbackup`) writes qcow2
//! files into a PVC for backup vendors and has no restore API; these kinds are vmsnap's own, named
//! so that neither their plurals nor their short names collide with KubeVirt's or Velero's
//! (`docs/backups.md`):
//! - [`VirtualMachineBackupRepository`] (`vmrepo`): where backups go and the secrets that open it;
//! - [`VirtualMachineRepositoryBackup`] (`vmrbackup`): one backup of one VM, at one point in time;
//! - [`VirtualMachineRepositoryRestore`] (`vmrrestore`): a restore of a backup, to a new VM or in place.

mod chunk_size;
mod constants;
mod read_limit;
mod repository;
mod restore;
mod vmbackup;

pub use chunk_size::*;
pub use constants::*;
pub use read_limit::*;
pub use repository::*;
pub use restore::*;
pub use vmbackup::*;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A key of a Secret in the object's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeySelector {
    /// The Secret's name.
    pub name: String,
    /// The key in its `data`; each field that takes a selector documents its default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl SecretKeySelector {
    /// The key, or `default` when unset or empty.
    pub fn key_or<'a>(&'a self, default: &'a str) -> &'a str {
        self.key.as_deref().filter(|k| !k.is_empty()).unwrap_or(default)
    }
}

/// Byte counts of a backup or restore as it runs and when it is done.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransferCounters {
    /// Bytes the operation reads in all (the changed extents for an incremental backup).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_to_read: Option<i64>,
    /// Bytes read so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_read: Option<i64>,
    /// Sealed (compressed, encrypted) bytes written to the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_uploaded: Option<i64>,
    /// Bytes read but found already stored (deduplicated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_deduplicated: Option<i64>,
    /// Bytes taken from the base backup unread (incremental).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_reused: Option<i64>,
    /// Bytes written to disks (restore).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_written: Option<i64>,
    /// Whole percent done (0 to 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<i32>,
    /// Seconds since the transfer started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elapsed_seconds: Option<i64>,
}
