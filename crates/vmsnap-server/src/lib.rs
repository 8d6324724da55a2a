//! Assembles the embedded control plane behind `vmsnap serve`: the object store and API server, the
//! node agent, the local storage driver, the snapshot and restore controllers, and the web console.
//!
//! Every component other than the API server is an API client of it, exactly as in a cluster,
//! through the same routes and authentication, but called in-process: no loopback socket or TLS
//! between the components of one binary (users and `kubectl` use the listener). The
//! start order matters: the API server first (everything else is its client), then the node agent,
//! which re-attaches to the QEMU processes of an earlier run before anything touches their disks,
//! then the storage driver, whose recovery asks the agent which files running VMs write, and last
//! the snapshot and restore controllers.
//!
//! Before anything opens, the data directory is made private to the service user
//! ([`privacy::make_private`]) and its space reserve is checked ([`vmsnap_store::reserve`]), so that a full disk
//! does not keep vmsnap from starting. `vmsnap serve` also sets a umask of 077
//! ([`privacy::restrict_umask`]) so that everything created later is private too.

mod compaction;
pub mod limits;
pub mod network;
mod paths;
pub mod privacy;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use vmsnap_agent::{AccelSetting, Agent, AgentConfig};
use vmsnap_apiserver::{ApiServer, ApiServerConfig};
use vmsnap_storage::{LayeredDriver, StorageOptions};
use vmsnap_storage_controllers::StorageControllers;
use vmsnap_store::StoreConfig;
use vmsnap_store::reserve::{ReserveAction, SpaceReserve};

pub use paths::DataPaths;

/// Settings of `vmsnap serve`.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Listen address (port 0 picks one).
    pub listen: SocketAddr,
    /// Store log retention (number of changes kept for watch resumption).
    pub log_retention: u64,
    /// Run the snapshot, restore and schedule controllers in-process (off for `--no-controllers`);
    /// the backup controllers always run beside the node's storage driver.
    pub controllers: bool,
    /// The accelerator of new VMs: `auto` probes KVM once, then falls back to TCG.
    pub accel: AccelSetting,
    /// Where the test guest image is built and looked up (default `<data dir>/images`).
    pub image_cache: PathBuf,
    /// How often the storage driver shortens long layer chains (`None`: never).
    pub compaction_interval: Option<Duration>,
    /// Directories whose files DataVolumes may import with `file://` URLs (default
    /// `<data dir>/import`); any other `file://` URL is refused.
    pub file_import_roots: Vec<PathBuf>,
    /// More names (IP addresses or DNS names) for the API's certificate (`--tls-san`), beside
    /// those of the listen address.
    pub tls_sans: Vec<String>,
    /// How often the space reserve is checked for a full disk.
    pub reserve_check_interval: Duration,
}

impl ServeConfig {
    /// Defaults for a data directory: loopback, a stable port.
    pub fn new(data_dir: PathBuf) -> Self {
        ServeConfig {
            image_cache: DataPaths::new(&data_dir).images(),
            file_import_roots: vec![DataPaths::new(&data_dir).import()],
            data_dir,
            listen: SocketAddr::from(([127, 0, 0, 1], 7443)),
            log_retention: 100_000,
            controllers: true,
            accel: AccelSetting::Auto,
            compaction_interval: Some(Duration::from_secs(60)),
            tls_sans: Vec::new(),
            reserve_check_interval: Duration::from_secs(5),
        }
    }
}

