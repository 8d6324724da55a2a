//! The qcow2 driver's [`VolumeDriver`] implementation. Create, import,
//! resize, restore and delete are here: they add one file and commit, or
//! commit and then remove files. Snapshot and clone seal layers (`seal.rs`),
//! recovery is in `recover.rs` and compaction in `compact.rs`.

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::LayeredDriver;
use super::manifest::{DRIVER, Intent, Layer, Manifest, Volume, layer_file_name};
use super::seal::SealRequest;
use crate::driver::{
    CompactionReport, Import, RecoveryReport, SnapshotInfo, StorageAudit, VolumeDriver, VolumeInfo,
};
use crate::error::StorageError;
use crate::id::{LayerId, SnapshotId, VolumeId};
use crate::image::SnapshotImage;
use crate::import::{inspect_source, take_handed_over};
use crate::import_image::ImportImage;
use crate::inuse::ensure_not_written_by_qemu;
use crate::live::LiveBlockOps;
use crate::locks;
use crate::round_to_sector;
use crate::store::{DriverManifest, ensure_distinct, ensure_nonempty, nonzero_size};

#[async_trait]
impl VolumeDriver for LayeredDriver {
    fn name(&self) -> &'static str {
        DRIVER
    }

    async fn create_volume(&self, id: &VolumeId, size_bytes: u64) -> Result<VolumeInfo, StorageError> {
        let size = nonzero_size(size_bytes)?;
        let _locks = self.store.lock_new_volume(id).await?;
        let (layer, ()) = self.store.make_file(|path| self.create_layer(path, size, None)).await?;
        self.store.steps.reach("create.file-created");
        self.commit_new_volume(id, layer, None, size, "create.committed").await
    }

    async fn import_volume(&self, id: &VolumeId, import: Import<'_>) -> Result<VolumeInfo, StorageError> {
        let Import { source, size_bytes, progress, handed_over } = import;
        let info = inspect_source(&self.store.qemu_img, source).await?;
        // A handed-over layer in this store's format (`create_import_image`) is taken as it is.
        let own_format = info.format == "qcow2" && info.cluster_size == Some(self.options.cluster_size);
        let _locks = self.store.lock_new_volume(id).await?;
        let (layer, size) = self
            .store
            .make_file(|path| async move {
                if handed_over && own_format && take_handed_over(source, &path).await {
                    progress(100);
                } else {
                    let target = (path.as_path(), "qcow2");
                    let cluster_size = Some(self.options.cluster_size);
                    self.store
                        .qemu_img
                        .convert((source, &info.format), target, cluster_size, progress)
                        .await?;
                }
                // The qcow2 file's size is the image's, rounded up to a sector.
                let converted = self.store.qemu_img.info(&path, Some("qcow2"), false).await?.virtual_size;
                let size = round_to_sector(size_bytes.unwrap_or(0).max(converted));
                if size > converted {
                    self.store.qemu_img.resize(&path, "qcow2", size).await?;
                }
                self.sync_new_files(vec![path]).await?;
                Ok(size)
            })
            .await?;
        self.store.steps.reach("import.file-created");
        self.commit_new_volume(id, layer, None, size, "import.committed").await
    }

    async fn create_import_image(&self, path: &Path, size_bytes: u64) -> Result<ImportImage, StorageError> {
        let size = nonzero_size(size_bytes)?;
        ImportImage::qcow2(&self.store.qemu_img, path, size, self.options.cluster_size).await
    }

    async fn restore_volume(
        &self,
        from: &SnapshotId,
        to: &VolumeId,
        size_bytes: u64,
    ) -> Result<VolumeInfo, StorageError> {
        let (_locks, base, size) = self.store.lock_restore(from, to, size_bytes).await?;
        let backing = layer_file_name(&base);
        let (layer, ()) = self.store.make_file(|path| self.create_layer(path, size, Some(&backing))).await?;
        self.store.steps.reach("restore.overlay-created");
        self.commit_new_volume(to, layer, Some(base), size, "restore.committed").await
    }

    async fn resize_volume(&self, id: &VolumeId, new_size: u64) -> Result<VolumeInfo, StorageError> {
        let new_size = nonzero_size(new_size)?;
        let _locks = self.store.locks.lock(locks::volumes([id])).await;
        let (layer, current) = {
            let state = self.store.state.lock().await;
            let volume = usable_volume(&state, id)?;
            (volume.active_layer.clone(), volume.size_bytes)
        };
        if new_size < current {
            return Err(StorageError::Shrink { volume: id.clone(), current, requested: new_size });
        }
        if new_size == current {
            return self.info_of(id).await;
        }
        let path = self.layer_path(&layer);
        ensure_not_written_by_qemu(id, &path)?;
        // The file changes in place, so the change is bracketed by an intent:
        // after a crash, recovery reads the file's size and records it.
        self.record_intent(Intent::Resize { volume: id.clone(), size_bytes: new_size }).await?;
        self.store.steps.reach("resize.intent-committed");
        let resized = async {
            self.store.qemu_img.resize(&path, "qcow2", new_size).await?;
            self.sync_new_files(vec![path.clone()]).await
        };
        if let Err(error) = resized.await {
            // Record whatever size the file has now; the caller may retry.
            if let Err(resolve_error) = self.resolve_resize(id).await {
                tracing::warn!(volume = %id, error = %resolve_error, "resize left an intent for recovery");
            }
            return Err(error);
        }
        self.store.steps.reach("resize.file-resized");
        let mut state = self.store.state.lock().await;
        let mut next = state.clone();
        set_volume_size(&mut next, id, new_size);
        next.intents.retain(|intent| intent.volume() != id);
        self.store.commit(&mut state, next).await?;
        self.store.steps.reach("resize.committed");
        Ok(self.store.volume_info(&state, id).expect("the volume was just resized"))
    }

    async fn delete_volume(&self, id: &VolumeId) -> Result<(), StorageError> {
        let _locks = self.store.locks.lock(locks::volumes([id])).await;
        let state = self.store.state.lock().await;
        let Some(volume) = state.volumes.get(id) else { return Ok(()) };
        if state.has_intent(id) {
            return Err(StorageError::RecoveryNeeded { volume: id.clone() });
        }
        ensure_not_written_by_qemu(id, &self.layer_path(&volume.active_layer))?;
        let mut next = state.clone();
        next.volumes.remove(id);
        let freed = self.files_of(&next.remove_unreachable());
        let steps = ("delete-volume.committed", "delete-volume.file-removed");
        self.store.commit_then_remove(state, next, freed, steps).await
    }

    async fn delete_snapshot(&self, id: &SnapshotId) -> Result<(), StorageError> {
        let _locks = self.store.locks.lock(locks::snapshots([id])).await;
        let state = self.store.state.lock().await;
        if !state.snapshots.contains_key(id) {
            return Ok(());
        }
        let mut next = state.clone();
        next.snapshots.remove(id);
        let freed = self.files_of(&next.remove_unreachable());
        let steps = ("delete-snapshot.committed", "delete-snapshot.file-removed");
        self.store.commit_then_remove(state, next, freed, steps).await
    }

    async fn volume(&self, id: &VolumeId) -> Result<Option<VolumeInfo>, StorageError> {
        Ok(self.store.volume(id).await)
    }

    async fn volumes(&self) -> Result<Vec<VolumeInfo>, StorageError> {
        Ok(self.store.volumes().await)
    }

    async fn snapshot_volumes(
        &self,
        group: &[(VolumeId, SnapshotId)],
        live: Option<&dyn LiveBlockOps>,
    ) -> Result<Vec<SnapshotInfo>, StorageError> {
        ensure_nonempty(group)?;
        self.seal(group.iter().map(SealRequest::snapshot).collect(), live).await?;
        let state = self.store.state.lock().await;
        Ok(group.iter().map(|(_, id)| state.snapshot(id).expect("just committed").0).collect())
    }

    async fn snapshot(&self, id: &SnapshotId) -> Result<Option<SnapshotInfo>, StorageError> {
        Ok(self.store.snapshot(id).await)
    }

    async fn snapshots(&self) -> Result<Vec<SnapshotInfo>, StorageError> {
        Ok(self.store.snapshots().await)
    }

    async fn snapshot_image(&self, id: &SnapshotId) -> Result<Option<SnapshotImage>, StorageError> {
        self.open_snapshot_image(id).await
    }

    async fn clone_volume(
        &self,
        from: &VolumeId,
        to: &VolumeId,
        size_bytes: u64,
        live: Option<&dyn LiveBlockOps>,
    ) -> Result<VolumeInfo, StorageError> {
        ensure_distinct(from, to)?;
        self.seal(vec![SealRequest::clone_of(from, to, size_bytes)], live).await?;
        let state = self.store.state.lock().await;
        Ok(self.store.volume_info(&state, to).expect("just committed"))
    }

    async fn recover(&self, live: Option<&dyn LiveBlockOps>) -> Result<RecoveryReport, StorageError> {
        self.recover_inner(live).await
    }

    async fn compact(&self, live: Option<&dyn LiveBlockOps>) -> Result<CompactionReport, StorageError> {
        self.compact_inner(live).await
    }

    async fn audit(&self) -> Result<StorageAudit, StorageError> {
        self.store.audit().await
    }
}

