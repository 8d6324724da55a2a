//! The vmsnap side of the benchmark: the embedded control plane started in this process on a
//! scratch data directory, with kube clients for it. Dropping or shutting it down kills the QEMU
//! processes of its VMs (and only those) and removes its files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use vmsnap_agent::AccelSetting;
use vmsnap_server::{DataPaths, EmbeddedServer, ServeConfig};

/// A running embedded vmsnap on a fresh data directory.
pub(crate) struct Lab {
    server: Option<EmbeddedServer>,
    /// A client without read timeout (guest commands can take minutes).
    pub client: kube::Client,
    /// The kubeconfig the API server wrote.
    pub kubeconfig: PathBuf,
    runtime: PathBuf,
    dir: Option<tempfile::TempDir>,
}

/// How a lab is set up.
pub(crate) struct LabConfig<'a> {
    /// Where its data directory goes.
    pub scratch: &'a Path,
    /// The test guest image cache (built first if `guests`).
    pub image_cache: &'a Path,
    /// Whether VMs will run (then the guest image must exist).
    pub guests: bool,
    /// How often layer chains are compacted (`None`: never).
    pub compaction: Option<Duration>,
}

impl Lab {
    /// Starts the embedded control plane (TCG guests, port chosen by the system).
    pub async fn start(config: LabConfig<'_>) -> anyhow::Result<Lab> {
        if config.guests {
            ensure_guest_image(config.image_cache).await?;
        }
        // Short: QEMU's socket paths live under it and must fit 107 bytes.
        let dir = tempfile::Builder::new()
            .prefix("vb")
            .tempdir_in(config.scratch)
            .with_context(|| format!("cannot create a directory in {}", config.scratch.display()))?;
        let data = dir.path().join("d");
        let mut serve = ServeConfig::new(data.clone());
        serve.listen = "127.0.0.1:0".parse().expect("a socket address");
        serve.accel = AccelSetting::Tcg;
        serve.image_cache = config.image_cache.to_owned();
        serve.compaction_interval = config.compaction;
        let runtime = DataPaths::new(&data).runtime();
        let server = EmbeddedServer::start(serve).await.context("cannot start the embedded vmsnap")?;
        let kubeconfig = server.api.kubeconfig_path.clone();
        let client = client_for(&kubeconfig, None).await?;
        Ok(Lab { server: Some(server), client, kubeconfig, runtime, dir: Some(dir) })
    }

    /// The file of the volume store with the most data allocated, at most `max_bytes`: the layer
    /// holding the data of a filled disk of about that size.
    pub fn largest_layer(&self, max_bytes: u64) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        let volumes = DataPaths::new(&dir.path().join("d")).volumes();
        let mut files = Vec::new();
        collect_files(&volumes, &mut files);
        files
            .into_iter()
            .filter(|(_, len)| *len <= max_bytes)
            .max_by_key(|(_, len)| *len)
            .map(|(path, _)| path)
    }

    /// The directory `file://` DataVolume imports may read (the server's default import root).
    pub fn import_dir(&self) -> anyhow::Result<PathBuf> {
        let dir = self.dir.as_ref().context("the lab is shut down")?;
        let import = DataPaths::new(&dir.path().join("d")).import();
        std::fs::create_dir_all(&import).with_context(|| format!("create {}", import.display()))?;
        Ok(import)
    }

    /// The qcow2 layer file (top of its chain) of the storage engine's snapshot `handle` (a
    /// VolumeSnapshotContent's `snapshotHandle`), from the engine's manifest
    /// (`docs/storage-layers.md`).
    pub fn snapshot_layer(&self, handle: &str) -> anyhow::Result<PathBuf> {
        let dir = self.dir.as_ref().context("the lab is shut down")?;
        let volumes = DataPaths::new(&dir.path().join("d")).volumes();
        let text =
            std::fs::read_to_string(volumes.join("manifest.json")).context("read the storage manifest")?;
        let manifest: serde_json::Value = serde_json::from_str(&text)?;
        let layer = manifest["snapshots"][handle]["layer"]
            .as_str()
            .with_context(|| format!("no snapshot {handle} in the storage manifest"))?;
        let file = manifest["layers"][layer]["file"]
            .as_str()
            .with_context(|| format!("no file for layer {layer}"))?;
        Ok(volumes.join("layers").join(file))
    }

    /// The longest layer chain of any volume (how many files a guest read may go through).
    pub async fn deepest_chain(&self) -> anyhow::Result<usize> {
        use vmsnap_storage::VolumeDriver;
        let server = self.server.as_ref().context("the lab is shut down")?;
        let volumes = server.driver.volumes().await?;
        Ok(volumes.iter().map(|v| v.chain_depth).max().unwrap_or(0))
    }

    /// Stops the control plane, kills the QEMU processes of its VMs and removes its files.
    pub async fn shutdown(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
        self.cleanup();
    }

    fn cleanup(&mut self) {
        // Twice: a VM controller still running (see `drop`) may have restarted one meanwhile.
        for _ in 0..2 {
            vmsnap_testing::guests::kill_qemus(&self.runtime);
            std::thread::sleep(Duration::from_millis(200));
        }
        if let Some(dir) = self.dir.take() {
            if !self.runtime.starts_with(dir.path()) {
                let _ = std::fs::remove_dir_all(&self.runtime);
            }
            let _ = dir.close();
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Dropped without `shutdown` (an error unwinding, Ctrl-C): stop the control plane first,
        // or its VM controller restarts the VMs killed below.
        if let Some(server) = self.server.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                    tokio::task::block_in_place(|| handle.block_on(server.shutdown()));
                }
                _ => drop(server),
            }
        }
        self.cleanup();
    }
}

/// Builds the test guest into `cache` unless it is there already.
pub(crate) async fn ensure_guest_image(cache: &Path) -> anyhow::Result<vmsnap_guestimage::GuestImage> {
    let cache = cache.to_owned();
    tokio::task::spawn_blocking(move || {
        vmsnap_guestimage::ensure_built(&cache, &mut |line| eprintln!("guest image: {line}"))
    })
    .await?
    .context("cannot build the test guest image (run `vmsnap guest-image build`, see its help)")
}

/// A kube client from a kubeconfig file.
pub(crate) async fn client_for(
    kubeconfig: &Path,
    read_timeout: Option<Duration>,
) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).context("read the kubeconfig")?;
    let mut config =
        kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.context("load the kubeconfig")?;
    config.read_timeout = read_timeout;
    Ok(kube::Client::try_from(config)?)
}

fn collect_files(dir: &Path, out: &mut Vec<(PathBuf, u64)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        match entry.metadata() {
            Ok(meta) if meta.is_dir() => collect_files(&entry.path(), out),
            Ok(meta) => out.push((entry.path(), std::os::unix::fs::MetadataExt::blocks(&meta) * 512)),
            Err(_) => {}
        }
    }
}
