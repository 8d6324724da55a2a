//! The copy driver's operations: write a new file under a fresh name, fsync
//! it, commit; or commit, then remove.

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use chrono::Utc;

use super::CopyDriver;
use super::manifest::{Entry, Manifest, SnapshotEntry};
use crate::driver::{Progress, RecoveryReport, SnapshotInfo, VolumeInfo};
use crate::error::StorageError;
use crate::fsutil;
use crate::id::{LayerId, SnapshotId, VolumeId};
use crate::import::inspect_source;
use crate::live::LiveBlockOps;
use crate::locks::{self, LockKey};
use crate::round_to_sector;

impl CopyDriver {
    pub(super) async fn create(&self, id: &VolumeId, size_bytes: u64) -> Result<VolumeInfo, StorageError> {
        let size = nonzero_size(size_bytes)?;
        let _locks = self.locks.lock(locks::volumes([id])).await;
        self.ensure_volume_absent(id).await?;
        let file = LayerId::generate();
        let path = self.file_path(&file);
        let dir = self.files_dir.clone();
        let created = fsutil::blocking(move || {
            let handle = OpenOptions::new().write(true).create_new(true).open(&path)?;
            handle.set_len(size)?;
            handle.sync_all()?;
            fsutil::sync_dir(&dir)
        });
        self.finish_new_file(&file, created.await, "create").await?;
        self.steps.reach("create.file-created");
        self.commit_volume(id, file, size, "create.committed").await
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
        let file = LayerId::generate();
        let path = self.file_path(&file);
        let size = round_to_sector(size_bytes.unwrap_or(0).max(info.virtual_size));
        let converted = self.qemu_img.convert((source, &info.format), (&path, "raw"), None, progress).await;
        if let Err(error) = converted {
            self.discard_created(std::slice::from_ref(&file)).await;
            return Err(error.into());
        }
        let dir = self.files_dir.clone();
        let grown = fsutil::blocking(move || grow_and_sync(&path, size, &dir));
        self.finish_new_file(&file, grown.await, "import").await?;
        self.steps.reach("import.file-created");
        self.commit_volume(id, file, size, "import.committed").await
    }

    pub(super) async fn resize(&self, id: &VolumeId, new_size: u64) -> Result<VolumeInfo, StorageError> {
        let new_size = nonzero_size(new_size)?;
        let _locks = self.locks.lock(locks::volumes([id])).await;
        let entry = self.volume_entry(id).await?;
        if new_size < entry.size_bytes {
            return Err(StorageError::Shrink {
                volume: id.clone(),
                current: entry.size_bytes,
                requested: new_size,
            });
        }
        if new_size > entry.size_bytes {
            let path = self.file_path(&entry.file);
            ensure_not_written_by_qemu(id, &path)?;
            // A crash after this leaves a longer file than the manifest says;
            // recovery adopts the file's length (raw files have no other metadata).
            let dir = self.files_dir.clone();
            let target = path.clone();
            fsutil::blocking(move || grow_and_sync(&target, new_size, &dir))
                .await
                .map_err(StorageError::io("grow", &path))?;
            self.steps.reach("resize.file-resized");
            let mut state = self.state.lock().await;
            let mut next = state.clone();
            next.volumes.get_mut(id).expect("locked volume").size_bytes = new_size;
            self.commit(&mut state, next).await?;
            self.steps.reach("resize.committed");
        }
        let state = self.state.lock().await;
        Ok(self.volume_info(&state, id).expect("locked volume"))
    }

    pub(super) async fn delete_volume_inner(&self, id: &VolumeId) -> Result<(), StorageError> {
        let _locks = self.locks.lock(locks::volumes([id])).await;
        let mut state = self.state.lock().await;
        let Some(entry) = state.volumes.get(id) else { return Ok(()) };
        let path = self.file_path(&entry.file);
        ensure_not_written_by_qemu(id, &path)?;
        let mut next = state.clone();
        next.volumes.remove(id);
        self.commit(&mut state, next).await?;
        drop(state);
        self.steps.reach("delete-volume.committed");
        self.remove_files(vec![path], "delete-volume.file-removed").await?;
        Ok(())
    }

    pub(super) async fn delete_snapshot_inner(&self, id: &SnapshotId) -> Result<(), StorageError> {
        let _locks = self.locks.lock(locks::snapshots([id])).await;
        let mut state = self.state.lock().await;
        let Some(entry) = state.snapshots.get(id) else { return Ok(()) };
        let path = self.file_path(&entry.file);
        let mut next = state.clone();
        next.snapshots.remove(id);
        self.commit(&mut state, next).await?;
        drop(state);
        self.steps.reach("delete-snapshot.committed");
        self.remove_files(vec![path], "delete-snapshot.file-removed").await?;
        Ok(())
    }

