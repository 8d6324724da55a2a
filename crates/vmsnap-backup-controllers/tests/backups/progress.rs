//! A backup held mid-upload: `status.progress` moves while it runs (about once a second), then
//! holds the totals. The repository is a SeaweedFS bucket whose server is suspended once the first
//! chunk is stored, so the backup is seen in progress however fast the machine reads and seals.

use std::time::Duration;

use futures::StreamExt as _;
use kube::api::Api;
use kube::runtime::{WatchStreamExt as _, watcher};
use vmsnap_api::backup::{BackupPhase, TransferCounters, VirtualMachineRepositoryBackup};

use crate::s3::{backup_held_mid_upload, s3_repository_and_vm_with_distinct_chunks};
use crate::support::CHUNK;

/// Distinct chunks written (each has its own byte pattern, so nothing deduplicates).
const WRITTEN_CHUNKS: u64 = 192;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_is_written_while_a_backup_runs() {
    let Some((seaweed, env)) = s3_repository_and_vm_with_distinct_chunks(WRITTEN_CHUNKS).await else {
        return;
    };
    let written = (WRITTEN_CHUNKS * CHUNK) as i64;

    let api: Api<VirtualMachineRepositoryBackup> = env.api();
    let config = watcher::Config::default().fields("metadata.name=b1");
    let mut events = watcher(api.clone(), config).applied_objects().boxed();
    // Held: the S3 server suspended as soon as the backup stored a chunk.
    backup_held_mid_upload(&env, &seaweed, "b1").await;
    let mut seen: Vec<TransferCounters> = Vec::new();
    let mut resumed = false;
    let done = tokio::time::timeout(Duration::from_secs(300), async {
        while let Some(backup) = events.next().await {
            let status = backup.unwrap().status.unwrap_or_default();
            match status.phase {
                Some(BackupPhase::InProgress) => {
                    let moving = status
                        .progress
                        .as_ref()
                        .is_some_and(|p| p.bytes_read.unwrap_or(0) > 0 && p.percent.unwrap_or(100) < 100);
                    seen.extend(status.progress);
                    if moving && !resumed {
                        seaweed.resume();
                        resumed = true;
                    }
                }
                Some(BackupPhase::Succeeded) => return status,
                Some(BackupPhase::Failed) => panic!("the backup failed: {status:?}"),
                _ => {}
            }
        }
        panic!("the watch ended");
    })
    .await;
    if !resumed {
        seaweed.resume();
    }
    let done = done.unwrap_or_else(|_| panic!("the backup did not finish; progress seen: {seen:?}"));
    let total = done.progress.unwrap();
    assert_eq!((total.bytes_read, total.bytes_deduplicated), (Some(written), Some(0)), "{total:?}");
    assert_eq!(total.percent, Some(100));
    let moving: Vec<&TransferCounters> =
        seen.iter().filter(|p| p.bytes_read.unwrap_or(0) > 0 && p.percent.unwrap_or(100) < 100).collect();
    assert!(!moving.is_empty(), "no progress seen between start and end: {seen:?}");
    for pair in seen.windows(2) {
        assert!(pair[0].bytes_read <= pair[1].bytes_read, "progress went back: {seen:?}");
    }
    assert!(moving.iter().all(|p| p.bytes_to_read == Some(written)), "{seen:?}");
    eprintln!("progress seen: {:?}", seen.iter().map(|p| (p.percent, p.elapsed_seconds)).collect::<Vec<_>>());
}
