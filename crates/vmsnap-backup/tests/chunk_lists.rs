//! Chunk lists (since format 2), on a disk that spans several: a second VM from the same image and a
//! backup with nothing changed store no list; a change stores the one list of its stretch; a
//! prune frees exactly the list only a deleted backup named; a missing or corrupt list is an
//! error naming it and the manifest, never a backup with a hole in its chunk entries, and a
//! verify reports it with the stretches it breaks.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use support::disk;
use vmsnap_backup::*;

const CHUNK: u64 = 64 * 1024;
/// 3.5 lists' worth of chunks: three full lists and a short last one.
const SIZE: u64 = CHUNK * (CHUNK_LIST_LEN as u64 * 7 / 2);
const LIST_SPAN: u64 = CHUNK * CHUNK_LIST_LEN as u64;

fn options() -> InitOptions {
    InitOptions { chunk_size: CHUNK as u32, kdf: KdfParams::with_cost(8 * 1024, 1, 1) }
}

fn metadata(vm: &str, base: Option<&BackupManifest>) -> BackupMetadata {
    BackupMetadata {
        vm: VmRef { namespace: "default".into(), name: vm.into() },
        vm_spec: serde_json::json!({}),
        base: base.map(|b| b.id.clone()),
        labels: Default::default(),
    }
}

async fn backup(
    repo: &Repository,
    image: &Path,
    vm: &str,
    previous: Option<&BackupManifest>,
    extents: Option<&[Extent]>,
) -> BackupManifest {
    let mut session = repo.begin_backup().await.unwrap();
    let disk = session
        .backup_disk(
            DiskBackup {
                name: "root".into(),
                source: Arc::new(std::fs::File::open(image).unwrap()),
                size: SIZE,
                extents,
                previous: previous.map(|p| p.disk("root").unwrap()),
            },
            &mut |_| {},
        )
        .await
        .unwrap();
    session.commit_backup(metadata(vm, previous), vec![disk]).await.unwrap()
}

