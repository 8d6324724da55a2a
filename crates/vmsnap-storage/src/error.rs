//! Errors of the storage engine.

use std::path::PathBuf;

use crate::id::{SnapshotId, VolumeId};
use crate::live::LiveError;
use crate::qemu_img::QemuImgError;

/// A storage operation failed. Every variant says what was wrong and with which
/// object; none of them leaves the store in a state other than the one before
/// the operation or the one after it (see `docs/storage-layers.md`).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The volume does not exist.
    #[error("volume {volume} does not exist")]
    VolumeNotFound {
        /// The volume asked for.
        volume: VolumeId,
    },
    /// The snapshot does not exist.
    #[error("snapshot {snapshot} does not exist")]
    SnapshotNotFound {
        /// The snapshot asked for.
        snapshot: SnapshotId,
    },
    /// A volume with this id already exists; delete it first or choose another id.
    #[error("volume {volume} already exists; delete it first or choose another id")]
    VolumeExists {
        /// The id that is taken.
        volume: VolumeId,
    },
    /// A snapshot with this id already exists; delete it first or choose another id.
    #[error("snapshot {snapshot} already exists; delete it first or choose another id")]
    SnapshotExists {
        /// The id that is taken.
        snapshot: SnapshotId,
    },
    /// The request itself is malformed (an empty group, a duplicate id, a zero size...).
    #[error("invalid request: {reason}")]
    InvalidRequest {
        /// What is wrong, with the offending value.
        reason: String,
    },
    /// Volumes only grow.
    #[error("volume {volume} has {current} bytes and cannot shrink to {requested} bytes; volumes only grow")]
    Shrink {
        /// The volume.
        volume: VolumeId,
        /// Its current size in bytes.
        current: u64,
        /// The size asked for.
        requested: u64,
    },
    /// Another process (a running QEMU) holds the volume's file open for
    /// writing, and the caller did not say how to reach it.
    #[error(
        "volume {volume} is open for writing by another process ({}); stop the VM, or pass the node agent's LiveBlockOps so the engine goes through QEMU",
        path.display()
    )]
    InUse {
        /// The volume.
        volume: VolumeId,
        /// The locked file.
        path: PathBuf,
    },
    /// This driver cannot work on a volume attached to a running VM.
    #[error(
        "the {driver} driver cannot {action} volume {volume} while it is attached to a running VM; stop the VM first"
    )]
    LiveUnsupported {
        /// The driver's name.
        driver: &'static str,
        /// What was asked.
        action: &'static str,
        /// The attached volume.
        volume: VolumeId,
    },
    /// The running VM writes another file than the manifest says, so the engine will not guess.
    #[error(
        "the running VM writes {} for volume {volume}, but the manifest expects {}; the agent and the store disagree, investigate before retrying",
        reported.display(),
        expected.display()
    )]
    LiveMismatch {
        /// The volume.
        volume: VolumeId,
        /// The file QEMU reported.
        reported: PathBuf,
        /// The file (or files, for an unresolved switch) the manifest allows.
        expected: PathBuf,
    },
    /// The node agent failed a live block operation.
    #[error("the node agent could not {action} for volume {volume}")]
    Live {
        /// What was asked of the agent.
        action: &'static str,
        /// The (first) volume concerned.
        volume: VolumeId,
        /// The agent's error.
        #[source]
        source: LiveError,
    },
    /// A crash left an unfinished operation on this volume; `recover` resolves it.
    #[error("volume {volume} has an unfinished operation from before a crash; call recover() first")]
    RecoveryNeeded {
        /// The volume.
        volume: VolumeId,
    },
    /// The file given to import cannot be imported as it is.
    #[error("cannot import {}: {reason}", path.display())]
    UnsupportedImage {
        /// The source file.
        path: PathBuf,
        /// Why, and what to do.
        reason: String,
    },
    /// A file the manifest refers to is missing on disk. Recovery never drops
    /// the reference: restore the file, or delete the objects that refer to it.
    #[error("{} is missing but {referenced_by} still refers to it; restore the file or delete that object", path.display())]
    MissingFile {
        /// The missing file.
        path: PathBuf,
        /// Which volume, snapshot or layer refers to it.
        referenced_by: String,
    },
    /// A snapshot's content cannot be read file by file
    /// ([`VolumeDriver::snapshot_image`](crate::VolumeDriver::snapshot_image)):
    /// `qemu-img map` reports an extent with no place in a file of the chain.
    /// The engine never writes compressed clusters (imports are converted
    /// uncompressed), so this means a file was changed behind its back.
    #[error(
        "snapshot {snapshot} cannot be read file by file: virtual bytes {start}..{} are {reason}; back it up from a full read (restore it to a volume) and investigate the file",
        start + length
    )]
    UnmappableExtent {
        /// The snapshot.
        snapshot: SnapshotId,
        /// The first virtual byte of the extent.
        start: u64,
        /// Its length in bytes.
        length: u64,
        /// What `qemu-img map` said about it.
        reason: String,
    },
    /// The manifest cannot be read or is inconsistent.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A `qemu-img` command failed.
    #[error(transparent)]
    QemuImg(#[from] QemuImgError),
    /// A file-system operation failed.
    #[error("could not {action} {}", path.display())]
    Io {
        /// What was being done (`create`, `remove`, `copy`...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

impl StorageError {
    /// Whether the error says the volume or snapshot does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::VolumeNotFound { .. } | Self::SnapshotNotFound { .. })
    }

    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { action, path, source }
    }

    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        Self::InvalidRequest { reason: reason.into() }
    }
}

/// The manifest file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file is not valid JSON of the expected shape.
    #[error("the manifest {} is not valid", path.display())]
    Parse {
        /// The manifest file.
        path: PathBuf,
        /// What serde_json objected to.
        #[source]
        source: serde_json::Error,
    },
    /// The manifest was written by a newer (or unknown) version of the format.
    #[error("the manifest {} has formatVersion {found:?}, but this build reads only version {supported}; use a newer vmsnap", path.display())]
    UnsupportedVersion {
        /// The manifest file.
        path: PathBuf,
        /// The version in the file (`None` if absent).
        found: Option<u64>,
        /// The version this build reads.
        supported: u64,
    },
    /// The directory belongs to another driver.
    #[error("the manifest {} belongs to the {found:?} driver, not {expected:?}; point this driver at its own directory", path.display())]
    WrongDriver {
        /// The manifest file.
        path: PathBuf,
        /// The driver recorded in the file.
        found: String,
        /// The driver reading it.
        expected: &'static str,
    },
    /// The manifest contradicts itself (a dangling reference, a backing cycle...).
    #[error("the manifest {} is inconsistent: {reason}", path.display())]
    Inconsistent {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// There are data files but no manifest: refuse to start rather than treat them all as garbage.
    #[error("{} is missing but {files} data files exist beside it; restore the manifest from backup, or move the files away to start empty", path.display())]
    Missing {
        /// The manifest file that should exist.
        path: PathBuf,
        /// How many data files were found.
        files: usize,
    },
}
