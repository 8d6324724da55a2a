//! A receiver of QMP events.

use std::time::Duration;

use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use crate::error::EventError;
use crate::qmp::QmpEvent;

/// Receives the QMP events emitted after it was created (see [`crate::client::QmpClient::events`]).
///
/// Subscribe *before* issuing the command whose event you wait for, or the
/// event may come and go first.
#[derive(Debug)]
pub struct QmpEvents {
    rx: broadcast::Receiver<QmpEvent>,
}

impl QmpEvents {
    pub(crate) fn new(rx: broadcast::Receiver<QmpEvent>) -> Self {
        Self { rx }
    }

    /// The next event. Fails with [`EventError::Disconnected`] once the
    /// connection is closed and every buffered event has been received, and with
    /// [`EventError::Lagged`] if this receiver fell behind and events were lost.
    pub async fn next(&mut self) -> Result<QmpEvent, EventError> {
        match self.rx.recv().await {
            Ok(event) => Ok(event),
            Err(RecvError::Closed) => Err(EventError::Disconnected),
            Err(RecvError::Lagged(missed)) => Err(EventError::Lagged { missed }),
        }
    }

    /// Waits up to `timeout` for the first event for which `matches` is true, skipping others.
    pub async fn wait_for(
        &mut self,
        timeout: Duration,
        mut matches: impl FnMut(&QmpEvent) -> bool,
    ) -> Result<QmpEvent, EventError> {
        let wait = async {
            loop {
                let event = self.next().await?;
                if matches(&event) {
                    return Ok(event);
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.map_err(|_| EventError::Timeout { after: timeout })?
    }

    /// Waits up to `timeout` for the next event named `name` (e.g. `SHUTDOWN`).
    pub async fn wait_for_name(&mut self, timeout: Duration, name: &str) -> Result<QmpEvent, EventError> {
        self.wait_for(timeout, |event| event.name() == name).await
    }
}
