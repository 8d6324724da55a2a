//! The chunks of the committed backups, which a session checks each chunk it reads against
//! before uploading it, kept by the repository from one session to the next.
//!
//! A session may only count on the chunks of the backups it listed after taking its lease (a
//! prune keeps those while the lease lives), so the index of a session is exactly theirs. Built
//! afresh it costs an insert per chunk of every backup: tens of milliseconds for a few backups of
//! a 16 GiB disk, whatever the session reads. Kept, the next session's costs nothing when no
//! backup was committed or deleted since, and a copy plus the new backups' chunks when some were
//! committed. A deletion builds it again. It takes as much memory as the repository has distinct
//! chunks (about 50 bytes each), as each session's own index did while it ran.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::format::BackupManifest;
use crate::ids::{BackupId, ChunkId};

/// The index of the last set of committed backups a session asked for.
#[derive(Debug, Default)]
pub(crate) struct CommittedIndex {
    kept: Mutex<Option<Kept>>,
}

#[derive(Debug)]
struct Kept {
    backups: HashSet<BackupId>,
    chunks: Arc<HashSet<ChunkId>>,
}

impl CommittedIndex {
    /// The chunks of `manifests`: the kept index when it is of the same backups; the kept one
    /// with the chunks of the backups committed since added when it is of some of them; else
    /// built from all of them. The answer is kept for the next session.
    pub(crate) fn chunks_of(&self, manifests: &[Arc<BackupManifest>]) -> Arc<HashSet<ChunkId>> {
        let backups: HashSet<BackupId> = manifests.iter().map(|m| m.id.clone()).collect();
        let mut kept = self.kept.lock().expect("not poisoned");
        let chunks = match kept.as_ref() {
            Some(kept) if kept.backups == backups => return kept.chunks.clone(),
            Some(kept) if kept.backups.is_subset(&backups) => {
                let mut chunks = HashSet::clone(&kept.chunks);
                chunks.extend(chunks_in(manifests.iter().filter(|m| !kept.backups.contains(&m.id))));
                chunks
            }
            _ => chunks_in(manifests.iter()).collect(),
        };
        let chunks = Arc::new(chunks);
        *kept = Some(Kept { backups, chunks: chunks.clone() });
        chunks
    }
}

fn chunks_in<'a>(manifests: impl Iterator<Item = &'a Arc<BackupManifest>>) -> impl Iterator<Item = ChunkId> {
    manifests.flat_map(|manifest| &manifest.disks).flat_map(|disk| disk.chunks.iter().flatten().map(|c| c.id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{BackupStats, ChunkRef, DiskManifest, FORMAT_VERSION, VmRef};
    use crate::ids::ChunkSha256;

    fn chunk(byte: u8) -> ChunkRef {
        ChunkRef { id: ChunkId::from_bytes([byte; 32]), sha256: ChunkSha256::from_bytes([byte; 32]) }
    }

    fn manifest(chunks: &[u8]) -> Arc<BackupManifest> {
        let disk = DiskManifest {
            name: "root".into(),
            size: 0,
            chunk_size: 1,
            chunks: chunks.iter().map(|&b| Some(chunk(b))).chain([None]).collect(),
            chunk_lists: Vec::new(),
            sha256_tree: String::new(),
            stats: BackupStats::default(),
        };
        Arc::new(BackupManifest {
            format_version: FORMAT_VERSION,
            id: BackupId::generate(),
            started: chrono::Utc::now(),
            completed: chrono::Utc::now(),
            vm: VmRef { namespace: "ns".into(), name: "vm".into() },
            vm_spec: serde_json::Value::Null,
            labels: Default::default(),
            base: None,
            disks: vec![disk],
            stats: BackupStats::default(),
        })
    }

    fn ids(bytes: &[u8]) -> HashSet<ChunkId> {
        bytes.iter().map(|&b| chunk(b).id).collect()
    }

    #[test]
    fn the_index_is_kept_for_the_same_backups_grown_for_new_ones_and_rebuilt_after_a_deletion() {
        let index = CommittedIndex::default();
        let (first, second, third) = (manifest(&[1, 2]), manifest(&[2, 3]), manifest(&[4]));
        let built = index.chunks_of(&[first.clone(), second.clone()]);
        assert_eq!(*built, ids(&[1, 2, 3]));
        let same = index.chunks_of(&[second.clone(), first.clone()]);
        assert!(Arc::ptr_eq(&built, &same), "the same backups: the kept index as it is");
        let grown = index.chunks_of(&[first.clone(), second.clone(), third.clone()]);
        assert_eq!(*grown, ids(&[1, 2, 3, 4]));
        assert_eq!(*built, ids(&[1, 2, 3]), "a session's index never changes under it");
        // The first deleted: its chunk 1 is no longer stored as far as a session may count on.
        assert_eq!(*index.chunks_of(&[second.clone(), third.clone()]), ids(&[2, 3, 4]));
        assert!(index.chunks_of(&[]).is_empty());
    }
}
