//! A storage environment for the tests of controllers that work on volumes (the storage
//! controllers' and the backup controllers'): an API server seeded with the storage defaults, a
//! real `LayeredDriver` in a temporary directory, a fake node agent for attached volumes
//! ([`FakeLive`]), and helpers to make PVCs, find their engine volumes, and write and read the
//! volumes' data with `qemu-io` / `qemu-img`.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Event, PersistentVolume, PersistentVolumeClaim};
use kube::api::{Api, ListParams};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use vmsnap_storage::{
    CompactionReport, Import, LayeredDriver, LiveBlockOps, LiveError, LiveSwitch, RecoveryReport, SnapshotId,
    SnapshotImage, SnapshotInfo, StorageAudit, StorageError, StorageOptions, StreamRequest, VolumeDriver,
    VolumeId, VolumeInfo,
};
use vmsnap_storage_controllers::{ControllerConfig, StorageControllers};

use crate::images::{self, DiskModel};
use crate::{Kubectl, TestServer, await_value, eventually};

/// The server, the engine and the storage controllers' configuration of one test.
pub struct StorageEnv {
    /// The API server, seeded with [`vmsnap_storage_controllers::default_objects`].
    pub server: TestServer,
    /// A client of it.
    pub client: Client,
    /// The test's directory: the engine's store is `volumes/`, file imports come from `images/`.
    pub dir: tempfile::TempDir,
    /// The storage engine.
    pub layered: Arc<LayeredDriver>,
    /// The engine as the storage controllers see it: every change recorded.
    pub driver: Arc<RecordingDriver>,
    /// The storage controllers, once started.
    pub controllers: Option<StorageControllers>,
    /// The node agent's stand-in: nothing is attached until a test says so.
    pub live: Arc<FakeLive>,
    /// The storage controllers' configuration, tuned for tests (short waits and retries).
    pub config: ControllerConfig,
    /// The `qemu-img` binary.
    pub qemu_img: PathBuf,
    /// The `qemu-io` binary.
    pub qemu_io: PathBuf,
    /// How long a helper waits for the controllers to converge.
    pub wait: Duration,
}

