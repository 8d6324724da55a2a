//! Create, import, resize, restore and delete: operations that add one file
//! and commit, or commit and then remove files.

use std::path::Path;

use super::manifest::{Intent, Layer, Manifest, Volume, layer_file_name};
use super::{LayeredDriver, remove_files};
use crate::driver::{Progress, VolumeInfo};
use crate::error::StorageError;
use crate::id::{LayerId, SnapshotId, VolumeId};
use crate::import::inspect_source;
use crate::locks::{self, LockKey};
use crate::round_to_sector;

impl LayeredDriver {
    pub(super) async fn create(&self, id: &VolumeId, size_bytes: u64) -> Result<VolumeInfo, StorageError> {
        let size = nonzero_size(size_bytes)?;
        let _locks = self.locks.lock(locks::volumes([id])).await;
        self.ensure_volume_absent(id).await?;
        let layer = LayerId::generate();
        let path = self.layer_path(&layer);
        let created = async {
            self.qemu_img.create_qcow2(&path, size, self.options.cluster_size, None).await?;
            self.sync_new_files(vec![path.clone()]).await
        };
        if let Err(error) = created.await {
            self.discard_created(std::slice::from_ref(&layer)).await;
            return Err(error);
        }
        self.steps.reach("create.file-created");
        self.commit_new_volume(id, layer, None, size, "create.committed").await
    }

    pub(super) async fn import(
        &self,
        id: &VolumeId,
        source: &Path,
        size_bytes: Option<u64>,
        progress: Progress<'_>,
    ) -> Result<VolumeInfo, StorageError> {
        let info = inspect_source(&self.qemu_img, source).await?;
        let _locks = self.locks.lock(locks::volumes([id])).await;
        self.ensure_volume_absent(id).await?;
        let layer = LayerId::generate();
        let path = self.layer_path(&layer);
        let imported = async {
            let target = (path.as_path(), "qcow2");
            let cluster_size = Some(self.options.cluster_size);
            self.qemu_img.convert((source, &info.format), target, cluster_size, progress).await?;
            // The qcow2 file's size is the image's, rounded up to a sector.
            let converted = self.qemu_img.info(&path, Some("qcow2"), false).await?.virtual_size;
            let size = round_to_sector(size_bytes.unwrap_or(0).max(converted));
            if size > converted {
                self.qemu_img.resize(&path, "qcow2", size).await?;
            }
            self.sync_new_files(vec![path.clone()]).await?;
            Ok::<_, StorageError>(size)
        };
        let size = match imported.await {
            Ok(size) => size,
            Err(error) => {
                self.discard_created(std::slice::from_ref(&layer)).await;
                return Err(error);
            }
        };
        self.steps.reach("import.file-created");
        self.commit_new_volume(id, layer, None, size, "import.committed").await
    }

    pub(super) async fn restore(
        &self,
        from: &SnapshotId,
        to: &VolumeId,
        size_bytes: u64,
    ) -> Result<VolumeInfo, StorageError> {
        let _locks = self.locks.lock([LockKey::Volume(to.clone()), LockKey::Snapshot(from.clone())]).await;
        let (base, size) = {
            let state = self.state.lock().await;
            let snapshot = state
                .snapshots
                .get(from)
                .ok_or_else(|| StorageError::SnapshotNotFound { snapshot: from.clone() })?;
            if state.volumes.contains_key(to) {
                return Err(StorageError::VolumeExists { volume: to.clone() });
            }
            (snapshot.layer.clone(), round_to_sector(size_bytes).max(snapshot.size_bytes))
        };
        let layer = LayerId::generate();
        let path = self.layer_path(&layer);
        let created = async {
            let backing = layer_file_name(&base);
            self.qemu_img.create_qcow2(&path, size, self.options.cluster_size, Some(&backing)).await?;
            self.sync_new_files(vec![path.clone()]).await
        };
        if let Err(error) = created.await {
            self.discard_created(std::slice::from_ref(&layer)).await;
            return Err(error);
        }
        self.steps.reach("restore.overlay-created");
        self.commit_new_volume(to, layer, Some(base), size, "restore.committed").await
    }

