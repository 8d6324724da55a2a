//! The Kubernetes side of vmsnap's backups (`backup.vmsnap.io`, `docs/backups.md`): three
//! kube-runtime controllers over the `vmsnap-backup` repository engine.
//!
//! | controller | watches | does |
//! |---|---|---|
//! | repository | `VirtualMachineBackupRepository`, Secrets | opens (or creates) the repository, reports what it holds, makes an object for each backup found in it, runs requested verifies and prunes |
//! | backup | `VirtualMachineRepositoryBackup`, snapshots | takes the snapshot (source VM), reads its disks from the storage engine (only the layers since the base backup's snapshot for an incremental), commits the backup, deletes it from the repository on delete |
//! | restore | `VirtualMachineRepositoryRestore` | writes the backup's disks to staging files, creates the target VM with DataVolumes importing them, cleans up |
//!
//! Disks are read from the storage engine directly (the snapshot's sealed qcow2 layers), so the
//! controllers run where the storage is: in `vmsnap serve`.

mod context;
mod disks;
mod error;
mod manifest_labels;
mod metrics;
mod open;
mod status;

mod backup;
mod repository;
mod restore;

use std::path::PathBuf;
use std::sync::Arc;

use kube::Client;
use tokio::task::JoinHandle;
use vmsnap_storage::VolumeDriver;

pub use self::context::Context;
pub use self::error::ReconcileError;
pub use self::metrics::Metrics;
pub use self::open::{OpenError, RepositoryCache};

/// The event reporter of the backup controllers.
pub const COMPONENT: &str = "vmsnap-backup";

/// Where the controllers keep their files.
#[derive(Debug, Clone)]
pub struct BackupConfig {
    /// `local` repositories without a `path` live in `<local_root>/<namespace>/<name>`.
    pub local_root: PathBuf,
    /// Restores write disk images here before a DataVolume imports them (`file://`): it must be
    /// one of the storage controllers' file import roots.
    pub staging_dir: PathBuf,
}

/// The running controllers; dropping this stops them.
pub struct BackupControllers {
    tasks: Vec<JoinHandle<()>>,
    /// Their metrics (for `/metrics`).
    pub metrics: Arc<Metrics>,
}

impl Drop for BackupControllers {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Starts the repository, backup and restore controllers.
pub fn start(client: Client, driver: Arc<dyn VolumeDriver>, config: BackupConfig) -> BackupControllers {
    let metrics = Arc::new(Metrics::default());
    let ctx = Arc::new(Context::new(client, driver, config, metrics.clone()));
    let tasks = vec![
        tokio::spawn(repository::run(ctx.clone())),
        tokio::spawn(backup::run(ctx.clone())),
        tokio::spawn(restore::run(ctx)),
    ];
    BackupControllers { tasks, metrics }
}