impl StorageEnv {
    /// A server and an engine (opened with `options`, but its `qemu_img`), the controllers not
    /// started; `None` (skip) without the QEMU tools when skips are allowed. Helpers wait up to
    /// `wait`.
    pub async fn new(options: StorageOptions, wait: Duration) -> Option<StorageEnv> {
        // `VMSNAP_LOG=vmsnap_storage_controllers=debug` shows what the controllers do.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("VMSNAP_LOG").unwrap_or_else(|_| "off".into()),
            )
            .with_test_writer()
            .try_init();
        let (qemu_img, qemu_io) = images::qemu_tools()?;
        let server =
            TestServer::start_with_seed(vmsnap_storage_controllers::default_objects()).await.unwrap();
        let client = server.client().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let options = StorageOptions { qemu_img: qemu_img.clone(), ..options };
        let layered = Arc::new(LayeredDriver::open(dir.path().join("volumes"), options).await.unwrap());
        let mut config = ControllerConfig::new(dir.path().join("volumes/scratch"));
        config.instance = "test".into();
        config.file_import_roots = vec![dir.path().join("images")];
        config.group_wait = Duration::from_secs(1);
        config.in_use_poll = Duration::from_millis(200);
        config.retry_max = Duration::from_secs(2);
        std::fs::create_dir_all(dir.path().join("images")).unwrap();
        let live = Arc::new(FakeLive::default());
        let driver = Arc::new(RecordingDriver::new(layered.clone()));
        let controllers = None;
        Some(StorageEnv {
            server,
            client,
            dir,
            layered,
            driver,
            controllers,
            live,
            config,
            qemu_img,
            qemu_io,
            wait,
        })
    }

    /// Starts the storage controllers over [`Self::driver`] and [`Self::live`], with [`Self::config`].
    pub async fn start_controllers(&mut self) {
        let (driver, live): (Arc<dyn VolumeDriver>, Arc<dyn LiveBlockOps>) =
            (self.driver.clone(), self.live.clone());
        let controllers = vmsnap_storage_controllers::run_controllers(
            self.client.clone(),
            driver,
            live,
            self.config.clone(),
        )
        .await
        .unwrap();
        self.controllers = Some(controllers);
    }

    /// Stops the storage controllers, if they run.
    pub async fn stop_controllers(&mut self) {
        if let Some(controllers) = self.controllers.take() {
            controllers.shutdown().await;
        }
    }

    /// A `kubectl` for the server.
    pub fn kubectl(&self) -> Kubectl {
        self.server.kubectl()
    }

    /// `kubectl apply -f -` of a manifest.
    pub async fn apply(&self, manifest: &str) {
        self.kubectl().run_stdin_async(&["apply", "-f", "-"], manifest).await.ok();
    }

    /// An API of namespace `default`.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), "default")
    }

    /// An API of a cluster-scoped kind.
    pub fn cluster_api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::ClusterResourceScope, DynamicType = ()>,
    {
        Api::all(self.client.clone())
    }

    /// Waits until `extract` returns `Some` for the named object.
    pub async fn await_some<K, T>(&self, api: &Api<K>, name: &str, extract: impl Fn(&K) -> Option<T>) -> T
    where
        K: Resource + Clone + Debug + DeserializeOwned + Send + 'static,
    {
        await_value(api, name, self.wait, extract).await.unwrap()
    }

    /// Waits until the named object is gone.
    pub async fn await_gone<K>(&self, api: &Api<K>, name: &str)
    where
        K: Resource + Clone + Debug + DeserializeOwned + Send + 'static,
    {
        eventually(&format!("{name} to be deleted"), self.wait, || async {
            api.get_opt(name).await.unwrap().is_none().then_some(())
        })
        .await
        .unwrap();
    }

    /// Creates a PVC of `size` (in the default class) and waits until it is bound.
    pub async fn bound_pvc(&self, name: &str, size: &str) -> PersistentVolumeClaim {
        self.apply(&format!(
            "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: {name}}}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {{requests: {{storage: {size}}}}}\n"
        ))
        .await;
        self.await_bound(name).await
    }

    /// Waits until the PVC is bound.
    pub async fn await_bound(&self, name: &str) -> PersistentVolumeClaim {
        self.await_bound_in("default", name).await
    }

    /// Waits until the PVC `name` of `namespace` is bound.
    pub async fn await_bound_in(&self, namespace: &str, name: &str) -> PersistentVolumeClaim {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), namespace);
        await_value(&api, name, self.wait, |pvc| {
            (pvc.status.as_ref()?.phase.as_deref() == Some("Bound")).then(|| pvc.clone())
        })
        .await
        .unwrap()
    }

    /// The engine volume behind a bound PVC (through its PV's volume handle).
    pub async fn volume_of(&self, pvc: &str) -> VolumeInfo {
        self.volume_in("default", pvc).await
    }

    /// The engine volume behind a bound PVC of `namespace`.
    pub async fn volume_in(&self, namespace: &str, pvc: &str) -> VolumeInfo {
        let claim = self.await_bound_in(namespace, pvc).await;
        let pv_name = claim.spec.unwrap().volume_name.unwrap();
        let pv: PersistentVolume = self.cluster_api().get(&pv_name).await.unwrap();
        let handle = pv.spec.unwrap().csi.unwrap().volume_handle;
        self.layered.volume(&VolumeId::new(handle).unwrap()).await.unwrap().expect("the PV's volume exists")
    }

    /// Writes `pattern` into the PVC's volume with `qemu-io`, and into the model.
    pub async fn write(&self, pvc: &str, model: &mut DiskModel, offset: u64, len: u64, pattern: u8) {
        self.write_in("default", pvc, model, offset, len, pattern).await;
    }

    /// [`StorageEnv::write`] into a PVC of `namespace`.
    pub async fn write_in(
        &self,
        namespace: &str,
        pvc: &str,
        model: &mut DiskModel,
        offset: u64,
        len: u64,
        pattern: u8,
    ) {
        let info = self.volume_in(namespace, pvc).await;
        images::qemu_io_write(&self.qemu_io, &info.path, info.format.as_str(), offset, len, pattern);
        model.push_write(offset, len, pattern);
    }

    /// The PVC's whole volume, as raw bytes.
    pub async fn read(&self, pvc: &str) -> Vec<u8> {
        let info = self.volume_of(pvc).await;
        images::read_image(&self.qemu_img, &info.path, info.format.as_str())
    }

    /// Asserts the PVC's volume reads as the model.
    pub async fn assert_data(&self, pvc: &str, model: &DiskModel) {
        images::assert_bytes(&format!("volume of PVC {pvc}"), &self.read(pvc).await, &model.bytes());
    }

    /// Every file of the store is referenced, and every referenced file exists.
    pub async fn assert_no_leaks(&self) -> StorageAudit {
        let audit = self.layered.audit().await.unwrap();
        assert!(audit.unreferenced().is_empty(), "leaked files: {:?}", audit.unreferenced());
        assert!(audit.missing().is_empty(), "lost files: {:?}", audit.missing());
        audit
    }

    /// The events about `name` in `namespace`, as `reason: message`.
    pub async fn events_about(&self, namespace: &str, name: &str) -> Vec<String> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|event| event.involved_object.name.as_deref() == Some(name))
            .map(|event| {
                format!("{}: {}", event.reason.unwrap_or_default(), event.message.unwrap_or_default())
            })
            .collect()
    }

    /// Waits until an event about `name` in `namespace` contains `text`.
    pub async fn await_event(&self, namespace: &str, name: &str, text: &str) -> String {
        self.await_event_where(namespace, name, &format!("saying {text:?}"), |event| event.contains(text))
            .await
    }

    /// Waits until an event about `name` in `namespace` satisfies `matches` (as `reason: message`).
    pub async fn await_event_where(
        &self,
        namespace: &str,
        name: &str,
        what: &str,
        matches: impl Fn(&str) -> bool,
    ) -> String {
        eventually(&format!("an event about {name} {what}"), self.wait, || async {
            self.events_about(namespace, name).await.into_iter().find(|event| matches(event))
        })
        .await
        .unwrap()
    }
}

