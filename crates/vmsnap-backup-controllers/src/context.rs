//! What every reconcile gets.

use std::sync::Arc;

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use vmsnap_storage::VolumeDriver;

use super::open::RepositoryCache;
use super::{BackupConfig, COMPONENT, Metrics};

/// The shared state of the backup controllers.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// The storage engine the snapshots' disks are read from.
    pub driver: Arc<dyn VolumeDriver>,
    /// Where files go.
    pub config: BackupConfig,
    /// Publishes events as `vmsnap-backup`.
    pub recorder: Recorder,
    /// Opened repositories.
    pub repositories: RepositoryCache,
    /// Counters and durations.
    pub metrics: Arc<Metrics>,
}

impl Context {
    /// A context over the given parts.
    pub fn new(
        client: Client,
        driver: Arc<dyn VolumeDriver>,
        config: BackupConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
        let reporter = Reporter { controller: COMPONENT.into(), instance: None };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            repositories: RepositoryCache::default(),
            client,
            driver,
            config,
            metrics,
        }
    }
}
