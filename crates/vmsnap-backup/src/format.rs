//! The JSON documents of the format: the repository configuration and the backup manifest.
//! `docs/backup-repository.md` describes them; the golden files under `tests/golden/` pin them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::chunk_list::ChunkListId;
use crate::{BackupId, ChunkId, ChunkSha256};

/// The format's name, in `config`.
pub const FORMAT_NAME: &str = "vmsnap-backup";
/// The format version this build writes and reads (3: a chunk is named by the keyed hash of its
/// SHA-256, and a chunk list's entry is that SHA-256 alone, see `chunk_list.rs`; version 2 listed
/// each chunk's name beside it, and version 1 held the entries in the manifest).
pub const FORMAT_VERSION: u32 = 3;
/// qcow2's default cluster size: chunk sizes are multiples of it, so that a run of changed
/// clusters maps onto whole chunks.
pub const CLUSTER_SIZE: u32 = 64 * 1024;
/// The default chunk size, 512 KiB: the largest power of two for which an incremental after a
/// contiguous change of any length and alignment uploads at most the change + 1 MiB (two partial
/// chunks at its ends hold old data); see `docs/backup-repository.md` "Why 512 KiB".
pub const DEFAULT_CHUNK_SIZE: u32 = 512 * 1024;
/// The largest chunk size accepted (a chunk is held in memory several times over while in flight).
pub const MAX_CHUNK_SIZE: u32 = 64 * 1024 * 1024;
/// The plaintext bytes a backup or a restore keeps in flight at most, whatever the chunk size.
const IN_FLIGHT_BYTES: u32 = 64 * 1024 * 1024;

/// How many chunks of `chunk_size` to upload or fetch at once: `wanted`, fewer for big chunks
/// (64 MiB of plaintext in flight, but 2 chunks, so that transfers still overlap).
pub(crate) fn chunks_in_flight(wanted: usize, chunk_size: u32) -> usize {
    wanted.min(((IN_FLIGHT_BYTES / chunk_size.max(1)) as usize).max(2))
}
// `vmsnap_api::backup` repeats these bounds for admission and the CLI (this crate depends on no
// workspace crate); `vmsnap-backup-controllers` does not compile if the two ever differ.

/// The repository configuration, the plain JSON object `config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RepositoryConfig {
    /// Always [`FORMAT_NAME`].
    pub format: String,
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// A random id (32 hex digits); the key files are bound to it.
    pub id: String,
    /// The chunk size of the disks backed up, in bytes.
    pub chunk_size: u32,
    /// When the repository was made.
    pub created: DateTime<Utc>,
}

/// Checks that a chunk size is a power-of-two multiple of the qcow2 cluster, at most 64 MiB.
pub fn validate_chunk_size(chunk_size: u32) -> Result<(), String> {
    if !(CLUSTER_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size) || !chunk_size.is_power_of_two() {
        return Err(format!(
            "chunk size {chunk_size} is not a power of two between {CLUSTER_SIZE} (a qcow2 cluster) and {MAX_CHUNK_SIZE}"
        ));
    }
    Ok(())
}

/// The VM a backup is of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VmRef {
    /// The VM's namespace.
    pub namespace: String,
    /// The VM's name.
    pub name: String,
}

/// A committed backup: the sealed JSON object `manifests/<id>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupManifest {
    /// The format version the manifest was written in.
    pub format_version: u32,
    /// The backup's id (also its object name; checked on read).
    pub id: BackupId,
    /// When the backup started (the point in time it holds is the caller's snapshot).
    pub started: DateTime<Utc>,
    /// When it was committed.
    pub completed: DateTime<Utc>,
    /// The VM backed up.
    pub vm: VmRef,
    /// The VM's spec as the caller gave it (opaque to the engine; a restore hands it back).
    pub vm_spec: serde_json::Value,
    /// Free-form labels of the caller (e.g. the snapshot's name).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    /// The backup the disks were read incrementally against, if any.
    pub base: Option<BackupId>,
    /// The disks, in the caller's order.
    pub disks: Vec<DiskManifest>,
    /// Totals over the disks.
    pub stats: BackupStats,
}

impl BackupManifest {
    /// The disk of this name.
    pub fn disk(&self, name: &str) -> Option<&DiskManifest> {
        self.disks.iter().find(|d| d.name == name)
    }
}

/// One disk of a backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DiskManifest {
    /// The disk's name in the VM.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// The chunk size it was cut into.
    pub chunk_size: u32,
    /// One entry per chunk, in order: the chunk, or `None` for a chunk of zeros (a hole). Not
    /// in the manifest object, which names the lists that hold them (`chunk_lists`): the engine
    /// reads those with the manifest.
    #[serde(skip)]
    pub chunks: Vec<Option<ChunkRef>>,
    /// The lists holding `chunks` in order, [`crate::CHUNK_LIST_LEN`] entries each (the last
    /// one up to that).
    pub chunk_lists: Vec<ChunkListId>,
    /// The tree digest of the disk (see [`tree_digest`]): always present, checked by a restore.
    pub sha256_tree: String,
    /// What the backup of this disk read and wrote.
    pub stats: BackupStats,
}

