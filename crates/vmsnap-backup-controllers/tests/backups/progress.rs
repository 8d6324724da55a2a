//! A backup long enough to watch: `status.progress` moves while it runs (about once a second),
//! then holds the totals.

use std::process::Command;

use futures::StreamExt as _;
use kube::api::Api;
use kube::runtime::{WatchStreamExt as _, watcher};
use vmsnap_api::backup::{TransferCounters, VirtualMachineRepositoryBackup};

use crate::support::{Env, MIB, PASSPHRASE};

/// MiBs of distinct data written (each 4 MiB chunk differs, so nothing deduplicates).
const WRITTEN_MIB: u64 = 512;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_is_written_while_a_backup_runs() {
    let Some(env) = Env::start().await else { return };
    env.passphrase_secret("pass", PASSPHRASE).await;
    env.local_repository("main", &env.dir.path().join("repo"), "pass").await;
    env.await_repository_ready("main").await;
    env.bound_pvc("disk", "1Gi").await;
    env.vm_with_disk("vm", "disk").await;
    let volume = env.volume_of("disk").await;
    let mut qemu_io = Command::new(&env.qemu_io);
    qemu_io.args(["-f", volume.format.as_str()]);
    for mib in 0..WRITTEN_MIB {
        qemu_io.arg("-c").arg(format!("write -P {} {} 1M", mib % 251, mib * MIB));
    }
    let output = qemu_io.arg(&volume.path).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let api: Api<VirtualMachineRepositoryBackup> = env.api();
    let config = watcher::Config::default().fields("metadata.name=b1");
    let mut events = watcher(api.clone(), config).applied_objects().boxed();
    env.backup("b1", "main", "VirtualMachine/vm").await;
    let mut seen: Vec<TransferCounters> = Vec::new();
    let done = tokio::time::timeout(std::time::Duration::from_secs(300), async {
        while let Some(backup) = events.next().await {
            let status = backup.unwrap().status.unwrap_or_default();
            match status.phase.as_deref() {
                Some("InProgress") => seen.extend(status.progress),
                Some("Succeeded") => return status,
                Some("Failed") => panic!("the backup failed: {status:?}"),
                _ => {}
            }
        }
        panic!("the watch ended");
    })
    .await
    .expect("the backup finished");
    let total = done.progress.unwrap();
    assert_eq!(total.bytes_read, Some((WRITTEN_MIB * MIB) as i64));
    assert_eq!(total.percent, Some(100));
    let moving: Vec<&TransferCounters> =
        seen.iter().filter(|p| p.bytes_read.unwrap_or(0) > 0 && p.percent.unwrap_or(100) < 100).collect();
    assert!(!moving.is_empty(), "no progress seen between start and end: {seen:?}");
    for pair in seen.windows(2) {
        assert!(pair[0].bytes_read <= pair[1].bytes_read, "progress went back: {seen:?}");
    }
    assert!(moving.iter().all(|p| p.bytes_to_read == Some((WRITTEN_MIB * MIB) as i64)), "{seen:?}");
    eprintln!("progress seen: {:?}", seen.iter().map(|p| (p.percent, p.elapsed_seconds)).collect::<Vec<_>>());
}
