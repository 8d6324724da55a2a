//! The environment of one test: an API server, the storage controllers over a real
//! `LayeredDriver`, KubeVirt's snapshot controllers, and the backup controllers.

#![allow(dead_code)] // Each test uses a different part.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use kube::Resource;
use kube::api::{Api, PostParams};
use serde::de::DeserializeOwned;
use vmsnap_api::backup::VirtualMachineRepositoryBackup;
use vmsnap_api::snapshot::VirtualMachineSnapshot;
use vmsnap_backup::{Backend, BackupManifest, Repository};
use vmsnap_backup_controllers::{BackupConfig, BackupControllers};
use vmsnap_storage::{LayeredDriver, SnapshotInfo, StorageOptions, VolumeDriver};
use vmsnap_testing::await_value;
use vmsnap_testing::fixtures::VmBuilder;
use vmsnap_testing::images::DiskModel;
use vmsnap_testing::storage::StorageEnv;

/// How long a test waits for the controllers to converge.
pub const WAIT: Duration = Duration::from_secs(120);
pub const MIB: u64 = 1 << 20;
/// The chunk size of the repositories the controllers make (the engine's default).
pub const CHUNK: u64 = vmsnap_backup::DEFAULT_CHUNK_SIZE as u64;

/// How many chunks the bytes `[from, from + len)` touch.
pub fn chunks_touched(from: u64, len: u64) -> u64 {
    (from + len).div_ceil(CHUNK) - from / CHUNK
}
pub const PASSPHRASE: &str = "correct horse battery staple";

/// The shared storage environment (server, engine, helpers), with every controller running.
pub struct Env {
    pub storage: StorageEnv,
    /// The storage engine the backup controllers read.
    pub driver: Arc<LayeredDriver>,
    _kubevirt: vmsnap_controllers::Controllers,
    pub backups: Option<BackupControllers>,
}

impl Deref for Env {
    type Target = StorageEnv;

    fn deref(&self) -> &StorageEnv {
        &self.storage
    }
}

impl Env {
    /// Everything running, or `None` (skip) without the QEMU tools when skips are allowed.
    pub async fn start() -> Option<Env> {
        // Chains deeper than 2 are compacted when a test calls `compact`.
        let options = StorageOptions { max_chain_depth: 2, ..StorageOptions::default() };
        let mut storage = StorageEnv::new(options, WAIT).await?;
        storage.start_controllers().await;
        let driver = storage.layered.clone();
        let kubevirt = vmsnap_controllers::start(
            storage.client.clone(),
            vmsnap_controllers::ControllerConfig::default(),
        );
        let mut env = Env { storage, driver, _kubevirt: kubevirt, backups: None };
        env.start_backup_controllers();
        Some(env)
    }

    pub fn start_backup_controllers(&mut self) {
        let config = BackupConfig {
            local_root: self.dir.path().join("backups"),
            staging_dir: self.dir.path().join("staging"),
        };
        self.backups =
            Some(vmsnap_backup_controllers::start(self.client.clone(), self.driver.clone(), config));
    }

    /// Everything running, with repository `main` (Ready) in directory `<dir>/repo` opened with
    /// Secret `pass`, and VM `vm` with a blank 16 MiB disk `disk`: what most backup tests start
    /// from. Returns the repository's directory too.
    pub async fn with_vm_and_local_repository() -> Option<(Env, PathBuf)> {
        let env = Env::start().await?;
        env.passphrase_secret("pass", PASSPHRASE).await;
        let path = env.dir.path().join("repo");
        env.local_repository("main", &path, "pass").await;
        env.await_repository_ready("main").await;
        env.bound_pvc("disk", "16Mi").await;
        env.vm_with_disk("vm", "disk").await;
        Some((env, path))
    }

