//! Durable object store over SQLite: one global revision, objects, a bounded revision log and watch fan-out.
//!
//! This is the only crate that knows SQL. It stores opaque JSON objects under an [`ObjectKey`]
//! (resource, namespace, name) and knows nothing of Kubernetes semantics beyond
//! `metadata.resourceVersion`, which it sets to the revision of each write.
//!
//! # Model (like kine)
//! - Every write gets the next value of one global revision, used as `resourceVersion`.
//! - `objects` holds the current state; `log` holds every change (with the previous value, so watchers
//!   can tell when an object stops matching a selector) and is trimmed to a bounded number of entries.
//! - Writes run on one writer thread. Writes that arrive together are committed in one transaction
//!   (group commit, `synchronous=FULL`), and a write is acknowledged only after its commit is durable.
//! - Watchers subscribe to a broadcast of committed changes; a watcher that starts from an old revision,
//!   or falls behind, catches up from the log; if the log no longer reaches back that far it gets
//!   [`WatchError::Expired`] (the API server turns it into an in-stream 410).

mod depth;
mod error;
mod event;
mod page;
mod reader;
pub mod reserve;
mod schema;
mod watch;
mod writer;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;
use tokio::sync::broadcast;

pub use depth::{MAX_NESTING, nesting_depth};
pub use error::{OpenError, StoreError, WatchError};
pub use event::{EventType, ObjectKey, StoreEvent};
pub use page::{Page, PageRequest, Select};
pub use reserve::{RESERVE_BYTES, SpaceReserve};
pub use watch::Watch;
pub use writer::{Mutation, WriteOutcome};

/// Tuning knobs of the store.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// How many log entries to keep for watch resumption.
    pub log_retention: u64,
    /// Capacity of the live event broadcast before slow watchers fall back to the log.
    pub broadcast_capacity: usize,
    /// Resources (`group/plural`) whose new objects are still written when the disk is short of
    /// space (objects of other resources are refused until it has room): the API server names its
    /// Events, small and what tells a user why things stopped.
    pub creatable_while_short: Vec<String>,
    /// The space reserve file given back when a write fails for lack of space (see [`reserve`]):
    /// `vmsnap serve` shares its data directory's; by default `reserve` beside the database.
    pub reserve: Option<std::path::PathBuf>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            log_retention: 100_000,
            broadcast_capacity: 4096,
            creatable_while_short: Vec::new(),
            reserve: None,
        }
    }
}

/// The object store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

struct Shared {
    writer: writer::WriterHandle,
    readers: reader::ReaderPool,
    events: broadcast::Sender<Arc<StoreEvent>>,
    /// Highest committed revision.
    revision: Arc<AtomicU64>,
    /// Log entries at or below this revision are gone.
    compacted: Arc<AtomicU64>,
}

impl Store {
    /// Opens (or creates) the store in `dir/store.db`.
    pub fn open(dir: &Path, config: StoreConfig) -> Result<Store, OpenError> {
        std::fs::create_dir_all(dir)
            .map_err(|source| OpenError::Directory { dir: dir.to_owned(), source })?;
        let path = dir.join("store.db");
        let conn = schema::open_connection(&path)?;
        let (revision, compacted) = schema::read_meta(&conn)?;
        let revision = Arc::new(AtomicU64::new(revision));
        let compacted = Arc::new(AtomicU64::new(compacted));
        let (events, _) = broadcast::channel(config.broadcast_capacity);
        let writer = writer::spawn(conn, dir, config, events.clone(), revision.clone(), compacted.clone());
        let readers = reader::ReaderPool::new(path);
        Ok(Store { shared: Arc::new(Shared { writer, readers, events, revision, compacted }) })
    }

    /// The highest committed revision.
    pub fn revision(&self) -> u64 {
        self.shared.revision.load(Ordering::Acquire)
    }

    /// The revision up to which the log has been trimmed.
    pub fn compacted_revision(&self) -> u64 {
        self.shared.compacted.load(Ordering::Acquire)
    }

    /// Reads one object.
    pub async fn get(&self, key: &ObjectKey) -> Result<Option<Arc<Value>>, StoreError> {
        let key = key.clone();
        self.shared.readers.run(move |conn| reader::get(conn, &key)).await
    }

    /// Lists the objects of a resource, in one namespace or all, with the revision the list is consistent at.
    pub async fn list(
        &self,
        resource: &str,
        namespace: Option<&str>,
    ) -> Result<(Vec<Arc<Value>>, u64), StoreError> {
        let select: Select<Arc<Value>> = Box::new(|object| Some(Arc::new(object)));
        let everything = self.list_page(resource, namespace, PageRequest::default(), select).await?;
        let page = everything.expect("a list read now cannot have expired");
        Ok((page.items, page.revision))
    }

    /// One page of a list: what `select` makes of the objects it keeps, in `(namespace, name)`
    /// order, as they were at the revision of the list's first page. [`WatchError::Expired`] when
    /// the log has been trimmed past that revision.
    pub async fn list_page<T: Send + 'static>(
        &self,
        resource: &str,
        namespace: Option<&str>,
        request: PageRequest,
        mut select: Select<T>,
    ) -> Result<Result<Page<T>, WatchError>, StoreError> {
        self.read_log(resource, namespace, move |conn, resource, namespace, compacted| {
            page::list_page(conn, resource, namespace, &request, &mut select, compacted)
        })
        .await
    }

    /// Runs `decide` on the current value of `key` on the writer thread and applies the mutation it
    /// returns atomically. The store stamps `metadata.resourceVersion` on a stored value.
    pub async fn mutate<E, F>(&self, key: ObjectKey, decide: F) -> Result<Result<WriteOutcome, E>, StoreError>
    where
        E: Send + 'static,
        F: FnOnce(Option<&Value>) -> Result<Mutation, E> + Send + 'static,
    {
        self.shared.writer.mutate(key, decide).await
    }

    /// Subscribes to every committed change, live only (no history). Used by in-process indexes.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StoreEvent>> {
        self.shared.events.subscribe()
    }

    /// Watches `resource` (optionally one namespace) for changes after revision `from`.
    pub fn watch(&self, resource: &str, namespace: Option<&str>, from: u64) -> Watch {
        Watch::new(
            self.clone(),
            resource.to_owned(),
            namespace.map(str::to_owned),
            from,
            self.shared.events.subscribe(),
        )
    }

    /// Trims the log so that it keeps only entries after `revision` (used by tests and by the retention policy).
    pub async fn compact(&self, revision: u64) -> Result<(), StoreError> {
        self.shared.writer.compact(revision).await
    }

    pub(crate) async fn log_after(
        &self,
        resource: &str,
        namespace: Option<&str>,
        after: u64,
        batch: usize,
    ) -> Result<Result<reader::LogBatch, WatchError>, StoreError> {
        self.read_log(resource, namespace, move |conn, resource, namespace, compacted| {
            reader::log_after(conn, resource, namespace, after, batch, compacted)
        })
        .await
    }

    /// Runs `read` on a reader connection over `resource` (optionally one namespace), with the
    /// revision the log is compacted to: reads that may fall back to the log check it.
    async fn read_log<T, F>(&self, resource: &str, namespace: Option<&str>, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Connection, &str, Option<&str>, &AtomicU64) -> Result<T, StoreError>
            + Send
            + 'static,
    {
        let resource = resource.to_owned();
        let namespace = namespace.map(str::to_owned);
        let compacted = self.shared.compacted.clone();
        self.shared.readers.run(move |conn| read(conn, &resource, namespace.as_deref(), &compacted)).await
    }
}
