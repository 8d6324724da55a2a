//! Writing a backup: a session holds a lease, reads the disks (only the extents the caller names
//! when it knows what changed), uploads the chunks the repository does not have, and commits the
//! manifest last.

mod pace;
mod plan;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt as _;
use tokio::task::JoinSet;

pub use self::pace::ReadLimit;
use self::pace::ReadPace;
use self::plan::{Plan, plan};
use crate::chunk_list::{CHUNK_LIST_LEN, ChunkListId, EncodedList, unchanged_list};
use crate::committed_index::CommittedIndex;
use crate::crypto::ObjectKind;
use crate::error::{Error, Result};
use crate::format::{
    BackupManifest, BackupStats, ChunkRef, DiskManifest, FORMAT_VERSION, VmRef, chunk_range,
    chunks_in_flight, tree_digest,
};
use crate::lease::{DEFAULT_LEASE_TTL, Lease};
use crate::repository::{Repository, to_json};
use crate::workers::Priority;
use crate::{BackupId, ChunkId, layout};

/// A byte range of a disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Extent {
    /// First byte.
    pub offset: u64,
    /// Length in bytes.
    pub length: u64,
}

impl Extent {
    /// The extent `[offset, offset + length)`.
    pub fn new(offset: u64, length: u64) -> Self {
        Extent { offset, length }
    }

    fn end(&self) -> u64 {
        self.offset + self.length
    }
}

/// A disk image read by position. Implemented for [`std::fs::File`] (a raw image, a block device,
/// or a FUSE/NBD view of a qcow2 chain).
pub trait DiskSource: Send + Sync + 'static {
    /// Fills `buf` with the bytes at `offset` (the whole buffer, or an error).
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()>;
}

impl DiskSource for std::fs::File {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
    }
}

/// One disk to back up.
pub struct DiskBackup<'a> {
    /// The disk's name in the VM.
    pub name: String,
    /// Its content at the point in time backed up (a snapshot: it must not change meanwhile).
    pub source: Arc<dyn DiskSource>,
    /// Its size in bytes.
    pub size: u64,
    /// The byte ranges to read, or `None` to read the whole disk. Without `previous`, these are
    /// the allocated ranges and everything else is zeros. With `previous`, these are the ranges
    /// changed since it, and every chunk they do not touch is taken from it unread.
    pub extents: Option<&'a [Extent]>,
    /// The same disk in the backup this one is incremental to.
    pub previous: Option<&'a DiskManifest>,
}

/// Where a disk's backup stands; passed to the progress callback after each chunk read or
/// uploaded, every [`PROGRESS_STRIDE`] chunks taken unread (reused or holes), and at the end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// The disk being backed up.
    pub disk: String,
    /// Bytes the plan reads in all (the extents, or the whole disk).
    pub bytes_to_read: u64,
    /// Bytes read so far.
    pub bytes_read: u64,
    /// Sealed bytes put to the store so far.
    pub bytes_uploaded: u64,
    /// Plaintext bytes read but found already stored.
    pub bytes_deduplicated: u64,
    /// Plaintext bytes taken from the previous backup unread.
    pub bytes_reused: u64,
    /// Chunks dealt with.
    pub chunks_done: u64,
    /// Chunks of the disk.
    pub chunks_total: u64,
}

/// How many chunks taken unread (reused from the previous backup, or holes) go between two
/// progress calls: they cost nothing to back up, and a 16 GiB disk has 32,768 of them.
const PROGRESS_STRIDE: u64 = 1024;

/// How a backup session runs.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// The lease's time to live (default 6 h; renewed every quarter of it).
    pub lease_ttl: Duration,
    /// Chunks sealed and uploaded at once (fewer for chunks over 8 MiB: 64 MiB of data in flight
    /// at most, but 2 chunks).
    pub upload_concurrency: usize,
    /// How fast the disks are read, sustained (`None`: as fast as the CPUs go); see
    /// [`ReadLimit`].
    pub read_limit: Option<ReadLimit>,
}

