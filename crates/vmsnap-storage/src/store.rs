//! [`Store`]: what both drivers keep and do the same way, whatever their file
//! format. A store is a root directory holding `manifest.json` and one data
//! directory (`files/` of the copy driver, `layers/` of the qcow2 driver), the
//! manifest as last committed, the per-id locks and the step hook.
//!
//! The ordering rules of `docs/storage-layers.md` live here once: a new file
//! is made durable before a manifest refers to it ([`Store::discard_created`]
//! removes it if the operation fails first), and a file is removed only after
//! a committed manifest stopped referring to it ([`Store::commit_then_remove`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Mutex, MutexGuard};

use crate::driver::{SnapshotInfo, StorageAudit, VolumeFormat, VolumeInfo};
use crate::error::{ManifestError, StorageError};
use crate::fsutil;
use crate::id::{LayerId, SnapshotId, VolumeId};
use crate::image::ChainMaps;
use crate::locks::{Guards, LockKey, Locks};
use crate::manifest_file::ManifestFile;
use crate::options::StorageOptions;
use crate::qemu_img::QemuImg;
use crate::round_to_sector;
use crate::steps::Steps;

/// The manifest of one driver, as far as the shared store needs to know it.
pub(crate) trait DriverManifest:
    Clone + PartialEq + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// The `driver` member of the manifest, also the driver's name.
    const DRIVER: &'static str;
    /// The directory under the root that holds the data files.
    const DATA_DIR: &'static str;
    /// The format of every volume's data file (its active layer for qcow2).
    const FORMAT: VolumeFormat;
    /// What the manifest records of a volume.
    type Volume: VolumeRecord;
    /// What the manifest records of a snapshot.
    type Snapshot: SnapshotRecord;

    /// A manifest with no volume and no snapshot.
    fn empty() -> Self;
    /// Every invariant of the format; checked on load and before every commit.
    fn validate(&self) -> Result<(), String>;
    /// The name of data file `id` inside the data directory.
    fn file_name(id: &LayerId) -> String;
    /// Every data file the manifest refers to.
    fn data_files(&self) -> Vec<&LayerId>;
    /// The volumes, by id.
    fn volume_map(&self) -> &BTreeMap<VolumeId, Self::Volume>;
    /// The snapshots, by id.
    fn snapshot_map(&self) -> &BTreeMap<SnapshotId, Self::Snapshot>;

    /// How many files a reader of `top` opens: 1 where every file stands alone.
    fn chain_depth(&self, _top: &LayerId) -> usize {
        1
    }

    /// Snapshot `id` with its data file (copy) or sealed layer (qcow2), if it exists.
    fn snapshot(&self, id: &SnapshotId) -> Option<(SnapshotInfo, &LayerId)> {
        let record = self.snapshot_map().get(id)?;
        let (data, source_volume, size_bytes, created_at) = record.parts();
        let info =
            SnapshotInfo { id: id.clone(), source_volume: source_volume.clone(), size_bytes, created_at };
        Some((info, data))
    }
}

/// What both drivers record of a volume.
pub(crate) trait VolumeRecord {
    /// Its data file (copy) or active layer (qcow2), and its virtual size in bytes.
    fn active(&self) -> (&LayerId, u64);
}

/// What both drivers record of a snapshot.
pub(crate) trait SnapshotRecord {
    /// Its data file (copy) or sealed layer (qcow2), the volume it was taken
    /// of, the size of a restored volume, and when the point in time was fixed.
    fn parts(&self) -> (&LayerId, &VolumeId, u64, DateTime<Utc>);
}

/// One driver's root directory, manifest, locks and step hook.
#[derive(Debug)]
pub(crate) struct Store<M> {
    /// The root directory (absolute).
    pub root: PathBuf,
    /// `<root>/<M::DATA_DIR>`.
    pub data_dir: PathBuf,
    /// The `qemu-img` the driver runs.
    pub qemu_img: QemuImg,
    /// The maps of snapshot chains that images made, for later images to build on.
    pub chain_maps: Arc<ChainMaps>,
    /// `<root>/manifest.json`.
    pub manifest_file: ManifestFile,
    /// The manifest as last committed; held while an operation commits.
    pub state: Mutex<M>,
    /// Locks per volume and snapshot id.
    pub locks: Locks,
    /// Where crash tests inject faults.
    pub steps: Steps,
}

impl<M: DriverManifest> Store<M> {
    /// Opens (or initialises) the store under `root`.
    pub async fn open(root: PathBuf, options: &StorageOptions) -> Result<Self, StorageError> {
        let steps = Steps::of(options);
        let data_dir = root.join(M::DATA_DIR);
        let dir = data_dir.clone();
        fsutil::blocking(move || std::fs::create_dir_all(&dir))
            .await
            .map_err(StorageError::io("create", &data_dir))?;
        let root = std::fs::canonicalize(&root).map_err(StorageError::io("resolve", &root))?;
        let data_dir = root.join(M::DATA_DIR);
        let manifest_file = ManifestFile::new(root.join("manifest.json"), M::DRIVER, steps.clone());
        let manifest = manifest_file.load_or_init(&data_dir, M::empty, M::validate).await?;
        Ok(Self {
            root,
            data_dir,
            qemu_img: QemuImg::new(&options.qemu_img),
            chain_maps: Arc::default(),
            manifest_file,
            state: Mutex::new(manifest),
            locks: Locks::default(),
            steps,
        })
    }

