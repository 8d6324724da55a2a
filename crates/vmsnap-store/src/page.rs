//! Lists in pages (`limit` and `continue`). Every page of one list shows the objects as they were
//! at the revision of its first page: objects unchanged since come from `objects`, the others are
//! rebuilt from the log (the value before their first change after that revision). When the log no
//! longer reaches back that far, the list has expired, as in Kubernetes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use crate::{StoreError, WatchError};

/// Where a page starts and how long it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// The revision the list is read at: that of its first page (`None`: now).
    pub at: Option<u64>,
    /// The `(namespace, name)` of the last object of the previous page.
    pub after: Option<(String, String)>,
    /// At most this many objects (`None`: all).
    pub limit: Option<usize>,
}

/// One page of a list.
#[derive(Clone, Debug)]
pub struct Page<T> {
    /// What the selector made of the objects it kept, in `(namespace, name)` order.
    pub items: Vec<T>,
    /// The revision the whole list is consistent at.
    pub revision: u64,
    /// When more objects follow: the `(namespace, name)` of this page's last object.
    pub next_after: Option<(String, String)>,
}

/// Decides which objects a list keeps (label and field selectors) and turns each into what the
/// caller wants (the object, or its bytes in a response). Each object is handed over as soon as it
/// is read, so a caller that keeps only bytes never holds a whole list of parsed objects.
pub type Select<T> = Box<dyn FnMut(Value) -> Option<T> + Send>;

type Key = (String, String);

pub(crate) fn list_page<T>(
    conn: &Connection,
    resource: &str,
    namespace: Option<&str>,
    request: &PageRequest,
    select: &mut Select<T>,
    compacted: &AtomicU64,
) -> Result<Result<Page<T>, WatchError>, StoreError> {
    let tx = conn.unchecked_transaction()?;
    let current = meta(&tx, "revision")?;
    let at = request.at.unwrap_or(current).min(current);
    let in_namespace = |ns: &str| namespace.is_none_or(|want| want == ns);
    let after = request.after.clone().unwrap_or_default();
    let changed = if at < current {
        let oldest = meta(&tx, "compacted")?.max(compacted.load(Ordering::Acquire));
        if at < oldest {
            return Ok(Err(WatchError::Expired { requested: at, oldest }));
        }
        values_at(&tx, resource, at, &after)?
    } else {
        BTreeMap::new()
    };
    let mut before_change = changed.iter().filter(|(key, _)| in_namespace(&key.0)).peekable();

    let mut page = Page { items: Vec::new(), revision: at, next_after: None };
    let mut push = |key: &Key, text: &str| -> Result<bool, StoreError> {
        let Some(item) = select(crate::depth::parse_stored(text)?) else { return Ok(true) };
        if request.limit.is_some_and(|limit| page.items.len() >= limit) {
            // One more than fits: the page ends at the last object pushed.
            return Ok(false);
        }
        page.items.push(item);
        page.next_after = Some(key.clone());
        Ok(true)
    };

    let mut stmt = tx.prepare_cached(
        "SELECT namespace, name, revision, value FROM objects
         WHERE resource = ?1 AND (namespace, name) > (?2, ?3) AND (?4 IS NULL OR namespace = ?4)
         ORDER BY namespace, name",
    )?;
    let mut rows = stmt.query(params![resource, after.0, after.1, namespace])?;
    let mut more = true;
    while more {
        let row = rows.next()?;
        let current_key: Option<Key> =
            row.map(|r| Ok::<_, rusqlite::Error>((r.get(0)?, r.get(1)?))).transpose()?;
        // Objects that changed after `at` and come before this row, as they were at `at`.
        while more
            && let Some((key, previous)) =
                before_change.next_if(|(key, _)| current_key.as_ref().is_none_or(|row_key| *key < row_key))
        {
            if let Some(text) = previous {
                more = push(key, text)?;
            }
        }
        let (Some(row), Some(key), true) = (row, current_key, more) else { break };
        let revision = row.get::<_, i64>(2)? as u64;
        if revision <= at && !changed.contains_key(&key) {
            let text: String = row.get(3)?;
            more = push(&key, &text)?;
        }
    }
    drop(rows);
    drop(stmt);
    tx.finish()?;
    if more {
        page.next_after = None;
    }
    Ok(Ok(page))
}

/// The value at revision `at` of every object of `resource` after `after` that changed since
/// (`None`: it did not exist then).
fn values_at(
    tx: &rusqlite::Transaction<'_>,
    resource: &str,
    at: u64,
    after: &Key,
) -> Result<BTreeMap<Key, Option<String>>, StoreError> {
    let mut stmt = tx.prepare_cached(
        "SELECT namespace, name, previous FROM log WHERE resource = ?1 AND revision > ?2 ORDER BY revision",
    )?;
    let mut rows = stmt.query(params![resource, at as i64])?;
    let mut first_changes = BTreeMap::new();
    while let Some(row) = rows.next()? {
        let key: Key = (row.get(0)?, row.get(1)?);
        if key <= *after || first_changes.contains_key(&key) {
            continue;
        }
        first_changes.insert(key, row.get::<_, Option<String>>(2)?);
    }
    Ok(first_changes)
}

fn meta(tx: &rusqlite::Transaction<'_>, key: &str) -> Result<u64, StoreError> {
    let value: Option<i64> =
        tx.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional()?;
    Ok(value.unwrap_or(0) as u64)
}
