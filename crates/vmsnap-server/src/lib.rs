//! Assembles the embedded control plane behind `vmsnap serve`: the object store and API server, the
//! node agent, the local storage driver, the snapshot and restore controllers, and the web console.
//!
//! Every component other than the API server is an API client of it, exactly as in a cluster.

use std::net::SocketAddr;
use std::path::PathBuf;

use vmsnap_apiserver::{ApiServer, ApiServerConfig};
use vmsnap_store::StoreConfig;

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
}

impl ServeConfig {
    /// Defaults for a data directory: loopback, a stable port.
    pub fn new(data_dir: PathBuf) -> Self {
        ServeConfig {
            data_dir,
            listen: SocketAddr::from(([127, 0, 0, 1], 7443)),
            log_retention: 100_000,
            controllers: true,
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
}

/// The running embedded control plane.
pub struct EmbeddedServer {
    /// The API server.
    pub api: ApiServer,
    /// The snapshot and restore controllers, when running in-process.
    pub controllers: Option<vmsnap_controllers::Controllers>,
}

impl EmbeddedServer {
    /// Starts every component.
    pub async fn start(config: ServeConfig) -> Result<EmbeddedServer, ServeError> {
        let api = ApiServer::start(ApiServerConfig {
            data_dir: config.data_dir.clone(),
            listen: config.listen,
            store: StoreConfig { log_retention: config.log_retention, ..Default::default() },
            seed: Vec::new(),
            extra_routes: None,
        })
        .await?;
        let client = client_for(&api).await?;
        let controllers = config.controllers.then(|| {
            let c =
                vmsnap_controllers::start(client.clone(), vmsnap_controllers::ControllerConfig::default());
            let metrics = c.metrics.clone();
            api.add_metrics(std::sync::Arc::new(move || metrics.render()));
            c
        });
        Ok(EmbeddedServer { api, controllers })
    }
}

/// A kube client for the embedded API server, from the kubeconfig it wrote.
async fn client_for(api: &ApiServer) -> Result<kube::Client, ServeError> {
    let err = |e: String| ServeError::Client(e);
    let kc = kube::config::Kubeconfig::read_from(&api.kubeconfig_path).map_err(|e| err(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(|e| err(e.to_string()))?;
    kube::Client::try_from(config).map_err(|e| err(e.to_string()))
}
