//! Restoring a disk to a sparse file, checking every chunk and the disk's digests.

use std::cell::RefCell;
use std::os::unix::fs::FileExt as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt as _;

use crate::crypto::{ObjectKind, OpenBuffers};
use crate::error::{Error, Result};
use crate::format::{BackupManifest, ChunkRef, DiskManifest, chunks_in_flight, tree_digest};
use crate::repository::Repository;
use crate::workers::Priority;
use crate::{ChunkProblem, ChunkSha256};

/// Blocks of zeros this long inside a chunk are skipped too, so the output stays sparse at the
/// granularity of a qcow2 cluster.
const SPARSE_BLOCK: usize = 64 * 1024;
/// Chunks fetched at once (fewer for big chunks, see [`chunks_in_flight`]): an object store
/// answers each GET after a round trip. Each chunk is written at its own offset as soon as it is
/// checked, in whatever order they come, so a slow GET holds no other back.
const FETCH_CONCURRENCY: usize = 16;

/// What a restore wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreReport {
    /// The disk's size (the file's length).
    pub size: u64,
    /// Bytes written (the rest are holes).
    pub bytes_written: u64,
    /// Its tree digest (equal to the manifest's).
    pub sha256_tree: String,
}

/// Where [`Repository::restore_disk`] writes a disk: a sparse file, or any other image that can be
/// written by disk offset.
pub trait RestoreTarget: Send + Sync {
    /// Makes the target read as `size` bytes of zeros, or says why it cannot.
    fn prepare(&self, size: u64) -> std::io::Result<()>;
    /// Writes `data` at disk offset `offset`.
    fn write_at(&self, data: &[u8], offset: u64) -> std::io::Result<()>;
    /// Makes what was written durable.
    fn sync(&self) -> std::io::Result<()>;
    /// After a failure: leaves nothing that a reader could take for the disk.
    fn discard(&self) -> std::io::Result<()>;
}

/// A plain file: truncated, then written sparse; emptied after a failure.
impl RestoreTarget for std::fs::File {
    fn prepare(&self, size: u64) -> std::io::Result<()> {
        self.set_len(0)?;
        self.set_len(size)
    }

    fn write_at(&self, data: &[u8], offset: u64) -> std::io::Result<()> {
        self.write_all_at(data, offset)
    }

    fn sync(&self) -> std::io::Result<()> {
        self.sync_all()
    }

    fn discard(&self) -> std::io::Result<()> {
        self.set_len(0)
    }
}

