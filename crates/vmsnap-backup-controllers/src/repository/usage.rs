//! What a repository holds: backups, chunks stored and their bytes, and how much disk data they
//! stand for.

use std::sync::Arc;

use futures::TryStreamExt as _;
use object_store::path::Path;
use vmsnap_backup::{Backend, BackupManifest, layout};

/// The figures of a repository's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Usage {
    /// Committed backups.
    pub backups: u64,
    /// Chunk objects stored.
    pub chunks: u64,
    /// Their bytes in the store (compressed and sealed), with the chunk lists naming them.
    pub stored_bytes: u64,
    /// Bytes of disk data the backups hold (chunks that are not holes, each backup counted).
    pub logical_bytes: u64,
}

impl Usage {
    /// Logical over stored bytes with one decimal (`7.0`); `None` when nothing is stored.
    pub fn deduplication_ratio(&self) -> Option<String> {
        (self.stored_bytes > 0)
            .then(|| format!("{:.1}", self.logical_bytes as f64 / self.stored_bytes as f64))
    }
}

/// Lists the chunk objects of the repository on `backend` and sums what `manifests` hold.
pub(crate) async fn usage(
    backend: &Backend,
    manifests: &[Arc<BackupManifest>],
) -> Result<Usage, object_store::Error> {
    let store = backend.object_store();
    let objects = async |prefix: &str| {
        let prefix = Path::from(prefix.trim_end_matches('/'));
        store
            .list(Some(&prefix))
            .try_fold((0u64, 0u64), |(n, bytes), meta| async move { Ok((n + 1, bytes + meta.size)) })
            .await
    };
    let (chunks, chunk_bytes) = objects(layout::CHUNKS).await?;
    let (_, list_bytes) = objects(layout::CHUNK_LISTS).await?;
    Ok(Usage {
        backups: manifests.len() as u64,
        chunks,
        stored_bytes: chunk_bytes + list_bytes,
        logical_bytes: logical_bytes(manifests),
    })
}

/// The bytes of the non-hole chunks of every disk of every backup.
pub(crate) fn logical_bytes(manifests: &[Arc<BackupManifest>]) -> u64 {
    manifests
        .iter()
        .flat_map(|m| &m.disks)
        .map(|disk| {
            disk.chunks
                .iter()
                .enumerate()
                .filter(|(_, chunk)| chunk.is_some())
                .map(|(index, _)| disk.chunk_range(index).1)
                .sum::<u64>()
        })
        .sum()
}
