//! Reads: a small pool of read-only connections used from blocking tasks. In WAL mode each read
//! transaction sees one consistent snapshot, so a list and its revision always agree.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde_json::Value;

use crate::{EventType, ObjectKey, StoreError, StoreEvent, WatchError};

pub(crate) struct ReaderPool {
    path: PathBuf,
    idle: Arc<Mutex<Vec<Connection>>>,
}

impl ReaderPool {
    pub fn new(path: PathBuf) -> Self {
        ReaderPool { path, idle: Arc::new(Mutex::new(Vec::new())) }
    }

    /// Runs `f` with a read connection on a blocking thread.
    pub async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let idle = self.idle.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match idle.lock().expect("reader pool lock").pop() {
                Some(c) => c,
                None => {
                    let c = Connection::open_with_flags(
                        &path,
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )?;
                    c.busy_timeout(std::time::Duration::from_secs(10))?;
                    c
                }
            };
            let result = f(&conn);
            let mut pool = idle.lock().expect("reader pool lock");
            if pool.len() < 8 {
                pool.push(conn);
            }
            result
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }
}

fn parse(text: String) -> Result<Arc<Value>, StoreError> {
    Ok(Arc::new(crate::depth::parse_stored(&text)?))
}

pub(crate) fn get(conn: &Connection, key: &ObjectKey) -> Result<Option<Arc<Value>>, StoreError> {
    let text: Option<String> = conn
        .prepare_cached("SELECT value FROM objects WHERE resource = ?1 AND namespace = ?2 AND name = ?3")?
        .query_row(params![key.resource, key.namespace, key.name], |r| r.get(0))
        .optional()?;
    text.map(parse).transpose()
}

/// Log entries read in one go by a catching-up watch.
pub(crate) struct LogBatch {
    /// The entries of the watched resource (and namespace), oldest first.
    pub events: Vec<StoreEvent>,
    /// The highest revision read (of any namespace): the next batch starts after it.
    pub scanned_to: u64,
    /// Whether the log may hold more entries after this batch.
    pub more: bool,
}

/// At most `batch` log entries of `resource` after revision `after`: a watch that fell far behind
/// catches up a batch at a time, never with the whole backlog parsed in memory at once.
pub(crate) fn log_after(
    conn: &Connection,
    resource: &str,
    namespace: Option<&str>,
    after: u64,
    batch: usize,
    compacted: &AtomicU64,
) -> Result<Result<LogBatch, WatchError>, StoreError> {
    let tx = conn.unchecked_transaction()?;
    let oldest: i64 = tx
        .query_row("SELECT value FROM meta WHERE key = 'compacted'", [], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    let oldest = (oldest as u64).max(compacted.load(Ordering::Acquire));
    if after < oldest {
        return Ok(Err(WatchError::Expired { requested: after, oldest }));
    }
    let mut stmt = tx.prepare_cached(
        "SELECT revision, namespace, name, event, value, previous FROM log
         WHERE resource = ?1 AND revision > ?2 ORDER BY revision LIMIT ?3",
    )?;
    let mut rows = stmt.query(params![resource, after as i64, batch as i64])?;
    let mut read = LogBatch { events: Vec::new(), scanned_to: after, more: false };
    let mut count = 0;
    while let Some(row) = rows.next()? {
        count += 1;
        let revision = row.get::<_, i64>(0)? as u64;
        read.scanned_to = revision;
        let ns: String = row.get(1)?;
        if namespace.is_some_and(|want| want != ns) {
            continue;
        }
        let previous: Option<String> = row.get(5)?;
        read.events.push(StoreEvent {
            revision,
            key: ObjectKey::new(resource, ns, row.get::<_, String>(2)?),
            event_type: EventType::from_code(row.get(3)?),
            object: parse(row.get(4)?)?,
            previous: previous.map(parse).transpose()?,
        });
    }
    read.more = count == batch;
    drop(rows);
    drop(stmt);
    tx.finish()?;
    Ok(Ok(read))
}