    /// The path of data file `id`.
    pub fn path(&self, id: &LayerId) -> PathBuf {
        self.data_dir.join(M::file_name(id))
    }

    /// Validates and durably writes `next`, then makes it the current state.
    /// If writing fails, the state is re-read from disk, which holds either
    /// the old or the new manifest.
    pub async fn commit(&self, state: &mut MutexGuard<'_, M>, next: M) -> Result<(), StorageError> {
        next.validate().map_err(|reason| self.inconsistent(reason))?;
        match self.manifest_file.store(&next).await {
            Ok(()) => {
                **state = next;
                Ok(())
            }
            Err(error) => {
                if let Ok(Some(on_disk)) = self.manifest_file.load::<M>() {
                    **state = on_disk;
                }
                Err(error)
            }
        }
    }

    /// The manifest error for a state that breaks an invariant.
    pub fn inconsistent(&self, reason: String) -> StorageError {
        ManifestError::Inconsistent { path: self.manifest_file.path().to_owned(), reason }.into()
    }

    /// Commits `next`, reaches `committed`, then removes `files` (which `next`
    /// no longer refers to), reaching `removed` after each.
    pub async fn commit_then_remove(
        &self,
        mut state: MutexGuard<'_, M>,
        next: M,
        files: Vec<PathBuf>,
        (committed, removed): (&'static str, &'static str),
    ) -> Result<(), StorageError> {
        self.commit(&mut state, next).await?;
        drop(state);
        self.steps.reach(committed);
        self.remove_files(files, removed).await?;
        Ok(())
    }

    /// Removes files (after the manifest stopped referring to them), reaching
    /// `step` after each, then makes the removals durable. Returns how many existed.
    pub async fn remove_files(&self, files: Vec<PathBuf>, step: &'static str) -> Result<usize, StorageError> {
        if files.is_empty() {
            return Ok(0);
        }
        let (dir, steps) = (self.data_dir.clone(), self.steps.clone());
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

    /// Makes a new data file under a fresh id: `make` gets its path and leaves
    /// the file durable. If `make` fails, whatever it left is removed.
    pub async fn make_file<T, Fut>(
        &self,
        make: impl FnOnce(PathBuf) -> Fut,
    ) -> Result<(LayerId, T), StorageError>
    where
        Fut: Future<Output = Result<T, StorageError>>,
    {
        let file = LayerId::generate();
        match make(self.path(&file)).await {
            Ok(value) => Ok((file, value)),
            Err(error) => {
                self.discard_created(std::slice::from_ref(&file)).await;
                Err(error)
            }
        }
    }

    /// Commits the manifest that `change` makes of the current one, which
    /// refers to the new, durable files `created`, and reaches `step`. If the
    /// commit fails, the files are removed. Returns the state, still locked.
    pub async fn commit_created(
        &self,
        created: &[LayerId],
        step: &'static str,
        change: impl FnOnce(&mut M),
    ) -> Result<MutexGuard<'_, M>, StorageError> {
        let mut state = self.state.lock().await;
        let mut next = state.clone();
        change(&mut next);
        if let Err(error) = self.commit(&mut state, next).await {
            drop(state);
            self.discard_created(created).await;
            return Err(error);
        }
        self.steps.reach(step);
        Ok(state)
    }

    /// Removes the files of `created` that the current manifest does not know,
    /// after an operation that created them failed. Files the manifest does
    /// refer to (a commit that reached the disk despite an error) are kept.
    pub async fn discard_created(&self, created: &[LayerId]) {
        let unknown: Vec<PathBuf> = {
            let state = self.state.lock().await;
            let known: BTreeSet<&LayerId> = state.data_files().into_iter().collect();
            created.iter().filter(|id| !known.contains(id)).map(|id| self.path(id)).collect()
        };
        if let Err(error) = self.remove_files(unknown, "discard.file-removed").await {
            // Recovery removes what is left.
            tracing::warn!(%error, "could not remove the files of a failed operation");
        }
    }

    /// At recovery: removes every file of the data directory that `referenced`
    /// does not list, and a temporary manifest left by a crash. Returns how many there were.
    pub async fn remove_strays(&self, referenced: &BTreeSet<PathBuf>) -> Result<usize, StorageError> {
        let data_dir = self.data_dir.clone();
        let mut strays: Vec<PathBuf> = fsutil::blocking(move || fsutil::list_files(&data_dir))
            .await
            .map_err(StorageError::io("list", &self.data_dir))?
            .into_iter()
            .filter(|file| !referenced.contains(file))
            .collect();
        strays.push(fsutil::temp_path(self.manifest_file.path()));
        self.remove_files(strays, "recover.file-removed").await
    }

