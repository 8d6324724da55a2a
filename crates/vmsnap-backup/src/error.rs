//! The typed errors of the repository engine.

use crate::{BackendKind, BackupId, ChunkId};

/// Why an operation on a backup repository failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No repository configuration object at the backend's location.
    #[error("no backup repository at {location} (no `config` object; initialize one first)")]
    NotARepository {
        /// The backend's description (directory or bucket and prefix).
        location: String,
    },
    /// `init` on a location that already holds a repository.
    #[error("a backup repository already exists at {location}")]
    AlreadyInitialized {
        /// The backend's description.
        location: String,
    },
    /// The repository was written in a format this build does not read.
    #[error(
        "the backup repository at {location} has format {format:?} version {version}; this build reads {expected:?} version {supported}"
    )]
    UnsupportedFormat {
        /// The backend's description.
        location: String,
        /// The format name found in `config`.
        format: String,
        /// The format version found in `config`.
        version: u32,
        /// The format name this build reads.
        expected: &'static str,
        /// The format version this build reads.
        supported: u32,
    },
    /// No key file of the repository opens with the passphrase given.
    #[error(
        "wrong passphrase for the backup repository at {location}: none of its {keys} key file(s) opens with it"
    )]
    WrongPassphrase {
        /// The backend's description.
        location: String,
        /// How many key files were tried.
        keys: usize,
    },
    /// A parameter given by the caller is invalid.
    #[error("invalid {what}: {reason}")]
    InvalidInput {
        /// What was invalid (a parameter name).
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// The location does not exist (an S3 bucket that does not exist): a repository is never made
    /// in a bucket it would have to create.
    #[error("{location} does not exist: create the bucket first (a repository never creates one)")]
    LocationMissing {
        /// The backend's description.
        location: String,
    },
    /// The object store failed (unreachable endpoint, wrong credentials, missing bucket, ...).
    #[error("backup storage {location}: {operation} {path}: {source}")]
    Backend {
        /// The backend's description.
        location: String,
        /// A directory or an S3 bucket.
        kind: BackendKind,
        /// What was being done (get, put, list, delete, ...).
        operation: &'static str,
        /// The object path.
        path: String,
        /// The object store's error.
        #[source]
        source: object_store::Error,
    },
    /// An object of the repository does not decode (not authentic, truncated, or not JSON of the format).
    #[error("object {path} of the backup repository is corrupt: {reason}")]
    CorruptObject {
        /// The object path.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No backup with this id.
    #[error("no backup {0} in the repository")]
    BackupNotFound(BackupId),
    /// The backup has no disk of this name.
    #[error("backup {backup} has no disk named {disk:?}")]
    DiskNotFound {
        /// The backup.
        backup: BackupId,
        /// The disk name asked for.
        disk: String,
    },
    /// A chunk a restore needs is missing or damaged: nothing of the disk is left written.
    #[error("backup {backup}, disk {disk:?}, offset {offset}: chunk {chunk} {problem}")]
    BadChunk {
        /// The backup restored.
        backup: BackupId,
        /// The disk restored.
        disk: String,
        /// The byte offset of the chunk in the disk.
        offset: u64,
        /// The chunk's name.
        chunk: ChunkId,
        /// What is wrong with it.
        problem: crate::ChunkProblem,
    },
    /// The restored disk's digest differs from the manifest's.
    #[error(
        "backup {backup}, disk {disk:?}: restored content has {algorithm} {actual}, the manifest says {expected}"
    )]
    ChecksumMismatch {
        /// The backup restored.
        backup: BackupId,
        /// The disk restored.
        disk: String,
        /// Which digest (`sha256-tree`).
        algorithm: &'static str,
        /// The manifest's value.
        expected: String,
        /// The restored content's value.
        actual: String,
    },
    /// The in-flight backup's lease lapsed (no renewal within its time to live), so a prune may have
    /// collected chunks it relies on: the backup is not committed.
    #[error(
        "the lease of backup {backup} lapsed ({gap_seconds} s without renewal, time to live {ttl_seconds} s); a prune may have collected its chunks, so it is not committed: run it again"
    )]
    LeaseLapsed {
        /// The backup being written.
        backup: BackupId,
        /// Seconds between the last two renewals, on the store's clock.
        gap_seconds: i64,
        /// The lease's time to live.
        ttl_seconds: u64,
    },
    /// Reading the disk source or writing the restore target failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being read or written.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// The result type of the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;
