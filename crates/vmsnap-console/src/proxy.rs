//! `vmsnap console-server`: the web console for a cluster other than the embedded server.
//!
//! The page talks to the Kubernetes API of the server that served it, so this server serves the
//! console's files and passes every API request (`/api`, `/apis`, `/version`, `/openapi`) through
//! to the cluster's API server named by a kubeconfig, streaming both ways (watches included). It
//! adds no credentials of its own: the browser sends the bearer token the user logged in with, and
//! the cluster decides what that user may do, exactly as for kubectl.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// The request headers passed on to the cluster.
const FORWARDED_HEADERS: [header::HeaderName; 5] = [
    header::AUTHORIZATION,
    header::ACCEPT,
    header::CONTENT_TYPE,
    header::USER_AGENT,
    header::ACCEPT_ENCODING,
];

/// The API server of a cluster, as a kubeconfig names it.
#[derive(Debug)]
pub struct Upstream {
    /// `https://host:port` (or `http://`), for messages.
    url: String,
    /// `host:port` to connect to.
    authority: String,
    /// The TLS configuration, `None` for plain HTTP.
    tls: Option<(Arc<rustls::ClientConfig>, rustls::pki_types::ServerName<'static>)>,
}

/// Why the kubeconfig does not name a usable API server.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The kubeconfig could not be read or parsed.
    #[error("cannot read the kubeconfig {}: {message}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The current context names no cluster with a server URL.
    #[error("the kubeconfig {} has no current context with a cluster server; set one with kubectl config use-context", path.display())]
    NoCluster {
        /// The file.
        path: PathBuf,
    },
    /// The server URL or the CA certificate cannot be used.
    #[error("the cluster in the kubeconfig cannot be used: {0}")]
    Invalid(String),
}

impl Upstream {
    /// The API server of the kubeconfig's current context, trusting its certificate authority.
    pub fn from_kubeconfig(path: &Path) -> Result<Upstream, UpstreamError> {
        let read = |message: String| UpstreamError::Read { path: path.to_owned(), message };
        let config = kube::config::Kubeconfig::read_from(path).map_err(|e| read(e.to_string()))?;
        let no_cluster = || UpstreamError::NoCluster { path: path.to_owned() };
        let context_name = config.current_context.clone().ok_or_else(no_cluster)?;
        let context = config
            .contexts
            .iter()
            .find(|c| c.name == context_name)
            .and_then(|c| c.context.clone())
            .ok_or_else(no_cluster)?;
        let cluster = config
            .clusters
            .iter()
            .find(|c| c.name == context.cluster)
            .and_then(|c| c.cluster.clone())
            .ok_or_else(no_cluster)?;
        let url = cluster.server.clone().ok_or_else(no_cluster)?;
        let ca_pem = match (&cluster.certificate_authority_data, &cluster.certificate_authority) {
            (Some(data), _) => Some(decode_base64(data)?),
            (None, Some(file)) => Some(std::fs::read(file).map_err(|e| read(format!("{file}: {e}")))?),
            (None, None) => None,
        };
        Self::new(&url, ca_pem.as_deref(), cluster.insecure_skip_tls_verify == Some(true))
    }

    fn new(url: &str, ca_pem: Option<&[u8]>, insecure: bool) -> Result<Upstream, UpstreamError> {
        let invalid = |m: String| UpstreamError::Invalid(m);
        let uri: Uri = url.parse().map_err(|e| invalid(format!("server URL {url:?}: {e}")))?;
        let host = uri.host().ok_or_else(|| invalid(format!("server URL {url:?} has no host")))?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let https = uri.scheme_str() != Some("http");
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let authority =
            if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        let tls = if https {
            if insecure {
                return Err(invalid(
                    "insecure-skip-tls-verify is not supported: add the cluster's CA certificate".into(),
                ));
            }
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_pemfile::certs(&mut ca_pem.unwrap_or_default()) {
                let cert = cert.map_err(|e| invalid(format!("certificate authority: {e}")))?;
                roots.add(cert).map_err(|e| invalid(format!("certificate authority: {e}")))?;
            }
            if roots.is_empty() {
                return Err(invalid("the kubeconfig has no certificate-authority for the cluster".into()));
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| invalid(e.to_string()))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            let name = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|e| invalid(format!("server name {host:?}: {e}")))?;
            Some((Arc::new(config), name))
        } else {
            None
        };
        Ok(Upstream { url: url.trim_end_matches('/').to_owned(), authority, tls })
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn send(&self, request: hyper::Request<Body>) -> Result<Response, String> {
        let tcp = TcpStream::connect(&self.authority).await.map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            Some((config, name)) => {
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                let stream = connector.connect(name.clone(), tcp).await.map_err(|e| e.to_string())?;
                exchange(TokioIo::new(stream), request).await
            }
            None => exchange(TokioIo::new(tcp), request).await,
        }
    }
}

/// One request on a new HTTP/1.1 connection; the response body streams as it arrives.
async fn exchange<S>(io: TokioIo<S>, request: hyper::Request<Body>) -> Result<Response, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(io).await.map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "console proxy connection ended");
        }
    });
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    Ok(response.map(Body::new))
}

fn decode_base64(text: &str) -> Result<Vec<u8>, UpstreamError> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| UpstreamError::Invalid(format!("certificate-authority-data is not base64: {e}")))
}

/// The console's own routes, and every API path passed through to `upstream`.
pub fn router(upstream: Arc<Upstream>) -> Router {
    let api = Router::new()
        .route("/api", axum::routing::any(forward))
        .route("/api/{*path}", axum::routing::any(forward))
        .route("/apis", axum::routing::any(forward))
        .route("/apis/{*path}", axum::routing::any(forward))
        .route("/version", axum::routing::any(forward))
        .route("/openapi/{*path}", axum::routing::any(forward))
        .with_state(upstream);
    crate::router().merge(api)
}

async fn forward(State(upstream): State<Arc<Upstream>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let mut outgoing = hyper::Request::builder().method(parts.method).uri(path.as_str());
    for name in FORWARDED_HEADERS {
        if let Some(value) = parts.headers.get(&name) {
            outgoing = outgoing.header(name, value);
        }
    }
    if let Ok(host) = HeaderValue::from_str(&upstream.authority) {
        outgoing = outgoing.header(header::HOST, host);
    }
    let outgoing = match outgoing.body(body) {
        Ok(r) => r,
        Err(error) => return unreachable_status(&upstream, &error.to_string()),
    };
    match upstream.send(outgoing).await {
        Ok(response) => response,
        Err(error) => unreachable_status(&upstream, &error),
    }
}

/// A Kubernetes `Status` for a cluster that could not be reached, in words the console shows.
fn unreachable_status(upstream: &Upstream, error: &str) -> Response {
    let message = format!("cannot reach the cluster's API server at {}: {error}", upstream.url);
    let status = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": message, "reason": "ServiceUnavailable", "code": 502
    });
    (StatusCode::BAD_GATEWAY, axum::Json(status)).into_response()
}