    /// Locks the id of a volume about to be created and checks that no volume has it.
    pub async fn lock_new_volume(&self, id: &VolumeId) -> Result<Guards, StorageError> {
        let guards = self.locks.lock([LockKey::Volume(id.clone())]).await;
        self.ensure_volume_absent(id).await?;
        Ok(guards)
    }

    /// Refuses an id that a volume already has.
    pub async fn ensure_volume_absent(&self, id: &VolumeId) -> Result<(), StorageError> {
        if self.state.lock().await.volume_map().contains_key(id) {
            return Err(StorageError::VolumeExists { volume: id.clone() });
        }
        Ok(())
    }

    /// Locks a restore's ids and checks them: snapshot `from` exists and volume
    /// `to` does not. Returns the snapshot's data file (or layer) and the
    /// restored size: `size_bytes` or the snapshot's size, whichever is larger.
    pub async fn lock_restore(
        &self,
        from: &SnapshotId,
        to: &VolumeId,
        size_bytes: u64,
    ) -> Result<(Guards, LayerId, u64), StorageError> {
        let guards = self.locks.lock([LockKey::Volume(to.clone()), LockKey::Snapshot(from.clone())]).await;
        let state = self.state.lock().await;
        let (snapshot, data) =
            state.snapshot(from).ok_or_else(|| StorageError::SnapshotNotFound { snapshot: from.clone() })?;
        if state.volume_map().contains_key(to) {
            return Err(StorageError::VolumeExists { volume: to.clone() });
        }
        Ok((guards, data.clone(), round_to_sector(size_bytes).max(snapshot.size_bytes)))
    }

    /// Volume `id` of `manifest` (the state, or the one being committed), if it exists.
    pub fn volume_info(&self, manifest: &M, id: &VolumeId) -> Option<VolumeInfo> {
        let (active, size_bytes) = manifest.volume_map().get(id)?.active();
        Some(VolumeInfo {
            id: id.clone(),
            size_bytes,
            path: self.path(active),
            format: M::FORMAT,
            chain_depth: manifest.chain_depth(active),
        })
    }

    /// Volume `id`, if it exists.
    pub async fn volume(&self, id: &VolumeId) -> Option<VolumeInfo> {
        self.volume_info(&*self.state.lock().await, id)
    }

    /// Every volume, by id.
    pub async fn volumes(&self) -> Vec<VolumeInfo> {
        let state = self.state.lock().await;
        state.volume_map().keys().filter_map(|id| self.volume_info(&state, id)).collect()
    }

    /// Snapshot `id`, if it exists.
    pub async fn snapshot(&self, id: &SnapshotId) -> Option<SnapshotInfo> {
        self.state.lock().await.snapshot(id).map(|(info, _)| info)
    }

    /// Every snapshot, by id.
    pub async fn snapshots(&self) -> Vec<SnapshotInfo> {
        let state = self.state.lock().await;
        state.snapshot_map().keys().filter_map(|id| state.snapshot(id)).map(|(info, _)| info).collect()
    }

    /// Compares the files on disk with the files the manifest refers to.
    pub async fn audit(&self) -> Result<StorageAudit, StorageError> {
        let state = self.state.lock().await;
        let referenced_files = state.data_files().into_iter().map(|id| self.path(id)).collect();
        let (root, data_dir, manifest) =
            (self.root.clone(), self.data_dir.clone(), self.manifest_file.path().to_owned());
        let files_on_disk = fsutil::blocking(move || -> std::io::Result<_> {
            let mut files = fsutil::list_files(&data_dir)?;
            files.extend(fsutil::list_files(&root)?.into_iter().filter(|file| *file != manifest));
            Ok(files.into_iter().collect())
        })
        .await
        .map_err(StorageError::io("list", &self.root))?;
        let (volumes, snapshots) = (state.volume_map().len(), state.snapshot_map().len());
        Ok(StorageAudit { volumes, snapshots, referenced_files, files_on_disk })
    }
}

/// A size in bytes for a new or grown volume: positive, rounded up to a sector.
pub(crate) fn nonzero_size(size_bytes: u64) -> Result<u64, StorageError> {
    if size_bytes == 0 {
        return Err(StorageError::invalid("a volume size of 0 bytes; give a positive size"));
    }
    Ok(round_to_sector(size_bytes))
}

/// Refuses to clone a volume onto itself.
pub(crate) fn ensure_distinct(from: &VolumeId, to: &VolumeId) -> Result<(), StorageError> {
    if from == to {
        return Err(StorageError::invalid(format!("cloning volume {from} onto itself")));
    }
    Ok(())
}

/// Refuses an empty snapshot group.
pub(crate) fn ensure_nonempty<T>(group: &[T]) -> Result<(), StorageError> {
    if group.is_empty() {
        return Err(StorageError::invalid("an empty snapshot group; name at least one volume"));
    }
    Ok(())
}