/// A node agent stand-in: volumes are "attached" when a test says so; it switches and streams
/// nothing.
#[derive(Default)]
pub struct FakeLive {
    attached: Mutex<HashSet<VolumeId>>,
}

impl FakeLive {
    /// From now on `volume` is attached to a (fake) running VM.
    pub fn attach(&self, volume: &VolumeId) {
        self.attached.lock().unwrap().insert(volume.clone());
    }

    /// From now on `volume` is detached.
    pub fn detach(&self, volume: &VolumeId) {
        self.attached.lock().unwrap().remove(volume);
    }
}

#[async_trait]
impl LiveBlockOps for FakeLive {
    async fn active_file(&self, volume: &VolumeId) -> Result<Option<PathBuf>, LiveError> {
        let attached = self.attached.lock().unwrap().contains(volume);
        Ok(attached.then(|| PathBuf::from(format!("/run/fake-vm/{volume}.qcow2"))))
    }

    async fn switch_to_overlays(&self, switches: &[LiveSwitch]) -> Result<(), LiveError> {
        Err(LiveError::new(format!("the fake agent switches nothing ({} volumes asked)", switches.len())))
    }

    async fn stream_into_active(&self, request: &StreamRequest) -> Result<(), LiveError> {
        Err(LiveError::new(format!("the fake agent streams nothing ({})", request.volume)))
    }
}

/// A driver that records the calls that change volumes and snapshots, and passes everything to
/// the real one.
pub struct RecordingDriver {
    inner: Arc<dyn VolumeDriver>,
    /// The groups of every `snapshot_volumes` call, in order.
    pub snapshot_calls: Mutex<Vec<Vec<(VolumeId, SnapshotId)>>>,
    /// How many times each other changing method was called.
    pub calls: Mutex<HashMap<&'static str, usize>>,
}

