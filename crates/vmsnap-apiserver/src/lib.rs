//! Kubernetes-compatible REST API server over vmsnap-store: discovery, OpenAPI v3, CRUD, watch,
//! patch (merge, JSON, strategic, apply), status subresources, tables, finalizers, garbage
//! collection, namespaces, events in two views, and KubeVirt's admission rules.
//!
//! Layers: [`pure`] (parsers and transformations, no I/O) -> [`core`] (the semantics of each verb over
//! the store) -> `http` (axum routing, authentication, watch streams). The real `kubectl` and
//! `kube` clients are the reference: see `shared/docs/kube-api-surface.md`.

pub mod auth;
pub mod core;
mod error;
mod gc;
mod http;
mod listener;
pub mod pure;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use axum::Router;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use vmsnap_api::registry::registry;
use vmsnap_store::{Store, StoreConfig};

pub use crate::core::Core;

/// Every served kind (re-exported for the fuzz targets, which do not depend on vmsnap-api directly).
pub fn registry_kinds() -> &'static [vmsnap_api::registry::ResourceType] {
    registry().all()
}
pub use error::ApiError;
pub use http::{MetricsSource, RecordedRequest};
pub use listener::{ConnectionLimits, open_file_limit, raise_open_file_limit};
pub use vmsnap_contracts::subresources::{SubresourceError, VmAction, VmSubresources, VmiAction};

/// How to start the API server.
pub struct ApiServerConfig {
    /// Data directory: the store, the token, the kubeconfig, TLS material.
    pub data_dir: PathBuf,
    /// Address to listen on; port 0 picks a free port. Non-loopback addresses get TLS.
    pub listen: SocketAddr,
    /// More names of the serving certificate (IP addresses or DNS names) beside the listen
    /// address, `127.0.0.1` and `localhost`: the host's addresses when listening on all of them.
    pub certificate_names: Vec<String>,
    /// Store tuning.
    pub store: StoreConfig,
    /// Objects created at start if absent (default StorageClass, VolumeSnapshotClass, ...).
    pub seed: Vec<Value>,
    /// Extra routes served beside the API (the web console).
    pub extra_routes: Option<Router>,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be opened.
    #[error("cannot open the object store")]
    Store(#[from] vmsnap_store::OpenError),
    /// Binding the listen address failed.
    #[error("cannot listen on {addr} (is another vmsnap running? pick another --listen port)")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Writing the token or kubeconfig failed.
    #[error("cannot write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// TLS material could not be prepared.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// A seed object was refused.
    #[error("cannot create the built-in object {name}: {error}")]
    Seed {
        /// Which object.
        name: String,
        /// Why.
        error: ApiError,
    },
}

/// A running API server.
pub struct ApiServer {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The URL API clients use (`https://127.0.0.1:PORT`).
    pub url: String,
    /// The URL of the web console (plain HTTP on loopback, else the HTTPS URL).
    pub console_url: String,
    /// The bearer token.
    pub token: String,
    /// Where the kubeconfig was written.
    pub kubeconfig_path: PathBuf,
    /// The CA certificate (PEM) when serving TLS.
    pub ca_pem: Option<String>,
    state: http::AppState,
    app: Router,
    listener: Option<listener::Listener>,
    tasks: Vec<JoinHandle<()>>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl ApiServer {
    /// Opens the store, writes the kubeconfig and starts serving, with the default
    /// [`ConnectionLimits`].
    pub async fn start(config: ApiServerConfig) -> Result<ApiServer, StartError> {
        Self::start_with_limits(config, ConnectionLimits::default()).await
    }

    /// [`ApiServer::start`] with chosen limits on the connections the listener keeps.
    pub async fn start_with_limits(
        config: ApiServerConfig,
        limits: ConnectionLimits,
    ) -> Result<ApiServer, StartError> {
        let write_err = |path: PathBuf| move |source| StartError::Write { path: path.clone(), source };
        std::fs::create_dir_all(&config.data_dir).map_err(write_err(config.data_dir.clone()))?;
        let mut store_config = config.store;
        // Events are what tells a user, when the disk fills up, why things stopped.
        let events = vmsnap_api::registry::registry().by_kind("v1", "Event").expect("Event is registered");
        store_config.creatable_while_short.push(core::objects::storage_resource(events));
        // One space reserve for the whole data directory: the store gives it back on a failed write.
        store_config
            .reserve
            .get_or_insert_with(|| vmsnap_store::SpaceReserve::new(&config.data_dir).path().to_owned());
        let store = Store::open(&config.data_dir.join("store"), store_config)?;
        let core = Core::new(store);
        let token =
            auth::load_or_create_token(&config.data_dir).map_err(write_err(config.data_dir.join("token")))?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartError::Listen { addr: config.listen, source })?;
        let addr =
            listener.local_addr().map_err(|source| StartError::Listen { addr: config.listen, source })?;
        // kubectl sends credentials only over TLS, so the API is always served with TLS. On a
        // loopback address the same port also answers plain HTTP (the first byte tells them
        // apart), for the web console in a local browser.
        let tls = tls::prepare(&config.data_dir, addr.ip(), &config.certificate_names)?;
        let allow_plain = addr.ip().is_loopback();
        let url = format!("https://{}", local_address(addr));
        let ca_pem = Some(tls.ca_pem.clone());
        let kubeconfig_path = config.data_dir.join("kubeconfig");
        auth::write_kubeconfig(&kubeconfig_path, &auth::kubeconfig(&url, &token, ca_pem.as_deref()))
            .map_err(write_err(kubeconfig_path.clone()))?;

        seed(&core, config.seed).await?;
        let state = http::AppState {
            core: core.clone(),
            token: Arc::new(token.clone()),
            server_address: Arc::new(addr.to_string()),
            subresources: Arc::new(RwLock::new(None)),
            metrics: Arc::new(RwLock::new(Vec::new())),
            recorded: Arc::new(std::sync::Mutex::new(None)),
        };
        let mut app = http::router(state.clone());
        if let Some(extra) = config.extra_routes {
            app = app.merge(extra);
        }
        let tasks = vec![gc::spawn(core)];
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let listener =
            listener::Listener::start(listener, app.clone(), tls.server_config, allow_plain, limits, stopped)
                .map_err(|source| StartError::Listen { addr: config.listen, source })?;
        tracing::info!(%url, "API server listening");
        let console_url = if allow_plain { format!("http://{addr}/") } else { format!("{url}/") };
        Ok(ApiServer {
            addr,
            url,
            console_url,
            token,
            kubeconfig_path,
            ca_pem,
            state,
            app,
            listener: Some(listener),
            tasks,
            stop,
        })
    }

