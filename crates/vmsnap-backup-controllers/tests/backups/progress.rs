//! A backup held mid-upload: `status.progress` moves while it runs (about once a second), then
//! holds the totals. The repository is a SeaweedFS bucket whose server is suspended once the first
//! chunk is stored, so the backup is seen in progress however fast the machine reads and seals.

use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use kube::api::Api;
use kube::runtime::{WatchStreamExt as _, watcher};
use vmsnap_api::backup::{BackupPhase, TransferCounters, VirtualMachineRepositoryBackup};

use crate::s3::{credentials, s3_repository};
use crate::seaweed::{SECRET_KEY, Seaweed};
use crate::support::{CHUNK, Env, PASSPHRASE};

/// Distinct chunks written (each has its own byte pattern, so nothing deduplicates).
const WRITTEN_CHUNKS: u64 = 192;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_is_written_while_a_backup_runs() {
    let Some(seaweed) = Seaweed::start() else { return };
    seaweed.create_bucket("vms");
    let Some(env) = Env::start().await else { return };
    env.passphrase_secret("pass", PASSPHRASE).await;
    env.apply(&credentials("s3", SECRET_KEY)).await;
    env.apply(&s3_repository("main", &seaweed.endpoint, "s3")).await;
    env.await_repository_ready("main").await;
    env.bound_pvc("disk", "1Gi").await;
    env.vm_with_disk("vm", "disk").await;
    let volume = env.volume_of("disk").await;
    let mut qemu_io = Command::new(&env.qemu_io);
    qemu_io.args(["-f", volume.format.as_str()]);
    for chunk in 0..WRITTEN_CHUNKS {
        qemu_io.arg("-c").arg(format!("write -P {} {} {CHUNK}", chunk % 251 + 1, chunk * CHUNK));
    }
    let output = qemu_io.arg(&volume.path).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let written = (WRITTEN_CHUNKS * CHUNK) as i64;

    let api: Api<VirtualMachineRepositoryBackup> = env.api();
    let config = watcher::Config::default().fields("metadata.name=b1");
    let mut events = watcher(api.clone(), config).applied_objects().boxed();
    let chunks_before = seaweed.keys("vms", "team-a/chunks/").len();
    env.backup("b1", "main", "VirtualMachine/vm").await;
    // Held: the S3 server suspended as soon as the backup stored a chunk.
    let deadline = Instant::now() + Duration::from_secs(120);
    while seaweed.keys("vms", "team-a/chunks/").len() == chunks_before {
        assert!(Instant::now() < deadline, "the backup stored no chunk");
        std::thread::sleep(Duration::from_millis(20));
    }
    seaweed.pause();
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
