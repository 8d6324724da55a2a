//! The single writer thread, with group commit.
//!
//! Requests queue on a channel. The thread takes everything queued (up to a batch limit), applies
//! each request in one transaction, commits once (`synchronous=FULL`: durable), and only then
//! publishes the events and answers the callers. A crash before the commit loses the whole batch,
//! none of which was acknowledged; a crash after it loses nothing.

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde_json::Value;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::{EventType, ObjectKey, StoreError, StoreEvent};

const MAX_BATCH: usize = 512;

/// What a write does, decided from the current value.
#[derive(Debug)]
pub enum Mutation {
    /// Store this value (create or replace).
    Put(Value),
    /// Remove the object.
    Delete,
    /// Leave it as it is.
    Unchanged,
}

/// The result of a write.
#[derive(Clone, Debug)]
pub struct WriteOutcome {
    /// The object after the write (for a delete, its last value); `None` if it does not exist.
    pub object: Option<Arc<Value>>,
    /// What changed, or `None` for a no-op.
    pub event: Option<EventType>,
}

/// The caller's error, type-erased while it crosses the writer thread.
type ErasedError = Box<dyn Any + Send>;

/// Why one mutation of a batch was not applied; the rest of the batch is.
enum Rejected {
    /// The caller's `decide` refused.
    Caller(ErasedError),
    /// The store refused the value (e.g. [`StoreError::TooDeep`]).
    Store(StoreError),
}

type MutationReply = oneshot::Sender<Result<Result<WriteOutcome, Rejected>, StoreError>>;

type Decide = Box<dyn FnOnce(Option<&Value>) -> Result<Mutation, Box<dyn Any + Send>> + Send>;

enum Request {
    Mutate { key: ObjectKey, decide: Decide, reply: MutationReply },
    Compact { revision: u64, reply: oneshot::Sender<Result<(), StoreError>> },
}

pub(crate) struct WriterHandle {
    tx: mpsc::UnboundedSender<Request>,
}

impl WriterHandle {
    pub async fn mutate<E, F>(&self, key: ObjectKey, decide: F) -> Result<Result<WriteOutcome, E>, StoreError>
    where
        E: Send + 'static,
        F: FnOnce(Option<&Value>) -> Result<Mutation, E> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let decide: Decide =
            Box::new(move |current| decide(current).map_err(|e| Box::new(e) as Box<dyn Any + Send>));
        self.tx.send(Request::Mutate { key, decide, reply }).map_err(|_| StoreError::Closed)?;
        match rx.await.map_err(|_| StoreError::Closed)?? {
            Ok(outcome) => Ok(Ok(outcome)),
            Err(Rejected::Caller(any)) => {
                Ok(Err(*any.downcast::<E>().expect("the error type of a mutation is the caller's")))
            }
            Err(Rejected::Store(error)) => Err(error),
        }
    }

    pub async fn compact(&self, revision: u64) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Request::Compact { revision, reply }).map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

pub(crate) fn spawn(
    conn: Connection,
    dir: &std::path::Path,
    config: crate::StoreConfig,
    events: broadcast::Sender<Arc<StoreEvent>>,
    revision: Arc<AtomicU64>,
    compacted: Arc<AtomicU64>,
) -> WriterHandle {
    let reserve = crate::SpaceReserve::at(config.reserve.unwrap_or_else(|| dir.join("reserve")));
    let (retention, creatable_while_short) = (config.log_retention, config.creatable_while_short);
    let (tx, rx) = mpsc::unbounded_channel();
    let dir = dir.to_owned();
    let mut writer =
        Writer { conn, dir, reserve, events, revision, compacted, retention, creatable_while_short, rx };
    std::thread::Builder::new()
        .name("vmsnap-store-writer".into())
        .spawn(move || writer.run())
        .expect("spawn the store writer thread");
    WriterHandle { tx }
}

struct Writer {
    conn: Connection,
    /// The store's directory, named in [`StoreError::Full`].
    dir: std::path::PathBuf,
    reserve: crate::SpaceReserve,
    events: broadcast::Sender<Arc<StoreEvent>>,
    revision: Arc<AtomicU64>,
    compacted: Arc<AtomicU64>,
    retention: u64,
    /// See [`crate::StoreConfig::creatable_while_short`].
    creatable_while_short: Vec<String>,
    rx: mpsc::UnboundedReceiver<Request>,
}