    pub(super) async fn snapshot_group(
        &self,
        group: &[(VolumeId, SnapshotId)],
        live: Option<&dyn LiveBlockOps>,
    ) -> Result<Vec<SnapshotInfo>, StorageError> {
        if group.is_empty() {
            return Err(StorageError::invalid("an empty snapshot group; name at least one volume"));
        }
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
        let _locks = self.locks.lock(keys).await;
        let mut copies = Vec::with_capacity(group.len());
        {
            let state = self.state.lock().await;
            for (volume, snapshot) in group {
                let entry = state
                    .volumes
                    .get(volume)
                    .ok_or_else(|| StorageError::VolumeNotFound { volume: volume.clone() })?;
                if state.snapshots.contains_key(snapshot) {
                    return Err(StorageError::SnapshotExists { snapshot: snapshot.clone() });
                }
                copies.push((self.file_path(&entry.file), LayerId::generate(), entry.size_bytes));
            }
        }
        for ((volume, _), (source, _, _)) in group.iter().zip(&copies) {
            self.ensure_detached(volume, source, live, "snapshot").await?;
        }
        let created: Vec<LayerId> = copies.iter().map(|(_, file, _)| file.clone()).collect();
        let jobs: Vec<(PathBuf, PathBuf, u64)> =
            copies.iter().map(|(source, file, size)| (source.clone(), self.file_path(file), *size)).collect();
        let dir = self.files_dir.clone();
        let copied = fsutil::blocking(move || -> std::io::Result<()> {
            for (source, target, size) in &jobs {
                copy_and_sync(source, target, *size)?;
            }
            fsutil::sync_dir(&dir)
        });
        if let Err(error) = copied.await {
            self.discard_created(&created).await;
            return Err(StorageError::io("copy into", &self.files_dir)(error));
        }
        self.steps.reach("snapshot.files-copied");
        let created_at = Utc::now();
        let mut state = self.state.lock().await;
        let mut next = state.clone();
        for ((volume, snapshot), (_, file, size)) in group.iter().zip(copies) {
            let entry = SnapshotEntry { file, source_volume: volume.clone(), size_bytes: size, created_at };
            next.snapshots.insert(snapshot.clone(), entry);
        }
        if let Err(error) = self.commit(&mut state, next).await {
            drop(state);
            self.discard_created(&created).await;
            return Err(error);
        }
        self.steps.reach("snapshot.committed");
        Ok(group.iter().map(|(_, id)| Self::snapshot_info(&state, id).expect("just committed")).collect())
    }

    pub(super) async fn restore(
        &self,
        from: &SnapshotId,
        to: &VolumeId,
        size_bytes: u64,
    ) -> Result<VolumeInfo, StorageError> {
        let _locks = self.locks.lock([LockKey::Volume(to.clone()), LockKey::Snapshot(from.clone())]).await;
        let (source, size) = {
            let state = self.state.lock().await;
            let entry = state
                .snapshots
                .get(from)
                .ok_or_else(|| StorageError::SnapshotNotFound { snapshot: from.clone() })?;
            if state.volumes.contains_key(to) {
                return Err(StorageError::VolumeExists { volume: to.clone() });
            }
            (self.file_path(&entry.file), round_to_sector(size_bytes).max(entry.size_bytes))
        };
        let file = self.copy_new(&source, size, "restore").await?;
        self.steps.reach("restore.file-copied");
        self.commit_volume(to, file, size, "restore.committed").await
    }

    pub(super) async fn clone_from_volume(
        &self,
        from: &VolumeId,
        to: &VolumeId,
        size_bytes: u64,
        live: Option<&dyn LiveBlockOps>,
    ) -> Result<VolumeInfo, StorageError> {
        if from == to {
            return Err(StorageError::invalid(format!("cloning volume {from} onto itself")));
        }
        let _locks = self.locks.lock(locks::volumes([from, to])).await;
        let source = self.volume_entry(from).await?;
        self.ensure_volume_absent(to).await?;
        let source_path = self.file_path(&source.file);
        self.ensure_detached(from, &source_path, live, "clone").await?;
        let size = round_to_sector(size_bytes).max(source.size_bytes);
        let file = self.copy_new(&source_path, size, "clone").await?;
        self.steps.reach("clone.file-copied");
        self.commit_volume(to, file, size, "clone.committed").await
    }

