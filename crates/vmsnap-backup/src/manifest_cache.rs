//! The manifests a repository handle has read, kept in memory: a committed manifest never
//! changes (a backup's id is random and its object is written once; deleting it moves it to
//! `deleted/`), so a listing only reads the manifests it has not seen. Each backup lists the
//! repository's backups three times (the run it may resume, its base, the chunks it may reuse),
//! and without this read every manifest each time: a fixed cost that grew with the history.
//!
//! Entries whose manifest left `manifests/` go at the next listing; past [`MAX_CHUNK_REFS`]
//! chunk references in all, new manifests are read but not kept. Verification reads the stored
//! objects, never these.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::BackupId;
use crate::format::BackupManifest;

/// The most chunk references the cache holds (about 130 bytes each: ~130 MiB), for example
/// 500 backups of a 1 GiB disk in 512 KiB chunks.
const MAX_CHUNK_REFS: usize = 1 << 20;

/// The manifests read so far, by id.
#[derive(Default)]
pub(crate) struct ManifestCache {
    by_id: Mutex<HashMap<BackupId, Arc<BackupManifest>>>,
}

impl ManifestCache {
    /// Keeps only the entries of `listed` (the ids a listing found) and returns those it has.
    pub(crate) fn retain_listed(&self, listed: &[BackupId]) -> HashMap<BackupId, Arc<BackupManifest>> {
        let mut by_id = self.by_id.lock().expect("not poisoned");
        let listed: std::collections::HashSet<&BackupId> = listed.iter().collect();
        by_id.retain(|id, _| listed.contains(id));
        by_id.clone()
    }

    /// Keeps `manifest`, unless the cache is full.
    pub(crate) fn insert(&self, manifest: Arc<BackupManifest>) {
        let mut by_id = self.by_id.lock().expect("not poisoned");
        let held: usize = by_id.values().map(|m| chunk_refs(m)).sum();
        if held + chunk_refs(&manifest) <= MAX_CHUNK_REFS {
            by_id.insert(manifest.id.clone(), manifest);
        }
    }

    /// Forgets backup `id` (deleted here).
    pub(crate) fn remove(&self, id: &BackupId) {
        self.by_id.lock().expect("not poisoned").remove(id);
    }
}

fn chunk_refs(manifest: &BackupManifest) -> usize {
    manifest.disks.iter().map(|d| d.chunks.len()).sum()
}