impl DiskManifest {
    /// The byte range `(offset, length)` of chunk `index`.
    pub fn chunk_range(&self, index: usize) -> (u64, u64) {
        chunk_range(self.size, self.chunk_size, index)
    }

    /// How many chunks a disk of `size` has.
    pub fn chunk_count(size: u64, chunk_size: u32) -> usize {
        size.div_ceil(u64::from(chunk_size)) as usize
    }
}

pub(crate) fn chunk_range(size: u64, chunk_size: u32, index: usize) -> (u64, u64) {
    let offset = index as u64 * u64::from(chunk_size);
    (offset, u64::from(chunk_size).min(size - offset))
}

/// A stored chunk of a disk (a chunk list stores `sha256` alone, see `chunk_list.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRef {
    /// The chunk's name (the keyed hash of `sha256`; not stored, derived when a list is read).
    pub id: ChunkId,
    /// The plain SHA-256 of its plaintext (a list's entry; the tree digest, which needs no key).
    pub sha256: ChunkSha256,
}

/// What a backup read and wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupStats {
    /// Bytes read from the disk sources.
    pub bytes_read: u64,
    /// Bytes put to the store (sealed chunks, after compression).
    pub bytes_uploaded: u64,
    /// Plaintext bytes of chunks read but already in the repository (not uploaded).
    pub bytes_deduplicated: u64,
    /// Plaintext bytes of chunks taken from the base backup without reading them.
    pub bytes_reused: u64,
    /// Chunks uploaded.
    pub chunks_uploaded: u64,
    /// Chunks read but already stored.
    pub chunks_deduplicated: u64,
    /// Chunks taken from the base backup.
    pub chunks_reused: u64,
    /// Chunks of zeros (holes), not stored.
    pub holes: u64,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
}

impl BackupStats {
    /// Adds another disk's figures to these.
    pub fn add(&mut self, other: &BackupStats) {
        self.bytes_read += other.bytes_read;
        self.bytes_uploaded += other.bytes_uploaded;
        self.bytes_deduplicated += other.bytes_deduplicated;
        self.bytes_reused += other.bytes_reused;
        self.chunks_uploaded += other.chunks_uploaded;
        self.chunks_deduplicated += other.chunks_deduplicated;
        self.chunks_reused += other.chunks_reused;
        self.holes += other.holes;
        self.duration_ms += other.duration_ms;
    }
}

/// The SHA-256 of `len` zero bytes (a hole's chunk digest).
pub(crate) fn zeros_sha256(len: u64) -> [u8; 32] {
    let mut hasher = Sha256::new();
    let block = [0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        hasher.update(&block[..n]);
        left -= n as u64;
    }
    hasher.finalize().into()
}

/// The tree digest of a disk: SHA-256 over the concatenated 32-byte SHA-256 digests of its chunks
/// in order (chunk *i* is bytes `[i*chunk_size, min((i+1)*chunk_size, size))`; holes digest as
/// zeros). It needs no key, so anyone can recompute it from a disk image (512 KiB chunks here):
/// `split -b 512K disk.raw c. && sha256sum c.* | cut -d' ' -f1 | xxd -r -p | sha256sum`. Unlike the
/// plain SHA-256, an incremental backup can compute it from the chunks it did not read.
pub fn tree_digest(size: u64, chunk_size: u32, chunks: &[Option<ChunkRef>]) -> String {
    let mut hasher = Sha256::new();
    let full_hole = zeros_sha256(u64::from(chunk_size).min(size));
    for (index, chunk) in chunks.iter().enumerate() {
        match chunk {
            Some(c) => hasher.update(c.sha256.as_bytes()),
            None => {
                let (_, len) = chunk_range(size, chunk_size, index);
                if len == u64::from(chunk_size).min(size) {
                    hasher.update(full_hole);
                } else {
                    hasher.update(zeros_sha256(len));
                }
            }
        }
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_chunks_are_fewer_in_flight_but_still_two() {
        assert_eq!(chunks_in_flight(8, DEFAULT_CHUNK_SIZE), 8);
        assert_eq!(chunks_in_flight(8, 16 << 20), 4);
        assert_eq!(chunks_in_flight(8, MAX_CHUNK_SIZE), 2);
        assert_eq!(chunks_in_flight(1, MAX_CHUNK_SIZE), 1, "never more than asked");
    }
}