impl RecordingDriver {
    /// Records the calls to `inner`.
    pub fn new(inner: Arc<dyn VolumeDriver>) -> Self {
        Self { inner, snapshot_calls: Mutex::default(), calls: Mutex::default() }
    }

    fn count(&self, method: &'static str) {
        *self.calls.lock().unwrap().entry(method).or_default() += 1;
    }

    /// How many times `method` was called.
    pub fn calls_of(&self, method: &str) -> usize {
        self.calls.lock().unwrap().get(method).copied().unwrap_or_default()
    }
}

#[async_trait]
impl VolumeDriver for RecordingDriver {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    async fn create_volume(&self, id: &VolumeId, size_bytes: u64) -> Result<VolumeInfo, StorageError> {
        self.count("create_volume");
        self.inner.create_volume(id, size_bytes).await
    }
    async fn import_volume(&self, id: &VolumeId, import: Import<'_>) -> Result<VolumeInfo, StorageError> {
        self.count("import_volume");
        self.inner.import_volume(id, import).await
    }
    async fn create_import_image(
        &self,
        path: &std::path::Path,
        size_bytes: u64,
    ) -> Result<vmsnap_storage::ImportImage, StorageError> {
        self.count("create_import_image");
        self.inner.create_import_image(path, size_bytes).await
    }
    async fn resize_volume(&self, id: &VolumeId, new_size: u64) -> Result<VolumeInfo, StorageError> {
        self.count("resize_volume");
        self.inner.resize_volume(id, new_size).await
    }
    async fn delete_volume(&self, id: &VolumeId) -> Result<(), StorageError> {
        self.count("delete_volume");
        self.inner.delete_volume(id).await
    }
    async fn volume(&self, id: &VolumeId) -> Result<Option<VolumeInfo>, StorageError> {
        self.inner.volume(id).await
    }
    async fn volumes(&self) -> Result<Vec<VolumeInfo>, StorageError> {
        self.inner.volumes().await
    }
    async fn snapshot_volumes(
        &self,
        group: &[(VolumeId, SnapshotId)],
        live: Option<&dyn LiveBlockOps>,
    ) -> Result<Vec<SnapshotInfo>, StorageError> {
        self.snapshot_calls.lock().unwrap().push(group.to_vec());
        self.inner.snapshot_volumes(group, live).await
    }
    async fn delete_snapshot(&self, id: &SnapshotId) -> Result<(), StorageError> {
        self.count("delete_snapshot");
        self.inner.delete_snapshot(id).await
    }
    async fn snapshot(&self, id: &SnapshotId) -> Result<Option<SnapshotInfo>, StorageError> {
        self.inner.snapshot(id).await
    }
    async fn snapshots(&self) -> Result<Vec<SnapshotInfo>, StorageError> {
        self.inner.snapshots().await
    }
    async fn snapshot_image(&self, id: &SnapshotId) -> Result<Option<SnapshotImage>, StorageError> {
        self.inner.snapshot_image(id).await
    }
    async fn restore_volume(
        &self,
        from: &SnapshotId,
        to: &VolumeId,
        size_bytes: u64,
    ) -> Result<VolumeInfo, StorageError> {
        self.count("restore_volume");
        self.inner.restore_volume(from, to, size_bytes).await
    }
    async fn clone_volume(
        &self,
        from: &VolumeId,
        to: &VolumeId,
        size_bytes: u64,
        live: Option<&dyn LiveBlockOps>,
    ) -> Result<VolumeInfo, StorageError> {
        self.count("clone_volume");
        self.inner.clone_volume(from, to, size_bytes, live).await
    }
    async fn recover(&self, live: Option<&dyn LiveBlockOps>) -> Result<RecoveryReport, StorageError> {
        self.inner.recover(live).await
    }
    async fn compact(&self, live: Option<&dyn LiveBlockOps>) -> Result<CompactionReport, StorageError> {
        self.inner.compact(live).await
    }
    async fn audit(&self) -> Result<StorageAudit, StorageError> {
        self.inner.audit().await
    }
}
