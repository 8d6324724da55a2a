//! Chunk lists (format 2): a disk's chunk entries, [`CHUNK_LIST_LEN`] to an object, each object
//! named like a chunk (the keyed BLAKE3 hash of its plaintext) and stored once. A manifest names
//! its disks' lists instead of holding every entry, so backups that share a run of chunks share
//! its list: a second VM made from the same image, and every unchanged stretch of an incremental,
//! add no list at all. A backup with nothing changed writes a manifest of a few KiB whatever the
//! disk's size (format 1 wrote ~65 bytes per allocated chunk into every manifest).
//!
//! Lists are written before the manifest that names them, as chunks are, and a prune marks and
//! sweeps them by the same rule (`docs/backup-repository.md` "Prune").

use std::fmt;
use std::str::FromStr;

use futures::{StreamExt as _, TryStreamExt as _};
use serde::{Deserialize, Serialize};

use crate::crypto::ObjectKind;
use crate::error::{Error, Result};
use crate::format::{BackupManifest, ChunkRef, DiskManifest};
use crate::repository::Repository;
use crate::{ChunkId, layout};

/// Entries per chunk list: 512 MiB of disk in the default 512 KiB chunks, ~65 KiB sealed when
/// fully allocated. A change rewrites the lists of the stretches it touches.
pub const CHUNK_LIST_LEN: usize = 1024;
/// Lists read at once when a manifest is opened.
const LIST_READS: usize = 8;
/// The largest plaintext of a list accepted (an entry is ~150 bytes of JSON).
const MAX_LIST_LEN: usize = CHUNK_LIST_LEN * 256;

/// A chunk list's name: the keyed BLAKE3 hash of its plaintext, 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChunkListId(ChunkId);

impl ChunkListId {
    /// The object path of the list: `lists/<64 hex digits>`.
    pub fn object_path(&self) -> String {
        format!("{}{self}", layout::CHUNK_LISTS)
    }
}

impl fmt::Display for ChunkListId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for ChunkListId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkListId({self})")
    }
}

impl FromStr for ChunkListId {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        s.parse().map(ChunkListId)
    }
}

/// A list to store: its name and plaintext.
pub(crate) struct EncodedList {
    pub id: ChunkListId,
    pub plaintext: Vec<u8>,
}

impl Repository {
    /// Cuts a disk's entries into lists, named under this repository's key.
    pub(crate) fn encode_chunk_lists(&self, chunks: &[Option<ChunkRef>]) -> Vec<EncodedList> {
        chunks
            .chunks(CHUNK_LIST_LEN)
            .map(|entries| {
                let plaintext = serde_json::to_vec(entries).expect("chunk entries serialize");
                EncodedList { id: ChunkListId(self.keys().chunk_id(&plaintext)), plaintext }
            })
            .collect()
    }

    /// Seals and stores one list; returns its sealed size.
    pub(crate) async fn put_chunk_list(&self, list: &EncodedList) -> Result<u64> {
        let sealed = self.keys().seal(ObjectKind::ChunkList, &list.id.to_string(), &list.plaintext);
        let size = sealed.len() as u64;
        self.put(&list.id.object_path(), sealed).await?;
        Ok(size)
    }

    /// Reads the entries of every disk of `manifest` (read from `path`) from the lists it names.
    pub(crate) async fn read_chunk_lists(&self, path: &str, manifest: &mut BackupManifest) -> Result<()> {
        for disk in &mut manifest.disks {
            let lists: Vec<Vec<Option<ChunkRef>>> = futures::stream::iter(disk.chunk_lists.clone())
                .map(|id| self.read_chunk_list(path, id))
                .buffered(LIST_READS)
                .try_collect()
                .await?;
            disk.chunks = check_entries(path, disk, lists)?;
        }
        Ok(())
    }

    /// One list, authenticated and checked against its name.
    async fn read_chunk_list(&self, manifest_path: &str, id: ChunkListId) -> Result<Vec<Option<ChunkRef>>> {
        let path = id.object_path();
        let corrupt = |reason: String| Error::CorruptObject { path: path.clone(), reason };
        let Some(sealed) = self.get(&path).await? else {
            return Err(corrupt(format!("it is missing, and {manifest_path} names it")));
        };
        let plaintext = self
            .keys()
            .open(ObjectKind::ChunkList, &id.to_string(), &sealed, MAX_LIST_LEN)
            .map_err(|e| corrupt(e.to_string()))?;
        if self.keys().chunk_id(&plaintext) != id.0 {
            return Err(corrupt("its content does not hash to its name".to_string()));
        }
        serde_json::from_slice(&plaintext).map_err(|e| corrupt(e.to_string()))
    }
}

/// The entries of `disk` from its lists: every list full but the last, as many entries in all
/// as the disk has chunks.
fn check_entries(
    path: &str,
    disk: &DiskManifest,
    lists: Vec<Vec<Option<ChunkRef>>>,
) -> Result<Vec<Option<ChunkRef>>> {
    let expected = DiskManifest::chunk_count(disk.size, disk.chunk_size);
    let count = lists.len();
    let mut entries = Vec::with_capacity(expected);
    for (index, list) in lists.into_iter().enumerate() {
        let last = index + 1 == count;
        if list.is_empty() || list.len() > CHUNK_LIST_LEN || (!last && list.len() != CHUNK_LIST_LEN) {
            return Err(Error::CorruptObject {
                path: path.to_string(),
                reason: format!(
                    "list {index} of disk {:?} holds {} entries; a list holds {CHUNK_LIST_LEN}, the last one up to that",
                    disk.name,
                    list.len()
                ),
            });
        }
        entries.extend(list);
    }
    if entries.len() != expected {
        return Err(Error::CorruptObject {
            path: path.to_string(),
            reason: format!(
                "disk {:?} lists {} chunks; a disk of {} bytes in chunks of {} has {expected}",
                disk.name,
                entries.len(),
                disk.size,
                disk.chunk_size
            ),
        });
    }
    Ok(entries)
}
