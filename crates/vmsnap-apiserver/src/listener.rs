//! The listener: connections from outside the process (kubectl, the console, other clients),
//! served on a runtime of their own.
//!
//! The in-process components (controllers, node agent, storage driver) call the router directly
//! on the main runtime and can keep it busy: 1,000 snapshots at once are tens of thousands of
//! requests. Serving the socket from separate threads keeps a user's `kubectl get` from queueing
//! behind them, as it would not in a cluster where the API server is a process of its own: the
//! kernel schedules these threads as soon as a request arrives.

use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

/// The runtime serving the socket, and its accept loop.
pub struct Listener {
    runtime: Runtime,
    accept: JoinHandle<()>,
}

impl Listener {
    /// Serves `listener` (bound on any runtime) with `app` on a new multi-threaded runtime.
    pub fn start(
        listener: TcpListener,
        app: Router,
        config: Arc<rustls::ServerConfig>,
        allow_plain: bool,
        stopped: tokio::sync::watch::Receiver<bool>,
    ) -> std::io::Result<Listener> {
        let threads = std::thread::available_parallelism().map_or(2, usize::from).clamp(2, 4);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("vmsnap-api")
            .enable_all()
            .build()?;
        // A socket belongs to the runtime that registered it: hand it over as a plain one.
        let listener = listener.into_std()?;
        let accept = runtime.spawn(async move {
            match TcpListener::from_std(listener) {
                Ok(listener) => serve(listener, app, config, allow_plain, stopped).await,
                Err(error) => tracing::error!(%error, "cannot serve the API socket"),
            }
        });
        Ok(Listener { runtime, accept })
    }

    /// Stops accepting connections (open ones are closed through the stop signal).
    pub fn stop_accepting(&self) {
        self.accept.abort();
    }

    /// Stops the runtime without waiting for its tasks (safe inside another runtime).
    pub fn close(self) {
        self.accept.abort();
        self.runtime.shutdown_background();
    }
}

async fn serve(
    listener: TcpListener,
    app: Router,
    config: Arc<rustls::ServerConfig>,
    allow_plain: bool,
    stopped: tokio::sync::watch::Receiver<bool>,
) {
    use hyper_util::service::TowerToHyperService;
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(app.clone());
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = stopped.wait_for(|s| *s) => {}
                _ = serve_connection(stream, acceptor, service, allow_plain) => {}
            }
        });
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    service: hyper_util::service::TowerToHyperService<Router>,
    allow_plain: bool,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder;
    let mut first = [0u8; 1];
    let is_tls = match stream.peek(&mut first).await {
        Ok(1) => first[0] == 0x16,
        _ => return,
    };
    let builder = Builder::new(TokioExecutor::new());
    if is_tls {
        let Ok(tls) = acceptor.accept(stream).await else { return };
        let _ = builder.serve_connection_with_upgrades(TokioIo::new(tls), service).await;
    } else if allow_plain {
        let _ = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).await;
    }
}
