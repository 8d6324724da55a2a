//! [`VolumeDriver`]: the one interface both drivers implement, and the values it returns.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::StorageError;
use crate::id::{SnapshotId, VolumeId};
use crate::image::SnapshotImage;
use crate::import_image::ImportImage;
use crate::live::LiveBlockOps;

/// A percent-progress callback (0 to 100), called from the importing task.
pub type Progress<'a> = &'a (dyn Fn(u8) + Send + Sync);

/// What to import into a new volume ([`VolumeDriver::import_volume`]).
#[derive(Clone, Copy)]
pub struct Import<'a> {
    /// A self-contained raw or qcow2 file (detected with `qemu-img info`).
    pub source: &'a Path,
    /// The least size of the volume; the image's virtual size when that is larger.
    pub size_bytes: Option<u64>,
    /// Percentages as the copy proceeds, ending at 100.
    pub progress: Progress<'a>,
    /// The caller hands `source` over: it writes the file no more and removes its name after the
    /// import. A file already in the driver's own format (one made by
    /// [`VolumeDriver::create_import_image`]) is then taken as it is, with a hard link, instead of
    /// copied. Anything else is copied as without it.
    pub handed_over: bool,
}

/// A store of volumes and snapshots on the local file system.
///
/// Every method is safe to call concurrently with any other; operations on the
/// same volume are serialised. Every mutating method either completes or, on an
/// error or a crash at any point, leaves the store as it was before (after
/// [`VolumeDriver::recover`] for a crash). Pass the node agent's
/// [`LiveBlockOps`] wherever a volume may be attached to a running VM; without
/// it, a volume whose file a running QEMU holds for writing is refused with
/// [`StorageError::InUse`] rather than corrupted.
#[async_trait]
pub trait VolumeDriver: Send + Sync {
    /// A short name for logs and errors (`qcow2-layers`, `copy`).
    fn name(&self) -> &'static str;

    /// Creates a blank (all zeros) volume of `size_bytes`, rounded up to a multiple of 512.
    async fn create_volume(&self, id: &VolumeId, size_bytes: u64) -> Result<VolumeInfo, StorageError>;

    /// Creates a volume from an image file ([`Import`]).
    async fn import_volume(&self, id: &VolumeId, import: Import<'_>) -> Result<VolumeInfo, StorageError>;

    /// Creates at `path` (replacing any file there; on the store's file system for the import to
    /// take it without a copy) a file of a disk of `size_bytes` (a multiple of 512) in this
    /// driver's own format, to be written by guest offset and then imported with
    /// [`Import::handed_over`]: the disk is then written once.
    async fn create_import_image(&self, path: &Path, size_bytes: u64) -> Result<ImportImage, StorageError>;

    /// Grows a detached volume to `new_size` bytes (rounded up to 512); asking for its current size is a no-op.
    async fn resize_volume(&self, id: &VolumeId, new_size: u64) -> Result<VolumeInfo, StorageError>;

    /// Deletes a detached volume. Data that snapshots still need stays; the rest
    /// is freed. Deleting a volume that does not exist succeeds (idempotent).
    async fn delete_volume(&self, id: &VolumeId) -> Result<(), StorageError>;

    /// The volume, if it exists.
    async fn volume(&self, id: &VolumeId) -> Result<Option<VolumeInfo>, StorageError>;

    /// Every volume, by id.
    async fn volumes(&self) -> Result<Vec<VolumeInfo>, StorageError>;

    /// Takes one snapshot of each `(volume, snapshot)` pair, all at one point
    /// in time: attached volumes are switched by `live` in one QEMU transaction
    /// per VM; detached volumes are not being written. Nothing is recorded
    /// unless all succeed.
    async fn snapshot_volumes(
        &self,
        group: &[(VolumeId, SnapshotId)],
        live: Option<&dyn LiveBlockOps>,
    ) -> Result<Vec<SnapshotInfo>, StorageError>;

    /// Deletes a snapshot; volumes restored from it are unaffected. Deleting a
    /// snapshot that does not exist succeeds (idempotent).
    async fn delete_snapshot(&self, id: &SnapshotId) -> Result<(), StorageError>;

    /// The snapshot, if it exists.
    async fn snapshot(&self, id: &SnapshotId) -> Result<Option<SnapshotInfo>, StorageError>;

    /// Every snapshot, by id.
    async fn snapshots(&self) -> Result<Vec<SnapshotInfo>, StorageError>;

    /// Opens snapshot `id` for reading outside QEMU (a backup): every file of
    /// its chain is held open and mapped once on first need, so reads need no
    /// process, and
    /// deleting or compacting the snapshot meanwhile does not take the data
    /// away. `None` if the snapshot does not exist. See [`SnapshotImage`] for
    /// reads and [`SnapshotImage::changed_since`] for incrementals.
    async fn snapshot_image(&self, id: &SnapshotId) -> Result<Option<SnapshotImage>, StorageError>;

    /// Creates volume `to` with the content of snapshot `from`; its size is the
    /// larger of `size_bytes` and the snapshot's size.
    async fn restore_volume(
        &self,
        from: &SnapshotId,
        to: &VolumeId,
        size_bytes: u64,
    ) -> Result<VolumeInfo, StorageError>;

    /// Creates volume `to` with the current content of volume `from`; its size
    /// is the larger of `size_bytes` and the source's size.
    async fn clone_volume(
        &self,
        from: &VolumeId,
        to: &VolumeId,
        size_bytes: u64,
        live: Option<&dyn LiveBlockOps>,
    ) -> Result<VolumeInfo, StorageError>;

    /// Reconciles files against the manifest after a restart: finishes or
    /// undoes what a crash interrupted, removes files nothing refers to, and
    /// checks that every file something refers to exists. Call it once, at
    /// startup, before anything else, with `live` if VMs may be running.
    async fn recover(&self, live: Option<&dyn LiveBlockOps>) -> Result<RecoveryReport, StorageError>;

    /// Shortens the layer chains of volumes deeper than the configured maximum
    /// and frees what that leaves unreferenced. Meant for a background task.
    async fn compact(&self, live: Option<&dyn LiveBlockOps>) -> Result<CompactionReport, StorageError>;

    /// Compares the files on disk with the files the manifest refers to.
    async fn audit(&self) -> Result<StorageAudit, StorageError>;
}

/// The on-disk format of a volume's active file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VolumeFormat {
    /// A qcow2 file, possibly with backing files.
    Qcow2,
    /// A raw disk image.
    Raw,
}

