//! The connection behind a [`super::QmpClient`]: the handshake, and the
//! background tasks that read replies and events and write requests.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::READ_CHUNK;
use crate::error::{ConnectError, ProtocolError, QemuError};
use crate::qmp::{Greeting, QmpEvent, QmpOutput, QmpSession};

/// State shared between callers and the background tasks.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) core: Mutex<Core>,
    pub(super) closed: watch::Sender<bool>,
}

/// Everything behind the lock. It is never held across an `.await`.
#[derive(Debug)]
pub(super) struct Core {
    pub(super) session: QmpSession,
    pub(super) waiters: HashMap<u64, oneshot::Sender<Result<Value, QemuError>>>,
    /// Dropped on disconnect, which ends every [`super::QmpEvents`].
    pub(super) events: Option<broadcast::Sender<QmpEvent>>,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, Core> {
        // A panic while holding the lock cannot leave `Core` half-updated in a
        // way that matters more than losing the connection, so keep going.
        self.core.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Fails every waiter with `Disconnected` and ends the event streams.
    pub(super) fn disconnect(&self) {
        let mut core = self.lock();
        core.session.close();
        core.waiters.clear();
        core.events = None;
        drop(core);
        self.closed.send_replace(true);
    }
}

pub(super) type Handshake = (QmpSession, OwnedReadHalf, OwnedWriteHalf, Greeting);

/// Connects, reads the greeting, sends `qmp_capabilities` and waits for its reply.
pub(super) async fn handshake(path: &Path) -> Result<Handshake, ConnectError> {
    let stream = UnixStream::connect(path)
        .await
        .map_err(|source| ConnectError::Io { path: path.to_path_buf(), source })?;
    let (mut reader, mut writer) = stream.into_split();
    let mut session = QmpSession::new();
    let mut buf = vec![0; READ_CHUNK];
    loop {
        let read = reader
            .read(&mut buf)
            .await
            .map_err(|source| ConnectError::Io { path: path.to_path_buf(), source })?;
        if read == 0 {
            return Err(ConnectError::Closed { path: path.to_path_buf(), what: "QMP handshake" });
        }
        session.push_bytes(&buf[..read]);
        while let Some(output) = session.poll_output() {
            match output {
                Ok(QmpOutput::Ready(greeting)) => return Ok((session, reader, writer, greeting)),
                Ok(other) => tracing::debug!(?other, "ignoring a QMP message during the handshake"),
                Err(source) => {
                    return Err(ConnectError::Protocol { path: path.to_path_buf(), source });
                }
            }
        }
        let transmit = session.take_transmit();
        if !transmit.is_empty() {
            writer
                .write_all(&transmit)
                .await
                .map_err(|source| ConnectError::Io { path: path.to_path_buf(), source })?;
        }
    }
}

/// Routes replies to their waiters and events to the receivers, until EOF.
pub(super) async fn read_loop(shared: Arc<Shared>, mut reader: OwnedReadHalf) {
    let mut buf = vec![0; READ_CHUNK];
    // The handshake may have left messages that followed its reply in the decoder.
    dispatch(&shared, &[]);
    loop {
        match reader.read(&mut buf).await {
            Ok(0) => break,
            Ok(read) => dispatch(&shared, &buf[..read]),
            Err(error) => {
                tracing::warn!(%error, "reading the QMP socket failed");
                break;
            }
        }
    }
    shared.disconnect();
}

fn dispatch(shared: &Shared, bytes: &[u8]) {
    let mut core = shared.lock();
    core.session.push_bytes(bytes);
    while let Some(output) = core.session.poll_output() {
        match output {
            Ok(QmpOutput::Reply { id, result, .. }) => {
                if let Some(waiter) = core.waiters.remove(&id) {
                    // The caller may have just given up; then nobody needs the reply.
                    let _ = waiter.send(result);
                }
            }
            Ok(QmpOutput::Event(event)) => {
                if let Some(events) = &core.events {
                    // No receiver is not an error: nobody is waiting for events.
                    let _ = events.send(event);
                }
            }
            Ok(QmpOutput::Unmatched(reply)) => tracing::warn!(?reply, "QMP reply matches no command"),
            Ok(QmpOutput::Ready(_)) => {}
            Err(error) => log_protocol_error(&error),
        }
    }
}

fn log_protocol_error(error: &ProtocolError) {
    let cause = std::error::Error::source(error).map(ToString::to_string).unwrap_or_default();
    tracing::warn!(%error, %cause, "ignoring a bad message from QEMU");
}

/// Writes queued requests in order; a write failure closes the connection.
pub(super) async fn write_loop(
    shared: Arc<Shared>,
    mut writer: OwnedWriteHalf,
    mut outgoing: mpsc::UnboundedReceiver<Vec<u8>>,
) {
    while let Some(bytes) = outgoing.recv().await {
        if let Err(error) = writer.write_all(&bytes).await {
            tracing::warn!(%error, "writing to the QMP socket failed");
            shared.disconnect();
            return;
        }
    }
}
