//! A watch on one resource: history from the log first, then live events, without gaps or repeats.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::broadcast;

use crate::{Store, StoreEvent, WatchError};

/// A stream of changes to one resource after a revision. See [`Store::watch`].
pub struct Watch {
    store: Store,
    resource: String,
    namespace: Option<String>,
    /// Every change at or below this revision has been delivered or skipped.
    progress: u64,
    live: broadcast::Receiver<Arc<StoreEvent>>,
    pending: VecDeque<Arc<StoreEvent>>,
    needs_log: bool,
    /// Where the next read of the log starts (the log is read in batches).
    log_cursor: u64,
}

/// How many log entries a catching-up watch reads at a time.
const LOG_BATCH: usize = 256;

impl Watch {
    pub(crate) fn new(
        store: Store,
        resource: String,
        namespace: Option<String>,
        from: u64,
        live: broadcast::Receiver<Arc<StoreEvent>>,
    ) -> Self {
        Watch {
            store,
            resource,
            namespace,
            progress: from,
            live,
            pending: VecDeque::new(),
            needs_log: true,
            log_cursor: from,
        }
    }

    /// The revision up to which this watch has seen everything (safe to use in a bookmark).
    pub fn progress(&self) -> u64 {
        self.progress
    }

    /// The next change. Cancel-safe: dropping the future loses nothing.
    pub async fn next(&mut self) -> Result<Arc<StoreEvent>, WatchError> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                self.progress = self.progress.max(event.revision);
                return Ok(event);
            }
            if self.needs_log {
                let from = self.progress.max(self.log_cursor);
                let batch = self
                    .store
                    .log_after(&self.resource, self.namespace.as_deref(), from, LOG_BATCH)
                    .await
                    .map_err(|e| WatchError::Store(e.to_string()))??;
                self.pending.extend(batch.events.into_iter().map(Arc::new));
                self.log_cursor = batch.scanned_to;
                self.needs_log = batch.more;
                continue;
            }
            match self.live.recv().await {
                Ok(event) => {
                    if event.revision <= self.progress {
                        continue;
                    }
                    if event.key.resource != self.resource
                        || self.namespace.as_deref().is_some_and(|ns| ns != event.key.namespace)
                    {
                        self.progress = event.revision;
                        continue;
                    }
                    self.progress = event.revision;
                    return Ok(event);
                }
                Err(broadcast::error::RecvError::Lagged(_)) => self.needs_log = true,
                Err(broadcast::error::RecvError::Closed) => {
                    return Err(WatchError::Store("the store is shutting down".into()));
                }
            }
        }
    }
}
