//! A backup whose process died before it committed (its session dropped with neither commit nor
//! abort, as a SIGKILL leaves it) is resumed by its id: the chunks it uploaded are found, not
//! uploaded again, a prune meanwhile keeps them, and the resumed backup commits under the same id
//! and verifies. A lapsed lease is not resumed.

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::disk;
use vmsnap_backup::*;

const CHUNK: u64 = 64 * 1024;
const CHUNKS: u64 = 12;

fn options() -> InitOptions {
    InitOptions { chunk_size: CHUNK as u32, kdf: KdfParams::with_cost(8 * 1024, 1, 1) }
}

fn request(image: &std::path::Path) -> DiskBackup<'static> {
    DiskBackup {
        name: "root".into(),
        source: Arc::new(std::fs::File::open(image).unwrap()),
        size: CHUNKS * CHUNK,
        extents: None,
        previous: None,
    }
}

fn metadata() -> BackupMetadata {
    BackupMetadata {
        vm: VmRef { namespace: "default".into(), name: "vm".into() },
        vm_spec: serde_json::json!({}),
        base: None,
        labels: Default::default(),
    }
}

async fn objects_under(dir: &std::path::Path, prefix: &str) -> Vec<String> {
    let root = dir.join(prefix);
    let Ok(entries) = std::fs::read_dir(&root) else { return Vec::new() };
    entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()
}

#[tokio::test]
async fn a_killed_backup_resumes_with_what_it_uploaded_and_commits_under_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::init_with(Backend::local(dir.path()).unwrap(), "resume", options()).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("disk.raw");
    std::fs::write(&image, (0..CHUNKS).flat_map(|i| disk::noise(i, CHUNK as usize)).collect::<Vec<u8>>())
        .unwrap();

    // The first run uploads every chunk, then its process dies.
    let mut killed = repo.begin_backup().await.unwrap();
    let id = killed.id().clone();
    let first = killed.backup_disk(request(&image), &mut |_| {}).await.unwrap();
    assert_eq!(first.stats.chunks_uploaded, CHUNKS);
    drop(killed);

    // A prune with no safety margin meanwhile keeps them: the dead run's lease still lives.
    let report = repo.prune(PruneOptions { safety_margin: Duration::ZERO, dry_run: false }).await.unwrap();
    assert_eq!(report.chunks_deleted, 0, "{report:?}");
    assert_eq!(report.live_leases, 1, "{report:?}");

    let mut resumed = repo.resume_backup(&id).await.unwrap().expect("the lease is live");
    assert_eq!(resumed.id(), &id);
    let disk = resumed.backup_disk(request(&image), &mut |_| {}).await.unwrap();
    assert_eq!(disk.stats.chunks_uploaded, 0, "nothing uploaded again: {:?}", disk.stats);
    assert_eq!(disk.stats.bytes_uploaded, 0);
    assert_eq!(disk.stats.chunks_deduplicated, CHUNKS);
    assert_eq!(disk.stats.bytes_deduplicated, CHUNKS * CHUNK);
    assert_eq!(disk.chunks, first.chunks);
    let manifest = resumed.commit_backup(metadata(), vec![disk]).await.unwrap();
    assert_eq!(manifest.id, id);
    assert!(objects_under(dir.path(), "leases").await.is_empty(), "the adopted lease is released");
    let verify = repo.verify(VerifyScope::All).await.unwrap();
    assert!(verify.is_ok() && verify.backups == 1, "{verify:?}");
    let restored = work.path().join("restored.raw");
    repo.restore_disk(&manifest, "root", std::fs::File::create(&restored).unwrap()).await.unwrap();
    assert_eq!(std::fs::read(&restored).unwrap(), std::fs::read(&image).unwrap());

    // Committed: it cannot be resumed again.
    assert!(matches!(repo.resume_backup(&id).await, Err(Error::InvalidInput { .. })));
    // Never begun, or released: nothing to resume.
    assert!(repo.resume_backup(&BackupId::generate()).await.unwrap().is_none());
}