type Reply = Box<dyn FnOnce(Result<(), &StoreError>)>;

impl Writer {
    fn run(&mut self) {
        while let Some(first) = self.rx.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match self.rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            self.apply(batch);
        }
    }

    fn apply(&mut self, batch: Vec<Request>) {
        let refuse_new = self.reserve.short_of_space();
        let full = || StoreError::Full { dir: self.dir.clone() };
        let start_rev = self.revision.load(Ordering::Acquire);
        let mut rev = start_rev;
        let mut published = Vec::new();
        let mut replies: Vec<Reply> = Vec::new();
        let mut pending = batch.into_iter();
        let result = (|| -> Result<(), StoreError> {
            // Immediate: the write lock is taken (waiting up to the busy timeout) before the first
            // read, so a batch never fails upgrading its read transaction to a write one, which
            // SQLite refuses at once, without the busy timeout, when the snapshot it read is stale.
            let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for request in pending.by_ref() {
                match request {
                    Request::Mutate { key, decide, reply } => {
                        let outcome = match apply_mutation(
                            &tx,
                            &key,
                            decide,
                            &mut rev,
                            &mut published,
                            (refuse_new && !self.creatable_while_short.contains(&key.resource)).then(full),
                        ) {
                            Ok(outcome) => outcome,
                            Err(err) => {
                                let _ = reply.send(Err(clone_error(&err)));
                                return Err(err);
                            }
                        };
                        replies.push(Box::new(move |r: Result<(), &StoreError>| {
                            let _ = reply.send(match r {
                                Ok(()) => Ok(outcome),
                                Err(e) => Err(clone_error(e)),
                            });
                        }));
                    }
                    Request::Compact { revision, reply } => {
                        if let Err(err) = compact(&tx, revision.min(rev)) {
                            let _ = reply.send(Err(clone_error(&err)));
                            return Err(err);
                        }
                        replies.push(Box::new(move |r: Result<(), &StoreError>| {
                            let _ = reply.send(r.map_err(clone_error));
                        }));
                    }
                }
            }
            if rev != start_rev {
                tx.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('revision', ?1)",
                    params![rev as i64],
                )?;
                let oldest = self.compacted.load(Ordering::Acquire);
                if rev.saturating_sub(oldest) > self.retention + self.retention / 10 + 16 {
                    compact(&tx, rev - self.retention)?;
                }
            }
            tx.commit()?;
            Ok(())
        })();
        match result {
            Ok(()) => {
                self.revision.store(rev, Ordering::Release);
                if let Ok(Some(c)) = self
                    .conn
                    .query_row("SELECT value FROM meta WHERE key = 'compacted'", [], |r| r.get::<_, i64>(0))
                    .optional()
                {
                    self.compacted.store(c as u64, Ordering::Release);
                }
                for event in published {
                    let _ = self.events.send(Arc::new(event));
                }
                for reply in replies {
                    reply(Ok(()));
                }
            }
            Err(err) => {
                let err = if is_disk_full(&err) {
                    self.reserve.release();
                    full()
                } else {
                    err
                };
                tracing::error!(error = %err, "store batch failed; nothing in it was written");
                for reply in replies {
                    reply(Err(&err));
                }
                // The requests the batch did not reach get the error too, not a dropped reply
                // (which their callers would take for a store shutting down).
                for request in pending {
                    match request {
                        Request::Mutate { reply, .. } => drop(reply.send(Err(clone_error(&err)))),
                        Request::Compact { reply, .. } => drop(reply.send(Err(clone_error(&err)))),
                    }
                }
            }
        }
    }
}

/// Whether SQLite failed for lack of space (it reports `ENOSPC` as `SQLITE_FULL`).
fn is_disk_full(e: &StoreError) -> bool {
    matches!(e, StoreError::Sqlite(rusqlite::Error::SqliteFailure(f, _)) if f.code == rusqlite::ErrorCode::DiskFull)
}

fn clone_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Full { dir } => StoreError::Full { dir: dir.clone() },
        StoreError::Closed => StoreError::Closed,
        StoreError::TooDeep { depth, limit } => StoreError::TooDeep { depth: *depth, limit: *limit },
        other => StoreError::Batch(other.to_string()),
    }
}