/// Why `vmsnap serve` could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The data directory could not be made private to the service user.
    #[error(transparent)]
    Privacy(#[from] privacy::PrivacyError),
    /// The data directory could not be created.
    #[error("cannot create the data directory {}", path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The API server failed to start.
    #[error(transparent)]
    ApiServer(#[from] vmsnap_apiserver::StartError),
    /// The components could not connect to the API server.
    #[error("cannot connect the components to the API server: {0}")]
    Client(String),
    /// The storage driver's directory could not be opened.
    #[error("cannot open the volume store in {}", path.display())]
    Storage {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: vmsnap_storage::StorageError,
    },
    /// The storage controllers could not start (e.g. recovery of the volume store failed).
    #[error(transparent)]
    StorageControllers(#[from] vmsnap_storage_controllers::StartControllersError),
    /// The node agent could not start.
    #[error(transparent)]
    Agent(#[from] vmsnap_agent::AgentStartError),
}

/// The running embedded control plane.
pub struct EmbeddedServer {
    /// The API server.
    pub api: ApiServer,
    /// The node agent.
    pub agent: Arc<Agent>,
    /// The storage driver holding every volume.
    pub driver: Arc<LayeredDriver>,
    /// The storage controllers (PVCs, DataVolumes, VolumeSnapshots).
    pub storage: Option<StorageControllers>,
    /// The snapshot and restore controllers, when running in-process.
    pub controllers: Option<vmsnap_controllers::Controllers>,
    /// The backup repository, backup and restore controllers, when running in-process.
    pub backups: Option<vmsnap_backup_controllers::BackupControllers>,
    /// The host's addresses the API answers on when it listens on all of them (loopback excluded;
    /// empty otherwise).
    pub host_addresses: Vec<IpAddr>,
    compaction: Option<JoinHandle<()>>,
    reserve_watch: JoinHandle<()>,
}

impl EmbeddedServer {
    /// Starts every component.
    pub async fn start(config: ServeConfig) -> Result<EmbeddedServer, ServeError> {
        let paths = DataPaths::new(&config.data_dir);
        make_private(&config.data_dir)?;
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|source| ServeError::DataDir { path: config.data_dir.clone(), source })?;
        if !paths.runtime().starts_with(&config.data_dir) {
            make_private(&paths.runtime())?;
        }
        let reserve = SpaceReserve::new(&config.data_dir);
        check_reserve(&reserve);
        let host_addresses = network::host_addresses(config.listen);
        if config.listen.ip().is_unspecified() {
            tracing::warn!(
                listen = %config.listen,
                addresses = ?host_addresses,
                "the API and the web console are exposed on every network interface of this host \
                 (requests need the bearer token); listen on 127.0.0.1 to keep them local"
            );
        }
        let api = ApiServer::start(ApiServerConfig {
            data_dir: config.data_dir.clone(),
            listen: config.listen,
            certificate_names: network::certificate_names(config.listen, &node_name(), &config.tls_sans),
            store: StoreConfig { log_retention: config.log_retention, ..Default::default() },
            seed: vmsnap_storage_controllers::default_objects(),
            extra_routes: Some(vmsnap_console::router()),
        })
        .await?;
        let client = in_process_client(&api)?;

        let driver = LayeredDriver::open(paths.volumes(), StorageOptions::default())
            .await
            .map(Arc::new)
            .map_err(|source| ServeError::Storage { path: paths.volumes(), source })?;
        let agent_config = AgentConfig {
            runtime_dir: paths.runtime(),
            image_cache: config.image_cache.clone(),
            accel: config.accel,
            node_name: node_name(),
        };
        let agent = Agent::start(client.clone(), driver.clone(), agent_config).await?;
        api.set_subresources(agent.clone());

        let mut storage_config = vmsnap_storage_controllers::ControllerConfig::new(paths.scratch());
        storage_config.instance = node_name();
        storage_config.file_import_roots = config.file_import_roots.clone();
        storage_config.file_import_roots.push(paths.restore_staging());
        // Restores write their disks there in the driver's own format for the import to take.
        storage_config.handed_over_import_roots.push(paths.restore_staging());
        for root in &storage_config.file_import_roots {
            if let Err(error) = std::fs::create_dir_all(root) {
                tracing::warn!(root = %root.display(), %error, "cannot create the file import directory");
            }
        }
        let storage = vmsnap_storage_controllers::run_controllers(
            client.clone(),
            driver.clone(),
            agent.clone(),
            storage_config,
        )
        .await?;
        let compaction =
            config.compaction_interval.map(|every| compaction::spawn(driver.clone(), agent.clone(), every));

        let controllers = config.controllers.then(|| {
            let c =
                vmsnap_controllers::start(client.clone(), vmsnap_controllers::ControllerConfig::default());
            let metrics = c.metrics.clone();
            api.add_metrics(Arc::new(move || metrics.render()));
            c
        });
        // The backup controllers read and write this node's disks through its storage driver, so
        // they run here beside it even when the snapshot and restore controllers run elsewhere
        // (`--no-controllers` and elected `vmsnap controller` processes).
        let backups = {
            let backup_config = vmsnap_backup_controllers::BackupConfig {
                local_root: paths.backups(),
                staging_dir: paths.restore_staging(),
            };
            let b = vmsnap_backup_controllers::start(client.clone(), driver.clone(), backup_config);
            let metrics = b.metrics.clone();
            api.add_metrics(Arc::new(move || metrics.render()));
            Some(b)
        };
        let reserve_watch = watch_reserve(reserve, config.reserve_check_interval);
        Ok(EmbeddedServer {
            api,
            agent,
            driver,
            storage: Some(storage),
            controllers,
            backups,
            host_addresses,
            compaction,
            reserve_watch,
        })
    }

    /// Stops every component in the reverse order of their start. The VMs keep running; the next
    /// start re-attaches to them.
    pub async fn shutdown(mut self) {
        drop(self.backups.take());
        drop(self.controllers.take());
        self.reserve_watch.abort();
        if let Some(task) = self.compaction.take() {
            task.abort();
        }
        if let Some(storage) = self.storage.take() {
            storage.shutdown().await;
        }
        self.agent.shutdown().await;
        self.api.shutdown();
    }
}

/// Makes `dir` private to the service user, with one warning line when something was open.
fn make_private(dir: &std::path::Path) -> Result<(), privacy::PrivacyError> {
    let report = privacy::make_private(dir)?;
    if !report.fixed.is_empty() {
        tracing::warn!(
            dir = %dir.display(),
            "made {} of {} paths private to the service user (other users could read or write them)",
            report.fixed.len(),
            report.checked
        );
    }
    Ok(())
}

/// Checks every `every` whether the disk filled up, and gives the reserve back if so (the store
/// gives it back too, on a write that fails for lack of space).
fn watch_reserve(reserve: SpaceReserve, every: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let check = reserve.clone();
            match tokio::task::spawn_blocking(move || check.release_if_full()).await {
                Ok(Ok(true)) => reserve.warn_released(),
                Ok(Ok(false)) => {}
                Ok(Err(error)) => {
                    tracing::warn!(path = %reserve.path().display(), %error, "cannot check the space reserve")
                }
                Err(_) => return,
            }
        }
    })
}