impl Default for BackupOptions {
    fn default() -> Self {
        BackupOptions {
            lease_ttl: DEFAULT_LEASE_TTL,
            upload_concurrency: 16,
            read_limit: Some(ReadLimit::DEFAULT),
        }
    }
}

/// What a committed backup records beyond its disks.
#[derive(Debug, Clone)]
pub struct BackupMetadata {
    /// The VM backed up.
    pub vm: VmRef,
    /// Its spec (opaque JSON: a restore hands it back).
    pub vm_spec: serde_json::Value,
    /// The backup the disks were read incrementally against.
    pub base: Option<BackupId>,
    /// Free-form labels.
    pub labels: std::collections::BTreeMap<String, String>,
}

/// A backup in flight. It holds a lease until [`BackupSession::commit_backup`] or
/// [`BackupSession::abort`]; a session dropped without either leaves its lease to expire.
pub struct BackupSession {
    repo: Repository,
    id: BackupId,
    started: chrono::DateTime<Utc>,
    lease: Lease,
    options: BackupOptions,
    /// Chunks this session may reference without uploading: those of the backups committed when
    /// it started (read after the lease was taken, see `docs/backup-repository.md` "Prune"), and
    /// those it uploaded itself.
    known: KnownChunks,
    /// The chunk lists this session may name without storing them, by the same rule as `known`.
    /// A chunk of a known list is known: the committed manifest that names the list names it.
    known_lists: HashSet<ChunkListId>,
    /// For a session resumed after its process died ([`Repository::resume_backup`]): the start of
    /// its lease. A chunk not in `known` that is stored with a store time at or after it was
    /// uploaded under this lease (or another live one) and is not uploaded again.
    resumed_since: Option<chrono::DateTime<Utc>>,
}

impl Repository {
    /// Starts a backup with the default options.
    pub async fn begin_backup(&self) -> Result<BackupSession> {
        self.begin_backup_with(BackupOptions::default()).await
    }

    /// Starts a backup: takes the lease, then reads the index of the chunks already stored.
    pub async fn begin_backup_with(&self, options: BackupOptions) -> Result<BackupSession> {
        if options.upload_concurrency == 0 {
            return Err(Error::InvalidInput { what: "upload concurrency", reason: "it is 0".to_string() });
        }
        let id = BackupId::generate();
        let started = Utc::now();
        // The lease comes first: a prune that starts later keeps everything this session uploads,
        // and the manifests read below cannot lose their chunks to a prune while it lives.
        let lease = Lease::acquire(self, id.clone(), options.lease_ttl).await?;
        let (known, known_lists) = self.committed_chunks().await?;
        Ok(BackupSession {
            repo: self.clone(),
            id,
            started,
            lease,
            options,
            known,
            known_lists,
            resumed_since: None,
        })
    }

    /// Resumes backup `id`, begun by a process that died before committing it (its lease is still
    /// there): takes its lease over, keeping the lease's start, so that the chunks it uploaded
    /// are found stored (counted as deduplicated) instead of uploaded again. `None` when the
    /// lease is gone or lapsed: begin a new backup then. The backup keeps its id.
    pub async fn resume_backup(&self, id: &BackupId) -> Result<Option<BackupSession>> {
        self.resume_backup_with(id, BackupOptions::default()).await
    }

    /// [`Repository::resume_backup`] with options (the lease keeps its own time to live).
    pub async fn resume_backup_with(
        &self,
        id: &BackupId,
        options: BackupOptions,
    ) -> Result<Option<BackupSession>> {
        if options.upload_concurrency == 0 {
            return Err(Error::InvalidInput { what: "upload concurrency", reason: "it is 0".to_string() });
        }
        if self.head(&layout::manifest(id)).await?.is_some() {
            return Err(Error::InvalidInput {
                what: "backup to resume",
                reason: format!("backup {id} is committed already"),
            });
        }
        let Some((lease, start)) = Lease::adopt(self, id).await? else { return Ok(None) };
        // Read after the lease was renewed, as for a new session.
        let (known, known_lists) = self.committed_chunks().await?;
        Ok(Some(BackupSession {
            repo: self.clone(),
            id: id.clone(),
            started: Utc::now(),
            lease,
            options,
            known,
            known_lists,
            resumed_since: Some(start),
        }))
    }

