//! Errors of the store.

use std::path::PathBuf;

/// The store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The data directory could not be created.
    #[error("cannot create the data directory {dir}")]
    Directory {
        /// The directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// SQLite refused to open or migrate the database.
    #[error("cannot open the store database")]
    Sqlite(#[from] rusqlite::Error),
    /// The database was written by a newer vmsnap.
    #[error(
        "the store database has format version {found}, newer than this vmsnap understands ({supported}); upgrade vmsnap"
    )]
    TooNew {
        /// Version in the file.
        found: i64,
        /// Version this build writes.
        supported: i64,
    },
}

/// A read or write failed inside the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("store database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored value is not valid JSON (the file was damaged).
    #[error("stored object is not valid JSON")]
    Corrupt(#[from] serde_json::Error),
    /// The transaction holding this write failed, so nothing in it was written.
    #[error("the write batch failed: {0}")]
    Batch(String),
    /// The writer thread is gone (the process is shutting down).
    #[error("the store is shutting down")]
    Closed,
    /// The disk holding the store is full (SQLite's `SQLITE_FULL`, the system's `ENOSPC`).
    #[error(
        "no space left on the device of the data directory {}: delete objects you no longer need or free disk space",
        dir.display()
    )]
    Full {
        /// The store's directory.
        dir: PathBuf,
    },
    /// A value nests objects and arrays deeper than the store keeps: JSON readers (the store's
    /// own, and every API client's) refuse such documents, so it is refused before it is written.
    #[error("the object is nested {depth} levels deep; at most {limit} are allowed")]
    TooDeep {
        /// How deep the value nests.
        depth: usize,
        /// [`crate::MAX_NESTING`].
        limit: usize,
    },
}

/// A watch cannot continue.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum WatchError {
    /// The requested revision is older than the oldest kept log entry.
    #[error("too old resource version: {requested} ({oldest})")]
    Expired {
        /// The revision asked for.
        requested: u64,
        /// The oldest revision still available.
        oldest: u64,
    },
    /// The store failed while reading the log.
    #[error("store error while watching: {0}")]
    Store(String),
}
