//! The Kubernetes side of the local storage driver: what a cluster's CSI
//! driver, external-provisioner, external-resizer, snapshot-controller,
//! external-snapshotter and CDI do, for volumes kept by a [`VolumeDriver`]
//! of the `vmsnap-storage` engine.
//!
//! Every part is a kube-runtime `Controller` and speaks only the Kubernetes
//! API (watches, merge patches for status, finalizers through
//! `kube::runtime::finalizer`, events through the `Recorder`):
//!
//! | controller | watches | makes |
//! |---|---|---|
//! | StorageProfile | StorageClass, VolumeSnapshotClass | a StorageProfile per class, with its status |
//! | PVC | PVC, PV, VolumeSnapshot | engine volumes (blank, restored, cloned), PVs, binding, expansion, `kubernetes.io/pvc-protection` |
//! | PV | PV, PVC | reclaim: `Delete` removes the PV and the engine volume, `Retain` releases it |
//! | DataVolume | DataVolume, PVC, VolumeSnapshot | the PVC, populated from blank, http/file, a PVC or a snapshot |
//! | VolumeSnapshot | VolumeSnapshot, PVC | the content and the engine snapshot (grouped per VM, see below) |
//! | VolumeSnapshotContent | content, VolumeSnapshot | deletion of the engine snapshot |
//!
//! Engine ids are derived from object UIDs (`pvc-<uid>`, `snapshot-<uid>`),
//! so a reconcile that runs again, after a crash at any point, finds what the
//! interrupted one made instead of making it twice.
//!
//! **Binding modes.** Classes with `volumeBindingMode: Immediate` are
//! provisioned at once. There are no pods and no scheduler here, so a
//! `WaitForFirstConsumer` class never gets a first consumer: its PVCs stay
//! `Pending` (with an event saying so) and its DataVolumes report
//! `WaitForFirstConsumer`.
//!
//! **Grouped snapshots.** KubeVirt creates one VolumeSnapshot per disk of a
//! VM, each owned by the VM's `VirtualMachineSnapshotContent`. The snapshot
//! controller waits (driven by watch events, bounded by
//! [`ControllerConfig::group_wait`]) until every VolumeSnapshot the content
//! lists exists, then cuts them all with one engine call, so the disks of a
//! running VM switch in one QEMU transaction. `docs/storage-layers.md` has the details.

mod bind;
mod claim;
mod classes;
mod content;
mod context;
mod datavolume;
mod error;
mod expand;
mod names;
mod profile;
mod snapshot;
mod sources;
mod volume;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use vmsnap_storage::{LiveBlockOps, RecoveryReport, StorageError, VolumeDriver};

use self::classes::Classes;
use self::context::Context;
pub use self::error::ReconcileError;
pub use self::names::{
    CONTENT_FINALIZER, POPULATING_DATA_VOLUME_ANNOTATION, PV_FINALIZER, PVC_PROTECTION_FINALIZER,
    VOLUME_SNAPSHOT_FINALIZER,
};

/// The StorageClass provisioner and VolumeSnapshotClass driver of the local driver.
pub const PROVISIONER: &str = vmsnap_contracts::names::LOCAL_STORAGE_DRIVER;

/// The event reporter of every storage controller.
pub const COMPONENT: &str = "vmsnap-storage";

/// Objects created at server start if absent: StorageClass `local` (the
/// default class, provisioner [`PROVISIONER`], `Immediate` binding,
/// expandable, `Delete` reclaim), VolumeSnapshotClass `local-snapshots` (the
/// default class of the driver, `Delete` policy), and the StorageProfile
/// `local` (spec only; the controller fills its status).
pub fn default_objects() -> Vec<Value> {
    vec![
        json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": "local", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": PROVISIONER, "volumeBindingMode": "Immediate",
            "allowVolumeExpansion": true, "reclaimPolicy": "Delete"
        }),
        json!({
            "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass",
            "metadata": {"name": "local-snapshots", "annotations": {"snapshot.storage.kubernetes.io/is-default-class": "true"}},
            "driver": PROVISIONER, "deletionPolicy": "Delete"
        }),
        json!({
            "apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "StorageProfile",
            "metadata": {"name": "local"}, "spec": {}
        }),
    ]
}