    /// A Secret holding `passphrase` under key `passphrase`.
    pub async fn passphrase_secret(&self, name: &str, passphrase: &str) {
        self.apply(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}}}\nstringData: {{passphrase: {passphrase:?}}}\n"
        ))
        .await;
    }

    /// A repository in directory `path`, opened with Secret `secret`.
    pub async fn local_repository(&self, name: &str, path: &Path, secret: &str) {
        self.apply(&format!(
            "apiVersion: backup.vmsnap.io/v1alpha1\nkind: VirtualMachineBackupRepository\nmetadata: {{name: {name}}}\nspec:\n  local: {{path: {path:?}}}\n  passphraseSecretRef: {{name: {secret}}}\n",
            path = path.display().to_string()
        ))
        .await;
    }

    /// Waits until repository object `name` is Ready.
    pub async fn await_repository_ready(&self, name: &str) {
        let api: Api<vmsnap_api::backup::VirtualMachineBackupRepository> = self.api();
        await_some(&api, name, |r| {
            vmsnap_api::snapshot::find_condition(&r.status.as_ref()?.conditions, "Ready")?
                .is_true()
                .then_some(())
        })
        .await;
    }

    /// The repository in `path`, opened by the test itself.
    pub async fn open_local(&self, path: &Path) -> Repository {
        Repository::open(Backend::local(path).unwrap(), PASSPHRASE).await.unwrap()
    }

    /// A stopped VM with one disk `rootdisk` on PVC `pvc`.
    pub async fn vm_with_disk(&self, name: &str, pvc: &str) {
        let vm = VmBuilder::new(name).with_pvc("rootdisk", pvc).build();
        let vms: Api<vmsnap_api::kubevirt::VirtualMachine> = self.api();
        vms.create(&PostParams::default(), &vm).await.unwrap();
    }

    /// A backup of `source` (`VirtualMachine/<name>` or `VirtualMachineSnapshot/<name>`).
    pub async fn backup(&self, name: &str, repository: &str, source: &str) {
        let (kind, source_name) = source.split_once('/').unwrap();
        let group = if kind == "VirtualMachine" { "kubevirt.io" } else { "snapshot.kubevirt.io" };
        self.apply(&format!(
            "apiVersion: backup.vmsnap.io/v1alpha1\nkind: VirtualMachineRepositoryBackup\nmetadata: {{name: {name}}}\nspec:\n  repository: {repository}\n  source: {{apiGroup: {group}, kind: {kind}, name: {source_name}}}\n"
        ))
        .await;
    }

    /// Waits until the backup is Succeeded (panics with its status if it fails).
    pub async fn await_succeeded(&self, name: &str) -> VirtualMachineRepositoryBackup {
        let api: Api<VirtualMachineRepositoryBackup> = self.api();
        await_value(&api, name, WAIT, |b| {
            let phase = b.status.as_ref()?.phase.as_deref()?;
            assert_ne!(phase, "Failed", "backup {name} failed: {:?}", b.status);
            (phase == "Succeeded").then(|| b.clone())
        })
        .await
        .unwrap()
    }

    /// The snapshots of the storage engine taken of the PVC's volume, oldest first.
    pub async fn engine_snapshots_of(&self, pvc: &str) -> Vec<SnapshotInfo> {
        let volume = self.volume_of(pvc).await.id;
        let mut snapshots: Vec<SnapshotInfo> = self
            .driver
            .snapshots()
            .await
            .unwrap()
            .into_iter()
            .filter(|s| s.source_volume == volume)
            .collect();
        snapshots.sort_by_key(|s| s.created_at);
        snapshots
    }

    /// Restores disk `disk` of `backup` into a raw file (with the engine, as a restore does).
    pub async fn restore(&self, repository: &Repository, backup: &BackupManifest, disk: &str) -> PathBuf {
        let path = self.dir.path().join(format!("restored-{}-{disk}.raw", backup.id));
        let file = std::fs::File::create(&path).unwrap();
        repository.restore_disk(backup, disk, file).await.unwrap();
        path
    }

    /// Asserts with `qemu-img compare` that the raw image `raw` has the content of engine
    /// snapshot `snapshot` (its qcow2 chain, read by QEMU).
    pub async fn assert_same_as_snapshot(&self, raw: &Path, snapshot: &SnapshotInfo) {
        let image = self.driver.snapshot_image(&snapshot.id).await.unwrap().expect("the snapshot exists");
        let top = &image.chain()[0];
        let output = Command::new(&self.qemu_img)
            .args(["compare", "-U", "-f", "raw", "-F", top.format().as_str()])
            .arg(raw)
            .arg(top.path())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "qemu-img compare {} {}: {}{}",
            raw.display(),
            top.path().display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Asserts with `qemu-img compare` that the raw image `raw` holds the model's bytes.
    pub fn assert_same_as_model(&self, raw: &Path, model: &DiskModel) {
        let expected = self.dir.path().join("expected.raw");
        std::fs::write(&expected, model.bytes()).unwrap();
        let output = Command::new(&self.qemu_img)
            .args(["compare", "-f", "raw", "-F", "raw"])
            .arg(raw)
            .arg(&expected)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "qemu-img compare with the model: {}",
            String::from_utf8_lossy(&output.stdout)
        );
    }

    /// The events about `name`, as `reason: message`.
    pub async fn events_about(&self, name: &str) -> Vec<String> {
        self.storage.events_about("default", name).await
    }

    /// Waits until an event about `name` starts with `prefix` (events follow the status write).
    pub async fn await_event(&self, name: &str, prefix: &str) -> String {
        let what = format!("starting with {prefix:?}");
        self.storage.await_event_where("default", name, &what, |event| event.starts_with(prefix)).await
    }

    /// A VirtualMachineSnapshot of `vm`, ready.
    pub async fn ready_vm_snapshot(&self, name: &str, vm: &str) -> VirtualMachineSnapshot {
        self.apply(&format!(
            "apiVersion: snapshot.kubevirt.io/v1beta1\nkind: VirtualMachineSnapshot\nmetadata: {{name: {name}}}\nspec:\n  source: {{apiGroup: kubevirt.io, kind: VirtualMachine, name: {vm}}}\n"
        ))
        .await;
        let api: Api<VirtualMachineSnapshot> = self.api();
        await_some(&api, name, |s| (s.status.as_ref()?.ready_to_use == Some(true)).then(|| s.clone())).await
    }
}

/// Waits until `extract` returns `Some`.
pub async fn await_some<K, T>(api: &Api<K>, name: &str, extract: impl Fn(&K) -> Option<T>) -> T
where
    K: Resource + Clone + std::fmt::Debug + DeserializeOwned + Send + 'static,
{
    await_value(api, name, WAIT, extract).await.unwrap()
}

/// Waits until the object is gone.
pub async fn await_gone<K>(api: &Api<K>, name: &str)
where
    K: Resource + Clone + std::fmt::Debug + DeserializeOwned + Send + 'static,
{
    vmsnap_testing::eventually(&format!("{name} to be deleted"), WAIT, || async {
        api.get_opt(name).await.unwrap().is_none().then_some(())
    })
    .await
    .unwrap();
}
