//! An API server seeded with the storage defaults, the storage controllers
//! beside it over a real `LayeredDriver` in a temporary directory, a fake node
//! agent for attached volumes, and helpers to write and read volume data.

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
use vmsnap_testing::images::{self, DiskModel};
use vmsnap_testing::{Kubectl, TestServer, await_value};

/// How long a test waits for the controllers to converge.
pub const WAIT: Duration = Duration::from_secs(20);
pub const MIB: u64 = 1 << 20;

/// The environment of one test.
pub struct Env {
    pub server: TestServer,
    pub client: Client,
    pub dir: tempfile::TempDir,
    pub driver: Arc<CountingDriver>,
    pub live: Arc<FakeLive>,
    pub config: ControllerConfig,
    pub controllers: Option<StorageControllers>,
    pub qemu_img: PathBuf,
    pub qemu_io: PathBuf,
}

impl Env {
    /// A server with the controllers running, or `None` (skip) without the QEMU tools.
    pub async fn start() -> Option<Env> {
        let mut env = Self::without_controllers().await?;
        env.start_controllers().await;
        Some(env)
    }

    /// A server and a driver, with the controllers not started yet.
    pub async fn without_controllers() -> Option<Env> {
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
        let options = StorageOptions { qemu_img: qemu_img.clone(), ..StorageOptions::default() };
        let layered = LayeredDriver::open(dir.path().join("volumes"), options).await.unwrap();
        let driver = Arc::new(CountingDriver::new(Arc::new(layered)));
        let mut config = ControllerConfig::new(dir.path().join("volumes/scratch"));
        config.instance = "test".into();
        config.file_import_roots = vec![dir.path().join("images")];
        config.group_wait = Duration::from_secs(2);
        config.in_use_poll = Duration::from_millis(200);
        config.retry_max = Duration::from_secs(2);
        std::fs::create_dir_all(dir.path().join("images")).unwrap();
        let live = Arc::new(FakeLive::default());
        Some(Env { server, client, dir, driver, live, config, controllers: None, qemu_img, qemu_io })
    }

    pub async fn start_controllers(&mut self) {
        let driver: Arc<dyn VolumeDriver> = self.driver.clone();
        let live: Arc<dyn LiveBlockOps> = self.live.clone();
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

    pub async fn stop_controllers(&mut self) {
        if let Some(controllers) = self.controllers.take() {
            controllers.shutdown().await;
        }
    }

    pub fn kubectl(&self) -> Kubectl {
        self.server.kubectl()
    }

    /// `kubectl apply -f -` of a manifest.
    pub async fn apply(&self, manifest: &str) {
        self.kubectl().run_stdin_async(&["apply", "-f", "-"], manifest).await.ok();
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), "default")
    }

    pub fn cluster_api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::ClusterResourceScope, DynamicType = ()>,
    {
        Api::all(self.client.clone())
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
        await_value(&api, name, WAIT, |pvc| {
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
        self.driver.volume(&VolumeId::new(handle).unwrap()).await.unwrap().expect("the PV's volume exists")
    }

    /// Writes `pattern` into the PVC's volume with `qemu-io`, and into the model.
    pub async fn write(&self, pvc: &str, model: &mut DiskModel, offset: u64, len: u64, pattern: u8) {
        self.write_in("default", pvc, model, offset, len, pattern).await;
    }

    /// [`Env::write`] into a PVC of `namespace`.
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
        let audit = self.driver.audit().await.unwrap();
        assert!(audit.unreferenced().is_empty(), "leaked files: {:?}", audit.unreferenced());
        assert!(audit.missing().is_empty(), "lost files: {:?}", audit.missing());
        audit
    }

    /// The events about `name`, as `reason: message`.
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

    /// Waits until an event about `name` contains `text`.
    pub async fn await_event(&self, namespace: &str, name: &str, text: &str) -> String {
        vmsnap_testing::eventually(&format!("an event about {name} saying {text:?}"), WAIT, || async {
            self.events_about(namespace, name).await.into_iter().find(|event| event.contains(text))
        })
        .await
        .unwrap()
    }
}

/// Waits until `extract` returns `Some` for a cluster-scoped or namespaced object.
pub async fn await_some<K, T>(api: &Api<K>, name: &str, extract: impl Fn(&K) -> Option<T>) -> T
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + 'static,
{
    await_value(api, name, WAIT, extract).await.unwrap()
}

/// Waits until the object is gone.
pub async fn await_gone<K>(api: &Api<K>, name: &str)
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + 'static,
{
    vmsnap_testing::eventually(&format!("{name} to be deleted"), WAIT, || async {
        api.get_opt(name).await.unwrap().is_none().then_some(())
    })
    .await
    .unwrap();
}

/// A node agent stand-in: volumes are "attached" when a test says so.
#[derive(Default)]
pub struct FakeLive {
    attached: Mutex<HashSet<VolumeId>>,
}

impl FakeLive {
    pub fn attach(&self, volume: &VolumeId) {
        self.attached.lock().unwrap().insert(volume.clone());
    }

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

/// A driver that records its `snapshot_volumes` calls and passes everything to the real one.
pub struct CountingDriver {
    inner: Arc<dyn VolumeDriver>,
    pub snapshot_calls: Mutex<Vec<Vec<(VolumeId, SnapshotId)>>>,
    pub calls: Mutex<HashMap<&'static str, usize>>,
}

impl CountingDriver {
    fn new(inner: Arc<dyn VolumeDriver>) -> Self {
        Self { inner, snapshot_calls: Mutex::default(), calls: Mutex::default() }
    }

    fn count(&self, method: &'static str) {
        *self.calls.lock().unwrap().entry(method).or_default() += 1;
    }

    pub fn calls_of(&self, method: &str) -> usize {
        self.calls.lock().unwrap().get(method).copied().unwrap_or_default()
    }
}

#[async_trait]
impl VolumeDriver for CountingDriver {
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
