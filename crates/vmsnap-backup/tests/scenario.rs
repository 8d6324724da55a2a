//! The engine end to end, on a local directory and on a real SeaweedFS S3 server: a 1 GiB sparse
//! disk, a full backup reading only its allocated extents, 1 % changed, an incremental reading
//! only the changed extents, restores checked with `sha256sum` and `qemu-img compare`, a fresh
//! open listing both, verify, a corrupted chunk named by verify and refused by restore, a wrong
//! passphrase, and delete + prune while another backup is in flight.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::seaweed::SeaweedRepository;

use object_store::ObjectStoreExt as _;
use object_store::path::Path as ObjectPath;
use support::disk::{self, GIB, MIB};
use vmsnap_backup::*;
use vmsnap_testing::images::tree_digest_with_coreutils;

/// The scenario's disks are laid out in 4 MiB chunks (which chunks a change touches, which are
/// twins); the default chunk size is what the controllers' and end-to-end tests use.
const CHUNK_SIZE: u32 = 4 << 20;

fn cheap_init() -> InitOptions {
    // Small Argon2id costs keep the tests fast; the recommended ones are exercised in `golden.rs`.
    InitOptions { chunk_size: CHUNK_SIZE, kdf: KdfParams::with_cost(8 * 1024, 1, 1) }
}

fn metadata(name: &str, base: Option<BackupId>) -> BackupMetadata {
    BackupMetadata {
        vm: VmRef { namespace: "default".to_string(), name: name.to_string() },
        vm_spec: serde_json::json!({"running": true, "template": {"spec": {"domain": {"memory": {"guest": "256Mi"}}}}}),
        base,
        labels: [("snapshot".to_string(), "snap-1".to_string())].into(),
    }
}

/// Backs up one disk in a new session and commits it.
async fn backup(
    repo: &Repository,
    image: &Path,
    extents: Option<&[Extent]>,
    previous: Option<&BackupManifest>,
    vm: &str,
) -> BackupManifest {
    let mut session = repo.begin_backup().await.unwrap();
    let source = Arc::new(std::fs::File::open(image).unwrap());
    let size = std::fs::metadata(image).unwrap().len();
    let mut last = Progress::default();
    let disk = session
        .backup_disk(
            DiskBackup {
                name: "root".to_string(),
                source,
                size,
                extents,
                previous: previous.map(|p| p.disk("root").unwrap()),
            },
            &mut |p| last = p.clone(),
        )
        .await
        .unwrap();
    assert_eq!(last.chunks_done, last.chunks_total, "progress reached the end");
    assert_eq!(last.bytes_read, disk.stats.bytes_read, "progress and stats agree");
    assert_eq!(last.bytes_uploaded, disk.stats.bytes_uploaded);
    session.commit_backup(metadata(vm, previous.map(|p| p.id.clone())), vec![disk]).await.unwrap()
}

async fn restore(repo: &Repository, backup: &BackupManifest, out: &Path) -> Result<RestoreReport> {
    let file =
        std::fs::OpenOptions::new().create(true).truncate(true).read(true).write(true).open(out).unwrap();
    repo.restore_disk(backup, "root", file).await
}

/// Bytes the repository stores under `chunks/`.
async fn stored_chunk_bytes(backend: &Backend) -> (usize, u64) {
    use futures::TryStreamExt as _;
    let list: Vec<_> =
        backend.object_store().list(Some(&ObjectPath::from("chunks"))).try_collect().await.unwrap();
    (list.len(), list.iter().map(|m| m.size).sum())
}

async fn all_objects(backend: &Backend) -> Vec<ObjectPath> {
    use futures::TryStreamExt as _;
    let list: Vec<_> = backend.object_store().list(None).try_collect().await.unwrap();
    list.into_iter().map(|m| m.location).collect()
}