    pub(super) async fn recover_inner(&self) -> Result<RecoveryReport, StorageError> {
        let mut state = self.state.lock().await;
        // Every referenced file must exist; a missing one is reported, never dropped.
        let files: Vec<(String, PathBuf)> = state
            .volumes
            .iter()
            .map(|(id, entry)| (format!("volume {id}"), self.file_path(&entry.file)))
            .chain(
                state
                    .snapshots
                    .iter()
                    .map(|(id, entry)| (format!("snapshot {id}"), self.file_path(&entry.file))),
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
            self.commit(&mut state, next).await?;
        }
        let referenced: BTreeSet<PathBuf> = state.files().map(|id| self.file_path(id)).collect();
        let files_dir = self.files_dir.clone();
        let mut strays: Vec<PathBuf> = fsutil::blocking(move || fsutil::list_files(&files_dir))
            .await
            .map_err(StorageError::io("list", &self.files_dir))?
            .into_iter()
            .filter(|file| !referenced.contains(file))
            .collect();
        strays.push(fsutil::temp_path(self.manifest_file.path()));
        let removed_files = self.remove_files(strays, "recover.file-removed").await?;
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

    /// Copies `source` to a new file of at least `size` bytes and makes it durable.
    async fn copy_new(
        &self,
        source: &Path,
        size: u64,
        action: &'static str,
    ) -> Result<LayerId, StorageError> {
        let file = LayerId::generate();
        let (source, target, dir) = (source.to_owned(), self.file_path(&file), self.files_dir.clone());
        let copied = fsutil::blocking(move || {
            copy_and_sync(&source, &target, size).and_then(|()| fsutil::sync_dir(&dir))
        });
        self.finish_new_file(&file, copied.await, action).await?;
        Ok(file)
    }

    /// Turns the result of writing a new file into the operation's result,
    /// removing the file on failure.
    async fn finish_new_file(
        &self,
        file: &LayerId,
        result: std::io::Result<()>,
        action: &'static str,
    ) -> Result<(), StorageError> {
        if let Err(error) = result {
            self.discard_created(std::slice::from_ref(file)).await;
            return Err(StorageError::io(action, self.file_path(file))(error));
        }
        Ok(())
    }

    async fn commit_volume(
        &self,
        id: &VolumeId,
        file: LayerId,
        size: u64,
        step: &'static str,
    ) -> Result<VolumeInfo, StorageError> {
        let mut state = self.state.lock().await;
        let mut next: Manifest = state.clone();
        next.volumes.insert(id.clone(), Entry { file: file.clone(), size_bytes: size });
        if let Err(error) = self.commit(&mut state, next).await {
            drop(state);
            self.discard_created(&[file]).await;
            return Err(error);
        }
        self.steps.reach(step);
        Ok(self.volume_info(&state, id).expect("just committed"))
    }

    async fn volume_entry(&self, id: &VolumeId) -> Result<Entry, StorageError> {
        let state = self.state.lock().await;
        state.volumes.get(id).cloned().ok_or_else(|| StorageError::VolumeNotFound { volume: id.clone() })
    }

    async fn ensure_volume_absent(&self, id: &VolumeId) -> Result<(), StorageError> {
        if self.state.lock().await.volumes.contains_key(id) {
            return Err(StorageError::VolumeExists { volume: id.clone() });
        }
        Ok(())
    }

    /// Refuses a volume that a running VM uses: a copy of a file being written could tear.
    async fn ensure_detached(
        &self,
        volume: &VolumeId,
        path: &Path,
        live: Option<&dyn LiveBlockOps>,
        action: &'static str,
    ) -> Result<(), StorageError> {
        if let Some(live) = live {
            let attached = live.active_file(volume).await.map_err(|source| StorageError::Live {
                action: "report the active file",
                volume: volume.clone(),
                source,
            })?;
            if attached.is_some() {
                return Err(StorageError::LiveUnsupported {
                    driver: super::DRIVER,
                    action,
                    volume: volume.clone(),
                });
            }
        }
        ensure_not_written_by_qemu(volume, path)
    }
}

fn ensure_not_written_by_qemu(id: &VolumeId, path: &Path) -> Result<(), StorageError> {
    if crate::inuse::written_by_qemu(path).map_err(StorageError::io("check the locks of", path))? {
        return Err(StorageError::InUse { volume: id.clone(), path: path.to_owned() });
    }
    Ok(())
}

/// Copies a whole file (reflink where possible), grows the copy to `size`, fsyncs it.
fn copy_and_sync(source: &Path, target: &Path, size: u64) -> std::io::Result<()> {
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

fn nonzero_size(size_bytes: u64) -> Result<u64, StorageError> {
    if size_bytes == 0 {
        return Err(StorageError::invalid("a volume size of 0 bytes; give a positive size"));
    }
    Ok(round_to_sector(size_bytes))
}