#[tokio::test]
async fn a_lapsed_lease_is_not_resumed_and_goes() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::init_with(Backend::local(dir.path()).unwrap(), "resume", options()).await.unwrap();
    let short = BackupOptions { lease_ttl: Duration::from_secs(1), ..BackupOptions::default() };
    let killed = repo.begin_backup_with(short).await.unwrap();
    let id = killed.id().clone();
    drop(killed);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(repo.resume_backup(&id).await.unwrap().is_none(), "a prune may have taken its chunks");
    assert!(objects_under(dir.path(), "leases").await.is_empty(), "the lapsed lease is removed");
}

#[tokio::test]
async fn the_lease_left_by_a_process_killed_after_its_commit_is_released() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::init_with(Backend::local(dir.path()).unwrap(), "resume", options()).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("disk.raw");
    std::fs::write(&image, disk::noise(7, (CHUNKS * CHUNK) as usize)).unwrap();
    let mut session = repo.begin_backup().await.unwrap();
    let id = session.id().clone();
    let disk = session.backup_disk(request(&image), &mut |_| {}).await.unwrap();
    // The lease as it is between the manifest's write and the lease's release.
    let lease = dir.path().join("leases").join(id.as_str());
    let kept = std::fs::read(&lease).unwrap();
    session.commit_backup(metadata(), vec![disk]).await.unwrap();
    std::fs::write(&lease, kept).unwrap();

    let uncommitted = BackupId::generate();
    assert!(matches!(repo.release_committed_lease(&uncommitted).await, Err(Error::BackupNotFound(_))));
    repo.release_committed_lease(&id).await.unwrap();
    assert!(objects_under(dir.path(), "leases").await.is_empty());
}

#[tokio::test]
async fn a_prune_removes_the_markers_of_killed_prunes_older_than_its_cutoff() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::init_with(Backend::local(dir.path()).unwrap(), "resume", options()).await.unwrap();
    std::fs::create_dir_all(dir.path().join("prune")).unwrap();
    let stale = dir.path().join("prune/0123456789abcdef0123456789abcdef");
    let recent = dir.path().join("prune/fedcba9876543210fedcba9876543210");
    std::fs::write(&stale, b"").unwrap();
    std::fs::write(&recent, b"").unwrap();
    let touched =
        std::process::Command::new("touch").args(["-d", "1 hour ago"]).arg(&stale).status().unwrap();
    assert!(touched.success());
    let report = repo.prune(PruneOptions::default()).await.unwrap();
    assert_eq!(report.stale_markers_removed, 1, "{report:?}");
    assert!(!stale.exists(), "the marker older than the cutoff goes");
    assert!(recent.exists(), "a marker newer than the cutoff may be a running prune's");
}

#[tokio::test]
async fn an_abandoned_backup_drops_its_lease_so_that_a_prune_collects_its_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::init_with(Backend::local(dir.path()).unwrap(), "resume", options()).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("disk.raw");
    std::fs::write(&image, disk::noise(11, (CHUNKS * CHUNK) as usize)).unwrap();
    let mut killed = repo.begin_backup().await.unwrap();
    let id = killed.id().clone();
    killed.backup_disk(request(&image), &mut |_| {}).await.unwrap();
    drop(killed);

    repo.abandon_backup(&id).await.unwrap();
    assert!(objects_under(dir.path(), "leases").await.is_empty());
    assert!(repo.resume_backup(&id).await.unwrap().is_none(), "nothing left to resume");
    let report = repo.prune(PruneOptions { safety_margin: Duration::ZERO, dry_run: false }).await.unwrap();
    assert_eq!(report.chunks_deleted as u64, CHUNKS, "{report:?}");

    let mut session = repo.begin_backup().await.unwrap();
    let committed = session.id().clone();
    let disk = session.backup_disk(request(&image), &mut |_| {}).await.unwrap();
    session.commit_backup(metadata(), vec![disk]).await.unwrap();
    assert!(matches!(repo.abandon_backup(&committed).await, Err(Error::InvalidInput { .. })));
}
