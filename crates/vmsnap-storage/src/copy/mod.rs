//! [`CopyDriver`]: every volume and every snapshot is one whole raw file.
//!
//! Layout under the root directory:
//!
//! ```text
//! manifest.json        the state (see `manifest::Manifest`), replaced atomically
//! files/<id>.raw       one raw disk image per volume and per snapshot
//! ```
//!
//! Snapshot, restore and clone copy the whole file with
//! `reflink_copy::reflink_or_copy`: a constant-time reflink on file systems
//! that share extents (XFS, Btrfs), a full O(size) copy elsewhere (ext4, where
//! even holes are written out). That is the point: it is the baseline the
//! qcow2 layer driver is measured against. Every new file is written under a
//! fresh name and fsynced before a manifest refers to it, and files are removed
//! only after the manifest stopped referring to them.
//!
//! Attached volumes: a running QEMU writes the raw file in place, so a copy
//! could tear. This driver refuses them ([`StorageError::LiveUnsupported`] when
//! the agent reports the volume attached, [`StorageError::InUse`] when QEMU's
//! write lock is seen); stop the VM, or use the qcow2 driver, whose switch
//! through QEMU fixes the point in time without copying.

mod manifest;
mod ops;

use std::path::{Path, PathBuf};

use self::manifest::{DRIVER, Entry, Manifest};
use crate::driver::VolumeInfo;
use crate::error::StorageError;
use crate::fsutil;
use crate::id::{LayerId, VolumeId};
use crate::inuse::ensure_not_written_by_qemu;
use crate::live::{LiveBlockOps, reported_active_file};
use crate::options::StorageOptions;
use crate::store::Store;

/// The whole-file copy driver (`copy`): the O(size) baseline.
#[derive(Debug)]
pub struct CopyDriver {
    store: Store<Manifest>,
}

impl CopyDriver {
    /// Opens (or initialises) the store under `root`. Call
    /// [`VolumeDriver::recover`](crate::VolumeDriver::recover) next, before serving requests.
    pub async fn open(root: impl Into<PathBuf>, options: StorageOptions) -> Result<Self, StorageError> {
        Ok(Self { store: Store::open(root.into(), &options).await? })
    }

    /// The root directory (absolute).
    pub fn root(&self) -> &Path {
        &self.store.root
    }

    /// Copies `source` to a new file of at least `size` bytes and makes it durable.
    async fn copy_new(
        &self,
        source: &Path,
        size: u64,
        action: &'static str,
    ) -> Result<LayerId, StorageError> {
        let (source, dir) = (source.to_owned(), self.store.data_dir.clone());
        let (file, ()) = self
            .store
            .make_file(|target| async move {
                let path = target.clone();
                fsutil::blocking(move || {
                    ops::copy_and_sync(&source, &target, size).and_then(|()| fsutil::sync_dir(&dir))
                })
                .await
                .map_err(StorageError::io(action, path))
            })
            .await?;
        Ok(file)
    }

    /// Commits volume `id` over its new, durable `file`; removes the file if the commit fails.
    async fn commit_volume(
        &self,
        id: &VolumeId,
        file: LayerId,
        size: u64,
        step: &'static str,
    ) -> Result<VolumeInfo, StorageError> {
        let entry = Entry { file: file.clone(), size_bytes: size };
        let state = self
            .store
            .commit_created(&[file], step, |next| {
                next.volumes.insert(id.clone(), entry);
            })
            .await?;
        Ok(self.store.volume_info(&state, id).expect("just committed"))
    }

    async fn volume_entry(&self, id: &VolumeId) -> Result<Entry, StorageError> {
        let state = self.store.state.lock().await;
        state.volumes.get(id).cloned().ok_or_else(|| StorageError::VolumeNotFound { volume: id.clone() })
    }

    /// Refuses a volume that a running VM uses: a copy of a file being written could tear.
    async fn ensure_detached(
        &self,
        volume: &VolumeId,
        path: &Path,
        live: Option<&dyn LiveBlockOps>,
        action: &'static str,
    ) -> Result<(), StorageError> {
        if reported_active_file(live, volume).await?.is_some() {
            return Err(StorageError::LiveUnsupported { driver: DRIVER, action, volume: volume.clone() });
        }
        ensure_not_written_by_qemu(volume, path)
    }
}
