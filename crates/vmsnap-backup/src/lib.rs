//! vmsnap's backup repository: the format and the engine, with no Kubernetes.
//!
//! A repository is a directory or an S3 bucket prefix holding (see `docs/backup-repository.md`):
//! - `config`: plain JSON, the format name and version, a random id, the chunk size;
//! - `keys/<id>`: the master key sealed under a key derived from a passphrase with Argon2id;
//! - `chunks/<xx>/<name>`: fixed-size chunks of disk images (512 KiB by default), each compressed
//!   with zstd and sealed with XChaCha20-Poly1305, named by the keyed BLAKE3 of their SHA-256,
//!   so identical chunks are stored once across disks and VMs and names reveal nothing;
//! - `lists/<name>`: the chunk entries (SHA-256s) of disks, 1,024 to a sealed list named like a
//!   chunk, so that backups sharing a stretch of chunks share its list;
//! - `manifests/<backup id>`: one sealed JSON manifest per backup (VM, spec, disks and the names
//!   of their lists, digests, stats), written after every chunk and list it names. Listing
//!   `manifests/` is the index.
//!
//! ```no_run
//! # async fn example() -> Result<(), vmsnap_backup::Error> {
//! use std::sync::Arc;
//! use vmsnap_backup::*;
//! let repo = Repository::init(Backend::local("/var/backups/vms")?, "passphrase").await?;
//! let mut session = repo.begin_backup().await?;
//! let image = Arc::new(std::fs::File::open("disk.raw").map_err(|source| Error::Io { context: "open".into(), source })?);
//! let disk = session
//!     .backup_disk(DiskBackup { name: "root".into(), source: image, size: 1 << 30, extents: None, previous: None }, &mut |_| {})
//!     .await?;
//! let vm = VmRef { namespace: "default".into(), name: "vm1".into() };
//! let metadata = BackupMetadata { vm, vm_spec: serde_json::json!({}), base: None, labels: Default::default() };
//! let backup = session.commit_backup(metadata, vec![disk]).await?;
//! let target = std::fs::File::create("restored.raw").map_err(|source| Error::Io { context: "create".into(), source })?;
//! repo.restore_disk(&backup, "root", target).await?;
//! # Ok(()) }
//! ```

mod backend;
mod backup;
mod chunk_list;
mod committed_index;
mod crypto;
mod error;
mod format;
mod ids;
pub mod layout;
mod lease;
mod manifest_cache;
mod prune;
mod repository;
mod restore;
mod verify;
mod workers;

pub use backend::{Backend, BackendKind, S3_RETRY_TIMEOUT, S3_TIMEOUT, S3Config};
pub use backup::{
    BackupMetadata, BackupOptions, BackupSession, DiskBackup, DiskSource, Extent, Progress, ReadLimit,
    manifest_json,
};
pub use chunk_list::{CHUNK_LIST_LEN, ChunkListId};
pub use crypto::{EnvelopeError, KdfParams, KeyFile};
pub use error::{Error, Result};
pub use format::{
    BackupManifest, BackupStats, CLUSTER_SIZE, ChunkRef, DEFAULT_CHUNK_SIZE, DiskManifest, FORMAT_NAME,
    FORMAT_VERSION, MAX_CHUNK_SIZE, RepositoryConfig, VmRef, tree_digest,
};
pub use ids::{BackupId, ChunkId, ChunkSha256};
pub use lease::DEFAULT_LEASE_TTL;
pub use prune::{PruneOptions, PruneReport};
pub use repository::{InitOptions, Repository};
pub use restore::{RestoreReport, RestoreTarget};
pub use verify::{BadChunk, BadChunkList, ChunkProblem, ChunkUse, VerifyReport, VerifyScope};
