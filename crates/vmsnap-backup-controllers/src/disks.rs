//! A snapshot's disk as the repository engine reads it: the storage engine's opened snapshot
//! image behind [`vmsnap_backup::DiskSource`], with its allocated extents and what changed since
//! an earlier snapshot.

use std::sync::Arc;

use vmsnap_backup::{DiskSource, Extent};
use vmsnap_storage::{SnapshotId, VolumeDriver};

/// Why a snapshot's disk cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// The storage engine failed.
    #[error(transparent)]
    Storage(#[from] vmsnap_storage::StorageError),
    /// This build's storage engine cannot open snapshots for reading.
    #[error("the storage engine of this build cannot read snapshots outside QEMU (no snapshot_image)")]
    Unsupported,
}

/// One snapshot's disk, open for reading (immutable while open).
pub(crate) struct SnapshotDisk {
    never: std::convert::Infallible,
}

impl SnapshotDisk {
    /// Opens snapshot `id`; `None` when it does not exist.
    pub(crate) async fn open(
        driver: &dyn VolumeDriver,
        id: &SnapshotId,
    ) -> Result<Option<Arc<SnapshotDisk>>, DiskError> {
        let _ = (driver, id);
        Err(DiskError::Unsupported)
    }

    /// The virtual size in bytes.
    pub(crate) fn size(&self) -> u64 {
        match self.never {}
    }

    /// The byte ranges that hold data (everything else reads as zeros).
    pub(crate) fn allocated(&self) -> Vec<Extent> {
        match self.never {}
    }

    /// The byte ranges written since snapshot `base`, or why that cannot be known (a sentence).
    pub(crate) fn changed_since(&self, base: &SnapshotId) -> Result<Vec<Extent>, String> {
        let _ = base;
        match self.never {}
    }
}

impl DiskSource for SnapshotDisk {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let _ = (offset, buf);
        match self.never {}
    }
}
