//! The copy driver's operations, as its [`VolumeDriver`] implementation:
//! write a new file under a fresh name, fsync it, commit; or commit, then remove.

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use chrono::Utc;

use super::CopyDriver;
use super::manifest::{DRIVER, SnapshotEntry};
use crate::driver::{
    CompactionReport, Import, RecoveryReport, SnapshotInfo, StorageAudit, VolumeDriver, VolumeFormat,
    VolumeInfo,
};
use crate::error::StorageError;
use crate::fsutil;
use crate::id::{LayerId, SnapshotId, VolumeId};
use crate::image::{Lineage, SnapshotImage};
use crate::import::{inspect_source, take_handed_over};
use crate::import_image::ImportImage;
use crate::inuse::ensure_not_written_by_qemu;
use crate::live::LiveBlockOps;
use crate::locks::{self, LockKey};
use crate::round_to_sector;
use crate::store::{DriverManifest, ensure_distinct, ensure_nonempty, nonzero_size};

#[async_trait]
impl VolumeDriver for CopyDriver {
    fn name(&self) -> &'static str {
        DRIVER
    }

    async fn create_volume(&self, id: &VolumeId, size_bytes: u64) -> Result<VolumeInfo, StorageError> {
        let size = nonzero_size(size_bytes)?;
        let _locks = self.store.lock_new_volume(id).await?;
        let dir = self.store.data_dir.clone();
        let (file, ()) = self
            .store
            .make_file(|path| async move {
                let target = path.clone();
                fsutil::blocking(move || {
                    let handle = OpenOptions::new().write(true).create_new(true).open(&target)?;
                    handle.set_len(size)?;
                    handle.sync_all()?;
                    fsutil::sync_dir(&dir)
                })
                .await
                .map_err(StorageError::io("create", path))
            })
            .await?;
        self.store.steps.reach("create.file-created");
        self.commit_volume(id, file, size, "create.committed").await
    }

    async fn import_volume(&self, id: &VolumeId, import: Import<'_>) -> Result<VolumeInfo, StorageError> {
        let Import { source, size_bytes, progress, handed_over } = import;
        let info = inspect_source(&self.store.qemu_img, source).await?;
        let _locks = self.store.lock_new_volume(id).await?;
        let size = round_to_sector(size_bytes.unwrap_or(0).max(info.virtual_size));
        let (file, ()) = self
            .store
            .make_file(|path| async {
                // A handed-over raw file is this store's format already: taken as it is.
                if handed_over && info.format == "raw" && take_handed_over(source, &path).await {
                    progress(100);
                } else {
                    self.store
                        .qemu_img
                        .convert((source, &info.format), (&path, "raw"), None, progress)
                        .await?;
                }
                let (target, dir) = (path.clone(), self.store.data_dir.clone());
                fsutil::blocking(move || grow_and_sync(&target, size, &dir))
                    .await
                    .map_err(StorageError::io("import", path))
            })
            .await?;
        self.store.steps.reach("import.file-created");
        self.commit_volume(id, file, size, "import.committed").await
    }

    async fn resize_volume(&self, id: &VolumeId, new_size: u64) -> Result<VolumeInfo, StorageError> {
        let new_size = nonzero_size(new_size)?;
        let _locks = self.store.locks.lock(locks::volumes([id])).await;
        let entry = self.volume_entry(id).await?;
        if new_size < entry.size_bytes {
            return Err(StorageError::Shrink {
                volume: id.clone(),
                current: entry.size_bytes,
                requested: new_size,
            });
        }
        if new_size > entry.size_bytes {
            let path = self.store.path(&entry.file);
            ensure_not_written_by_qemu(id, &path)?;
            // A crash after this leaves a longer file than the manifest says;
            // recovery adopts the file's length (raw files have no other metadata).
            let dir = self.store.data_dir.clone();
            let target = path.clone();
            fsutil::blocking(move || grow_and_sync(&target, new_size, &dir))
                .await
                .map_err(StorageError::io("grow", &path))?;
            self.store.steps.reach("resize.file-resized");
            let mut state = self.store.state.lock().await;
            let mut next = state.clone();
            next.volumes.get_mut(id).expect("locked volume").size_bytes = new_size;
            self.store.commit(&mut state, next).await?;
            self.store.steps.reach("resize.committed");
        }
        let state = self.store.state.lock().await;
        Ok(self.store.volume_info(&state, id).expect("locked volume"))
    }

    async fn delete_volume(&self, id: &VolumeId) -> Result<(), StorageError> {
        let _locks = self.store.locks.lock(locks::volumes([id])).await;
        let state = self.store.state.lock().await;
        let Some(entry) = state.volumes.get(id) else { return Ok(()) };
        let path = self.store.path(&entry.file);
        ensure_not_written_by_qemu(id, &path)?;
        let mut next = state.clone();
        next.volumes.remove(id);
        let steps = ("delete-volume.committed", "delete-volume.file-removed");
        self.store.commit_then_remove(state, next, vec![path], steps).await
    }

    async fn delete_snapshot(&self, id: &SnapshotId) -> Result<(), StorageError> {
        let _locks = self.store.locks.lock(locks::snapshots([id])).await;
        let state = self.store.state.lock().await;
        let Some(entry) = state.snapshots.get(id) else { return Ok(()) };
        let path = self.store.path(&entry.file);
        let mut next = state.clone();
        next.snapshots.remove(id);
        let steps = ("delete-snapshot.committed", "delete-snapshot.file-removed");
        self.store.commit_then_remove(state, next, vec![path], steps).await
    }

    async fn snapshot_volumes(
        &self,
        group: &[(VolumeId, SnapshotId)],
        live: Option<&dyn LiveBlockOps>,
    ) -> Result<Vec<SnapshotInfo>, StorageError> {
        ensure_nonempty(group)?;
        let mut keys = BTreeSet::new();
        for (volume, snapshot) in group {
            if !keys.insert(LockKey::Volume(volume.clone()))
                || !keys.insert(LockKey::Snapshot(snapshot.clone()))
            {
                return Err(StorageError::invalid(format!(
                    "volume {volume} or snapshot {snapshot} appears twice"
                )));
            }
        }
        let _locks = self.store.locks.lock(keys).await;
        let mut copies = Vec::with_capacity(group.len());
        {
            let state = self.store.state.lock().await;
            for (volume, snapshot) in group {
                let entry = state
                    .volumes
                    .get(volume)
                    .ok_or_else(|| StorageError::VolumeNotFound { volume: volume.clone() })?;
                if state.snapshots.contains_key(snapshot) {
                    return Err(StorageError::SnapshotExists { snapshot: snapshot.clone() });
                }
                copies.push((self.store.path(&entry.file), LayerId::generate(), entry.size_bytes));
            }
        }
        for ((volume, _), (source, _, _)) in group.iter().zip(&copies) {
            self.ensure_detached(volume, source, live, "snapshot").await?;
        }
        let created: Vec<LayerId> = copies.iter().map(|(_, file, _)| file.clone()).collect();
        let jobs: Vec<(PathBuf, PathBuf, u64)> = copies
            .iter()
            .map(|(source, file, size)| (source.clone(), self.store.path(file), *size))
            .collect();
        let dir = self.store.data_dir.clone();
        let copied = fsutil::blocking(move || -> std::io::Result<()> {
            for (source, target, size) in &jobs {
                copy_and_sync(source, target, *size)?;
            }
            fsutil::sync_dir(&dir)
        });
        if let Err(error) = copied.await {
            self.store.discard_created(&created).await;
            return Err(StorageError::io("copy into", &self.store.data_dir)(error));
        }
        self.store.steps.reach("snapshot.files-copied");
        let created_at = Utc::now();
        let state = self
            .store
            .commit_created(&created, "snapshot.committed", |next| {
                for ((volume, snapshot), (_, file, size)) in group.iter().zip(copies) {
                    let entry =
                        SnapshotEntry { file, source_volume: volume.clone(), size_bytes: size, created_at };
                    next.snapshots.insert(snapshot.clone(), entry);
                }
            })
            .await?;
        Ok(group.iter().map(|(_, id)| state.snapshot(id).expect("just committed").0).collect())
    }

    async fn create_import_image(&self, path: &Path, size_bytes: u64) -> Result<ImportImage, StorageError> {
        let size = nonzero_size(size_bytes)?;
        let path = path.to_owned();
        fsutil::blocking(move || ImportImage::raw(&path, size)).await
    }

    async fn restore_volume(
        &self,
        from: &SnapshotId,
        to: &VolumeId,
        size_bytes: u64,
    ) -> Result<VolumeInfo, StorageError> {
        let (_locks, source, size) = self.store.lock_restore(from, to, size_bytes).await?;
        let file = self.copy_new(&self.store.path(&source), size, "restore").await?;
        self.store.steps.reach("restore.file-copied");
        self.commit_volume(to, file, size, "restore.committed").await
    }

    async fn clone_volume(
        &self,
        from: &VolumeId,
        to: &VolumeId,
        size_bytes: u64,
        live: Option<&dyn LiveBlockOps>,
    ) -> Result<VolumeInfo, StorageError> {
        ensure_distinct(from, to)?;
        let _locks = self.store.locks.lock(locks::volumes([from, to])).await;
        let source = self.volume_entry(from).await?;
        self.store.ensure_volume_absent(to).await?;
        let source_path = self.store.path(&source.file);
        self.ensure_detached(from, &source_path, live, "clone").await?;
        let size = round_to_sector(size_bytes).max(source.size_bytes);
        let file = self.copy_new(&source_path, size, "clone").await?;
        self.store.steps.reach("clone.file-copied");
        self.commit_volume(to, file, size, "clone.committed").await
    }

    async fn recover(&self, _live: Option<&dyn LiveBlockOps>) -> Result<RecoveryReport, StorageError> {
        let mut state = self.store.state.lock().await;
        // Every referenced file must exist; a missing one is reported, never dropped.
        let files: Vec<(String, PathBuf)> = state
            .volumes
            .iter()
            .map(|(id, entry)| (format!("volume {id}"), self.store.path(&entry.file)))
            .chain(
                state
                    .snapshots
                    .iter()
                    .map(|(id, entry)| (format!("snapshot {id}"), self.store.path(&entry.file))),
            )
            .collect();
        let lengths = fsutil::blocking(move || {
            let mut lengths = Vec::with_capacity(files.len());
            for (referenced_by, path) in files {
                match std::fs::metadata(&path) {
                    Ok(metadata) => lengths.push(metadata.len()),
                    Err(_) => return Err(StorageError::MissingFile { path, referenced_by }),
                }
            }
            Ok(lengths)
        })
        .await?;
        // Only a grow interrupted before its commit makes a volume's file
        // longer than recorded: adopt the file's length (volumes come first in `lengths`).
        let mut next = state.clone();
        let mut completed = 0;
        for (entry, length) in next.volumes.values_mut().zip(lengths) {
            if length > entry.size_bytes {
                entry.size_bytes = length;
                completed += 1;
            }
        }
        if next != *state {
            self.store.commit(&mut state, next).await?;
        }
        let referenced: BTreeSet<PathBuf> = state.files().map(|id| self.store.path(id)).collect();
        let removed_files = self.store.remove_strays(&referenced).await?;
        Ok(RecoveryReport {
            removed_files,
            removed_layers: 0,
            intents_completed: completed,
            intents_undone: 0,
            volumes: state.volumes.len(),
            snapshots: state.snapshots.len(),
            referenced_files: referenced.len(),
        })
    }

    async fn volume(&self, id: &VolumeId) -> Result<Option<VolumeInfo>, StorageError> {
        Ok(self.store.volume(id).await)
    }

    async fn volumes(&self) -> Result<Vec<VolumeInfo>, StorageError> {
        Ok(self.store.volumes().await)
    }

    async fn snapshot(&self, id: &SnapshotId) -> Result<Option<SnapshotInfo>, StorageError> {
        Ok(self.store.snapshot(id).await)
    }

    async fn snapshots(&self) -> Result<Vec<SnapshotInfo>, StorageError> {
        Ok(self.store.snapshots().await)
    }

    async fn snapshot_image(&self, id: &SnapshotId) -> Result<Option<SnapshotImage>, StorageError> {
        // Under the snapshot's lock, `delete_snapshot` waits until the file is open.
        let _locks = self.store.locks.lock(locks::snapshots([id])).await;
        let (info, path) = {
            let state = self.store.state.lock().await;
            let Some((info, file)) = state.snapshot(id) else { return Ok(None) };
            (info, self.store.path(file))
        };
        let files = vec![(path, VolumeFormat::Raw)];
        let lineage = Lineage::Standalone { driver: DRIVER };
        SnapshotImage::open(&self.store.qemu_img, &self.store.chain_maps, info, files, lineage)
            .await
            .map(Some)
    }

    /// Nothing to do: every file stands alone.
    async fn compact(&self, _live: Option<&dyn LiveBlockOps>) -> Result<CompactionReport, StorageError> {
        Ok(CompactionReport::default())
    }

    async fn audit(&self) -> Result<StorageAudit, StorageError> {
        self.store.audit().await
    }
}

/// Copies a whole file (reflink where possible), grows the copy to `size`, fsyncs it.
pub(super) fn copy_and_sync(source: &Path, target: &Path, size: u64) -> std::io::Result<()> {
    reflink_copy::reflink_or_copy(source, target)?;
    let file = OpenOptions::new().write(true).open(target)?;
    if file.metadata()?.len() < size {
        file.set_len(size)?;
    }
    file.sync_all()
}

fn grow_and_sync(path: &Path, size: u64, dir: &Path) -> std::io::Result<()> {
    let file = OpenOptions::new().write(true).open(path)?;
    if file.metadata()?.len() < size {
        file.set_len(size)?;
    }
    file.sync_all()?;
    fsutil::sync_dir(dir)
}
