//! Where each kind of object lives under the repository's root (a directory or a bucket prefix).
//! See `docs/backup-repository.md`.

/// The plain JSON repository configuration (format name and version, id, chunk size).
pub const CONFIG: &str = "config";
/// Key files, one per passphrase: `keys/<id>`.
pub const KEYS: &str = "keys/";
/// Sealed chunks: `chunks/<xx>/<64 hex>`.
pub const CHUNKS: &str = "chunks/";
/// Sealed chunk lists (a disk's chunk entries, 1,024 to a list): `lists/<64 hex>`.
pub const CHUNK_LISTS: &str = "lists/";
/// Sealed manifests of committed backups: `manifests/<backup id>`.
pub const MANIFESTS: &str = "manifests/";
/// Manifests of deleted backups, kept while an in-flight backup may still rely on their chunks:
/// `deleted/<backup id>`.
pub const DELETED: &str = "deleted/";
/// Leases of in-flight backups: `leases/<backup id>` (start) and `leases/<backup id>.alive`
/// (renewals).
pub const LEASES: &str = "leases/";
/// Markers of running prunes (their store time is the prune's start): `prune/<random>`.
pub const PRUNE: &str = "prune/";

/// The path of a committed backup's manifest.
pub fn manifest(id: &crate::BackupId) -> String {
    format!("{MANIFESTS}{id}")
}

/// The path of a deleted backup's manifest.
pub fn deleted(id: &crate::BackupId) -> String {
    format!("{DELETED}{id}")
}