    /// Removes the lease of backup `id` if one is left: a process that died between writing the
    /// manifest and dropping the lease leaves it, and it would hold every prune's cutoff back
    /// until it lapses. Only for a committed backup (else the lease may protect an in-flight one).
    pub async fn release_committed_lease(&self, id: &BackupId) -> Result<()> {
        if self.head(&layout::manifest(id)).await?.is_none() {
            return Err(Error::BackupNotFound(id.clone()));
        }
        crate::lease::remove(self, id).await
    }

    /// Gives up backup `id`, begun by a process that is gone and that nothing will resume (its
    /// object was deleted while it ran, or while the server was down): removes its lease, so that
    /// a prune collects what it uploaded without waiting for the lease to lapse. Refuses a
    /// committed backup (delete it instead).
    pub async fn abandon_backup(&self, id: &BackupId) -> Result<()> {
        if self.head(&layout::manifest(id)).await?.is_some() {
            return Err(Error::InvalidInput {
                what: "backup to abandon",
                reason: format!("backup {id} is committed; delete it instead"),
            });
        }
        crate::lease::remove(self, id).await
    }

    /// The chunks and the chunk lists of the committed backups.
    async fn committed_chunks(&self) -> Result<(KnownChunks, HashSet<ChunkListId>)> {
        let committed = self.list_backups().await?;
        let lists = committed
            .iter()
            .flat_map(|manifest| &manifest.disks)
            .flat_map(|disk| disk.chunk_lists.iter().copied())
            .collect();
        Ok((KnownChunks { committed, committed_chunks: None, added: HashSet::new() }, lists))
    }
}

/// The chunks of the backups committed when a session began, and those it uploaded since. The
/// committed ones are gathered on first use (a backup that reads nothing never needs them), from
/// the index the repository kept of the backups an earlier session listed (see
/// `committed_index.rs`).
struct KnownChunks {
    /// The manifests listed when the session began (emptied once `committed_chunks` is built).
    committed: Vec<Arc<BackupManifest>>,
    /// Each chunk of those manifests.
    committed_chunks: Option<Arc<HashSet<ChunkId>>>,
    /// The chunks this session uploaded.
    added: HashSet<ChunkId>,
}

impl KnownChunks {
    /// The committed chunks, gathered on the first call from the repository's `index`.
    fn committed(&mut self, index: &CommittedIndex) -> &HashSet<ChunkId> {
        let committed = &mut self.committed;
        self.committed_chunks.get_or_insert_with(|| index.chunks_of(&std::mem::take(committed)))
    }

    /// Whether chunk `id` is stored; else it is counted as stored from now on (the caller
    /// uploads it).
    fn check_and_add(&mut self, id: ChunkId, index: &CommittedIndex) -> bool {
        self.committed(index).contains(&id) || !self.added.insert(id)
    }
}

/// What became of a chunk to store.
enum Stored {
    /// Uploaded: its sealed size.
    Uploaded(u64),
    /// Found stored already (by the earlier run of a resumed session): its plaintext size.
    Found(u64),
}

/// A chunk read: `None` when it is all zeros (a hole), else its name and SHA-256, and its bytes.
type ReadChunk = Option<(ChunkRef, Vec<u8>)>;

impl BackupSession {
    /// The id the backup will have.
    pub fn id(&self) -> &BackupId {
        &self.id
    }

