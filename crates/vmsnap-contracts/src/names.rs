//! Well-known names that several hosts must spell the same way.

/// The CSI driver name of vmsnap's local storage driver: the StorageClass provisioner and the
/// VolumeSnapshotClass driver it serves.
pub const LOCAL_STORAGE_DRIVER: &str = "local.storage.vmsnap.io";
