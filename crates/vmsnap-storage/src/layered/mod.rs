//! [`LayeredDriver`]: volumes as chains of qcow2 layers.
//!
//! Layout under the root directory:
//!
//! ```text
//! manifest.json          the state (see `manifest::Manifest`), replaced atomically
//! layers/<id>.qcow2      one file per layer; headers name backing files relative to layers/
//! ```
//!
//! Concurrency: an operation first locks the ids it touches (see [`Locks`]),
//! then does its slow work (qemu-img, QMP through the agent) without the
//! manifest lock, then takes the manifest lock only to commit. Under its id
//! locks, what it read from the manifest cannot change underneath it.

mod compact;
mod manifest;
mod recover;
mod seal;
mod volumes;

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use tokio::sync::{Mutex, MutexGuard};

use self::manifest::{DRIVER, Manifest, layer_file_name};
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

/// The qcow2 layer-chain driver (`qcow2-layers`): constant-time snapshot,
/// restore and clone, shared reference-counted layers, crash-safe metadata and
/// background chain compaction.
#[derive(Debug)]
pub struct LayeredDriver {
    root: PathBuf,
    layers_dir: PathBuf,
    options: StorageOptions,
    qemu_img: QemuImg,
    manifest_file: ManifestFile,
    state: Mutex<Manifest>,
    locks: Locks,
    steps: Steps,
}

impl LayeredDriver {
    /// Opens (or initialises) the store under `root`. Call
    /// [`VolumeDriver::recover`] next, before serving requests.
    pub async fn open(root: impl Into<PathBuf>, options: StorageOptions) -> Result<Self, StorageError> {
        Self::open_with_steps(root.into(), options, Steps::default()).await
    }

    /// [`LayeredDriver::open`] with a hook called at every named step of every
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
        if options.max_chain_depth < 2 {
            return Err(StorageError::invalid(format!(
                "max_chain_depth is {}, but a volume with snapshots needs at least 2",
                options.max_chain_depth
            )));
        }
        let layers_dir = root.join("layers");
        let dir = layers_dir.clone();
        fsutil::blocking(move || std::fs::create_dir_all(&dir))
            .await
            .map_err(StorageError::io("create", &layers_dir))?;
        let root = std::fs::canonicalize(&root).map_err(StorageError::io("resolve", &root))?;
        let layers_dir = root.join("layers");
        let manifest_file = ManifestFile::new(root.join("manifest.json"), DRIVER, steps.clone());
        let manifest = manifest_file.load_or_init(&layers_dir, Manifest::empty, Manifest::validate).await?;
        Ok(Self {
            root,
            layers_dir,
            qemu_img: QemuImg::new(&options.qemu_img),
            options,
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

    fn layer_path(&self, id: &LayerId) -> PathBuf {
        self.layers_dir.join(layer_file_name(id))
    }

    /// Validates and durably writes `next`, then makes it the current state.
    /// If writing fails, the state is re-read from disk, which holds either
    /// the old or the new manifest.
    async fn commit(&self, state: &mut MutexGuard<'_, Manifest>, next: Manifest) -> Result<(), StorageError> {
        next.validate().map_err(|reason| inconsistent(&self.manifest_file, reason))?;
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

    /// Removes the files of layers that the current manifest does not know,
    /// after an operation that created them failed. Files the manifest does
    /// refer to (a commit that reached the disk despite an error) are kept.
    async fn discard_created(&self, created: &[LayerId]) {
        let unknown: Vec<PathBuf> = {
            let state = self.state.lock().await;
            created
                .iter()
                .filter(|id| !state.layers.contains_key(*id))
                .map(|id| self.layer_path(id))
                .collect()
        };
        if let Err(error) = remove_files(unknown, &self.layers_dir, &self.steps, "discard.file-removed").await
        {
            // Recovery removes what is left.
            tracing::warn!(%error, "could not remove the files of a failed operation");
        }
    }

    fn volume_info(&self, manifest: &Manifest, id: &VolumeId) -> Option<VolumeInfo> {
        let volume = manifest.volumes.get(id)?;
        Some(VolumeInfo {
            id: id.clone(),
            size_bytes: volume.size_bytes,
            path: self.layer_path(&volume.active_layer),
            format: VolumeFormat::Qcow2,
            chain_depth: manifest.chain(&volume.active_layer).len(),
        })
    }

    fn snapshot_info(manifest: &Manifest, id: &SnapshotId) -> Option<SnapshotInfo> {
        let snapshot = manifest.snapshots.get(id)?;
        Some(SnapshotInfo {
            id: id.clone(),
            source_volume: snapshot.source_volume.clone(),
            size_bytes: snapshot.size_bytes,
            created_at: snapshot.created_at,
        })
    }

    /// Makes newly created layer files durable before a manifest refers to them.
    async fn sync_new_files(&self, files: Vec<PathBuf>) -> Result<(), StorageError> {
        let dir = self.layers_dir.clone();
        fsutil::blocking(move || {
            for file in &files {
                fsutil::sync_file(file).map_err(StorageError::io("sync", file))?;
            }
            fsutil::sync_dir(&dir).map_err(StorageError::io("sync", &dir))
        })
        .await
    }
}

fn inconsistent(file: &ManifestFile, reason: String) -> StorageError {
    ManifestError::Inconsistent { path: file.path().to_owned(), reason }.into()
}

/// Removes files (after the manifest stopped referring to them), reaching
/// `step` after each, then makes the removals durable.
async fn remove_files(
    files: Vec<PathBuf>,
    dir: &Path,
    steps: &Steps,
    step: &'static str,
) -> Result<usize, StorageError> {
    if files.is_empty() {
        return Ok(0);
    }
    let (dir, steps) = (dir.to_owned(), steps.clone());
    fsutil::blocking(move || {
        let mut removed = 0;
        for file in &files {
            removed += usize::from(fsutil::remove_if_exists(file).map_err(StorageError::io("remove", file))?);
            steps.reach(step);
        }
        fsutil::sync_dir(&dir).map_err(StorageError::io("sync", &dir))?;
        Ok(removed)
    })
    .await
}

#[async_trait]
impl VolumeDriver for LayeredDriver {
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

    async fn recover(&self, live: Option<&dyn LiveBlockOps>) -> Result<RecoveryReport, StorageError> {
        self.recover_inner(live).await
    }

    async fn compact(&self, live: Option<&dyn LiveBlockOps>) -> Result<CompactionReport, StorageError> {
        self.compact_inner(live).await
    }

    async fn audit(&self) -> Result<StorageAudit, StorageError> {
        let state = self.state.lock().await;
        let referenced_files = state.layers.values().map(|layer| self.layers_dir.join(&layer.file)).collect();
        let (root, layers_dir, manifest) =
            (self.root.clone(), self.layers_dir.clone(), self.manifest_file.path().to_owned());
        let files_on_disk = fsutil::blocking(move || -> std::io::Result<_> {
            let mut files = fsutil::list_files(&layers_dir)?;
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