    /// Backs up one disk: reads what the plan needs, uploads the chunks not yet stored (all of them
    /// before returning), and returns the disk's manifest for [`BackupSession::commit_backup`].
    pub async fn backup_disk(
        &mut self,
        disk: DiskBackup<'_>,
        progress: &mut (dyn FnMut(&Progress) + Send),
    ) -> Result<DiskManifest> {
        let begun = Instant::now();
        let chunk_size = self.repo.chunk_size();
        let in_flight = chunks_in_flight(self.options.upload_concurrency, chunk_size);
        let plans = plan(&disk, chunk_size, &self.known_lists)?;
        let mut state = Progress {
            disk: disk.name.clone(),
            bytes_to_read: plans
                .iter()
                .map(|p| match p {
                    Plan::Read(ranges) => ranges.iter().map(|r| r.1).sum(),
                    _ => 0,
                })
                .sum(),
            chunks_total: plans.len() as u64,
            ..Progress::default()
        };
        let mut stats = BackupStats::default();
        let mut chunks = Vec::with_capacity(plans.len());
        // Each upload is a task of its own, so that it goes on while the next chunks are read.
        let mut uploads: JoinSet<Result<Stored>> = JoinSet::new();
        let mut pace = self.options.read_limit.map(ReadPace::new);
        let zeros: Arc<Vec<u8>> = Arc::new(vec![0u8; chunk_size as usize]);
        for (index, chunk_plan) in plans.into_iter().enumerate() {
            let unread = matches!(chunk_plan, Plan::Hole | Plan::Reuse(_));
            let stride_done = (index as u64 + 1).is_multiple_of(PROGRESS_STRIDE);
            if !unread || stride_done {
                self.lease.renew_if_due(&self.repo).await?;
            }
            let (offset, len) = chunk_range(disk.size, chunk_size, index);
            match chunk_plan {
                Plan::Hole => {
                    stats.holes += 1;
                    chunks.push(None);
                }
                Plan::Reuse(chunk) => {
                    stats.chunks_reused += 1;
                    stats.bytes_reused += len;
                    state.bytes_reused += len;
                    chunks.push(Some(chunk));
                }
                Plan::Read(ranges) => {
                    let read_bytes: u64 = ranges.iter().map(|r| r.1).sum();
                    if let Some(pace) = pace.as_mut() {
                        pace.take(read_bytes).await;
                    }
                    // One chunk is read at a time: the reading and hashing of a backup take one
                    // CPU at most from the guests beside it (the sealing of the chunks to upload
                    // overlaps it on the other workers).
                    let read =
                        read_chunk(&self.repo, &disk, ChunkToRead { offset, len, ranges }, zeros.clone())
                            .await?;
                    stats.bytes_read += read_bytes;
                    state.bytes_read += read_bytes;
                    match read {
                        None => {
                            stats.holes += 1;
                            chunks.push(None);
                        }
                        Some((chunk, data)) => {
                            let id = chunk.id;
                            if self.known.check_and_add(id, &self.repo.inner.committed_index) {
                                stats.chunks_deduplicated += 1;
                                stats.bytes_deduplicated += len;
                                state.bytes_deduplicated += len;
                            } else {
                                uploads.spawn(upload(self.repo.clone(), id, data, self.resumed_since));
                                while uploads.len() >= in_flight {
                                    let stored = next_upload(&mut uploads).await.expect("non-empty")?;
                                    count_stored(stored, &mut stats, &mut state);
                                }
                            }
                            chunks.push(Some(chunk));
                        }
                    }
                }
            }
            state.chunks_done += 1;
            if !unread || stride_done {
                progress(&state);
            }
        }
        while let Some(stored) = next_upload(&mut uploads).await {
            count_stored(stored?, &mut stats, &mut state);
            progress(&state);
        }
        progress(&state);
        let sha256_tree = tree_digest(disk.size, chunk_size, &chunks);
        // The lists go before the manifest that names them, as the chunks do (and, for a resumed
        // session, one its earlier run stored under its lease is found, not written again). A
        // stretch that did not change keeps the previous backup's list, unencoded; the new lists
        // are stored at once (a change scattered over a large disk touches several).
        let mut lists = Vec::with_capacity(chunks.len().div_ceil(CHUNK_LIST_LEN));
        let (mut new_lists, mut new_ids): (Vec<EncodedList>, HashSet<ChunkListId>) = Default::default();
        for (index, entries) in chunks.chunks(CHUNK_LIST_LEN).enumerate() {
            if let Some(id) = unchanged_list(disk.previous, index, entries)
                && self.known_lists.contains(&id)
            {
                lists.push(id);
                continue;
            }
            let list = self.repo.encode_chunk_list(entries);
            lists.push(list.id);
            if !self.known_lists.contains(&list.id) && new_ids.insert(list.id) {
                new_lists.push(list);
            }
        }
        let (repo, resumed_since) = (&self.repo, self.resumed_since);
        let stores: Vec<_> = new_lists.iter().map(|list| store_list(repo, list, resumed_since)).collect();
        let mut stores = futures::stream::iter(stores).buffer_unordered(self.options.upload_concurrency);
        while let Some(sealed) = stores.next().await {
            let sealed = sealed?;
            stats.bytes_uploaded += sealed;
            state.bytes_uploaded += sealed;
            progress(&state);
        }
        drop(stores);
        self.known_lists.extend(new_ids);
        stats.duration_ms = begun.elapsed().as_millis() as u64;
        Ok(DiskManifest {
            name: disk.name,
            size: disk.size,
            chunk_size,
            chunks,
            chunk_lists: lists,
            sha256_tree,
            stats,
        })
    }