/// Gives the space reserve back on a full disk (before the store opens: SQLite needs room to open)
/// or makes it; a failure is only worth a warning, the start goes on.
fn check_reserve(reserve: &SpaceReserve) {
    match reserve.at_start() {
        Ok(ReserveAction::Released) => reserve.warn_released(),
        Ok(ReserveAction::Missing) => tracing::warn!(
            path = %reserve.path().display(),
            "the data disk is nearly full and there is no space reserve: if it fills up, vmsnap may not \
             be able to record deletes; free space and restart vmsnap"
        ),
        Ok(_) => {}
        Err(error) => {
            tracing::warn!(path = %reserve.path().display(), %error, "cannot check the space reserve")
        }
    }
}

/// The name this machine goes by on events and in `status.nodeName`.
fn node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// A kube client that calls the embedded API server's routes directly, with its bearer token.
fn in_process_client(api: &ApiServer) -> Result<kube::Client, ServeError> {
    let bearer = http::HeaderValue::try_from(format!("Bearer {}", api.token))
        .map_err(|e| ServeError::Client(format!("the API token is not a valid header value: {e}")))?;
    let service = tower::ServiceBuilder::new()
        .map_request(move |mut request: http::Request<kube::client::Body>| {
            request.headers_mut().insert(http::header::AUTHORIZATION, bearer.clone());
            request
        })
        .service(api.router());
    Ok(kube::Client::new(service, "default"))
}

#[cfg(test)]
mod console_defaults {
    /// The console says what a repository without `spec.readLimit` reads at; it must be the
    /// engine's default (the console has no workspace dependency to take it from).
    #[test]
    fn the_consoles_default_read_limit_is_the_apis() {
        let asset =
            vmsnap_console::assets::find("js/backup-format.js").expect("the console has backup-format.js");
        let source = std::str::from_utf8(asset.body).expect("UTF-8");
        let default = vmsnap_api::quantity::format_bytes(vmsnap_api::backup::DEFAULT_READ_LIMIT);
        assert!(
            source.contains(&format!("export const DEFAULT_READ_LIMIT = '{default}';")),
            "js/backup-format.js must say DEFAULT_READ_LIMIT = '{default}'"
        );
    }
}
