//! The backup API's constants: finalizers, annotations, labels, phases, types and reasons.

/// The API group and version of the backup kinds.
pub const API_VERSION: &str = "backup.vmsnap.io/v1alpha1";
/// The API group of the backup kinds.
pub const GROUP: &str = "backup.vmsnap.io";

/// Finalizers.
pub mod finalizer {
    /// On a backup: its data is removed from the repository (per `deletionPolicy`) before the
    /// object goes.
    pub const BACKUP: &str = "backup.vmsnap.io/backup-protection";
    /// On a restore: its staging files are removed before the object goes.
    pub const RESTORE: &str = "backup.vmsnap.io/restore-protection";
}

/// Annotations.
pub mod annotation {
    /// On a repository (every chunk) or a backup (its chunks): set to a fresh token to ask for a
    /// verify; the result is the object's `status.lastVerify`, carrying the token as `request`.
    pub const VERIFY_REQUEST: &str = "backup.vmsnap.io/verify-request";
    /// On a repository: set to a fresh token to ask for a prune (chunks no backup references
    /// are collected); the result is `status.lastPrune`, carrying the token.
    pub const PRUNE_REQUEST: &str = "backup.vmsnap.io/prune-request";
}

/// Labels.
pub mod label {
    /// On backups and on the snapshots a backup took: the VM's name.
    pub const VM: &str = "backup.vmsnap.io/vm";
    /// On backups: the repository's name.
    pub const REPOSITORY: &str = "backup.vmsnap.io/repository";
    /// On a snapshot a backup took: the backup's name (the snapshot is kept as the base of the
    /// VM's next incremental, and deleted when a newer backup of the VM has its own).
    pub const BACKUP: &str = "backup.vmsnap.io/backup";
    /// On backups found in a repository rather than made here: `true`.
    pub const IMPORTED: &str = "backup.vmsnap.io/imported";
}

/// The wire strings of [`BackupPhase`] and [`RestorePhase`], for JSON patches and for code that
/// matches on `phase.as_deref()`.
pub mod phase {
    /// Waiting: for the repository, or for the snapshot to be ready.
    pub const PENDING: &str = "Pending";
    /// Reading and uploading (backup) or downloading and writing (restore).
    pub const IN_PROGRESS: &str = "InProgress";
    /// Done: the backup is committed in the repository, or the restored VM exists.
    pub const SUCCEEDED: &str = "Succeeded";
    /// Failed; `status.error` says why. A failed backup leaves nothing in the repository.
    pub const FAILED: &str = "Failed";
}

crate::wire_enum::wire_enum! {
    /// Where a VirtualMachineRepositoryBackup is in its life (`status.phase`).
    BackupPhase {
        /// Waiting for the repository to be ready, or for the snapshot the backup reads to be
        /// ready to use.
        Pending = phase::PENDING,
        /// Reading the snapshot's disks (only the extents changed since the base backup's
        /// snapshot, for an incremental) and uploading their new chunks.
        InProgress = phase::IN_PROGRESS,
        /// Committed: the backup's manifest is in the repository; final.
        Succeeded = phase::SUCCEEDED,
        /// Failed for good, `status.error` says why; nothing of it is left in the repository.
        Failed = phase::FAILED,
    }
}

crate::wire_enum::wire_enum! {
    /// Where a VirtualMachineRepositoryRestore is in its life (`status.phase`).
    RestorePhase {
        /// Waiting for the repository to be ready or for the backup to be found in it.
        Pending = phase::PENDING,
        /// Downloading the disks into staging files and creating the VM with DataVolumes that
        /// import them.
        InProgress = phase::IN_PROGRESS,
        /// The target VM exists with the restored disks; final.
        Succeeded = phase::SUCCEEDED,
        /// Failed for good, `status.error` says why.
        Failed = phase::FAILED,
    }
}

impl BackupPhase {
    /// Succeeded or failed: nothing changes the backup's phase any more.
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

impl RestorePhase {
    /// Succeeded or failed: nothing changes the restore's phase any more.
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

/// Backup types (`status.type`), KubeVirt's words.
pub mod backup_type {
    /// Every allocated byte of every disk was read.
    pub const FULL: &str = "Full";
    /// Only the bytes written since the base backup's snapshot were read.
    pub const INCREMENTAL: &str = "Incremental";
}

/// Deletion policies of a backup (`spec.deletionPolicy`).
pub mod deletion_policy {
    /// Deleting the object deletes the backup from the repository (the default).
    pub const DELETE: &str = "Delete";
    /// Deleting the object keeps the backup in the repository.
    pub const RETAIN: &str = "Retain";
}

/// Condition reasons (condition types are KubeVirt's: `Ready`, `Progressing`, `Failure`).
pub mod reason {
    /// The repository opened with the passphrase.
    pub const REPOSITORY_READY: &str = "RepositoryReady";
    /// The repository's backend could not be reached or read.
    pub const REPOSITORY_UNREACHABLE: &str = "RepositoryUnreachable";
    /// The passphrase does not open the repository.
    pub const WRONG_PASSPHRASE: &str = "WrongPassphrase";
    /// The repository is of a format version this build does not read.
    pub const UNSUPPORTED_FORMAT: &str = "UnsupportedFormat";
    /// A Secret or a key in it is missing.
    pub const SECRET_MISSING: &str = "SecretMissing";
    /// The spec is invalid (the message names the field).
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// Waiting for something (the message says what).
    pub const WAITING: &str = "Waiting";
    /// A snapshot of the VM is being taken for the backup.
    pub const SNAPSHOT_IN_PROGRESS: &str = "SnapshotInProgress";
    /// Disks are being read and uploaded.
    pub const BACKUP_IN_PROGRESS: &str = "BackupInProgress";
    /// Disks are being downloaded and written.
    pub const RESTORE_IN_PROGRESS: &str = "RestoreInProgress";
    /// Done.
    pub const SUCCEEDED: &str = "Succeeded";
    /// Failed (the message says why).
    pub const FAILED: &str = "Failed";
}
