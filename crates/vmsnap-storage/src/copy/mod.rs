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

use async_trait::async_trait;
use tokio::sync::{Mutex, MutexGuard};

use self::manifest::{DRIVER, Manifest, file_name};
use crate::driver::{
    CompactionReport, Progress, RecoveryReport, SnapshotInfo, StorageAudit, VolumeDriver, VolumeFormat,
    VolumeInfo,
};
use crate::error::{ManifestError, StorageError};
use crate::fsutil;
use crate::id::{LayerId, SnapshotId, VolumeId};
use crate::live::LiveBlockOps;
use crate::locks::Locks;
use crate::manifest_file::ManifestFile;
use crate::options::StorageOptions;
use crate::qemu_img::QemuImg;
use crate::steps::Steps;

/// The whole-file copy driver (`copy`): the O(size) baseline.
#[derive(Debug)]
pub struct CopyDriver {
    root: PathBuf,
    files_dir: PathBuf,
    qemu_img: QemuImg,
    manifest_file: ManifestFile,
    state: Mutex<Manifest>,
    locks: Locks,
    steps: Steps,
}

impl CopyDriver {
    /// Opens (or initialises) the store under `root`. Call
    /// [`VolumeDriver::recover`] next, before serving requests.
    pub async fn open(root: impl Into<PathBuf>, options: StorageOptions) -> Result<Self, StorageError> {
        Self::open_with_steps(root.into(), options, Steps::default()).await
    }

    /// [`CopyDriver::open`] with a hook called at every named step of every
    /// operation, for fault-injection tests.
    #[cfg(feature = "fault-injection")]
    pub async fn open_with_step_hook(
        root: impl Into<PathBuf>,
        options: StorageOptions,
        hook: crate::steps::StepHook,
    ) -> Result<Self, StorageError> {
        Self::open_with_steps(root.into(), options, Steps::new(hook)).await
    }

    async fn open_with_steps(
        root: PathBuf,
        options: StorageOptions,
        steps: Steps,
    ) -> Result<Self, StorageError> {
        let files_dir = root.join("files");
        let dir = files_dir.clone();
        fsutil::blocking(move || std::fs::create_dir_all(&dir))
            .await
            .map_err(StorageError::io("create", &files_dir))?;
        let root = std::fs::canonicalize(&root).map_err(StorageError::io("resolve", &root))?;
        let files_dir = root.join("files");
        let manifest_file = ManifestFile::new(root.join("manifest.json"), DRIVER, steps.clone());
        let manifest = manifest_file.load_or_init(&files_dir, Manifest::empty, Manifest::validate).await?;
        Ok(Self {
            root,
            files_dir,
            qemu_img: QemuImg::new(&options.qemu_img),
            manifest_file,
            state: Mutex::new(manifest),
            locks: Locks::default(),
            steps,
        })
    }

    /// The root directory (absolute).
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn file_path(&self, id: &LayerId) -> PathBuf {
        self.files_dir.join(file_name(id))
    }

    /// Validates and durably writes `next`, then makes it the current state;
    /// on failure re-reads the disk, which holds the old or the new manifest.
    async fn commit(&self, state: &mut MutexGuard<'_, Manifest>, next: Manifest) -> Result<(), StorageError> {
        next.validate().map_err(|reason| ManifestError::Inconsistent {
            path: self.manifest_file.path().to_owned(),
            reason,
        })?;
        match self.manifest_file.store(&next).await {
            Ok(()) => {
                **state = next;
                Ok(())
            }
            Err(error) => {
                if let Ok(Some(on_disk)) = self.manifest_file.load::<Manifest>() {
                    **state = on_disk;
                }
                Err(error)
            }
        }
    }

    /// Removes files a failed operation created, unless the manifest refers to them.
    async fn discard_created(&self, created: &[LayerId]) {
        let unknown: Vec<PathBuf> = {
            let state = self.state.lock().await;
            let known: Vec<&LayerId> = state.files().collect();
            created.iter().filter(|id| !known.contains(id)).map(|id| self.file_path(id)).collect()
        };
        if let Err(error) = self.remove_files(unknown, "discard.file-removed").await {
            tracing::warn!(%error, "could not remove the files of a failed operation");
        }
    }

    /// Removes files the manifest no longer refers to, reaching `step` after each.
    async fn remove_files(&self, files: Vec<PathBuf>, step: &'static str) -> Result<usize, StorageError> {
        if files.is_empty() {
            return Ok(0);
        }
        let (dir, steps) = (self.files_dir.clone(), self.steps.clone());
        fsutil::blocking(move || {
            let mut removed = 0;
            for file in &files {
                removed +=
                    usize::from(fsutil::remove_if_exists(file).map_err(StorageError::io("remove", file))?);
                steps.reach(step);
            }
            fsutil::sync_dir(&dir).map_err(StorageError::io("sync", &dir))?;
            Ok(removed)
        })
        .await
    }