/// The whole scenario on one backend; `fresh_backend` makes a new backend object on the same
/// location (what a fresh machine would build from its configuration).
async fn scenario(label: &str, fresh_backend: &dyn Fn() -> Backend) {
    let work = tempfile::tempdir().unwrap();
    let v1 = work.path().join("v1.raw");
    let v2 = work.path().join("v2.raw");
    let chunk = u64::from(CHUNK_SIZE);

    // A 1 GiB sparse disk: 48 scattered 512 KiB regions (noise and text, not chunk-aligned), two
    // identical aligned 4 MiB chunks, and a marker string that must appear in no object.
    disk::sparse(&v1, GIB);
    for i in 0..48u64 {
        let data = if i % 2 == 0 { disk::noise(i, 512 * 1024) } else { disk::text(i, 512 * 1024) };
        disk::write_at(&v1, i * 21 * MIB + 300 * 1024, &data);
    }
    let twin = disk::noise(1000, chunk as usize);
    disk::write_at(&v1, 1000 * MIB, &twin);
    disk::write_at(&v1, 1008 * MIB, &twin);
    let marker = b"VMSNAP-PLAINTEXT-MARKER-7f3a9c";
    disk::write_at(&v1, 700 * MIB + 12345, marker);

    let passphrase = "correct horse battery staple";
    let repo = Repository::init_with(fresh_backend(), passphrase, cheap_init()).await.unwrap();
    assert!(matches!(
        Repository::init_with(fresh_backend(), passphrase, cheap_init()).await,
        Err(Error::AlreadyInitialized { .. })
    ));

    // Full backup, reading only what qemu-img map says is allocated.
    let allocated = disk::allocated_extents(&v1);
    let allocated_bytes: u64 = allocated.iter().map(|e| e.length).sum();
    let started = Instant::now();
    let full = backup(&repo, &v1, Some(&allocated), None, "vm-a").await;
    let full_time = started.elapsed();
    assert_eq!(full.stats.bytes_read, allocated_bytes, "a full backup reads the allocated extents only");
    assert!(allocated_bytes < 40 * MIB, "the image is sparse: {allocated_bytes}");
    assert_eq!(full.stats.chunks_deduplicated, 1, "the twin chunk is stored once");
    assert_eq!(full.disks[0].sha256_tree, tree_digest_with_coreutils(&v1, chunk));

    // 1 % of the disk changes: two whole chunks, 2 MiB inside one chunk, 512 KiB across a boundary.
    assert!(
        std::process::Command::new("cp").arg("--sparse=always").arg(&v1).arg(&v2).status().unwrap().success()
    );
    let changes = [
        (100 * MIB, disk::noise(2001, 8 * MIB as usize)),
        (501 * MIB, disk::noise(2002, 2 * MIB as usize)),
        (900 * MIB + 3840 * 1024, disk::text(2003, 512 * 1024)),
    ];
    let mut changed = Vec::new();
    for (offset, data) in &changes {
        disk::write_at(&v2, *offset, data);
        changed.push(Extent::new(*offset, data.len() as u64));
    }
    let changed_bytes: u64 = changed.iter().map(|e| e.length).sum();
    let touched_chunks = 2 + 1 + 2;
    let started = Instant::now();
    let incremental = backup(&repo, &v2, Some(&changed), Some(&full), "vm-a").await;
    let incremental_time = started.elapsed();
    let stats = &incremental.stats;
    assert_eq!(
        stats.bytes_read,
        touched_chunks * chunk,
        "only the chunks the changed extents touch are read"
    );
    assert!(
        stats.bytes_read <= 2 * changed_bytes && stats.bytes_read < GIB / 50,
        "read {} for {changed_bytes} changed",
        stats.bytes_read
    );
    assert!(stats.bytes_uploaded <= touched_chunks * chunk + MIB, "uploaded {}", stats.bytes_uploaded);
    assert_eq!(
        stats.bytes_reused + stats.bytes_read + stats.holes * chunk,
        GIB,
        "every chunk is a hole, read, or reused"
    );
    assert_eq!(incremental.base.as_ref(), Some(&full.id));
    assert_eq!(incremental.disks[0].sha256_tree, tree_digest_with_coreutils(&v2, chunk));

    // Both restore bit-identical, sparse, checked by sha256sum and qemu-img compare.
    for (backup, original) in [(&full, &v1), (&incremental, &v2)] {
        let out = work.path().join(format!("restored-{}.raw", backup.id));
        let started = Instant::now();
        let report = restore(&repo, backup, &out).await.unwrap();
        eprintln!(
            "{label}: restore of {} took {:?}, wrote {} bytes",
            backup.id,
            started.elapsed(),
            report.bytes_written
        );
        assert_eq!(disk::sha256sum(&out), disk::sha256sum(original));
        assert_eq!(report.sha256_tree, tree_digest_with_coreutils(original, chunk));
        assert!(disk::qemu_img_identical(&out, original));
        assert!(
            disk::allocated_bytes(&out) < 64 * MIB,
            "restored sparse: {} bytes allocated",
            disk::allocated_bytes(&out)
        );
        std::fs::remove_file(&out).unwrap();
    }

    // No plaintext in any object.
    for path in all_objects(&fresh_backend()).await {
        let bytes = fresh_backend().object_store().get(&path).await.unwrap().bytes().await.unwrap();
        assert!(!bytes.windows(marker.len()).any(|w| w == marker), "{path} holds the marker in plaintext");
    }

    // A fresh open (new backend object, nothing cached) lists both; a wrong passphrase is refused.
    let reopened = Repository::open(fresh_backend(), passphrase).await.unwrap();
    let listed = reopened.list_backups().await.unwrap();
    assert_eq!(listed, vec![Arc::new(full.clone()), Arc::new(incremental.clone())]);
    match Repository::open(fresh_backend(), "wrong passphrase").await {
        Err(e @ Error::WrongPassphrase { .. }) => assert!(e.to_string().contains("wrong passphrase"), "{e}"),
        other => panic!("a wrong passphrase opened the repository: {other:?}"),
    }

    let report = reopened.verify(VerifyScope::All).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.bad_chunks);
    assert_eq!(report.backups, 2);

    // Flip one byte of a chunk both backups use (the one at offset 0: unchanged by the incremental).
    let shared = full.disks[0].chunks[0].clone().expect("chunk 0 holds data");
    assert_eq!(incremental.disks[0].chunks[0].as_ref(), Some(&shared));
    let store = fresh_backend().object_store();
    let path = ObjectPath::from(shared.id.object_path());
    let original = store.get(&path).await.unwrap().bytes().await.unwrap();
    let mut damaged = original.to_vec();
    let at = damaged.len() / 2;
    damaged[at] ^= 0x40;
    store.put(&path, damaged.into()).await.unwrap();
    let report = reopened.verify(VerifyScope::All).await.unwrap();
    assert_eq!(report.bad_chunks.len(), 1);
    let bad = &report.bad_chunks[0];
    assert_eq!(bad.chunk, shared.id);
    assert!(matches!(bad.problem, ChunkProblem::Corrupt(_)), "{:?}", bad.problem);
    let mut expected_uses = vec![
        ChunkUse { backup: full.id.clone(), disk: "root".to_string(), offset: 0 },
        ChunkUse { backup: incremental.id.clone(), disk: "root".to_string(), offset: 0 },
    ];
    expected_uses.sort();
    assert_eq!(bad.used_by, expected_uses);
    let out = work.path().join("must-not-hold-garbage.raw");
    match restore(&reopened, &incremental, &out).await {
        Err(Error::BadChunk { backup, disk, offset: 0, chunk, .. }) => {
            assert_eq!((backup, disk.as_str(), chunk), (incremental.id.clone(), "root", shared.id));
        }
        other => panic!("a restore over a corrupt chunk did not fail naming it: {other:?}"),
    }
    assert_eq!(std::fs::metadata(&out).unwrap().len(), 0, "a failed restore leaves nothing");
    store.put(&path, original.into()).await.unwrap();
    assert!(reopened.verify(VerifyScope::Backup(full.id.clone())).await.unwrap().is_ok());

    // Delete the full backup while another backup is in flight; prune twice.
    tokio::time::sleep(Duration::from_millis(1100)).await; // S3 times have a 1 s resolution
    let v3 = work.path().join("v3.raw");
    disk::sparse(&v3, 64 * MIB);
    disk::write_at(&v3, 0, &disk::noise(3001, 6 * MIB as usize));
    let mut in_flight = reopened.begin_backup().await.unwrap();
    let v3_disk = in_flight
        .backup_disk(
            DiskBackup {
                name: "root".to_string(),
                source: Arc::new(std::fs::File::open(&v3).unwrap()),
                size: 64 * MIB,
                extents: None,
                previous: None,
            },
            &mut |_| {},
        )
        .await
        .unwrap();
    assert_eq!(v3_disk.stats.chunks_uploaded, 2);
    let only_full: Vec<ChunkId> = {
        let later: std::collections::HashSet<_> =
            incremental.disks[0].chunks.iter().flatten().map(|c| c.id).collect();
        full.disks[0].chunks.iter().flatten().map(|c| c.id).filter(|id| !later.contains(id)).collect()
    };
    // Of the five chunks the change touched, three were holes before (100-104, 500-504 and
    // 904-908 MiB): the full backup alone has the other two (104-108 and 900-904 MiB).
    assert_eq!(only_full.len(), 2, "chunks only the full backup has");
    let (chunks_before, _) = stored_chunk_bytes(&fresh_backend()).await;
    reopened.delete_backup(&full.id).await.unwrap();
    assert_eq!(reopened.list_backups().await.unwrap(), vec![Arc::new(incremental.clone())]);
    let no_margin = PruneOptions { safety_margin: Duration::ZERO, dry_run: false };
    let first = reopened.prune(no_margin.clone()).await.unwrap();
    eprintln!("{label}: prune with a backup in flight: {first:?}");
    assert_eq!(first.live_leases, 1);
    assert_eq!(first.chunks_deleted, 0, "the in-flight backup may rely on the deleted backup's chunks");
    assert_eq!(stored_chunk_bytes(&fresh_backend()).await.0, chunks_before);
    let third = in_flight.commit_backup(metadata("vm-b", None), vec![v3_disk]).await.unwrap();
    // The deletion must be older than the next prune's start on the store's clock (1 s resolution
    // on S3): a deleted manifest as new as the prune still protects its chunks.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = reopened.prune(no_margin).await.unwrap();
    eprintln!("{label}: prune after it committed: {second:?}");
    assert_eq!(second.chunks_deleted, only_full.len(), "exactly the chunks only the deleted backup used");
    assert_eq!(second.deleted_manifests_removed, 1);
    for id in &only_full {
        assert!(
            fresh_backend().object_store().head(&ObjectPath::from(id.object_path())).await.is_err(),
            "{id} was not freed"
        );
    }
    let after = reopened.verify(VerifyScope::All).await.unwrap();
    assert!(after.is_ok() && after.backups == 2, "{after:?}");
    let out = work.path().join("v3-restored.raw");
    restore(&reopened, &third, &out).await.unwrap();
    assert_eq!(disk::sha256sum(&out), disk::sha256sum(&v3));
    let out = work.path().join("v2-restored.raw");
    restore(&reopened, &incremental, &out).await.unwrap();
    assert_eq!(disk::sha256sum(&out), disk::sha256sum(&v2));

    let (chunks, stored) = stored_chunk_bytes(&fresh_backend()).await;
    let logical: u64 = reopened
        .list_backups()
        .await
        .unwrap()
        .iter()
        .flat_map(|b| &b.disks)
        .map(|d| d.size - d.stats.holes * chunk)
        .sum();
    eprintln!(
        "{label}: full backup read {} bytes, uploaded {} in {full_time:?}; incremental ({changed_bytes} bytes changed) read {} bytes, uploaded {}, reused {} in {incremental_time:?}; after prune {chunks} chunks, {stored} bytes stored for {logical} logical non-hole bytes (ratio {:.1})",
        full.stats.bytes_read,
        full.stats.bytes_uploaded,
        incremental.stats.bytes_read,
        incremental.stats.bytes_uploaded,
        incremental.stats.bytes_reused,
        logical as f64 / stored as f64,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_on_a_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    scenario("local", &|| Backend::local(&root).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_on_seaweedfs_s3() {
    let Some(server) = support::seaweed::Seaweed::start() else { return };
    server.create_bucket("vmsnap-backups");
    scenario("s3", &|| server.backend("vmsnap-backups", "team-a/vms")).await;
}
