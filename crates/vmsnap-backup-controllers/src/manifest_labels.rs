//! What a backup's manifest records about the object that made it (its free-form `labels`), so
//! that another cluster, or this one after the object is gone, can make the object again
//! (the repository controller's import).

use vmsnap_backup::BackupManifest;
use vmsnap_storage::ChangePoint;

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

/// The prefix of the labels recording, per disk (`<prefix><disk name>`), the storage engine's
/// change point of the snapshot read: a later backup of the VM reads only what changed since it,
/// even once the snapshot is deleted.
const CHANGE_POINT_PREFIX: &str = "backup.vmsnap.io/change-point.";

/// The label key recording disk `disk`'s change point.
pub(crate) fn change_point_key(disk: &str) -> String {
    format!("{CHANGE_POINT_PREFIX}{disk}")
}

/// Disk `disk`'s change point as recorded in `manifest`, if any (an unreadable one is none: the
/// next backup then finds its base another way, or reads in full).
pub(crate) fn change_point(manifest: &BackupManifest, disk: &str) -> Option<ChangePoint> {
    get(manifest, &change_point_key(disk))?.parse().ok()
}

/// The label on `VirtualMachineRepositoryBackup` objects holding the backup's id in the
/// repository (set on imported objects and on committed ones).
pub(crate) const BACKUP_ID_LABEL: &str = "backup.vmsnap.io/backup-id";

/// A label of `manifest`, if recorded and not empty.
pub(crate) fn get<'a>(manifest: &'a BackupManifest, key: &str) -> Option<&'a str> {
    manifest.labels.get(key).map(String::as_str).filter(|v| !v.is_empty())
}