/// How the storage controllers run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerConfig {
    /// The namespace whose PVCs, DataVolumes and VolumeSnapshots are served; `None`: every namespace.
    pub namespace: Option<String>,
    /// The reporting instance written on events (`reportingInstance`), e.g. the host name.
    pub instance: String,
    /// Where `http` DataVolume sources are downloaded before they are imported.
    /// Created at start, and emptied of leftovers of an earlier run. Put it on
    /// the engine's file system, e.g. `<driver root>/scratch`: the engine's
    /// audit and recovery ignore subdirectories of its root.
    pub scratch_dir: PathBuf,
    /// Directories whose files `file://` DataVolume sources may import.
    /// Empty: `file://` sources are refused, since a tenant could otherwise
    /// read any file of the host into a volume.
    pub file_import_roots: Vec<PathBuf>,
    /// Directories among `file_import_roots` that hold the server's own files made for import
    /// (a restore's staging files, written by `VolumeDriver::create_import_image`): a `file://`
    /// source under one is handed over ([`vmsnap_storage::Import::handed_over`]), so the driver
    /// takes it without a copy, and the importer removes it once imported. Never a directory
    /// that users put files in: their files are read, not taken. Its files are in a directory
    /// per namespace (`<root>/<namespace>/...`), and only DataVolumes of that namespace may
    /// import them.
    pub handed_over_import_roots: Vec<PathBuf>,
    /// Time allowed to connect to an `http` source.
    pub import_connect_timeout: Duration,
    /// Longest silence allowed while an `http` source is downloaded.
    pub import_idle_timeout: Duration,
    /// How long the VolumeSnapshots listed by one `VirtualMachineSnapshotContent`
    /// wait for each other before the ones that exist are cut without the rest.
    pub group_wait: Duration,
    /// How often an operation blocked by a running VM (PVC deletion, expansion) checks again.
    pub in_use_poll: Duration,
    /// The first delay before a failed reconcile or import is retried; it doubles on each failure.
    pub retry_min: Duration,
    /// The longest delay between retries.
    pub retry_max: Duration,
}

impl ControllerConfig {
    /// The defaults, downloading into `scratch_dir`.
    pub fn new(scratch_dir: impl Into<PathBuf>) -> Self {
        Self {
            namespace: None,
            instance: "vmsnap".to_owned(),
            scratch_dir: scratch_dir.into(),
            file_import_roots: Vec::new(),
            handed_over_import_roots: Vec::new(),
            import_connect_timeout: Duration::from_secs(10),
            import_idle_timeout: Duration::from_secs(30),
            group_wait: Duration::from_secs(2),
            in_use_poll: Duration::from_secs(1),
            retry_min: Duration::from_millis(250),
            retry_max: Duration::from_secs(30),
        }
    }
}

/// The storage controllers could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartControllersError {
    /// Startup recovery of the engine failed; nothing may run on an unrecovered store.
    #[error("the storage engine could not recover its store; fix the cause before starting the controllers")]
    Recovery(#[source] StorageError),
    /// The scratch directory cannot be prepared.
    #[error("could not prepare the import scratch directory {}", path.display())]
    Scratch {
        /// The directory.
        path: PathBuf,
        /// The file-system error.
        #[source]
        source: std::io::Error,
    },
    /// The API server does not serve what the controllers need.
    #[error("could not read StorageClasses and VolumeSnapshotClasses from the API server")]
    Api(#[source] kube::Error),
}

/// The running storage controllers. Dropping the handle stops them, and any import in progress.
pub struct StorageControllers {
    tasks: Vec<JoinHandle<()>>,
    ctx: Arc<Context>,
    recovery: RecoveryReport,
}

impl StorageControllers {
    /// What startup recovery did.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// Stops every controller and import, and waits until they have stopped.
    pub async fn shutdown(mut self) {
        self.abort();
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
    }

    fn abort(&self) {
        for task in &self.tasks {
            task.abort();
        }
        self.ctx.imports.abort_all();
    }
}

impl Drop for StorageControllers {
    fn drop(&mut self) {
        self.abort();
    }
}

/// Recovers the engine, then runs every storage controller until the returned handle is dropped.
pub async fn run_controllers(
    client: Client,
    driver: Arc<dyn VolumeDriver>,
    live: Arc<dyn LiveBlockOps>,
    config: ControllerConfig,
) -> Result<StorageControllers, StartControllersError> {
    let recovery = driver.recover(Some(live.as_ref())).await.map_err(StartControllersError::Recovery)?;
    tracing::info!(
        driver = driver.name(),
        volumes = recovery.volumes,
        snapshots = recovery.snapshots,
        removed_files = recovery.removed_files,
        removed_layers = recovery.removed_layers,
        intents_completed = recovery.intents_completed,
        intents_undone = recovery.intents_undone,
        "storage engine recovered"
    );
    datavolume::prepare_scratch(&config.scratch_dir)
        .await
        .map_err(|source| StartControllersError::Scratch { path: config.scratch_dir.clone(), source })?;
    let (classes, mut tasks) = Classes::start(client.clone()).await.map_err(StartControllersError::Api)?;
    let reporter = Reporter { controller: COMPONENT.into(), instance: Some(config.instance.clone()) };
    let recorder = Recorder::new(client.clone(), reporter);
    let ctx = Arc::new(Context::new(client, driver, live, recorder, config, classes));
    tasks.push(tokio::spawn(profile::run(ctx.clone())));
    tasks.push(tokio::spawn(claim::run(ctx.clone())));
    tasks.push(tokio::spawn(volume::run(ctx.clone())));
    tasks.push(tokio::spawn(datavolume::run(ctx.clone())));
    tasks.push(tokio::spawn(snapshot::run(ctx.clone())));
    tasks.push(tokio::spawn(content::run(ctx.clone())));
    Ok(StorageControllers { tasks, ctx, recovery })
}