    /// Commits the backup: renews the lease (refusing if it ever lapsed), writes the manifest (all
    /// its chunks are stored by now), then drops the lease.
    pub async fn commit_backup(
        mut self,
        metadata: BackupMetadata,
        disks: Vec<DiskManifest>,
    ) -> Result<BackupManifest> {
        let mut names = HashSet::new();
        for disk in &disks {
            if disk.chunk_size != self.repo.chunk_size() {
                return Err(Error::InvalidInput {
                    what: "disk manifest",
                    reason: format!(
                        "disk {:?} has chunk size {}, the repository {}",
                        disk.name,
                        disk.chunk_size,
                        self.repo.chunk_size()
                    ),
                });
            }
            if !names.insert(disk.name.as_str()) {
                return Err(Error::InvalidInput {
                    what: "disk manifests",
                    reason: format!("disk {:?} is given twice", disk.name),
                });
            }
        }
        let mut stats = BackupStats::default();
        for disk in &disks {
            stats.add(&disk.stats);
        }
        stats.duration_ms = (Utc::now() - self.started).num_milliseconds().max(0) as u64;
        let manifest = BackupManifest {
            format_version: FORMAT_VERSION,
            id: self.id.clone(),
            started: self.started,
            completed: Utc::now(),
            vm: metadata.vm,
            vm_spec: metadata.vm_spec,
            labels: metadata.labels,
            base: metadata.base,
            disks,
            stats,
        };
        self.lease.renew(&self.repo).await?;
        self.repo.put(&layout::manifest(&manifest.id), self.repo.seal_manifest(&manifest)).await?;
        self.repo.inner.manifests.insert(std::sync::Arc::new(manifest.clone()));
        self.lease.release(&self.repo).await?;
        Ok(manifest)
    }

    /// Gives the backup up: drops the lease. The chunks uploaded stay until a prune finds no
    /// manifest naming them.
    pub async fn abort(self) -> Result<()> {
        self.lease.release(&self.repo).await
    }
}

/// One chunk's bytes to read: the chunk at `offset`, `len` bytes, of which `ranges` (absolute) are
/// read and the rest is zeros.
struct ChunkToRead {
    offset: u64,
    len: u64,
    ranges: Vec<(u64, u64)>,
}

