//! What a backup's manifest records about the object that made it (its free-form `labels`), so
//! that another cluster, or this one after the object is gone, can make the object again
//! (the repository controller's import).

use vmsnap_backup::BackupManifest;

/// The name of the `VirtualMachineRepositoryBackup` that made the backup.
pub(crate) const OBJECT_NAME: &str = "backup.vmsnap.io/name";
/// Its uid (an import finds the object still being finished by the backup controller by it).
pub(crate) const OBJECT_UID: &str = "backup.vmsnap.io/uid";
/// The snapshot read.
pub(crate) const SNAPSHOT: &str = "backup.vmsnap.io/snapshot";
/// The point in time (the snapshot's creation time), RFC 3339.
pub(crate) const POINT_IN_TIME: &str = "backup.vmsnap.io/point-in-time";
/// `Full` or `Incremental`.
pub(crate) const TYPE: &str = "backup.vmsnap.io/type";
/// Why a backup read everything.
pub(crate) const FULL_REASON: &str = "backup.vmsnap.io/full-reason";
/// The name of the base backup's object.
pub(crate) const BASE_NAME: &str = "backup.vmsnap.io/base-name";

/// The label on `VirtualMachineRepositoryBackup` objects holding the backup's id in the
/// repository (set on imported objects and on committed ones).
pub(crate) const BACKUP_ID_LABEL: &str = "backup.vmsnap.io/backup-id";

/// A label of `manifest`, if recorded and not empty.
pub(crate) fn get<'a>(manifest: &'a BackupManifest, key: &str) -> Option<&'a str> {
    manifest.labels.get(key).map(String::as_str).filter(|v| !v.is_empty())
}