impl Repository {
    /// Restores disk `disk` of `backup` into `target`, written sparse (holes and 64 KiB blocks of
    /// zeros are not written). Every chunk is authenticated and checked against its name (the
    /// keyed hash of its content) before a byte of it is written, and the disk against its tree
    /// digest and, when recorded, its plain SHA-256. Chunks are checked and written on the
    /// engine's workers, several at once, each at its own offset. On any failure the target is
    /// discarded, so it never holds a half or wrong disk, and the error names the backup, disk
    /// and offset.
    pub async fn restore_disk<T: RestoreTarget + 'static>(
        &self,
        backup: &BackupManifest,
        disk: &str,
        target: T,
    ) -> Result<RestoreReport> {
        let manifest = backup
            .disk(disk)
            .ok_or_else(|| Error::DiskNotFound { backup: backup.id.clone(), disk: disk.to_string() })?;
        let target = Arc::new(target);
        let result = self.restore_into(backup, manifest, target.clone()).await;
        if result.is_err() {
            // Best effort: the error that matters is the restore's.
            let _ = target.discard();
        }
        result
    }

    async fn restore_into<T: RestoreTarget + 'static>(
        &self,
        backup: &BackupManifest,
        disk: &DiskManifest,
        target: Arc<T>,
    ) -> Result<RestoreReport> {
        target
            .prepare(disk.size)
            .map_err(io(format!("preparing the restore target for {} bytes", disk.size)))?;
        let mut bytes_written = 0;
        // Set at the first failure: the chunks not yet started are skipped, so the ones in flight
        // can be awaited (their writes must land before the target is discarded, not after).
        let stopped = AtomicBool::new(false);
        let mut restored = futures::stream::iter(disk.chunks.iter().enumerate())
            .map(|(index, chunk)| {
                let (offset, len) = disk.chunk_range(index);
                let (repo, target, chunk) = (self.clone(), target.clone(), chunk.clone());
                let stopped = &stopped;
                async move {
                    let Some(chunk) = chunk.filter(|_| !stopped.load(Ordering::Relaxed)) else {
                        return Ok(0);
                    };
                    let id = chunk.id;
                    let bad_chunk = |problem| Error::BadChunk {
                        backup: backup.id.clone(),
                        disk: disk.name.clone(),
                        offset,
                        chunk: id,
                        problem,
                    };
                    let sealed = repo.get_chunk(&chunk).await.map_err(bad_chunk)?;
                    // The chunk is checked before any of it is written; a write's own error is
                    // the inner result.
                    let written = crate::workers::run(Priority::Foreground, move || {
                        OPEN_BUFFERS.with_borrow_mut(|buffers| {
                            let data = open_chunk(&repo, &chunk, &sealed, len, buffers)?;
                            Ok(write_sparse(&*target, data, offset))
                        })
                    })
                    .await
                    .map_err(bad_chunk)??;
                    Ok(written)
                }
            })
            .buffer_unordered(chunks_in_flight(FETCH_CONCURRENCY, disk.chunk_size));
        while let Some(item) = restored.next().await {
            match item {
                Ok(written) => bytes_written += written,
                Err(error) => {
                    stopped.store(true, Ordering::Relaxed);
                    while restored.next().await.is_some() {}
                    return Err(error);
                }
            }
        }
        target.sync().map_err(io("syncing the restore target".to_string()))?;
        let sha256_tree = tree_digest(disk.size, disk.chunk_size, &disk.chunks);
        if sha256_tree != disk.sha256_tree {
            return Err(Error::ChecksumMismatch {
                backup: backup.id.clone(),
                disk: disk.name.clone(),
                algorithm: "sha256-tree",
                expected: disk.sha256_tree.clone(),
                actual: sha256_tree,
            });
        }
        Ok(RestoreReport { size: disk.size, bytes_written, sha256_tree })
    }

    /// Fetches one chunk and checks it fully, as a restore does (what verify does for every
    /// chunk), on the background workers (a verify runs beside running VMs).
    pub(crate) async fn check_chunk(&self, chunk: &ChunkRef, len: u64) -> Result<(), ChunkProblem> {
        let sealed = self.get_chunk(chunk).await?;
        let repo = self.clone();
        let chunk = chunk.clone();
        crate::workers::run(Priority::Background, move || {
            OPEN_BUFFERS
                .with_borrow_mut(|buffers| open_chunk(&repo, &chunk, &sealed, len, buffers).map(|_| ()))
        })
        .await
    }

    /// The sealed object of a chunk.
    async fn get_chunk(&self, chunk: &ChunkRef) -> Result<bytes::Bytes, ChunkProblem> {
        match self.get(&chunk.id.object_path()).await {
            Ok(Some(bytes)) => Ok(bytes),
            Ok(None) => Err(ChunkProblem::Missing),
            Err(e) => Err(ChunkProblem::Unreadable(e.to_string())),
        }
    }
}

/// Opens a sealed chunk: authentic (its tag, under the repository's key and the chunk's name),
/// the right length, and holding the content its list entry names: the plaintext's SHA-256 is the
/// entry's (and so its keyed name is the chunk's), so a chunk that passes holds exactly the bytes
/// that were backed up. Opened into the worker's `buffers`, page-aligned (a target writing around
/// the page cache writes it as it is).
fn open_chunk<'b>(
    repo: &Repository,
    chunk: &ChunkRef,
    sealed: &[u8],
    len: u64,
    buffers: &'b mut OpenBuffers,
) -> Result<&'b [u8], ChunkProblem> {
    let data = repo
        .keys()
        .open_aligned(ObjectKind::Chunk, &chunk.id.to_string(), sealed, len as usize, buffers)
        .map_err(|e| ChunkProblem::Corrupt(e.to_string()))?;
    if data.len() as u64 != len {
        return Err(ChunkProblem::Corrupt(format!("{} bytes instead of {len}", data.len())));
    }
    let sha256 = ChunkSha256::of(data);
    if sha256 != chunk.sha256 {
        return Err(ChunkProblem::Corrupt(format!(
            "its SHA-256 is {sha256}, its list says {}",
            chunk.sha256
        )));
    }
    Ok(data)
}

thread_local! {
    /// Each worker's buffers for opening chunks (a restore's chunks are opened and written on the
    /// engine's workers).
    static OPEN_BUFFERS: RefCell<OpenBuffers> = RefCell::new(OpenBuffers::default());
}

/// A block of zeros, to compare blocks with (a memcmp, not a loop over bytes).
static ZERO_BLOCK: [u8; SPARSE_BLOCK] = [0; SPARSE_BLOCK];