    /// The routes the listener serves, authentication included, as a tower service: what an
    /// in-process client calls without a socket or TLS in between.
    pub fn router(&self) -> Router {
        self.app.clone()
    }

    /// The object service, for in-process use (tests, bootstrap).
    pub fn core(&self) -> Arc<Core> {
        self.state.core.clone()
    }

    /// Registers the handler of VM and VMI subresources (the node agent).
    pub fn set_subresources(&self, handler: Arc<dyn VmSubresources>) {
        *self.state.subresources.write().expect("subresource handler lock") = Some(handler);
    }

    /// Adds a source of Prometheus text to `/metrics`.
    pub fn add_metrics(&self, source: http::MetricsSource) {
        self.state.metrics.write().expect("metrics lock").push(source);
    }

    /// Starts recording every request (for tests that check RBAC rules against real traffic).
    pub fn record_requests(&self) {
        *self.state.recorded.lock().expect("request log lock") = Some(Vec::new());
    }

    /// The requests recorded since [`ApiServer::record_requests`].
    pub fn recorded_requests(&self) -> Vec<http::RecordedRequest> {
        self.state.recorded.lock().expect("request log lock").clone().unwrap_or_default()
    }

    /// Stops serving and closes every open connection (watches included).
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
        if let Some(listener) = &self.listener {
            listener.stop_accepting();
        }
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.shutdown();
        if let Some(listener) = self.listener.take() {
            listener.close();
        }
    }
}

/// Where a client on this host reaches a listener on `addr`: the loopback address of its family
/// when it listens on every address (`0.0.0.0` is not an address to connect to).
fn local_address(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::from(([127, 0, 0, 1], addr.port())),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    }
}

async fn seed(core: &Core, seed: Vec<Value>) -> Result<(), StartError> {
    let ns = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}});
    for obj in std::iter::once(ns).chain(seed) {
        let api_version = obj["apiVersion"].as_str().unwrap_or_default().to_owned();
        let kind = obj["kind"].as_str().unwrap_or_default().to_owned();
        let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_owned();
        let Some(rt) = registry().by_kind(&api_version, &kind) else {
            return Err(StartError::Seed {
                name,
                error: ApiError::bad_request(format!("unknown kind {api_version} {kind}")),
            });
        };
        let version = vmsnap_api::registry::split_api_version(&api_version).1.to_owned();
        let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str).map(str::to_owned);
        match core.create(rt, &version, ns.as_deref(), obj, &Default::default()).await {
            Ok(_) => {}
            Err(e) if e.reason == "AlreadyExists" => {}
            Err(error) => return Err(StartError::Seed { name, error }),
        }
    }
    Ok(())
}