    pub(super) async fn resize(&self, id: &VolumeId, new_size: u64) -> Result<VolumeInfo, StorageError> {
        let new_size = nonzero_size(new_size)?;
        let _locks = self.locks.lock(locks::volumes([id])).await;
        let (layer, current) = {
            let state = self.state.lock().await;
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
        self.ensure_not_written_by_qemu(id, &path)?;
        // The file changes in place, so the change is bracketed by an intent:
        // after a crash, recovery reads the file's size and records it.
        self.record_intent(Intent::Resize { volume: id.clone(), size_bytes: new_size }).await?;
        self.steps.reach("resize.intent-committed");
        let resized = async {
            self.qemu_img.resize(&path, "qcow2", new_size).await?;
            self.sync_new_files(vec![path.clone()]).await
        };
        if let Err(error) = resized.await {
            // Record whatever size the file has now; the caller may retry.
            if let Err(resolve_error) = self.resolve_resize(id).await {
                tracing::warn!(volume = %id, error = %resolve_error, "resize left an intent for recovery");
            }
            return Err(error);
        }
        self.steps.reach("resize.file-resized");
        let mut state = self.state.lock().await;
        let mut next = state.clone();
        set_volume_size(&mut next, id, new_size);
        next.intents.retain(|intent| intent.volume() != id);
        self.commit(&mut state, next).await?;
        self.steps.reach("resize.committed");
        Ok(self.volume_info(&state, id).expect("the volume was just resized"))
    }

    /// Records the file's actual size after an interrupted resize and drops the intent.
    pub(super) async fn resolve_resize(&self, id: &VolumeId) -> Result<(), StorageError> {
        let mut state = self.state.lock().await;
        let mut next = state.clone();
        self.apply_resize_outcome(&mut next, id).await?;
        next.intents.retain(|intent| intent.volume() != id);
        self.commit(&mut state, next).await
    }

    pub(super) async fn apply_resize_outcome(
        &self,
        next: &mut Manifest,
        id: &VolumeId,
    ) -> Result<(), StorageError> {
        let path = self.layer_path(&next.volumes[id].active_layer);
        let size = self.qemu_img.info(&path, Some("qcow2"), true).await?.virtual_size;
        set_volume_size(next, id, size);
        Ok(())
    }

    pub(super) async fn delete_volume_inner(&self, id: &VolumeId) -> Result<(), StorageError> {
        let _locks = self.locks.lock(locks::volumes([id])).await;
        let mut state = self.state.lock().await;
        let Some(volume) = state.volumes.get(id) else { return Ok(()) };
        if state.has_intent(id) {
            return Err(StorageError::RecoveryNeeded { volume: id.clone() });
        }
        self.ensure_not_written_by_qemu(id, &self.layer_path(&volume.active_layer))?;
        let mut next = state.clone();
        next.volumes.remove(id);
        let freed = next.remove_unreachable();
        self.commit(&mut state, next).await?;
        drop(state);
        self.steps.reach("delete-volume.committed");
        let files = freed.iter().map(|(_, layer)| self.layers_dir.join(&layer.file)).collect();
        remove_files(files, &self.layers_dir, &self.steps, "delete-volume.file-removed").await?;
        Ok(())
    }

    pub(super) async fn delete_snapshot_inner(&self, id: &SnapshotId) -> Result<(), StorageError> {
        let _locks = self.locks.lock(locks::snapshots([id])).await;
        let mut state = self.state.lock().await;
        if !state.snapshots.contains_key(id) {
            return Ok(());
        }
        let mut next = state.clone();
        next.snapshots.remove(id);
        let freed = next.remove_unreachable();
        self.commit(&mut state, next).await?;
        drop(state);
        self.steps.reach("delete-snapshot.committed");
        let files = freed.iter().map(|(_, layer)| self.layers_dir.join(&layer.file)).collect();
        remove_files(files, &self.layers_dir, &self.steps, "delete-snapshot.file-removed").await?;
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
        let mut state = self.state.lock().await;
        let mut next = state.clone();
        let file = layer_file_name(&layer);
        next.layers.insert(layer.clone(), Layer { file, backing, size_bytes: size, sealed: false });
        next.volumes.insert(id.clone(), Volume { active_layer: layer.clone(), size_bytes: size });
        if let Err(error) = self.commit(&mut state, next).await {
            drop(state);
            self.discard_created(&[layer]).await;
            return Err(error);
        }
        self.steps.reach(step);
        Ok(self.volume_info(&state, id).expect("the volume was just committed"))
    }

    async fn record_intent(&self, intent: Intent) -> Result<(), StorageError> {
        let mut state = self.state.lock().await;
        let mut next = state.clone();
        next.intents.push(intent);
        self.commit(&mut state, next).await
    }

    async fn ensure_volume_absent(&self, id: &VolumeId) -> Result<(), StorageError> {
        if self.state.lock().await.volumes.contains_key(id) {
            return Err(StorageError::VolumeExists { volume: id.clone() });
        }
        Ok(())
    }

    async fn info_of(&self, id: &VolumeId) -> Result<VolumeInfo, StorageError> {
        let state = self.state.lock().await;
        self.volume_info(&state, id).ok_or_else(|| StorageError::VolumeNotFound { volume: id.clone() })
    }

    /// Refuses to touch a file a running QEMU writes (see [`crate::inuse`]).
    pub(super) fn ensure_not_written_by_qemu(&self, id: &VolumeId, path: &Path) -> Result<(), StorageError> {
        if crate::inuse::written_by_qemu(path).map_err(StorageError::io("check the locks of", path))? {
            return Err(StorageError::InUse { volume: id.clone(), path: path.to_owned() });
        }
        Ok(())
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

fn nonzero_size(size_bytes: u64) -> Result<u64, StorageError> {
    if size_bytes == 0 {
        return Err(StorageError::invalid("a volume size of 0 bytes; give a positive size"));
    }
    Ok(round_to_sector(size_bytes))
}
