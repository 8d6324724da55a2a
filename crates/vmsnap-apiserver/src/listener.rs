//! The listener: connections from outside the process (kubectl, the console, other clients),
//! served on a runtime of their own.
//!
//! The in-process components (controllers, node agent, storage driver) call the router directly
//! on the main runtime and can keep it busy: 1,000 snapshots at once are tens of thousands of
//! requests. Serving the socket from separate threads keeps a user's `kubectl get` from queueing
//! behind them, as it would not in a cluster where the API server is a process of its own: the
//! kernel schedules these threads as soon as a request arrives.
//!
//! Connections are bounded: each one holds a file descriptor, and clients that open connections
//! and never finish a request would otherwise exhaust them and stop the API from answering. A
//! connection gets a deadline for its TLS handshake and for each request's headers, and when the
//! bound is reached the connection idle the longest (no request in flight) makes room for the new.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

mod tracked;

/// Limits on the connections the listener keeps.
#[derive(Clone, Debug)]
pub struct ConnectionLimits {
    /// At most this many connections are open at once.
    pub max_connections: usize,
    /// Time for the TLS handshake (and the first byte that tells TLS from plain HTTP).
    pub handshake_timeout: Duration,
    /// Time for a request's headers to arrive once the server waits for them (kube-apiserver:
    /// `ReadHeaderTimeout` of 32 s); an idle keep-alive connection is closed after it too.
    pub header_timeout: Duration,
}

/// File descriptors kept for everything but API connections: the store, VM sockets, disk files.
const RESERVED_FDS: u64 = 256;

impl Default for ConnectionLimits {
    /// The connection bound leaves [`RESERVED_FDS`] of the process's open file limit to the rest
    /// of the server.
    fn default() -> Self {
        let fds = open_file_limit().unwrap_or(1024);
        ConnectionLimits {
            max_connections: fds.saturating_sub(RESERVED_FDS).clamp(64, 65_536) as usize,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(32),
        }
    }
}

/// The soft limit on open files of this process.
pub fn open_file_limit() -> std::io::Result<u64> {
    let (soft, _) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)?;
    Ok(soft)
}

/// Raises the soft limit on open files to the hard limit (capped at 1,048,576), as servers that
/// hold many connections do at start; returns the new soft limit. Call it before
/// [`crate::ApiServer::start`], which sizes its connection bound from the limit in force.
pub fn raise_open_file_limit() -> std::io::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let wanted = hard.min(1 << 20);
    if wanted > soft {
        setrlimit(Resource::RLIMIT_NOFILE, wanted, hard)?;
        return Ok(wanted);
    }
    Ok(soft)
}

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
        limits: ConnectionLimits,
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
        let server = Arc::new(Server {
            app,
            acceptor: tokio_rustls::TlsAcceptor::from(config),
            allow_plain,
            limits,
            connections: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
            stopped,
        });
        let accept = runtime.spawn(async move {
            match TcpListener::from_std(listener) {
                Ok(listener) => server.accept_loop(listener).await,
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

/// One open connection, as the bound sees it.
struct Connection {
    id: u64,
    /// Requests whose response has not been sent in full (a watch stays in flight).
    in_flight: AtomicUsize,
    /// When a request last started or finished (milliseconds on [`tokio::time::Instant`]'s clock).
    last_active: AtomicU64,
    /// Closes the connection to make room for a new one.
    evict: tokio::sync::Notify,
}

struct Server {
    app: Router,
    acceptor: tokio_rustls::TlsAcceptor,
    allow_plain: bool,
    limits: ConnectionLimits,
    connections: Mutex<Vec<Arc<Connection>>>,
    next_id: AtomicU64,
    stopped: tokio::sync::watch::Receiver<bool>,
}

fn millis_since(start: tokio::time::Instant) -> u64 {
    start.elapsed().as_millis() as u64
}

impl Server {
    async fn accept_loop(self: Arc<Self>, listener: TcpListener) {
        let epoch = tokio::time::Instant::now();
        loop {
            self.make_room().await;
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let connection = Arc::new(Connection {
                id: self.next_id.fetch_add(1, Ordering::Relaxed),
                in_flight: AtomicUsize::new(0),
                last_active: AtomicU64::new(millis_since(epoch)),
                evict: tokio::sync::Notify::new(),
            });
            self.connections.lock().expect("connection list lock").push(connection.clone());
            let server = self.clone();
            let mut stopped = self.stopped.clone();
            tokio::spawn(async move {
                let service = tracked::Tracked::new(server.app.clone(), connection.clone(), epoch);
                tokio::select! {
                    _ = stopped.wait_for(|s| *s) => {}
                    _ = connection.evict.notified() => {}
                    _ = server.serve_connection(stream, service) => {}
                }
                server.connections.lock().expect("connection list lock").retain(|c| c.id != connection.id);
            });
        }
    }

    /// At the bound, closes the connection idle the longest; when every connection has a request
    /// in flight, waits for one to end.
    async fn make_room(&self) {
        loop {
            {
                let connections = self.connections.lock().expect("connection list lock");
                if connections.len() < self.limits.max_connections {
                    return;
                }
                let idle = connections
                    .iter()
                    .filter(|c| c.in_flight.load(Ordering::Acquire) == 0)
                    .min_by_key(|c| c.last_active.load(Ordering::Acquire));
                if let Some(idle) = idle {
                    // notify_one keeps the permit if the task is not waiting yet.
                    idle.evict.notify_one();
                    tracing::debug!(
                        connections = connections.len(),
                        "connection bound reached: closing the connection idle the longest"
                    );
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn serve_connection(&self, stream: tokio::net::TcpStream, service: tracked::Tracked) {
        use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
        use hyper_util::server::conn::auto::Builder;
        use hyper_util::service::TowerToHyperService;
        let mut builder = Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new()).header_read_timeout(self.limits.header_timeout);
        let service = TowerToHyperService::new(service);
        let handshake = async {
            let mut first = [0u8; 1];
            let is_tls = match stream.peek(&mut first).await {
                Ok(1) => first[0] == 0x16,
                _ => return None,
            };
            if is_tls {
                self.acceptor.accept(stream).await.ok().map(|tls| Ok(TokioIo::new(tls)))
            } else if self.allow_plain {
                Some(Err(TokioIo::new(stream)))
            } else {
                None
            }
        };
        match tokio::time::timeout(self.limits.handshake_timeout, handshake).await {
            Ok(Some(Ok(tls))) => {
                let _ = builder.serve_connection_with_upgrades(tls, service).await;
            }
            Ok(Some(Err(plain))) => {
                let _ = builder.serve_connection_with_upgrades(plain, service).await;
            }
            Ok(None) | Err(_) => {}
        }
    }
}
