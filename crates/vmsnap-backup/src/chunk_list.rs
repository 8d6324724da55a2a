//! Chunk lists (since format 2): a disk's chunk entries, [`CHUNK_LIST_LEN`] to an object, each
//! object named like a chunk (the keyed BLAKE3 hash of its plaintext's SHA-256) and stored once.
//! An entry is a chunk's plain SHA-256 (JSON `null` for a hole): its name is derived from it with
//! the key (format 3; format 2 stored the name too, 32 bytes more per chunk). A manifest names
//! its disks' lists instead of holding every entry, so backups that share a run of chunks share
//! its list: a second VM made from the same image, and every unchanged stretch of an incremental,
//! add no list at all. A backup with nothing changed writes a manifest of a few KiB whatever the
//! disk's size (format 1 wrote ~65 bytes per allocated chunk into every manifest).
//!
//! Lists are written before the manifest that names them, as chunks are, and a prune marks and
//! sweeps them by the same rule (`docs/backup-repository.md` "Prune").

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use futures::{StreamExt as _, TryStreamExt as _};
use serde::{Deserialize, Serialize};

use crate::crypto::ObjectKind;
use crate::error::{Error, Result};
use crate::format::{BackupManifest, ChunkRef, DiskManifest};
use crate::repository::Repository;
use crate::verify::ChunkProblem;
use crate::{ChunkId, ChunkSha256, layout};

/// Entries per chunk list: 512 MiB of disk in the default 512 KiB chunks, ~65 KiB sealed when
/// fully allocated. A change rewrites the lists of the stretches it touches.
pub const CHUNK_LIST_LEN: usize = 1024;
/// Lists read at once when a manifest is opened.
const LIST_READS: usize = 8;
/// The largest plaintext of a list accepted (an entry is 67 bytes of JSON).
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

/// The entries of one list, as read.
type Entries = Arc<Vec<Option<ChunkRef>>>;

/// The lists read during one pass over many manifests (a listing, a prune), so that a list that
/// several backups share (every unchanged stretch of an incremental, every VM made from the same
/// image) is fetched and checked once per pass, not once per manifest.
#[derive(Default)]
pub(crate) struct ListsRead(Mutex<HashMap<ChunkListId, Entries>>);

impl ListsRead {
    fn get(&self, id: &ChunkListId) -> Option<Entries> {
        self.0.lock().expect("not poisoned").get(id).cloned()
    }

    fn insert(&self, id: ChunkListId, entries: Entries) {
        self.0.lock().expect("not poisoned").insert(id, entries);
    }

    /// How many distinct lists were read.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.0.lock().expect("not poisoned").len()
    }
}

/// A list to store: its name and plaintext.
pub(crate) struct EncodedList {
    pub id: ChunkListId,
    pub plaintext: Vec<u8>,
}

impl Repository {
    /// One list of a disk's entries (at most [`CHUNK_LIST_LEN`]), named under this repository's
    /// key.
    pub(crate) fn encode_chunk_list(&self, entries: &[Option<ChunkRef>]) -> EncodedList {
        let digests: Vec<Option<ChunkSha256>> =
            entries.iter().map(|e| e.as_ref().map(|c| c.sha256)).collect();
        let plaintext = serde_json::to_vec(&digests).expect("chunk digests serialize");
        EncodedList { id: ChunkListId(self.keys().chunk_id(&plaintext)), plaintext }
    }

    /// Seals and stores one list; returns its sealed size.
    pub(crate) async fn put_chunk_list(&self, list: &EncodedList) -> Result<u64> {
        let sealed = self.keys().seal(ObjectKind::ChunkList, &list.id.to_string(), &list.plaintext);
        let size = sealed.len() as u64;
        self.put(&list.id.object_path(), sealed).await?;
        Ok(size)
    }

