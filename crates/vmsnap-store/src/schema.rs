//! The database layout and its format version.
//!
//! ```sql
//! objects(resource, namespace, name, revision, value)   -- current state, one row per object
//! log(revision PRIMARY KEY, resource, namespace, name, event, value, previous)  -- every change, trimmed
//! meta(key PRIMARY KEY, value)   -- 'format', 'revision' (highest committed), 'compacted'
//! ```

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use crate::OpenError;

/// The layout version this build writes. Bump it, and add a migration, when the layout changes.
pub const FORMAT_VERSION: i64 = 1;

const DDL: &str = "
CREATE TABLE IF NOT EXISTS objects (
    resource  TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name      TEXT NOT NULL,
    revision  INTEGER NOT NULL,
    value     TEXT NOT NULL,
    PRIMARY KEY (resource, namespace, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS log (
    revision  INTEGER PRIMARY KEY,
    resource  TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name      TEXT NOT NULL,
    event     INTEGER NOT NULL,
    value     TEXT NOT NULL,
    previous  TEXT
);
CREATE INDEX IF NOT EXISTS log_by_resource ON log (resource, revision);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Opens a connection with the pragmas every connection needs, creating the layout if missing.
pub fn open_connection(path: &Path) -> Result<Connection, OpenError> {
    let conn = Connection::open(path)?;
    configure(&conn)?;
    conn.execute_batch(DDL)?;
    let format: Option<i64> =
        conn.query_row("SELECT value FROM meta WHERE key = 'format'", [], |r| r.get(0)).optional()?;
    match format {
        None => {
            conn.execute("INSERT INTO meta (key, value) VALUES ('format', ?1)", params![FORMAT_VERSION])?;
        }
        Some(found) if found > FORMAT_VERSION => {
            return Err(OpenError::TooNew { found, supported: FORMAT_VERSION });
        }
        Some(_) => {}
    }
    Ok(conn)
}

/// Pragmas: WAL for concurrent readers, FULL sync so that an acknowledged write survives a crash.
pub fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(())
}

/// Reads the committed revision and the compaction point.
pub fn read_meta(conn: &Connection) -> Result<(u64, u64), OpenError> {
    let get = |key: &str| -> rusqlite::Result<u64> {
        let v: Option<i64> =
            conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional()?;
        Ok(v.unwrap_or(0) as u64)
    };
    Ok((get("revision")?, get("compacted")?))
}
