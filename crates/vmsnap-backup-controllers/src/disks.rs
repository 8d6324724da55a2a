//! A snapshot's disk as the repository engine reads it: the storage engine's opened
//! [`SnapshotImage`] behind [`vmsnap_backup::DiskSource`], with its allocated extents and what
//! changed since an earlier snapshot.

use std::sync::Arc;

use vmsnap_backup::{DiskSource, Extent};
use vmsnap_storage::{
    ChangePoint, ChangedExtents, MappedExtent, SnapshotId, SnapshotImage, StorageError, VolumeDriver,
};

/// One snapshot's disk, open for reading: its files are held open, so deleting or compacting the
/// snapshot meanwhile does not take the data away.
pub(crate) struct SnapshotDisk {
    image: SnapshotImage,
}

impl SnapshotDisk {
    /// Opens snapshot `id`; `None` when it does not exist.
    pub(crate) async fn open(
        driver: &dyn VolumeDriver,
        id: &SnapshotId,
    ) -> Result<Option<Arc<SnapshotDisk>>, StorageError> {
        Ok(driver.snapshot_image(id).await?.map(|image| Arc::new(SnapshotDisk { image })))
    }

    /// The virtual size in bytes.
    pub(crate) fn size(&self) -> u64 {
        self.image.size_bytes()
    }

    /// The byte ranges that hold data (everything else reads as zeros).
    pub(crate) fn allocated(&self) -> Vec<Extent> {
        extents(self.image.allocated())
    }

    /// The byte ranges written since snapshot `base` (data, and zeros written over older data), or
    /// why that cannot be known, as a sentence.
    pub(crate) fn changed_since(&self, base: &SnapshotId) -> Result<Vec<Extent>, String> {
        changes(self.image.changed_since(base))
    }

    /// This snapshot's point in its volume's history, recorded with a backup of it so that a
    /// later backup can be incremental to it after the snapshot is deleted; `None` for a driver
    /// of standalone files.
    pub(crate) fn change_point(&self) -> Option<ChangePoint> {
        self.image.change_point()
    }

    /// The byte ranges written since the snapshot whose change point is `point` (which may have
    /// been deleted since), or why that cannot be known, as a sentence.
    pub(crate) fn changed_since_point(&self, point: &ChangePoint) -> Result<Vec<Extent>, String> {
        changes(self.image.changed_since_point(point))
    }
}

fn changes(answer: ChangedExtents) -> Result<Vec<Extent>, String> {
    match answer {
        ChangedExtents::Since { extents: changed } => Ok(extents(&changed)),
        ChangedExtents::Impossible(why) => Err(why.to_string()),
    }
}

fn extents(mapped: &[MappedExtent]) -> Vec<Extent> {
    mapped.iter().map(|e| Extent::new(e.offset, e.length)).collect()
}

impl DiskSource for SnapshotDisk {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.image.read_at(offset, buf)
    }
}