    /// Reads the entries of every disk of `manifest` (read from `path`) from the lists it names,
    /// taking those already in `read` from there.
    pub(crate) async fn read_chunk_lists(
        &self,
        path: &str,
        manifest: &mut BackupManifest,
        read: &ListsRead,
    ) -> Result<()> {
        for disk in &mut manifest.disks {
            let lists: Vec<Entries> = futures::stream::iter(disk.chunk_lists.clone())
                .map(|id| async move {
                    if let Some(entries) = read.get(&id) {
                        return Ok(entries);
                    }
                    let entries = Arc::new(self.read_chunk_list(path, id).await?);
                    read.insert(id, entries.clone());
                    Ok::<_, Error>(entries)
                })
                .buffered(LIST_READS)
                .try_collect()
                .await?;
            disk.chunks = check_entries(path, disk, &lists)?;
        }
        Ok(())
    }

    /// One list, authenticated and checked against its name.
    async fn read_chunk_list(&self, manifest_path: &str, id: ChunkListId) -> Result<Vec<Option<ChunkRef>>> {
        let path = id.object_path();
        let Some(sealed) = self.get(&path).await? else {
            return Err(Error::CorruptObject {
                path,
                reason: format!("it is missing, and {manifest_path} names it"),
            });
        };
        self.open_chunk_list(id, &sealed).map_err(|reason| Error::CorruptObject { path, reason })
    }

    /// One list as a verify sees it: fetched, authenticated and checked against its name, or
    /// what is wrong with it.
    pub(crate) async fn fetch_chunk_list(
        &self,
        id: ChunkListId,
    ) -> std::result::Result<Vec<Option<ChunkRef>>, ChunkProblem> {
        match self.get(&id.object_path()).await {
            Ok(Some(sealed)) => self.open_chunk_list(id, &sealed).map_err(ChunkProblem::Corrupt),
            Ok(None) => Err(ChunkProblem::Missing),
            Err(error) => Err(ChunkProblem::Unreadable(error.to_string())),
        }
    }

    /// The entries of a sealed list, or why they cannot be trusted.
    fn open_chunk_list(
        &self,
        id: ChunkListId,
        sealed: &[u8],
    ) -> std::result::Result<Vec<Option<ChunkRef>>, String> {
        let plaintext = self
            .keys()
            .open(ObjectKind::ChunkList, &id.to_string(), sealed, MAX_LIST_LEN)
            .map_err(|e| e.to_string())?;
        if self.keys().chunk_id(&plaintext) != id.0 {
            return Err("its content does not hash to its name".to_string());
        }
        let digests: Vec<Option<ChunkSha256>> =
            serde_json::from_slice(&plaintext).map_err(|e| e.to_string())?;
        let keys = self.keys();
        Ok(digests
            .into_iter()
            .map(|d| d.map(|sha256| ChunkRef { id: keys.chunk_name(&sha256), sha256 }))
            .collect())
    }
}

/// The name of list `index` of `previous` when it holds exactly `entries` (that stretch of the
/// disk did not change), so that it need not be encoded again.
pub(crate) fn unchanged_list(
    previous: Option<&DiskManifest>,
    index: usize,
    entries: &[Option<ChunkRef>],
) -> Option<ChunkListId> {
    let previous = previous?;
    let id = *previous.chunk_lists.get(index)?;
    let start = index * CHUNK_LIST_LEN;
    let held = list_len(previous.chunks.len(), index);
    (held == entries.len() && previous.chunks[start..start + held] == *entries).then_some(id)
}

/// How many entries list `index` of a disk of `chunks` chunks holds: [`CHUNK_LIST_LEN`], the
/// last list the rest (0 past the end).
fn list_len(chunks: usize, index: usize) -> usize {
    chunks.saturating_sub(index * CHUNK_LIST_LEN).min(CHUNK_LIST_LEN)
}

/// The entries of `disk` from its lists (see [`check_list_count`] and [`check_list_len`]).
fn check_entries(path: &str, disk: &DiskManifest, lists: &[Entries]) -> Result<Vec<Option<ChunkRef>>> {
    check_list_count(path, disk)?;
    let mut entries = Vec::with_capacity(DiskManifest::chunk_count(disk.size, disk.chunk_size));
    for (index, list) in lists.iter().enumerate() {
        check_list_len(path, disk, index, list.len())?;
        entries.extend(list.iter().cloned());
    }
    Ok(entries)
}