fn objects(root: &Path, prefix: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut dirs = vec![root.join(prefix)];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.file_type().unwrap().is_dir() {
                dirs.push(entry.path());
            } else {
                found.insert(entry.path().strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    found
}

/// A new repository in a directory of its own, and a sparse disk image of [`SIZE`].
struct Setup {
    _dir: tempfile::TempDir,
    /// The repository's directory.
    root: std::path::PathBuf,
    repo: Repository,
    work: tempfile::TempDir,
    image: std::path::PathBuf,
}

/// [`Setup`], the image holding `chunks` chunks of noise (seeded `seed` + the list's index) one
/// chunk into each of the four lists' stretches.
async fn setup(seed: u64, chunks: u64) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    let repo = Repository::init_with(Backend::local(&root).unwrap(), "lists", options()).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("disk.raw");
    disk::sparse(&image, SIZE);
    for list in 0..4 {
        let noise = disk::noise(seed + list, (chunks * CHUNK) as usize);
        disk::write_at(&image, list * LIST_SPAN + CHUNK, &noise);
    }
    Setup { _dir: dir, root, repo, work, image }
}

fn lists_of(backup: &BackupManifest) -> Vec<String> {
    backup.disks[0].chunk_lists.iter().map(ChunkListId::object_path).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_share_chunk_lists_and_a_prune_frees_only_the_unnamed_ones() {
    let Setup { _dir, root, repo, work, image } = setup(0, 3).await;

    // A's full backup: four lists, the last one short.
    let full = backup(&repo, &image, "vm-a", None, None).await;
    assert_eq!(full.disks[0].chunk_lists.len(), 4);
    assert_eq!(full.disks[0].chunks.len(), SIZE.div_ceil(CHUNK) as usize);
    let stored: BTreeSet<String> = lists_of(&full).into_iter().collect();
    assert_eq!(objects(&root, "lists"), stored, "exactly the full backup's lists are stored");

    // B, made from the same image: every chunk and every list is A's; nothing is stored.
    let twin = backup(&repo, &image, "vm-b", None, None).await;
    assert_eq!(twin.stats.bytes_uploaded, 0, "{:?}", twin.stats);
    assert_eq!(twin.disks[0].chunk_lists, full.disks[0].chunk_lists);

    // A change in the third list's stretch: its chunk and that one list are stored.
    let at = 2 * LIST_SPAN + 200 * CHUNK;
    disk::write_at(&image, at, &disk::noise(99, CHUNK as usize));
    let change = [Extent::new(at, CHUNK)];
    let changed = backup(&repo, &image, "vm-a", Some(&full), Some(&change)).await;
    let (old, new) = (lists_of(&full), lists_of(&changed));
    assert_eq!(old[0..2], new[0..2], "the other lists are shared");
    assert_eq!(old[3..], new[3..], "the other lists are shared");
    assert_ne!(old[2], new[2]);
    assert_eq!(objects(&root, "lists").len(), 5);
    assert!(changed.stats.bytes_uploaded < 2 * CHUNK, "the chunk and one list: {:?}", changed.stats);

    // Nothing changed: no chunk, no list, and a manifest of a few KiB.
    let same = backup(&repo, &image, "vm-a", Some(&changed), Some(&[])).await;
    assert_eq!(same.stats.bytes_uploaded, 0, "{:?}", same.stats);
    let manifest = root.join(layout::manifest(&same.id));
    assert!(
        std::fs::metadata(&manifest).unwrap().len() < 4096,
        "{} bytes",
        std::fs::metadata(&manifest).unwrap().len()
    );

    // A fresh handle reads the entries back from the lists, and restores what was backed up.
    let reopened = Repository::open(Backend::local(&root).unwrap(), "lists").await.unwrap();
    assert_eq!(
        reopened.list_backups().await.unwrap(),
        [&full, &twin, &changed, &same].map(|b| Arc::new(b.clone())).to_vec()
    );
    let restored = work.path().join("restored.raw");
    let target = std::fs::File::create(&restored).unwrap();
    reopened.restore_disk(&same, "root", target).await.unwrap();
    assert_eq!(disk::sha256sum(&restored), disk::sha256sum(&image));

    // Deleting A's full backup and B's leaves the third list of the old content unnamed: the
    // prune frees it and keeps the rest.
    reopened.delete_backup(&full.id).await.unwrap();
    reopened.delete_backup(&twin.id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let report =
        reopened.prune(PruneOptions { safety_margin: Duration::ZERO, dry_run: false }).await.unwrap();
    assert_eq!((report.chunk_lists_referenced, report.chunk_lists_deleted), (4, 1), "{report:?}");
    assert_eq!(objects(&root, "lists"), new.iter().cloned().collect::<BTreeSet<_>>());
    assert!(reopened.verify(VerifyScope::All).await.unwrap().is_ok());

    // A corrupt list, then a missing one: opening the backups fails, naming the list and the
    // manifest that names it.
    let list = root.join(&new[1]);
    let original = std::fs::read(&list).unwrap();
    let mut damaged = original.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 1;
    std::fs::write(&list, &damaged).unwrap();
    let fresh = Repository::open(Backend::local(&root).unwrap(), "lists").await.unwrap();
    let error = fresh.list_backups().await.unwrap_err().to_string();
    assert!(error.contains(&new[1]), "{error}");
    // A verify reports it with the stretch of each backup's disk it breaks, and still checks
    // the chunks of the other lists.
    let report = fresh.verify(VerifyScope::All).await.unwrap();
    assert_eq!(report.chunk_lists_checked, 4);
    assert!(report.bad_chunks.is_empty() && report.chunks_checked > 0, "{report:?}");
    let breaks = |backup: &BackupManifest| ChunkUse {
        backup: backup.id.clone(),
        disk: "root".into(),
        offset: LIST_SPAN,
    };
    let [bad] = &report.bad_chunk_lists[..] else { panic!("one bad list: {report:?}") };
    assert_eq!(bad.list, changed.disks[0].chunk_lists[1]);
    assert!(matches!(bad.problem, ChunkProblem::Corrupt(_)), "{bad:?}");
    let mut both = vec![breaks(&changed), breaks(&same)];
    both.sort();
    assert_eq!(bad.used_by, both, "in (backup id, disk, offset) order");
    assert!(!report.is_ok());
    std::fs::remove_file(&list).unwrap();
    let fresh = Repository::open(Backend::local(&root).unwrap(), "lists").await.unwrap();
    let error = fresh.backup(&same.id).await.unwrap_err().to_string();
    assert!(
        error.contains(&new[1]) && error.contains("is missing") && error.contains(same.id.as_str()),
        "{error}"
    );
    let report = fresh.verify(VerifyScope::Backup(same.id.clone())).await.unwrap();
    let [bad] = &report.bad_chunk_lists[..] else { panic!("one bad list: {report:?}") };
    assert_eq!((&bad.problem, &bad.used_by), (&ChunkProblem::Missing, &vec![breaks(&same)]));
    std::fs::write(&list, &original).unwrap();
    assert!(fresh.verify(VerifyScope::All).await.unwrap().is_ok());
}

/// An incremental takes a chunk of its previous backup unread only when a backup committed
/// before its session began names the chunk's list: once the previous backup is deleted (its
/// chunks may be pruned), every chunk it would have reused is read and stored again, and the
/// new backup restores whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_are_reused_only_from_the_lists_of_committed_backups() {
    let Setup { _dir, repo, work, image, .. } = setup(40, 2).await;
    let data_chunks = 8;
    let full = backup(&repo, &image, "vm-a", None, None).await;

    // Nothing changed, the previous backup committed: its 8 data chunks are reused, none read.
    let same = backup(&repo, &image, "vm-a", Some(&full), Some(&[])).await;
    assert_eq!((same.stats.chunks_reused, same.stats.bytes_read), (data_chunks, 0), "{:?}", same.stats);
    assert_eq!(same.disks[0].chunks, full.disks[0].chunks);

    // Both deleted and pruned: a backup naming the deleted one as its previous reads its chunks.
    repo.delete_backup(&same.id).await.unwrap();
    repo.delete_backup(&full.id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let pruned = repo.prune(PruneOptions { safety_margin: Duration::ZERO, dry_run: false }).await.unwrap();
    assert_eq!(pruned.chunks_deleted, data_chunks as usize, "{pruned:?}");
    let again = backup(&repo, &image, "vm-a", Some(&full), Some(&[])).await;
    assert_eq!(again.stats.chunks_reused, 0, "{:?}", again.stats);
    assert_eq!(again.stats.chunks_uploaded, data_chunks, "{:?}", again.stats);
    assert_eq!(again.disks[0].chunks, full.disks[0].chunks, "the same content, stored again");
    let restored = work.path().join("restored.raw");
    repo.restore_disk(&again, "root", std::fs::File::create(&restored).unwrap()).await.unwrap();
    assert_eq!(disk::sha256sum(&restored), disk::sha256sum(&image));
}
