//! KubeVirt's admission rules (snapshot and restore validation, the VM update locks) served as a
//! Kubernetes validating webhook (`AdmissionReview` v1 over TLS), for clusters where vmsnap's
//! controllers replace KubeVirt's. The embedded server runs the same rules in-process.

mod review;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use serde_json::Value;

pub use review::{KubeLookup, Lookup, review};

/// Paths, as KubeVirt registers them (`/virtualmachines-validate` is vmsnap's for the VM locks).
pub const SNAPSHOT_PATH: &str = "/virtualmachinesnapshots-validate";
/// The restore webhook's path.
pub const RESTORE_PATH: &str = "/virtualmachinerestores-validate";
/// The VM lock webhook's path.
pub const VM_PATH: &str = "/virtualmachines-validate";
/// The snapshot schedule webhook's path (vmsnap's own kind).
pub const SCHEDULE_PATH: &str = "/virtualmachinesnapshotschedules-validate";
/// The backup repository webhook's path (vmsnap's own kind).
pub const REPOSITORY_PATH: &str = "/virtualmachinebackuprepositories-validate";
/// The repository backup webhook's path (vmsnap's own kind).
pub const BACKUP_PATH: &str = "/virtualmachinerepositorybackups-validate";
/// The repository restore webhook's path (vmsnap's own kind).
pub const REPOSITORY_RESTORE_PATH: &str = "/virtualmachinerepositoryrestores-validate";

/// Settings of `vmsnap webhook`.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Directory with `tls.crt` and `tls.key`; without it a self-signed certificate is made for `host`.
    pub tls_dir: Option<PathBuf>,
    /// DNS name for a self-signed certificate (the webhook Service's name).
    pub host: String,
}

/// Why the webhook could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The certificate could not be read or made.
    #[error("TLS: {0}")]
    Tls(String),
    /// Binding failed.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The webhook's routes (without TLS, for tests and for serving behind a TLS listener).
pub fn router(lookup: Arc<dyn Lookup>) -> Router {
    Router::new()
        .route(SNAPSHOT_PATH, post(handle))
        .route(RESTORE_PATH, post(handle))
        .route(VM_PATH, post(handle))
        .route(SCHEDULE_PATH, post(handle))
        .route(REPOSITORY_PATH, post(handle))
        .route(BACKUP_PATH, post(handle))
        .route(REPOSITORY_RESTORE_PATH, post(handle))
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .with_state(lookup)
}

async fn handle(
    State(lookup): State<Arc<dyn Lookup>>,
    axum::Json(body): axum::Json<Value>,
) -> axum::Json<Value> {
    axum::Json(review(lookup.as_ref(), &body).await)
}

/// A running webhook: its address and, for a self-signed certificate, the CA bundle to put into
/// the ValidatingWebhookConfiguration's `caBundle`.
pub struct RunningWebhook {
    /// Bound address.
    pub addr: SocketAddr,
    /// PEM of the self-signed certificate, when one was made.
    pub self_signed_pem: Option<String>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RunningWebhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts serving over TLS.
pub async fn serve(lookup: Arc<dyn Lookup>, config: WebhookConfig) -> Result<RunningWebhook, WebhookError> {
    let (server_config, self_signed_pem) = tls::server_config(config.tls_dir.as_deref(), &config.host)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| WebhookError::Listen { addr: config.listen, source })?;
    let addr =
        listener.local_addr().map_err(|source| WebhookError::Listen { addr: config.listen, source })?;
    let app = router(lookup);
    let task = tokio::spawn(tls::serve(listener, app, server_config));
    Ok(RunningWebhook { addr, self_signed_pem, task })
}