/// Checks that `disk` (of the manifest at `path`) names as many lists as its chunks fill.
pub(crate) fn check_list_count(path: &str, disk: &DiskManifest) -> Result<()> {
    let chunks = DiskManifest::chunk_count(disk.size, disk.chunk_size);
    let expected = chunks.div_ceil(CHUNK_LIST_LEN);
    if disk.chunk_lists.len() == expected {
        return Ok(());
    }
    Err(Error::CorruptObject {
        path: path.to_string(),
        reason: format!(
            "disk {:?} names {} chunk lists; a disk of {} bytes in chunks of {} has {chunks} chunks, in {expected} lists of up to {CHUNK_LIST_LEN}",
            disk.name,
            disk.chunk_lists.len(),
            disk.size,
            disk.chunk_size
        ),
    })
}

/// Checks that list `index` of `disk` (of the manifest at `path`) holds `len` entries, as its
/// place needs: [`CHUNK_LIST_LEN`], the last list the rest.
pub(crate) fn check_list_len(path: &str, disk: &DiskManifest, index: usize, len: usize) -> Result<()> {
    let expected = list_len(DiskManifest::chunk_count(disk.size, disk.chunk_size), index);
    if len == expected {
        return Ok(());
    }
    Err(Error::CorruptObject {
        path: path.to_string(),
        reason: format!(
            "list {index} of disk {:?} holds {len} chunk entries; at its place it must hold {expected}",
            disk.name
        ),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{ChunkListId, ListsRead, MAX_LIST_LEN};
    use crate::crypto::ObjectKind;
    use crate::format::{BackupStats, ChunkRef};
    use crate::*;

    async fn back_up(repo: &Repository, image: &std::path::Path, vm: &str) -> BackupManifest {
        let mut session = repo.begin_backup().await.unwrap();
        let source = Arc::new(std::fs::File::open(image).unwrap());
        let request =
            DiskBackup { name: "root".into(), source, size: 1 << 20, extents: None, previous: None };
        let disk = session.backup_disk(request, &mut |_| {}).await.unwrap();
        let metadata = BackupMetadata {
            vm: VmRef { namespace: "default".into(), name: vm.into() },
            vm_spec: serde_json::json!({}),
            base: None,
            labels: Default::default(),
        };
        session.commit_backup(metadata, vec![disk]).await.unwrap()
    }

    /// A local repository of 64 KiB chunks in a new directory, at `<dir>/repo`.
    async fn repository_of_64k_chunks() -> (tempfile::TempDir, std::path::PathBuf, Repository) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        let options = InitOptions { chunk_size: 64 * 1024, kdf: KdfParams::with_cost(8 * 1024, 1, 1) };
        let repo = Repository::init_with(Backend::local(&root).unwrap(), "memo", options).await.unwrap();
        (dir, root, repo)
    }

    #[test]
    fn a_list_is_reused_only_for_exactly_its_entries() {
        let chunk = |n: u8| {
            Some(ChunkRef { id: ChunkId::from_bytes([n; 32]), sha256: ChunkSha256::from_bytes([n; 32]) })
        };
        let entries: Vec<Option<ChunkRef>> = (0..CHUNK_LIST_LEN + 10).map(|i| chunk((i % 7) as u8)).collect();
        let list = |n: u8| ChunkListId(ChunkId::from_bytes([n; 32]));
        let previous = DiskManifest {
            name: "root".into(),
            size: (entries.len() * 4096) as u64,
            chunk_size: 4096,
            chunks: entries.clone(),
            chunk_lists: vec![list(1), list(2)],
            sha256_tree: String::new(),
            stats: BackupStats::default(),
        };
        let p = Some(&previous);
        assert_eq!(super::unchanged_list(p, 0, &entries[..CHUNK_LIST_LEN]), Some(list(1)));
        assert_eq!(super::unchanged_list(p, 1, &entries[CHUNK_LIST_LEN..]), Some(list(2)));
        assert_eq!(super::unchanged_list(None, 0, &entries[..CHUNK_LIST_LEN]), None);
        let mut changed = entries[..CHUNK_LIST_LEN].to_vec();
        changed[5] = None;
        assert_eq!(super::unchanged_list(p, 0, &changed), None, "a changed entry");
        // The disk shrank: its last list holds only the first entries of the previous one's.
        assert_eq!(super::unchanged_list(p, 0, &entries[..100]), None, "a shorter list is another list");
        assert_eq!(super::unchanged_list(p, 1, &entries[CHUNK_LIST_LEN..CHUNK_LIST_LEN + 5]), None);
        assert_eq!(super::unchanged_list(p, 2, &entries[..1]), None, "no such list before");
    }

    #[tokio::test]
    async fn a_list_holds_each_chunks_plain_sha256_and_the_names_follow_from_it() {
        let (dir, root, repo) = repository_of_64k_chunks().await;
        let image = dir.path().join("disk.raw");
        let mut content: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
        content[128 * 1024..192 * 1024].fill(0);
        std::fs::write(&image, &content).unwrap();
        let backup = back_up(&repo, &image, "vm-a").await;
        let id = backup.disks[0].chunk_lists[0];
        let sealed = std::fs::read(root.join(id.object_path())).unwrap();
        let plaintext =
            repo.keys().open(ObjectKind::ChunkList, &id.to_string(), &sealed, MAX_LIST_LEN).unwrap();
        let entries: Vec<Option<String>> = serde_json::from_slice(&plaintext).unwrap();
        // coreutils' digests of the 64 KiB pieces, the third a hole.
        let out = std::process::Command::new("split")
            .args(["-b", "65536", "--filter=sha256sum"])
            .arg(&image)
            .output()
            .unwrap();
        assert!(out.status.success());
        let expected: Vec<Option<String>> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .enumerate()
            .map(|(i, line)| (i != 2).then(|| line[..64].to_string()))
            .collect();
        assert_eq!(entries, expected);
        for chunk in backup.disks[0].chunks.iter().flatten() {
            assert_eq!(chunk.id, repo.keys().chunk_name(&chunk.sha256));
            assert!(root.join(chunk.id.object_path()).is_file(), "{} is stored under its name", chunk.id);
        }
    }

    #[tokio::test]
    async fn a_list_two_manifests_share_is_read_once_per_pass() {
        let (dir, root, repo) = repository_of_64k_chunks().await;
        let image = dir.path().join("disk.raw");
        std::fs::write(&image, (0..1u32 << 20).map(|i| (i % 251) as u8).collect::<Vec<u8>>()).unwrap();
        let a = back_up(&repo, &image, "vm-a").await;
        let b = back_up(&repo, &image, "vm-b").await;
        assert_eq!(a.disks[0].chunk_lists, b.disks[0].chunk_lists, "the same image, the same list");

        let read = ListsRead::default();
        let path_a = layout::manifest(&a.id);
        let read_a = repo.read_manifest_at(&path_a, &a.id, &read).await.unwrap().unwrap();
        assert_eq!(read_a.disks[0].chunks, a.disks[0].chunks);
        assert_eq!(read.len(), 1);
        // With the list gone from the store, B's manifest still reads in the same pass, from
        // what A's read; a new pass fetches it, and finds it missing.
        std::fs::remove_dir_all(root.join("lists")).unwrap();
        let path_b = layout::manifest(&b.id);
        let read_b = repo.read_manifest_at(&path_b, &b.id, &read).await.unwrap().unwrap();
        assert_eq!(read_b.disks[0].chunks, b.disks[0].chunks);
        let error = repo.read_manifest_at(&path_b, &b.id, &ListsRead::default()).await.unwrap_err();
        assert!(error.to_string().contains("is missing"), "{error}");
    }
}