/// Reads a chunk on a worker and names it (one SHA-256 of its bytes, see `Keys::chunk_ref`).
async fn read_chunk(
    repo: &Repository,
    disk: &DiskBackup<'_>,
    chunk: ChunkToRead,
    zeros: Arc<Vec<u8>>,
) -> Result<ReadChunk> {
    let source = disk.source.clone();
    let repo = repo.clone();
    let name = disk.name.clone();
    let ChunkToRead { offset, len, ranges } = chunk;
    crate::workers::run(Priority::Background, move || {
        let mut buf = vec![0u8; len as usize];
        for (from, n) in ranges {
            let at = (from - offset) as usize;
            source.read_at(from, &mut buf[at..at + n as usize]).map_err(|source| Error::Io {
                context: format!("reading disk {name:?} at offset {from} ({n} bytes)"),
                source,
            })?;
        }
        // Compared with a buffer of zeros (memcmp) rather than byte by byte.
        if buf[..] == zeros[..buf.len()] {
            return Ok(None);
        }
        Ok(Some((repo.keys().chunk_ref(&buf), buf)))
    })
    .await
}

/// Stores a new chunk list; its sealed size, or 0 when a resumed session's earlier run stored it
/// under its lease (since `resumed_since`).
async fn store_list(
    repo: &Repository,
    list: &EncodedList,
    resumed_since: Option<chrono::DateTime<Utc>>,
) -> Result<u64> {
    if let Some(since) = resumed_since
        && repo.head(&list.id.object_path()).await?.is_some_and(|m| m.last_modified >= since)
    {
        return Ok(0);
    }
    repo.put_chunk_list(list).await
}

/// The result of the next upload to finish, `None` when none is left. A panic in one is resumed
/// here; an error returned from the session drops the set, which cancels the others.
async fn next_upload(uploads: &mut JoinSet<Result<Stored>>) -> Option<Result<Stored>> {
    match uploads.join_next().await? {
        Ok(stored) => Some(stored),
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        // Only the runtime's shutdown cancels an upload task while the session waits for it.
        Err(error) => Some(Err(Error::Io {
            context: "uploading a chunk".to_string(),
            source: std::io::Error::other(error),
        })),
    }
}

fn count_stored(stored: Stored, stats: &mut BackupStats, state: &mut Progress) {
    match stored {
        Stored::Uploaded(sent) => {
            stats.chunks_uploaded += 1;
            stats.bytes_uploaded += sent;
            state.bytes_uploaded += sent;
        }
        Stored::Found(plain) => {
            stats.chunks_deduplicated += 1;
            stats.bytes_deduplicated += plain;
            state.bytes_deduplicated += plain;
        }
    }
}

/// Seals and puts a chunk, unless (for a resumed session) it is stored already with a store time
/// at or after `stored_since`, the start of the session's lease: such a chunk is protected by a
/// live lease from any prune, and its name is the keyed hash of its plaintext, so it holds `data`.
async fn upload(
    repo: Repository,
    id: ChunkId,
    data: Vec<u8>,
    stored_since: Option<chrono::DateTime<Utc>>,
) -> Result<Stored> {
    if let Some(since) = stored_since
        && let Some(meta) = repo.head(&id.object_path()).await?
        && meta.last_modified >= since
    {
        return Ok(Stored::Found(data.len() as u64));
    }
    let sealer = repo.clone();
    let sealed = crate::workers::run(Priority::Background, move || {
        sealer.keys().seal(ObjectKind::Chunk, &id.to_string(), &data)
    })
    .await;
    let len = sealed.len() as u64;
    repo.put(&id.object_path(), sealed).await?;
    Ok(Stored::Uploaded(len))
}

/// Serializes a manifest as the plaintext JSON of its object (for golden files and tools).
pub fn manifest_json(manifest: &BackupManifest) -> Vec<u8> {
    to_json(manifest)
}