    fn volume_info(&self, manifest: &Manifest, id: &VolumeId) -> Option<VolumeInfo> {
        let entry = manifest.volumes.get(id)?;
        Some(VolumeInfo {
            id: id.clone(),
            size_bytes: entry.size_bytes,
            path: self.file_path(&entry.file),
            format: VolumeFormat::Raw,
            chain_depth: 1,
        })
    }

    fn snapshot_info(manifest: &Manifest, id: &SnapshotId) -> Option<SnapshotInfo> {
        let entry = manifest.snapshots.get(id)?;
        Some(SnapshotInfo {
            id: id.clone(),
            source_volume: entry.source_volume.clone(),
            size_bytes: entry.size_bytes,
            created_at: entry.created_at,
        })
    }
}

#[async_trait]
impl VolumeDriver for CopyDriver {
    fn name(&self) -> &'static str {
        DRIVER
    }

    async fn create_volume(&self, id: &VolumeId, size_bytes: u64) -> Result<VolumeInfo, StorageError> {
        self.create(id, size_bytes).await
    }

    async fn import_volume(
        &self,
        id: &VolumeId,
        source: &Path,
        size_bytes: Option<u64>,
        progress: Progress<'_>,
    ) -> Result<VolumeInfo, StorageError> {
        self.import(id, source, size_bytes, progress).await
    }

    async fn resize_volume(&self, id: &VolumeId, new_size: u64) -> Result<VolumeInfo, StorageError> {
        self.resize(id, new_size).await
    }

    async fn delete_volume(&self, id: &VolumeId) -> Result<(), StorageError> {
        self.delete_volume_inner(id).await
    }

    async fn volume(&self, id: &VolumeId) -> Result<Option<VolumeInfo>, StorageError> {
        Ok(self.volume_info(&*self.state.lock().await, id))
    }

    async fn volumes(&self) -> Result<Vec<VolumeInfo>, StorageError> {
        let state = self.state.lock().await;
        Ok(state.volumes.keys().filter_map(|id| self.volume_info(&state, id)).collect())
    }

    async fn snapshot_volumes(
        &self,
        group: &[(VolumeId, SnapshotId)],
        live: Option<&dyn LiveBlockOps>,
    ) -> Result<Vec<SnapshotInfo>, StorageError> {
        self.snapshot_group(group, live).await
    }

    async fn delete_snapshot(&self, id: &SnapshotId) -> Result<(), StorageError> {
        self.delete_snapshot_inner(id).await
    }

    async fn snapshot(&self, id: &SnapshotId) -> Result<Option<SnapshotInfo>, StorageError> {
        Ok(Self::snapshot_info(&*self.state.lock().await, id))
    }

    async fn snapshots(&self) -> Result<Vec<SnapshotInfo>, StorageError> {
        let state = self.state.lock().await;
        Ok(state.snapshots.keys().filter_map(|id| Self::snapshot_info(&state, id)).collect())
    }

    async fn restore_volume(
        &self,
        from: &SnapshotId,
        to: &VolumeId,
        size_bytes: u64,
    ) -> Result<VolumeInfo, StorageError> {
        self.restore(from, to, size_bytes).await
    }

    async fn clone_volume(
        &self,
        from: &VolumeId,
        to: &VolumeId,
        size_bytes: u64,
        live: Option<&dyn LiveBlockOps>,
    ) -> Result<VolumeInfo, StorageError> {
        self.clone_from_volume(from, to, size_bytes, live).await
    }

    async fn recover(&self, _live: Option<&dyn LiveBlockOps>) -> Result<RecoveryReport, StorageError> {
        self.recover_inner().await
    }

    /// Nothing to do: every file stands alone.
    async fn compact(&self, _live: Option<&dyn LiveBlockOps>) -> Result<CompactionReport, StorageError> {
        Ok(CompactionReport::default())
    }

    async fn audit(&self) -> Result<StorageAudit, StorageError> {
        let state = self.state.lock().await;
        let referenced_files = state.files().map(|id| self.file_path(id)).collect();
        let (root, files_dir, manifest) =
            (self.root.clone(), self.files_dir.clone(), self.manifest_file.path().to_owned());
        let files_on_disk = fsutil::blocking(move || -> std::io::Result<_> {
            let mut files = fsutil::list_files(&files_dir)?;
            files.extend(fsutil::list_files(&root)?.into_iter().filter(|file| *file != manifest));
            Ok(files.into_iter().collect())
        })
        .await
        .map_err(StorageError::io("list", &self.root))?;
        Ok(StorageAudit {
            volumes: state.volumes.len(),
            snapshots: state.snapshots.len(),
            referenced_files,
            files_on_disk,
        })
    }
}
