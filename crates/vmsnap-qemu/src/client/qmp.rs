//! [`QmpClient`]: concurrent QMP commands over a unix socket.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::events::QmpEvents;
use super::qmp_conn::{Core, Shared, handshake, read_loop, write_loop};
use crate::command::QmpCommand;
use crate::error::{CommandError, ConnectError, StartCommandError};
use crate::qmp::{Greeting, OutgoingCommand, QmpSession};

/// Deadlines and buffer sizes of a [`QmpClient`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QmpOptions {
    /// Time allowed to connect and finish the greeting/capabilities handshake.
    pub connect_timeout: Duration,
    /// Default time allowed for each command (see [`QmpClient::execute_with_timeout`]).
    pub command_timeout: Duration,
    /// Events buffered per receiver before a slow receiver starts losing them.
    pub event_capacity: usize,
}

impl Default for QmpOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(30),
            event_capacity: 1024,
        }
    }
}

/// A QMP connection in command mode. Clones share the connection; the
/// background tasks stop when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct QmpClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    shared: Arc<Shared>,
    outgoing: mpsc::UnboundedSender<Vec<u8>>,
    greeting: Greeting,
    options: QmpOptions,
    tasks: [JoinHandle<()>; 2],
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

impl QmpClient {
    /// Connects to QEMU's QMP socket and completes the handshake within
    /// `timeout`, which is also the default per-command deadline.
    pub async fn connect(path: impl AsRef<Path>, timeout: Duration) -> Result<Self, ConnectError> {
        let options =
            QmpOptions { connect_timeout: timeout, command_timeout: timeout, ..QmpOptions::default() };
        Self::connect_with(path, options).await
    }

    /// Connects with explicit options.
    pub async fn connect_with(path: impl AsRef<Path>, options: QmpOptions) -> Result<Self, ConnectError> {
        let path = path.as_ref().to_path_buf();
        let handshake = handshake(&path);
        let (session, reader, writer, greeting) = tokio::time::timeout(options.connect_timeout, handshake)
            .await
            .map_err(|_| ConnectError::Timeout {
                path: path.to_path_buf(),
                what: "QMP handshake",
                after: options.connect_timeout,
            })??;
        let (events, _) = broadcast::channel(options.event_capacity.max(1));
        let shared = Arc::new(Shared {
            core: Mutex::new(Core { session, waiters: HashMap::new(), events: Some(events) }),
            closed: watch::channel(false).0,
        });
        let (outgoing, outgoing_rx) = mpsc::unbounded_channel();
        let tasks = [
            tokio::spawn(read_loop(shared.clone(), reader)),
            tokio::spawn(write_loop(shared.clone(), writer, outgoing_rx)),
        ];
        Ok(Self { inner: Arc::new(Inner { shared, outgoing, greeting, options, tasks }) })
    }

    /// The greeting QEMU sent (its version and capabilities).
    pub fn greeting(&self) -> &Greeting {
        &self.inner.greeting
    }

    /// Whether the connection is still open.
    pub fn is_connected(&self) -> bool {
        !*self.inner.shared.closed.borrow()
    }

    /// Resolves once the connection has closed (e.g. after `quit`).
    pub async fn closed(&self) {
        let mut closed = self.inner.shared.closed.subscribe();
        // The sender lives in `Shared`, which we hold, so this cannot fail.
        let _ = closed.wait_for(|closed| *closed).await;
    }

    /// A receiver of the events emitted from now on.
    pub fn events(&self) -> QmpEvents {
        let core = self.inner.shared.lock();
        let rx = match &core.events {
            Some(events) => events.subscribe(),
            None => broadcast::channel(1).1,
        };
        QmpEvents::new(rx)
    }

    /// Runs a typed command with the default deadline.
    pub async fn execute<C: QmpCommand>(&self, args: C::Args) -> Result<C::Returns, CommandError> {
        self.execute_with_timeout::<C>(args, self.inner.options.command_timeout).await
    }

    /// Runs a typed command with its own deadline.
    pub async fn execute_with_timeout<C: QmpCommand>(
        &self,
        args: C::Args,
        timeout: Duration,
    ) -> Result<C::Returns, CommandError> {
        let value = self.run(C::NAME, |session| session.start::<C>(&args), timeout).await?;
        serde_json::from_value(value)
            .map_err(|source| CommandError::Decode { command: C::NAME.into(), source })
    }

    /// Runs any command by name with JSON arguments (`null` or `{}` for none).
    pub async fn execute_raw(&self, name: &str, args: Value) -> Result<Value, CommandError> {
        self.execute_raw_with_timeout(name, args, self.inner.options.command_timeout).await
    }

    /// [`QmpClient::execute_raw`] with its own deadline.
    pub async fn execute_raw_with_timeout(
        &self,
        name: &str,
        args: Value,
        timeout: Duration,
    ) -> Result<Value, CommandError> {
        let args = match args {
            Value::Null => None,
            Value::Object(map) if map.is_empty() => None,
            other => Some(other),
        };
        self.run(name, |session| session.start_command(name, args), timeout).await
    }

    async fn run(
        &self,
        command: &str,
        start: impl FnOnce(&mut QmpSession) -> Result<OutgoingCommand, StartCommandError>,
        timeout: Duration,
    ) -> Result<Value, CommandError> {
        let shared = &self.inner.shared;
        let disconnected = || CommandError::Disconnected { command: command.into() };
        let (tx, rx) = oneshot::channel();
        let outgoing = {
            let mut core = shared.lock();
            if core.events.is_none() {
                return Err(disconnected());
            }
            let outgoing = start(&mut core.session)
                .map_err(|source| CommandError::Start { command: command.into(), source })?;
            core.waiters.insert(outgoing.id, tx);
            outgoing
        };
        // Whatever happens next (reply, timeout, or the caller dropping this
        // future), the command is forgotten when `_abandon` goes out of scope.
        let _abandon = AbandonOnDrop { shared, id: outgoing.id };
        self.inner.outgoing.send(outgoing.bytes).map_err(|_| disconnected())?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(error))) => Err(CommandError::from_qemu(command, error)),
            Ok(Err(_)) => Err(disconnected()),
            Err(_) => Err(CommandError::Timeout { command: command.into(), after: timeout }),
        }
    }
}

/// Removes a command's waiter and tells the session to drop its late reply.
struct AbandonOnDrop<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for AbandonOnDrop<'_> {
    fn drop(&mut self) {
        let mut core = self.shared.lock();
        core.waiters.remove(&self.id);
        core.session.abandon(self.id);
    }
}
