//! Verifying backups: every chunk list and chunk they name is fetched, authenticated and
//! checked. A bad list is reported with the stretches of disks it breaks, as a bad chunk is, and
//! the chunks of the other lists are still checked; only a manifest that does not open (or names
//! lists that do not fit its disk) stops a verify.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use futures::StreamExt as _;

use crate::chunk_list::{CHUNK_LIST_LEN, ChunkListId, check_list_count, check_list_len};
use crate::error::{Error, Result};
use crate::format::ChunkRef;
use crate::repository::Repository;
use crate::{BackupId, ChunkId, layout};

/// Chunks checked at once.
const VERIFY_CONCURRENCY: usize = 4;

/// What is wrong with a chunk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkProblem {
    /// No object of that name.
    #[error("is missing")]
    Missing,
    /// The store failed to return it.
    #[error("cannot be read: {0}")]
    Unreadable(String),
    /// It does not authenticate, decode or match its name and digest.
    #[error("is corrupt: {0}")]
    Corrupt(String),
}

/// What to verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyScope {
    /// Every committed backup.
    All,
    /// One backup.
    Backup(BackupId),
}

/// A place where a chunk is used.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ChunkUse {
    /// The backup.
    pub backup: BackupId,
    /// The disk in it.
    pub disk: String,
    /// The chunk's byte offset in the disk.
    pub offset: u64,
}

/// A chunk that failed verification, with everything it breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadChunk {
    /// The chunk's name.
    pub chunk: ChunkId,
    /// What is wrong.
    pub problem: ChunkProblem,
    /// Every backup, disk and offset that uses it.
    pub used_by: Vec<ChunkUse>,
}

/// A chunk list that failed verification, with everything it breaks: the chunks it names are
/// unknown, so is each disk's stretch of [`CHUNK_LIST_LEN`] chunks it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadChunkList {
    /// The list's name.
    pub list: ChunkListId,
    /// What is wrong.
    pub problem: ChunkProblem,
    /// Every backup and disk that names it, at the offset of the first chunk it holds.
    pub used_by: Vec<ChunkUse>,
}

/// The result of a verify.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Backups verified.
    pub backups: usize,
    /// Distinct chunk lists checked.
    pub chunk_lists_checked: usize,
    /// Distinct chunks checked (those named by the lists that passed).
    pub chunks_checked: usize,
    /// Plaintext bytes checked.
    pub bytes_checked: u64,
    /// The chunk lists that failed, in name order.
    pub bad_chunk_lists: Vec<BadChunkList>,
    /// The chunks that failed, in name order.
    pub bad_chunks: Vec<BadChunk>,
}

impl VerifyReport {
    /// Whether every chunk list and chunk passed.
    pub fn is_ok(&self) -> bool {
        self.bad_chunks.is_empty() && self.bad_chunk_lists.is_empty()
    }
}

impl Repository {
    /// Re-reads and checks every chunk list and chunk of one backup or of all of them (each
    /// distinct one once).
    pub async fn verify(&self, scope: VerifyScope) -> Result<VerifyReport> {
        let backups = match scope {
            VerifyScope::All => self.stored_manifests().await?,
            VerifyScope::Backup(id) => {
                let path = layout::manifest(&id);
                let manifest = self.read_manifest_unexpanded(&path, &id).await?;
                vec![(path, manifest.ok_or(Error::BackupNotFound(id))?)]
            }
        };
        let mut list_ids = BTreeSet::new();
        for (path, backup) in &backups {
            for disk in &backup.disks {
                check_list_count(path, disk)?;
                list_ids.extend(disk.chunk_lists.iter().copied());
            }
        }
        let chunk_lists_checked = list_ids.len();
        let lists: HashMap<ChunkListId, _> = futures::stream::iter(list_ids)
            .map(|id| async move { (id, self.fetch_chunk_list(id).await) })
            .buffer_unordered(VERIFY_CONCURRENCY)
            .collect()
            .await;
        let mut uses: BTreeMap<ChunkId, (ChunkRef, u64, Vec<ChunkUse>)> = BTreeMap::new();
        let mut bad_list_uses: BTreeMap<ChunkListId, Vec<ChunkUse>> = BTreeMap::new();
        for (path, backup) in &backups {
            for disk in &backup.disks {
                for (list_index, list) in disk.chunk_lists.iter().enumerate() {
                    let first = list_index * CHUNK_LIST_LEN;
                    let at = |offset| ChunkUse { backup: backup.id.clone(), disk: disk.name.clone(), offset };
                    let Ok(entries) = &lists[list] else {
                        bad_list_uses.entry(*list).or_default().push(at(disk.chunk_range(first).0));
                        continue;
                    };
                    check_list_len(path, disk, list_index, entries.len())?;
                    for (index, chunk) in entries.iter().enumerate() {
                        let Some(chunk) = chunk else { continue };
                        let (offset, len) = disk.chunk_range(first + index);
                        let entry = uses.entry(chunk.id).or_insert_with(|| (chunk.clone(), len, Vec::new()));
                        entry.2.push(at(offset));
                    }
                }
            }
        }
        let mut report = VerifyReport {
            backups: backups.len(),
            chunk_lists_checked,
            chunks_checked: uses.len(),
            ..VerifyReport::default()
        };
        for (list, mut used_by) in bad_list_uses {
            if let Err(problem) = &lists[&list] {
                used_by.sort();
                report.bad_chunk_lists.push(BadChunkList { list, problem: problem.clone(), used_by });
            }
        }
        let results: Vec<_> = futures::stream::iter(uses.into_values())
            .map(|(chunk, len, used_by)| async move {
                let outcome = self.check_chunk(&chunk, len).await.map(|()| len);
                (chunk.id, outcome, used_by)
            })
            .buffer_unordered(VERIFY_CONCURRENCY)
            .collect()
            .await;
        for (chunk, outcome, mut used_by) in results {
            match outcome {
                Ok(len) => report.bytes_checked += len,
                Err(problem) => {
                    used_by.sort();
                    report.bad_chunks.push(BadChunk { chunk, problem, used_by });
                }
            }
        }
        report.bad_chunks.sort_by_key(|b| b.chunk);
        Ok(report)
    }
}
