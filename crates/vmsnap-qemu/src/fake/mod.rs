//! Scriptable fake QMP and QGA peers for fault-injection tests (feature `fake`).
//!
//! A [`FakeQmp`] or [`FakeQga`] listens on a unix socket, speaks the protocol
//! (greeting and capabilities negotiation for QMP, `guest-sync-delimited` with
//! its `0xFF` sentinel for QGA), answers each command with a sensible default,
//! and records what it received. At runtime a test can make a given command
//! hang, fail, disconnect, reply late, or reply with raw bytes:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use vmsnap_qemu::client::QgaClient;
//! use vmsnap_qemu::fake::{Behavior, FakeQga};
//! use vmsnap_qemu::qga::commands::GuestPing;
//! use vmsnap_qemu::CommandError;
//!
//! let dir = tempfile::tempdir()?;
//! let agent = FakeQga::start(dir.path().join("qga.sock"))?;
//! agent.set_behavior("guest-ping", Behavior::Hang);
//! let client = QgaClient::connect(agent.path(), Duration::from_millis(200)).await?;
//! let error = client.execute::<GuestPing>(()).await.unwrap_err();
//! assert!(matches!(error, CommandError::Timeout { .. }));
//! # Ok(()) }
//! ```

mod qga;
mod qmp;
mod script;

use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use qga::{FakeAgentState, Qga};
pub use qmp::{FakeVmState, Qmp};
use script::Script;
pub use script::{Behavior, ReceivedCommand};

/// A fake QEMU monitor (QMP).
pub type FakeQmp = Fake<Qmp>;
/// A fake guest agent (QGA), as exposed by QEMU's agent chardev socket.
pub type FakeQga = Fake<Qga>;

/// The protocol a [`Fake`] speaks. Implemented by [`Qmp`] and [`Qga`] only.
pub trait Peer: Sized + Send + Sync + std::fmt::Debug + 'static {
    /// What the fake remembers between commands (run state, frozen filesystems...).
    type State: Default + Send + std::fmt::Debug + 'static;

    /// Serves one accepted connection until it closes or the fake is told to drop it.
    fn serve(shared: Arc<Shared<Self>>, stream: UnixStream) -> impl Future<Output = ()> + Send;
}

/// State shared by a fake's listener and its connections.
#[derive(Debug)]
pub struct Shared<P: Peer> {
    script: Mutex<Script>,
    state: Mutex<P::State>,
    /// Bumped to make every open connection close.
    kill: watch::Sender<u64>,
    accepted: AtomicUsize,
    /// The write queues of the open connections, for broadcasting QMP events.
    outlets: Mutex<Vec<mpsc::UnboundedSender<Outgoing>>>,
}

/// What a connection task is asked to write.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// Write these bytes.
    Bytes(Vec<u8>),
    /// Close the connection.
    Close,
}

impl<P: Peer> Shared<P> {
    pub(crate) fn script(&self) -> MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, P::State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn kill_signal(&self) -> watch::Receiver<u64> {
        self.kill.subscribe()
    }

    pub(crate) fn outlets(&self) -> MutexGuard<'_, Vec<mpsc::UnboundedSender<Outgoing>>> {
        self.outlets.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A fake peer listening on a unix socket. Dropping it stops listening and closes every connection.
#[derive(Debug)]
pub struct Fake<P: Peer> {
    shared: Arc<Shared<P>>,
    path: PathBuf,
    accept: JoinHandle<()>,
    _peer: PhantomData<P>,
}

impl<P: Peer> Fake<P> {
    /// Listens on `path` (which must not exist). Must be called inside a tokio runtime.
    pub fn start(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        let listener = UnixListener::bind(&path)?;
        let shared = Arc::new(Shared {
            script: Mutex::new(Script::default()),
            state: Mutex::new(P::State::default()),
            kill: watch::channel(0).0,
            accepted: AtomicUsize::new(0),
            outlets: Mutex::new(Vec::new()),
        });
        let accept = tokio::spawn(accept_loop(shared.clone(), listener));
        Ok(Self { shared, path, accept, _peer: PhantomData })
    }

    /// The socket path to connect to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// From now on, answer every `command` this way (until cleared).
    pub fn set_behavior(&self, command: &str, behavior: Behavior) {
        self.shared.script().persistent.insert(command.to_owned(), behavior);
    }

    /// Answer the next `command` this way, once; queued ones apply in order before any persistent one.
    pub fn set_behavior_once(&self, command: &str, behavior: Behavior) {
        self.shared.script().once.entry(command.to_owned()).or_default().push_back(behavior);
    }

    /// Back to the default replies for every command.
    pub fn clear_behaviors(&self) {
        let mut script = self.shared.script();
        script.persistent.clear();
        script.once.clear();
    }

    /// Every command received so far, in order, on all connections.
    pub fn received(&self) -> Vec<ReceivedCommand> {
        self.shared.script().received.clone()
    }

    /// The names of the commands received so far, in order.
    pub fn received_names(&self) -> Vec<String> {
        self.shared.script().received.iter().map(|c| c.name.clone()).collect()
    }

    /// Forgets the commands received so far.
    pub fn clear_received(&self) {
        self.shared.script().received.clear();
    }

    /// How many connections have been accepted since the start.
    pub fn accepted_connections(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Closes every open connection now (new connections are still accepted).
    pub fn disconnect_all(&self) {
        self.shared.kill.send_modify(|generation| *generation += 1);
    }

    /// Reads or changes the simulated VM or agent state.
    pub fn with_state<R>(&self, f: impl FnOnce(&mut P::State) -> R) -> R {
        f(&mut self.shared.state())
    }

    pub(crate) fn shared(&self) -> &Shared<P> {
        &self.shared
    }
}

impl<P: Peer> Drop for Fake<P> {
    fn drop(&mut self) {
        self.accept.abort();
        self.disconnect_all();
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn accept_loop<P: Peer>(shared: Arc<Shared<P>>, listener: UnixListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                shared.accepted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(P::serve(shared.clone(), stream));
            }
            Err(error) => {
                tracing::warn!(%error, "fake peer stopped accepting connections");
                return;
            }
        }
    }
}

/// Resolves when the fake is told to drop its connections (or is dropped).
pub(crate) async fn killed(kill: &mut watch::Receiver<u64>) {
    // An error means the sender is gone, which also means "stop".
    let _ = kill.changed().await;
}
