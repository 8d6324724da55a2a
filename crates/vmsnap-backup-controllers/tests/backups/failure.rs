//! A backup whose upload fails: Failed with the cause, nothing committed, its lease released,
//! the snapshot it took deleted, and the next backup is unaffected.

use kube::api::Api;
use vmsnap_api::backup::VirtualMachineRepositoryBackup;
use vmsnap_api::snapshot::{VirtualMachineSnapshot, find_condition};
use vmsnap_testing::images::DiskModel;

use crate::support::{Env, MIB, await_gone, await_some};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_that_cannot_upload_fails_leaving_nothing_in_the_repository() {
    let Some((env, path)) = Env::with_vm_and_local_repository().await else { return };
    let mut model = DiskModel::blank(16 * MIB);
    env.write("disk", &mut model, 0, 6 * MIB, 0x77).await;

    // A file where the chunk directory goes: every chunk upload fails (root or not).
    let chunks = path.join("chunks");
    let _ = std::fs::remove_dir_all(&chunks);
    std::fs::write(&chunks, b"in the way").unwrap();
    env.backup("b1", "main", "VirtualMachine/vm").await;
    let backups: Api<VirtualMachineRepositoryBackup> = env.api();
    let status = await_some(&backups, "b1", |b| {
        (b.status.as_ref()?.phase.as_deref() == Some("Failed")).then(|| b.status.clone().unwrap())
    })
    .await;
    let error = status.error.unwrap().message.unwrap();
    assert!(error.starts_with("backing up disk rootdisk:"), "{error}");
    let failure = find_condition(&status.conditions, "Failure").unwrap();
    assert!(failure.is_true() && failure.message.as_deref() == Some(error.as_str()));
    assert!(!find_condition(&status.conditions, "Ready").unwrap().is_true());
    env.await_event("b1", "Failed: backing up disk rootdisk").await;
    let snapshots: Api<VirtualMachineSnapshot> = env.api();
    await_gone(&snapshots, "b1-snapshot").await;
    let repository = env.open_local(&path).await;
    assert!(repository.list_backups().await.unwrap().is_empty(), "nothing committed");
    let leases: Vec<_> =
        std::fs::read_dir(path.join("leases")).map(|d| d.flatten().collect()).unwrap_or_default();
    assert!(leases.is_empty(), "the session's lease is released: {leases:?}");
    let metrics = env.backups.as_ref().unwrap().metrics.render();
    assert!(
        metrics.contains(
            "vmsnap_backup_duration_seconds_count{repository=\"default/main\",outcome=\"failed\"} 1"
        ),
        "{metrics}"
    );

    // The failed one is no base: the next backup, once the store works, is full and restores.
    std::fs::remove_file(&chunks).unwrap();
    env.backup("b2", "main", "VirtualMachine/vm").await;
    let b2 = env.await_succeeded("b2").await.status.unwrap();
    assert_eq!(b2.type_.as_deref(), Some("Full"));
    let manifest = repository.backup(&b2.backup_id.unwrap().parse().unwrap()).await.unwrap();
    let restored = env.restore(&repository, &manifest, "rootdisk").await;
    env.assert_same_as_model(&restored, &model);
}
