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

mod compaction;
mod paths;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use vmsnap_agent::{AccelSetting, Agent, AgentConfig};
use vmsnap_apiserver::{ApiServer, ApiServerConfig};
use vmsnap_storage::{LayeredDriver, StorageControllers, StorageOptions};
use vmsnap_store::StoreConfig;

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
    /// Run the snapshot and restore controllers in-process (off for `--no-controllers`).
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
        }
    }
}

/// Why `vmsnap serve` could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
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
    StorageControllers(#[from] vmsnap_storage::StartControllersError),
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
    compaction: Option<JoinHandle<()>>,
}

impl EmbeddedServer {
    /// Starts every component.
    pub async fn start(config: ServeConfig) -> Result<EmbeddedServer, ServeError> {
        let paths = DataPaths::new(&config.data_dir);
        let api = ApiServer::start(ApiServerConfig {
            data_dir: config.data_dir.clone(),
            listen: config.listen,
            store: StoreConfig { log_retention: config.log_retention, ..Default::default() },
            seed: vmsnap_storage::default_objects(),
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

        let mut storage_config = vmsnap_storage::ControllerConfig::new(paths.scratch());
        storage_config.instance = node_name();
        storage_config.file_import_roots = config.file_import_roots.clone();
        for root in &config.file_import_roots {
            if let Err(error) = std::fs::create_dir_all(root) {
                tracing::warn!(root = %root.display(), %error, "cannot create the file import directory");
            }
        }
        let storage =
            vmsnap_storage::run_controllers(client.clone(), driver.clone(), agent.clone(), storage_config)
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
        Ok(EmbeddedServer { api, agent, driver, storage: Some(storage), controllers, compaction })
    }

    /// Stops every component in the reverse order of their start. The VMs keep running; the next
    /// start re-attaches to them.
    pub async fn shutdown(mut self) {
        drop(self.controllers.take());
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
