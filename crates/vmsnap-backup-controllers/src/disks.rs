//! A snapshot's disk as the repository engine reads it: the storage engine's opened
//! [`SnapshotImage`] behind [`vmsnap_backup::DiskSource`], with its allocated extents and what
//! changed since an earlier snapshot.

use std::sync::{Arc, Mutex};

use tokio::task::AbortHandle;
use vmsnap_backup::{DiskSource, Extent};
use vmsnap_storage::{
    ChangePoint, ChangedExtents, MappedExtent, SnapshotId, SnapshotImage, StorageError, VolumeDriver,
};

/// One snapshot's disk, open for reading: its files are held open, so deleting or compacting the
/// snapshot meanwhile does not take the data away.
pub(crate) struct SnapshotDisk {
    image: SnapshotImage,
    /// Where reads map the chain when nothing asked for it before (see `read_at`).
    runtime: tokio::runtime::Handle,
    /// The map of the whole chain begun in the background when the disk was opened.
    mapping: Mutex<Option<AbortHandle>>,
}

impl SnapshotDisk {
    /// Opens snapshot `id` (its files, not yet mapped); `None` when it does not exist.
    pub(crate) async fn open(
        driver: &dyn VolumeDriver,
        id: &SnapshotId,
    ) -> Result<Option<Arc<SnapshotDisk>>, StorageError> {
        let Some(image) = driver.snapshot_image(id).await? else { return Ok(None) };
        let runtime = tokio::runtime::Handle::current();
        Ok(Some(Arc::new(SnapshotDisk { image, runtime, mapping: Mutex::new(None) })))
    }

    /// Begins the map of the whole chain in the background, while the caller decides what to
    /// read: a full backup and an incremental with changes need it, and find it done or under
    /// way; one with no changes stops it.
    pub(crate) fn begin_mapping(self: &Arc<Self>) {
        let disk = self.clone();
        let task = tokio::spawn(async move {
            // An error here is met again, and reported, by the call that needs the map.
            let _ = disk.image.allocated().await;
        });
        *self.mapping.lock().expect("not poisoned") = Some(task.abort_handle());
    }

    /// How many files of the chain `qemu-img` mapped (the rest came from the map the store
    /// kept of an earlier snapshot's chain); `None` when nothing needed the map.
    pub(crate) fn files_mapped(&self) -> Option<usize> {
        self.image.files_mapped()
    }

    /// The virtual size in bytes.
    pub(crate) fn size(&self) -> u64 {
        self.image.size_bytes()
    }

    /// The byte ranges that hold data (everything else reads as zeros).
    pub(crate) async fn allocated(&self) -> Result<Vec<Extent>, StorageError> {
        Ok(extents(self.image.allocated().await?))
    }

    /// The byte ranges written since snapshot `base` (data, and zeros written over older data), or
    /// why that cannot be known, as a sentence.
    pub(crate) async fn changed_since(
        &self,
        base: &SnapshotId,
    ) -> Result<Result<Vec<Extent>, String>, StorageError> {
        Ok(self.changes(self.image.changed_since(base).await?))
    }

    /// This snapshot's point in its volume's history, recorded with a backup of it so that a
    /// later backup can be incremental to it after the snapshot is deleted; `None` for a driver
    /// of standalone files.
    pub(crate) fn change_point(&self) -> Option<ChangePoint> {
        self.image.change_point()
    }

    /// The byte ranges written since the snapshot whose change point is `point` (which may have
    /// been deleted since), or why that cannot be known, as a sentence.
    pub(crate) async fn changed_since_point(
        &self,
        point: &ChangePoint,
    ) -> Result<Result<Vec<Extent>, String>, StorageError> {
        Ok(self.changes(self.image.changed_since_point(point).await?))
    }

    /// The changes as extents; with none, the background map is stopped (nothing to read).
    fn changes(&self, answer: ChangedExtents) -> Result<Vec<Extent>, String> {
        match answer {
            ChangedExtents::Since { extents: changed } => {
                if changed.is_empty()
                    && let Some(task) = self.mapping.lock().expect("not poisoned").take()
                {
                    task.abort();
                }
                Ok(extents(&changed))
            }
            ChangedExtents::Impossible(why) => Err(why.to_string()),
        }
    }
}

fn extents(mapped: &[MappedExtent]) -> Vec<Extent> {
    mapped.iter().map(|e| Extent::new(e.offset, e.length)).collect()
}

impl DiskSource for SnapshotDisk {
    /// Called on the engine's worker threads. The chain is mapped by the time the engine reads,
    /// except where it reads what no change named (a chunk of a grown disk, or one of a previous
    /// backup it may not reference): then the map is made here, once.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        if !self.image.is_mapped() {
            self.runtime.block_on(self.image.allocated()).map_err(std::io::Error::other)?;
        }
        self.image.read_at(offset, buf)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use vmsnap_backup::DiskSource;
    use vmsnap_storage::{LayeredDriver, StorageOptions, VolumeDriver};
    use vmsnap_testing::images::{DiskModel, assert_bytes, qemu_io_write, qemu_tools};

    use super::SnapshotDisk;

    const MIB: u64 = 1 << 20;

    /// A read that comes before anything mapped the chain (the engine reading a chunk that no
    /// change named) maps it on the reading thread, outside the runtime, and reads the right bytes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_on_a_worker_thread_before_any_map_maps_the_chain_and_reads_it() {
        let Some((qemu_img, qemu_io)) = qemu_tools() else { return };
        let dir = tempfile::tempdir().unwrap();
        let options = StorageOptions { qemu_img, ..StorageOptions::default() };
        let driver = LayeredDriver::open(dir.path(), options).await.unwrap();
        let volume = "disk".parse().unwrap();
        let info = driver.create_volume(&volume, 4 * MIB).await.unwrap();
        let mut model = DiskModel::blank(4 * MIB);
        qemu_io_write(&qemu_io, &info.path, info.format.as_str(), MIB, 128 << 10, 0x5a);
        model.push_write(MIB, 128 << 10, 0x5a);
        let snapshot = "snap".parse().unwrap();
        driver.snapshot_volumes(&[(volume, snapshot)], None).await.unwrap();
        let snapshot = "snap".parse().unwrap();

        let disk = SnapshotDisk::open(&driver, &snapshot).await.unwrap().expect("the snapshot exists");
        assert!(!disk.image.is_mapped());
        let reader = Arc::clone(&disk);
        let bytes = std::thread::spawn(move || {
            let mut bytes = vec![0xee; 4 * MIB as usize];
            reader.read_at(0, &mut bytes).map(|()| bytes)
        })
        .join()
        .unwrap()
        .unwrap();
        assert!(disk.image.is_mapped());
        assert_bytes("the snapshot read before its map", &bytes, &model.bytes());
    }
}
