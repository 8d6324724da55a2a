//! Prune races a writer: one task backs up incrementally, again and again, each backup reusing
//! chunks of the previous one, while another deletes every backup but the newest and prunes in a
//! loop with no safety margin. No committed backup may ever lose a chunk; the chunks of an aborted
//! backup and of deleted backups are collected.

mod support;

use std::sync::Arc;
use std::time::Duration;
use support::seaweed::SeaweedRepository;

use support::disk;
use vmsnap_backup::*;

const CHUNK: u64 = 64 * 1024;
const CHUNKS: u64 = 16;
const ROUNDS: u64 = 12;

fn image(round: u64) -> Vec<u8> {
    // Half the chunks change each round, half stay as in the round before.
    let mut data = Vec::new();
    for i in 0..CHUNKS {
        let generation = if i % 2 == 0 { round } else { round / 2 };
        data.extend_from_slice(&disk::noise(i * 1000 + generation, CHUNK as usize));
    }
    data
}

async fn race(backend: impl Fn() -> Backend + Send + Sync + 'static) {
    let options = InitOptions { chunk_size: CHUNK as u32, kdf: KdfParams::with_cost(8 * 1024, 1, 1) };
    let repo = Repository::init_with(backend(), "race", options).await.unwrap();
    let work = Arc::new(tempfile::tempdir().unwrap());

    // An aborted backup leaves an orphan chunk that a later prune must collect.
    let orphan_image = work.path().join("orphan.raw");
    std::fs::write(&orphan_image, disk::noise(99_999, CHUNK as usize)).unwrap();
    let mut aborted = repo.begin_backup().await.unwrap();
    let orphan = aborted
        .backup_disk(
            DiskBackup {
                name: "d".into(),
                source: Arc::new(std::fs::File::open(&orphan_image).unwrap()),
                size: CHUNK,
                extents: None,
                previous: None,
            },
            &mut |_| {},
        )
        .await
        .unwrap();
    aborted.abort().await.unwrap();
    let orphan_id = orphan.chunks[0].as_ref().unwrap().id;
    tokio::time::sleep(Duration::from_millis(1100)).await; // store times may have a 1 s resolution

    let writer_repo = repo.clone();
    let writer_work = work.clone();
    let writer = tokio::spawn(async move {
        let mut previous: Option<BackupManifest> = None;
        let mut committed = Vec::new();
        for round in 0..ROUNDS {
            let path = writer_work.path().join(format!("r{round}.raw"));
            std::fs::write(&path, image(round)).unwrap();
            let changed: Vec<Extent> = (0..CHUNKS)
                .filter(|i| i % 2 == 0 || round % 2 == 0)
                .map(|i| Extent::new(i * CHUNK, CHUNK))
                .collect();
            let mut session = writer_repo.begin_backup().await.unwrap();
            let disk = session
                .backup_disk(
                    DiskBackup {
                        name: "d".into(),
                        source: Arc::new(std::fs::File::open(&path).unwrap()),
                        size: CHUNKS * CHUNK,
                        extents: previous.as_ref().map(|_| changed.as_slice()),
                        previous: previous.as_ref().map(|p| &p.disks[0]),
                    },
                    &mut |_| {},
                )
                .await
                .unwrap();
            // Give the pruner time to run while this backup is in flight.
            tokio::time::sleep(Duration::from_millis(150)).await;
            let metadata = BackupMetadata {
                vm: VmRef { namespace: "ns".into(), name: "vm".into() },
                vm_spec: serde_json::json!({}),
                base: previous.as_ref().map(|p| p.id.clone()),
                labels: Default::default(),
            };
            let manifest = session.commit_backup(metadata, vec![disk]).await.unwrap();
            committed.push((manifest.clone(), path));
            previous = Some(manifest);
        }
        committed
    });

    let mut prunes = 0;
    let mut deleted_chunks = 0;
    while !writer.is_finished() {
        let backups = repo.list_backups().await.unwrap();
        if let Some((_, older)) = backups.split_last() {
            for b in older {
                repo.delete_backup(&b.id).await.unwrap();
            }
        }
        let report =
            repo.prune(PruneOptions { safety_margin: Duration::ZERO, dry_run: false }).await.unwrap();
        deleted_chunks += report.chunks_deleted;
        prunes += 1;
    }
    let committed = writer.await.unwrap();
    let last = &committed.last().unwrap().0;

    // The newest backup (never deleted) restores exactly, and verify of what is left passes.
    let out = work.path().join("restored.raw");
    let file =
        std::fs::OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&out).unwrap();
    repo.restore_disk(last, "d", file).await.unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), image(ROUNDS - 1));
    let report = repo.verify(VerifyScope::All).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.bad_chunks);

    // Once the writer is done, a last delete + prune leaves exactly the newest backup's chunks.
    for b in repo.list_backups().await.unwrap().iter().filter(|b| b.id != last.id) {
        repo.delete_backup(&b.id).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let report = repo.prune(PruneOptions { safety_margin: Duration::ZERO, dry_run: false }).await.unwrap();
    deleted_chunks += report.chunks_deleted;
    let fresh = Repository::open(backend(), "race").await.unwrap();
    assert_eq!(fresh.list_backups().await.unwrap(), vec![Arc::new(last.clone())]);
    assert!(fresh.verify(VerifyScope::All).await.unwrap().is_ok());
    assert_eq!(report.chunks_referenced, CHUNKS as usize);
    assert_eq!(report.chunks_kept_recent, 0);
    let store = backend().object_store();
    use object_store::ObjectStoreExt as _;
    assert!(
        store.head(&object_store::path::Path::from(orphan_id.object_path())).await.is_err(),
        "the aborted backup's chunk was collected"
    );
    eprintln!("{prunes} prunes raced {ROUNDS} backups; {deleted_chunks} chunks collected in all");
    assert!(prunes >= 3, "the prunes did race the writer ({prunes})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_races_a_writer_on_a_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    race(move || Backend::local(&root).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_races_a_writer_on_seaweedfs_s3() {
    let Some(server) = support::seaweed::Seaweed::start() else { return };
    server.create_bucket("race");
    let server = Arc::new(server);
    let s = server.clone();
    race(move || s.backend("race", "")).await;
}