impl LayeredDriver {
    /// Records the file's actual size after an interrupted resize and drops the intent.
    pub(super) async fn resolve_resize(&self, id: &VolumeId) -> Result<(), StorageError> {
        let mut state = self.store.state.lock().await;
        let mut next = state.clone();
        self.apply_resize_outcome(&mut next, id).await?;
        next.intents.retain(|intent| intent.volume() != id);
        self.store.commit(&mut state, next).await
    }

    pub(super) async fn apply_resize_outcome(
        &self,
        next: &mut Manifest,
        id: &VolumeId,
    ) -> Result<(), StorageError> {
        let path = self.layer_path(&next.volumes[id].active_layer);
        let size = self.store.qemu_img.info(&path, Some("qcow2"), true).await?.virtual_size;
        set_volume_size(next, id, size);
        Ok(())
    }

    /// Commits a volume whose (already created and synced) active layer is
    /// `layer`, backed by `backing`. Removes the file if the commit fails.
    async fn commit_new_volume(
        &self,
        id: &VolumeId,
        layer: LayerId,
        backing: Option<LayerId>,
        size: u64,
        step: &'static str,
    ) -> Result<VolumeInfo, StorageError> {
        let file = layer_file_name(&layer);
        let new_layer = Layer { file, backing, size_bytes: size, sealed: false };
        let volume = Volume { active_layer: layer.clone(), size_bytes: size };
        let state = self
            .store
            .commit_created(std::slice::from_ref(&layer), step, |next| {
                next.layers.insert(layer.clone(), new_layer);
                next.volumes.insert(id.clone(), volume);
            })
            .await?;
        Ok(self.store.volume_info(&state, id).expect("the volume was just committed"))
    }