impl VolumeFormat {
    /// The name QEMU uses (`qcow2`, `raw`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Qcow2 => "qcow2",
            Self::Raw => "raw",
        }
    }
}

impl fmt::Display for VolumeFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A volume as the engine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    /// The volume.
    pub id: VolumeId,
    /// Its virtual size in bytes.
    pub size_bytes: u64,
    /// The file to give QEMU (absolute); for qcow2 its header names its backing files.
    pub path: PathBuf,
    /// The format of `path`.
    pub format: VolumeFormat,
    /// How many files a reader opens: 1 for a standalone file.
    pub chain_depth: usize,
}

/// A snapshot as the engine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The snapshot.
    pub id: SnapshotId,
    /// The volume it was taken of (which may since have been deleted).
    pub source_volume: VolumeId,
    /// The size of a volume restored from it, in bytes.
    pub size_bytes: u64,
    /// When the point in time was fixed.
    pub created_at: DateTime<Utc>,
}

/// What [`VolumeDriver::recover`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Files removed because nothing referred to them (half-made layers, temporary files).
    pub removed_files: usize,
    /// Manifest entries of layers removed because nothing reached them any more.
    pub removed_layers: usize,
    /// Interrupted operations completed (e.g. a live switch QEMU had done).
    pub intents_completed: usize,
    /// Interrupted operations undone (e.g. a live switch QEMU had not done).
    pub intents_undone: usize,
    /// Volumes in the store after recovery.
    pub volumes: usize,
    /// Snapshots in the store after recovery.
    pub snapshots: usize,
    /// Files the manifest refers to, all verified to exist.
    pub referenced_files: usize,
}

/// What [`VolumeDriver::compact`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactionReport {
    /// Volumes whose chains were shortened.
    pub compacted: Vec<VolumeId>,
    /// Volumes that needed it but were left alone, with the reason.
    pub skipped: Vec<(VolumeId, String)>,
    /// Layers freed because nothing referred to them after compaction.
    pub freed_layers: usize,
}

/// The files of a store: what is on disk against what the manifest refers to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageAudit {
    /// Volumes in the manifest.
    pub volumes: usize,
    /// Snapshots in the manifest.
    pub snapshots: usize,
    /// Data files the manifest refers to (absolute paths).
    pub referenced_files: BTreeSet<PathBuf>,
    /// Files found on disk in the store, other than the manifest itself (absolute paths).
    pub files_on_disk: BTreeSet<PathBuf>,
}

impl StorageAudit {
    /// Files on disk that nothing refers to (leaks; recovery removes them).
    pub fn unreferenced(&self) -> Vec<&PathBuf> {
        self.files_on_disk.difference(&self.referenced_files).collect()
    }

    /// Files the manifest refers to that are not on disk (losses).
    pub fn missing(&self) -> Vec<&PathBuf> {
        self.referenced_files.difference(&self.files_on_disk).collect()
    }
}