fn set_resource_version(value: &mut Value, revision: u64) {
    if let Some(obj) = value.as_object_mut() {
        let meta = obj.entry("metadata").or_insert_with(|| Value::Object(Default::default()));
        if let Some(meta) = meta.as_object_mut() {
            meta.insert("resourceVersion".into(), Value::String(revision.to_string()));
        }
    }
}

fn apply_mutation(
    tx: &rusqlite::Transaction<'_>,
    key: &ObjectKey,
    decide: Decide,
    rev: &mut u64,
    published: &mut Vec<StoreEvent>,
    refuse_new: Option<StoreError>,
) -> Result<Result<WriteOutcome, Rejected>, StoreError> {
    let current_text: Option<String> = tx
        .prepare_cached("SELECT value FROM objects WHERE resource = ?1 AND namespace = ?2 AND name = ?3")?
        .query_row(params![key.resource, key.namespace, key.name], |r| r.get(0))
        .optional()?;
    let current: Option<Value> = current_text.as_deref().map(crate::depth::parse_stored).transpose()?;
    let mutation = match decide(current.as_ref()) {
        Ok(m) => m,
        Err(e) => return Ok(Err(Rejected::Caller(e))),
    };
    let unchanged =
        |current: Option<Value>| Ok(Ok(WriteOutcome { object: current.map(Arc::new), event: None }));
    match mutation {
        Mutation::Unchanged => unchanged(current),
        Mutation::Put(mut value) => {
            if let (None, Some(full)) = (&current, refuse_new) {
                // Short of space: what is left goes to updates and deletes.
                return Ok(Err(Rejected::Store(full)));
            }
            let depth = crate::nesting_depth(&value);
            if depth > crate::MAX_NESTING {
                return Ok(Err(Rejected::Store(StoreError::TooDeep { depth, limit: crate::MAX_NESTING })));
            }
            if let Some(cur) = &current {
                let cur_rv = cur.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or("0");
                set_resource_version(&mut value, cur_rv.parse().unwrap_or(0));
                if &value == cur {
                    return unchanged(current);
                }
            }
            *rev += 1;
            set_resource_version(&mut value, *rev);
            let text = serde_json::to_string(&value)?;
            tx.prepare_cached(
                "INSERT OR REPLACE INTO objects (resource, namespace, name, revision, value) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![key.resource, key.namespace, key.name, *rev as i64, text])?;
            let event_type = if current.is_some() { EventType::Modified } else { EventType::Added };
            log(tx, *rev, key, event_type, &text, current_text.as_deref())?;
            let object = Arc::new(value);
            published.push(StoreEvent {
                revision: *rev,
                key: key.clone(),
                event_type,
                object: object.clone(),
                previous: current.map(Arc::new),
            });
            Ok(Ok(WriteOutcome { object: Some(object), event: Some(event_type) }))
        }
        Mutation::Delete => {
            let Some(cur) = current else {
                return unchanged(None);
            };
            *rev += 1;
            let mut last = cur.clone();
            set_resource_version(&mut last, *rev);
            let text = serde_json::to_string(&last)?;
            tx.prepare_cached("DELETE FROM objects WHERE resource = ?1 AND namespace = ?2 AND name = ?3")?
                .execute(params![key.resource, key.namespace, key.name])?;
            log(tx, *rev, key, EventType::Deleted, &text, current_text.as_deref())?;
            let object = Arc::new(last);
            published.push(StoreEvent {
                revision: *rev,
                key: key.clone(),
                event_type: EventType::Deleted,
                object: object.clone(),
                previous: Some(Arc::new(cur)),
            });
            Ok(Ok(WriteOutcome { object: Some(object), event: Some(EventType::Deleted) }))
        }
    }
}

fn log(
    tx: &rusqlite::Transaction<'_>,
    rev: u64,
    key: &ObjectKey,
    event: EventType,
    value: &str,
    previous: Option<&str>,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO log (revision, resource, namespace, name, event, value, previous) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![rev as i64, key.resource, key.namespace, key.name, event.code(), value, previous])?;
    Ok(())
}

fn compact(tx: &rusqlite::Transaction<'_>, revision: u64) -> Result<(), StoreError> {
    tx.execute("DELETE FROM log WHERE revision <= ?1", params![revision as i64])?;
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('compacted', ?1)
         ON CONFLICT(key) DO UPDATE SET value = max(value, excluded.value)",
        params![revision as i64],
    )?;
    Ok(())
}