    /// Creates a durable qcow2 file at `path` of `size` bytes, over `backing` (a file name in `layers/`).
    async fn create_layer(
        &self,
        path: PathBuf,
        size: u64,
        backing: Option<&str>,
    ) -> Result<(), StorageError> {
        self.store.qemu_img.create_qcow2(&path, size, self.options.cluster_size, backing).await?;
        self.sync_new_files(vec![path]).await
    }

    async fn record_intent(&self, intent: Intent) -> Result<(), StorageError> {
        let mut state = self.store.state.lock().await;
        let mut next = state.clone();
        next.intents.push(intent);
        self.store.commit(&mut state, next).await
    }

    async fn info_of(&self, id: &VolumeId) -> Result<VolumeInfo, StorageError> {
        let state = self.store.state.lock().await;
        self.store.volume_info(&state, id).ok_or_else(|| StorageError::VolumeNotFound { volume: id.clone() })
    }
}

/// The volume, if it exists and has no unfinished operation.
pub(super) fn usable_volume<'m>(manifest: &'m Manifest, id: &VolumeId) -> Result<&'m Volume, StorageError> {
    let volume =
        manifest.volumes.get(id).ok_or_else(|| StorageError::VolumeNotFound { volume: id.clone() })?;
    if manifest.has_intent(id) {
        return Err(StorageError::RecoveryNeeded { volume: id.clone() });
    }
    Ok(volume)
}

fn set_volume_size(manifest: &mut Manifest, id: &VolumeId, size: u64) {
    let volume = manifest.volumes.get_mut(id).expect("the caller checked the volume");
    volume.size_bytes = size;
    manifest.layers.get_mut(&volume.active_layer).expect("validated").size_bytes = size;
}
