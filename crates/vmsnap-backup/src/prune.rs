//! Prune: mark and sweep of the chunks no backup references, safe while backups run.
//!
//! The rule (`docs/backup-repository.md` "Prune"), on the store's clock:
//! 1. put `prune/<random>`; its store time is `T0`;
//! 2. read the leases; `C = min(T0, start of the oldest live lease) - safety margin`;
//! 3. mark the chunks of every manifest in `manifests/`, then of every manifest in `deleted/`
//!    whose store time is `>= C` (an in-flight backup may have read it before its deletion);
//! 4. sweep: delete each unmarked chunk whose store time is `< C`, and each unmarked chunk list
//!    (lists are marked with the chunks, from the same manifests).
//!
//! Why nothing an in-flight backup needs is swept: it took its lease before reading the index, so
//! the lease's start `S >= C`; every chunk it uploads is newer than `S`, and every chunk it reuses
//! is named by a manifest it read after `S`, which is either still in `manifests/` or was moved to
//! `deleted/` after `S`. A backup that started after the prune read the leases has `S > T0 >= C`.
//! A backup whose lease lapsed refuses to commit ([`crate::Error::LeaseLapsed`]).

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::ChunkId;
use crate::chunk_list::{ChunkListId, ListsRead};
use crate::error::{Error, Result};
use crate::format::BackupManifest;
use crate::lease;
use crate::repository::{Repository, backup_id_of};
use crate::{crypto, layout};

/// How a prune runs.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// Subtracted from the cutoff, for stores whose nodes' clocks differ (default 10 min).
    pub safety_margin: Duration,
    /// Report what would be deleted without deleting.
    pub dry_run: bool,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions { safety_margin: Duration::from_secs(600), dry_run: false }
    }
}

/// What a prune did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// The cutoff on the store's clock: nothing newer was deleted.
    pub cutoff: Option<DateTime<Utc>>,
    /// Chunks referenced by a backup (committed, or deleted after the cutoff).
    pub chunks_referenced: usize,
    /// Unreferenced chunks kept because they are newer than the cutoff (in-flight backups').
    pub chunks_kept_recent: usize,
    /// Chunks deleted (or that would be, in a dry run).
    pub chunks_deleted: usize,
    /// Chunk lists named by a backup (committed, or deleted after the cutoff).
    pub chunk_lists_referenced: usize,
    /// Chunk lists deleted (or that would be): those no such backup names, older than the cutoff.
    pub chunk_lists_deleted: usize,
    /// The stored bytes of the chunks and chunk lists deleted.
    pub bytes_deleted: u64,
    /// Manifests of deleted backups removed for good.
    pub deleted_manifests_removed: usize,
    /// Leases of backups presumed dead (lapsed), removed.
    pub lapsed_leases_removed: usize,
    /// Markers of prunes that died before removing them (older than the cutoff), removed.
    pub stale_markers_removed: usize,
    /// Live leases seen.
    pub live_leases: usize,
}

impl Repository {
    /// Deletes the chunks that no backup references, keeping everything an in-flight backup may
    /// need (see the module documentation for the rule).
    pub async fn prune(&self, options: PruneOptions) -> Result<PruneReport> {
        let marker = format!("{}{}", layout::PRUNE, hex::encode(crypto::random_bytes::<16>()));
        self.put(&marker, Vec::new()).await?;
        let result = self.prune_with_marker(&marker, &options).await;
        self.delete(&marker).await?;
        result
    }

    async fn prune_with_marker(&self, marker: &str, options: &PruneOptions) -> Result<PruneReport> {
        let t0 = self
            .head(marker)
            .await?
            .ok_or_else(|| Error::CorruptObject {
                path: marker.to_string(),
                reason: "the prune marker just written is gone".to_string(),
            })?
            .last_modified;
        let mut report = PruneReport::default();
        let leases = lease::observe(self).await?;
        let (live, lapsed): (Vec<_>, Vec<_>) = leases.into_iter().partition(|l| l.live_at(t0));
        report.live_leases = live.len();
        let oldest_live = live.iter().map(|l| l.start).min();
        let margin = chrono::Duration::from_std(options.safety_margin)
            .map_err(|e| Error::InvalidInput { what: "safety margin", reason: e.to_string() })?;
        let cutoff = oldest_live.map_or(t0, |s| s.min(t0)) - margin;
        report.cutoff = Some(cutoff);

        // Mark. Any manifest that does not open stops the prune: never sweep on partial knowledge.
        let mut referenced: HashSet<ChunkId> = HashSet::new();
        let mut lists: HashSet<ChunkListId> = HashSet::new();
        let mut mark = |manifest: &BackupManifest| {
            for disk in &manifest.disks {
                referenced.extend(disk.chunks.iter().flatten().map(|c| c.id));
                lists.extend(disk.chunk_lists.iter().copied());
            }
        };
        let lists_read = ListsRead::default();
        for meta in self.list(layout::MANIFESTS).await? {
            let path = meta.location.to_string();
            let id = backup_id_of(&path, layout::MANIFESTS)?;
            if let Some(manifest) = self.read_manifest_at(&path, &id, &lists_read).await? {
                mark(&manifest);
            }
        }
        let mut expired_deleted = Vec::new();
        for meta in self.list(layout::DELETED).await? {
            let path = meta.location.to_string();
            if meta.last_modified < cutoff {
                expired_deleted.push(path);
                continue;
            }
            let id = backup_id_of(&path, layout::DELETED)?;
            if let Some(manifest) = self.read_manifest_at(&path, &id, &lists_read).await? {
                mark(&manifest);
            }
        }
        report.chunks_referenced = referenced.len();
        report.chunk_lists_referenced = lists.len();

        // Sweep.
        for meta in self.list(layout::CHUNKS).await? {
            let path = meta.location.to_string();
            let name = path.rsplit('/').next().unwrap_or_default();
            let id: ChunkId =
                name.parse().map_err(|reason| Error::CorruptObject { path: path.clone(), reason })?;
            if referenced.contains(&id) {
                continue;
            }
            if meta.last_modified >= cutoff {
                report.chunks_kept_recent += 1;
                continue;
            }
            report.chunks_deleted += 1;
            report.bytes_deleted += meta.size;
            if !options.dry_run {
                self.delete(&path).await?;
            }
        }
        // The chunk lists, by the same rule.
        for meta in self.list(layout::CHUNK_LISTS).await? {
            let path = meta.location.to_string();
            let name = path.rsplit('/').next().unwrap_or_default();
            let id: ChunkListId =
                name.parse().map_err(|reason| Error::CorruptObject { path: path.clone(), reason })?;
            if lists.contains(&id) || meta.last_modified >= cutoff {
                continue;
            }
            report.chunk_lists_deleted += 1;
            report.bytes_deleted += meta.size;
            if !options.dry_run {
                self.delete(&path).await?;
            }
        }
        // Markers of prunes killed before they removed theirs: only their store time mattered.
        let stale_markers: Vec<String> = self
            .list(layout::PRUNE)
            .await?
            .into_iter()
            .filter(|m| m.location.as_ref() != marker && m.last_modified < cutoff)
            .map(|m| m.location.to_string())
            .collect();
        report.stale_markers_removed = stale_markers.len();
        report.deleted_manifests_removed = expired_deleted.len();
        report.lapsed_leases_removed = lapsed.len();
        if !options.dry_run {
            for path in &expired_deleted {
                self.delete(path).await?;
            }
            for lease in &lapsed {
                lease.remove(self).await?;
            }
            for path in &stale_markers {
                self.delete(path).await?;
            }
        }
        Ok(report)
    }
}
