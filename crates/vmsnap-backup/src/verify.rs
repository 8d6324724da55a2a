//! Verifying backups: every chunk they name is fetched, authenticated and checked.

use std::collections::BTreeMap;

use futures::StreamExt as _;

use crate::error::Result;
use crate::format::ChunkRef;
use crate::repository::Repository;
use crate::{BackupId, ChunkId};

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

/// The result of a verify.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Backups verified.
    pub backups: usize,
    /// Distinct chunks checked.
    pub chunks_checked: usize,
    /// Plaintext bytes checked.
    pub bytes_checked: u64,
    /// The chunks that failed, in name order.
    pub bad_chunks: Vec<BadChunk>,
}

impl VerifyReport {
    /// Whether every chunk passed.
    pub fn is_ok(&self) -> bool {
        self.bad_chunks.is_empty()
    }
}

impl Repository {
    /// Re-reads and checks every chunk of one backup or of all of them (each distinct chunk once).
    pub async fn verify(&self, scope: VerifyScope) -> Result<VerifyReport> {
        let backups = match scope {
            VerifyScope::All => self.list_backups_stored().await?,
            VerifyScope::Backup(id) => vec![self.backup(&id).await?],
        };
        let mut uses: BTreeMap<ChunkId, (ChunkRef, u64, Vec<ChunkUse>)> = BTreeMap::new();
        for backup in &backups {
            for disk in &backup.disks {
                for (index, chunk) in disk.chunks.iter().enumerate() {
                    if let Some(chunk) = chunk {
                        let (offset, len) = disk.chunk_range(index);
                        let entry = uses.entry(chunk.id).or_insert_with(|| (chunk.clone(), len, Vec::new()));
                        entry.2.push(ChunkUse { backup: backup.id.clone(), disk: disk.name.clone(), offset });
                    }
                }
            }
        }
        let mut report =
            VerifyReport { backups: backups.len(), chunks_checked: uses.len(), ..VerifyReport::default() };
        let results: Vec<_> = futures::stream::iter(uses.into_values())
            .map(|(chunk, len, used_by)| async move {
                let outcome = self.fetch_chunk(&chunk, len).await.map(|_| len);
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