/// Writes `data` at disk offset `offset`, skipping its 64 KiB blocks of zeros, each run of other
/// blocks in one write; returns the bytes written.
fn write_sparse(target: &impl RestoreTarget, data: &[u8], offset: u64) -> Result<u64> {
    let write = |start: usize, end: usize| {
        let at = offset + start as u64;
        target.write_at(&data[start..end], at).map_err(io(format!("writing the restore target at {at}")))?;
        Ok::<_, Error>((end - start) as u64)
    };
    let mut written = 0;
    // Where the current run of blocks that are not all zeros began.
    let mut run = None;
    for (index, block) in data.chunks(SPARSE_BLOCK).enumerate() {
        let at = index * SPARSE_BLOCK;
        match (block == &ZERO_BLOCK[..block.len()], run) {
            (false, None) => run = Some(at),
            (true, Some(start)) => {
                written += write(start, at)?;
                run = None;
            }
            _ => {}
        }
    }
    if let Some(start) = run {
        written += write(start, data.len())?;
    }
    Ok(written)
}

/// Maps an I/O error to the engine's, with what was being done.
fn io(context: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { context, source }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::{Backend, InitOptions, KdfParams};

    /// Records each write as (offset, length, first byte).
    #[derive(Default)]
    struct Writes(Mutex<Vec<(u64, usize, u8)>>);

    impl RestoreTarget for Writes {
        fn prepare(&self, _: u64) -> std::io::Result<()> {
            Ok(())
        }
        fn write_at(&self, data: &[u8], offset: u64) -> std::io::Result<()> {
            self.0.lock().unwrap().push((offset, data.len(), data[0]));
            Ok(())
        }
        fn sync(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn discard(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn runs_of_data_blocks_are_written_whole_and_blocks_of_zeros_skipped() {
        const B: usize = SPARSE_BLOCK;
        // Blocks: data, data, zeros, data, zeros, and a short last block of data.
        let mut chunk = vec![0u8; 5 * B + 100];
        chunk[..2 * B].fill(1);
        chunk[3 * B + 7] = 2;
        chunk[5 * B..].fill(3);
        let target = Writes::default();
        let written = write_sparse(&target, &chunk, 1 << 20).unwrap();
        let writes = target.0.into_inner().unwrap();
        assert_eq!(
            writes,
            [(1 << 20, 2 * B, 1), ((1 << 20) + 3 * B as u64, B, 0), ((1 << 20) + 5 * B as u64, 100, 3)]
        );
        assert_eq!(written, (3 * B + 100) as u64);

        let target = Writes::default();
        assert_eq!(write_sparse(&target, &vec![0u8; 2 * B], 0).unwrap(), 0);
        assert!(target.0.into_inner().unwrap().is_empty(), "a chunk of zeros writes nothing");
        let target = Writes::default();
        assert_eq!(write_sparse(&target, &vec![9u8; 3 * B], 0).unwrap(), 3 * B as u64);
        assert_eq!(target.0.into_inner().unwrap(), [(0, 3 * B, 9)], "a full chunk is one write");
    }

    /// An object that opens under the chunk's name but holds other bytes (a writer's bug, or a
    /// key holder's forgery) is refused by its SHA-256, naming both digests.
    #[tokio::test]
    async fn an_authentic_chunk_with_other_content_is_refused_by_its_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let options = InitOptions { chunk_size: 64 * 1024, kdf: KdfParams::with_cost(8 * 1024, 1, 1) };
        let repo = Repository::init_with(Backend::local(dir.path()).unwrap(), "pw", options).await.unwrap();
        let chunk = repo.keys().chunk_ref(b"the bytes backed up");
        let sealed = repo.keys().seal(ObjectKind::Chunk, &chunk.id.to_string(), b"other bytes, same len");
        let buffers = &mut OpenBuffers::default();
        let problem = open_chunk(&repo, &chunk, &sealed, 21, buffers).unwrap_err();
        let expected = format!(
            "its SHA-256 is {}, its list says {}",
            ChunkSha256::of(b"other bytes, same len"),
            chunk.sha256
        );
        assert_eq!(problem, ChunkProblem::Corrupt(expected));
        let good = repo.keys().seal(ObjectKind::Chunk, &chunk.id.to_string(), b"the bytes backed up");
        assert_eq!(open_chunk(&repo, &chunk, &good, 19, buffers).unwrap(), b"the bytes backed up");
    }
}
