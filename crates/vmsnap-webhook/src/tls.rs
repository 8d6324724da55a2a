//! TLS for the webhook: the certificate from a directory (`tls.crt`, `tls.key`, as a Kubernetes TLS
//! Secret mounts it), or a self-signed one.

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;

use crate::WebhookError;

pub fn server_config(
    dir: Option<&Path>,
    host: &str,
) -> Result<(Arc<rustls::ServerConfig>, Option<String>), WebhookError> {
    let err = |e: String| WebhookError::Tls(e);
    let (chain, key, pem) = match dir {
        Some(dir) => {
            let certs = std::fs::read(dir.join("tls.crt"))
                .map_err(|e| err(format!("cannot read {}/tls.crt: {e}", dir.display())))?;
            let key = std::fs::read(dir.join("tls.key"))
                .map_err(|e| err(format!("cannot read {}/tls.key: {e}", dir.display())))?;
            let chain = rustls_pemfile::certs(&mut certs.as_slice())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| err(e.to_string()))?;
            let key = rustls_pemfile::private_key(&mut key.as_slice())
                .map_err(|e| err(e.to_string()))?
                .ok_or_else(|| err(format!("no private key in {}/tls.key", dir.display())))?;
            (chain, key, None)
        }
        None => {
            let names = vec![host.to_owned(), "localhost".to_owned(), "127.0.0.1".to_owned()];
            let cert = rcgen::generate_simple_self_signed(names).map_err(|e| err(e.to_string()))?;
            let pem = cert.cert.pem();
            let key = rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der())
                .map_err(|e| err(e.to_string()))?;
            (vec![cert.cert.der().clone()], key, Some(pem))
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| err(e.to_string()))?;
    Ok((Arc::new(config), pem))
}

pub async fn serve(listener: TcpListener, app: Router, config: Arc<rustls::ServerConfig>) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors, most likely: wait for connections to close rather than spin.
                tracing::warn!(%error, "cannot accept a connection");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(stream).await else { return };
            let _ = Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(tls), service).await;
        });
    }
}
