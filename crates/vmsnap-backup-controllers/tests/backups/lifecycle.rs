//! What happens around a backup's run: a run cut short by a stop starts again, an incremental
//! after its base's snapshot is deleted, the reasons a backup is full, waits and failures named in conditions, and deleting a backup whose
//! repository object is gone.

use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use vmsnap_api::backup::{VirtualMachineBackupRepository, VirtualMachineRepositoryBackup};
use vmsnap_api::snapshot::{VirtualMachineSnapshot, find_condition};
use vmsnap_storage::VolumeDriver as _;
use vmsnap_testing::images::DiskModel;

use crate::support::{Env, MIB, await_gone, await_some};

/// The backup's Progressing condition once its reason is `reason`, as (phase, message).
async fn await_progressing(env: &Env, name: &str, reason: &str) -> (String, String) {
    let api: Api<VirtualMachineRepositoryBackup> = env.api();
    await_some(&api, name, |b| {
        let status = b.status.as_ref()?;
        let progressing = find_condition(&status.conditions, "Progressing")?;
        (progressing.reason.as_deref() == Some(reason)).then(|| {
            (
                status.phase.clone().map(String::from).unwrap_or_default(),
                progressing.message.clone().unwrap_or_default(),
            )
        })
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_short_run_starts_again_and_full_backups_say_why() {
    let Some((mut env, path)) = Env::with_vm_and_local_repository().await else { return };
    let mut model = DiskModel::blank(16 * MIB);
    env.write("disk", &mut model, 0, 3 * MIB, 0x61).await;

    // The server stopped while b1 ran: its status says InProgress, its session's lease is left.
    env.backups = None;
    let repository = env.open_local(&path).await;
    let old_session = repository.begin_backup().await.unwrap();
    drop(old_session);
    env.backup("b1", "main", "VirtualMachine/vm").await;
    let backups: Api<VirtualMachineRepositoryBackup> = env.api();
    backups
        .patch_status(
            "b1",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"phase": "InProgress", "progress": {"bytesRead": 1048576, "percent": 30}}}),
            ),
        )
        .await
        .unwrap();
    env.start_backup_controllers();
    let b1 = env.await_succeeded("b1").await.status.unwrap();
    assert_eq!(b1.type_.as_deref(), Some("Full"));
    assert_eq!(b1.progress.unwrap().bytes_read, Some((3 * MIB) as i64));
    assert_eq!(repository.list_backups().await.unwrap().len(), 1, "the run was made once");
    let metrics = env.backups.as_ref().unwrap().metrics.render();
    assert!(
        metrics.contains("vmsnap_backup_last_success_timestamp_seconds{namespace=\"default\",name=\"vm\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("vmsnap_backup_bytes_total{repository=\"default/main\",kind=\"read\"} 3145728"),
        "{metrics}"
    );

    // forceFull reads everything although b1's snapshot is there to be incremental to.
    env.apply(
        "apiVersion: backup.vmsnap.io/v1alpha1\nkind: VirtualMachineRepositoryBackup\nmetadata: {name: b2}\nspec:\n  repository: main\n  forceFull: true\n  source: {apiGroup: kubevirt.io, kind: VirtualMachine, name: vm}\n",
    )
    .await;
    let b2 = env.await_succeeded("b2").await.status.unwrap();
    assert_eq!(
        (b2.type_.as_deref(), b2.full_reason.as_deref()),
        (Some("Full"), Some("spec.forceFull is set"))
    );
    let ready = find_condition(&b2.conditions, "Ready").unwrap();
    assert!(ready.message.as_deref().unwrap().contains("(full: spec.forceFull is set)"), "{ready:?}");

    // The base's snapshot deleted: still incremental, from the change point b2 recorded (the
    // snapshot's layer lives on in the volume's chain), reading only what changed since.
    let snapshots: Api<VirtualMachineSnapshot> = env.api();
    await_gone(&snapshots, "b1-snapshot").await;
    snapshots.delete("b2-snapshot", &DeleteParams::default()).await.unwrap();
    await_gone(&snapshots, "b2-snapshot").await;
    env.write("disk", &mut model, 12 * MIB, MIB, 0x63).await;
    env.backup("b3", "main", "VirtualMachine/vm").await;
    let b3 = env.await_succeeded("b3").await.status.unwrap();
    assert_eq!(
        (b3.type_.as_deref(), b3.base_backup.as_deref(), b3.full_reason.as_deref()),
        (Some("Incremental"), Some("b2"), None)
    );
    let b3_progress = b3.progress.clone().unwrap();
    assert!(b3_progress.bytes_read.unwrap() <= (4 * MIB) as i64, "one 4 MiB chunk at most: {b3_progress:?}");
    let manifest = repository.backup(&b3.backup_id.clone().unwrap().parse().unwrap()).await.unwrap();
    env.assert_same_as_model(&env.restore(&repository, &manifest, "rootdisk").await, &model);

    // Compaction merged the base's layer away: full, with the storage engine's reason.
    env.write("disk", &mut model, 8 * MIB, MIB, 0x62).await;
    let report = env.driver.compact(None).await.unwrap();
    assert_eq!(report.compacted.len(), 1, "{report:?}");
    env.backup("b4", "main", "VirtualMachine/vm").await;
    let b4 = env.await_succeeded("b4").await.status.unwrap();
    assert_eq!((b4.type_.as_deref(), b4.base_backup.as_deref()), (Some("Full"), None));
    let reason = b4.full_reason.unwrap();
    assert!(
        reason.starts_with("disk rootdisk: change point ") && reason.contains("compacted since"),
        "{reason}"
    );
    let manifest = repository.backup(&b4.backup_id.clone().unwrap().parse().unwrap()).await.unwrap();
    let restored = env.restore(&repository, &manifest, "rootdisk").await;
    env.assert_same_as_model(&restored, &model);

    // Waits say what is awaited; a bad spec fails naming the field.
    env.backup("orphan", "nowhere", "VirtualMachine/vm").await;
    let (phase, message) = await_progressing(&env, "orphan", "Waiting").await;
    assert_eq!(
        (phase.as_str(), message.as_str()),
        ("Pending", "waiting for VirtualMachineBackupRepository nowhere to exist")
    );
    env.backup("early", "main", "VirtualMachineSnapshot/not-yet").await;
    let (phase, message) = await_progressing(&env, "early", "Waiting").await;
    assert_eq!(
        (phase.as_str(), message.as_str()),
        ("Pending", "waiting for VirtualMachineSnapshot not-yet to exist")
    );
    // A source of another kind is refused at admission, naming the field once (kubectl prints
    // the field before each cause).
    let refused = env
        .kubectl()
        .run_stdin_async(
            &["apply", "-f", "-"],
            "apiVersion: backup.vmsnap.io/v1alpha1\nkind: VirtualMachineRepositoryBackup\nmetadata: {name: pod}\nspec:\n  repository: main\n  source: {kind: Pod, name: vm}\n",
        )
        .await;
    let refusal = refused.err();
    assert!(refusal.contains("spec.source.kind: unsupported value \"Pod\""), "{refusal}");
    assert!(!refusal.contains("spec.source.kind: spec.source.kind"), "{refusal}");

    // A VM with no disk to back up (a container disk only): the run fails naming why, and the
    // snapshot it took goes. (A bad spec never gets here: admission refuses it.)
    let diskless = vmsnap_testing::fixtures::VmBuilder::new("diskless").with_container_disk("boot").build();
    let vms: Api<vmsnap_api::kubevirt::VirtualMachine> = env.api();
    vms.create(&Default::default(), &diskless).await.unwrap();
    env.backup("nodisk", "main", "VirtualMachine/diskless").await;
    let bad = await_some(&backups, "nodisk", |b| {
        (b.status.as_ref()?.phase.as_deref() == Some("Failed")).then(|| b.status.clone().unwrap())
    })
    .await;
    let error = bad.error.unwrap().message.unwrap();
    assert!(error.contains("no volume snapshots (no disk to back up)"), "{error}");
    assert!(find_condition(&bad.conditions, "Failure").unwrap().is_true());
    env.await_event("nodisk", "Failed: VirtualMachineSnapshot nodisk-snapshot").await;
    await_gone(&snapshots, "nodisk-snapshot").await;

    // The repository object gone: deleting a backup drops the finalizer and keeps the data.
    let repos: Api<VirtualMachineBackupRepository> = env.api();
    repos.delete("main", &DeleteParams::default()).await.unwrap();
    await_gone(&repos, "main").await;
    for name in ["b3", "b4", "orphan", "early", "nodisk"] {
        backups.delete(name, &DeleteParams::default()).await.unwrap();
        await_gone(&backups, name).await;
    }
    let ids: Vec<String> =
        repository.list_backups().await.unwrap().into_iter().map(|m| m.id.to_string()).collect();
    assert!(ids.contains(&b3.backup_id.unwrap()), "{ids:?}");
    assert_eq!(ids.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_committed_before_the_stop_is_adopted_not_repeated() {
    let Some((mut env, path)) = Env::with_vm_and_local_repository().await else { return };

    // The server stopped after b1's run committed and before its status said so.
    env.backups = None;
    env.backup("b1", "main", "VirtualMachine/vm").await;
    let backups: Api<VirtualMachineRepositoryBackup> = env.api();
    let uid = backups.get("b1").await.unwrap().metadata.uid.unwrap();
    let repository = env.open_local(&path).await;
    let image = env.dir.path().join("committed.raw");
    std::fs::write(&image, vec![0x5au8; MIB as usize]).unwrap();
    let mut session = repository.begin_backup().await.unwrap();
    let disk = session
        .backup_disk(
            vmsnap_backup::DiskBackup {
                name: "rootdisk".into(),
                source: std::sync::Arc::new(std::fs::File::open(&image).unwrap()),
                size: MIB,
                extents: None,
                previous: None,
            },
            &mut |_| {},
        )
        .await
        .unwrap();
    let labels =
        [("backup.vmsnap.io/uid".to_owned(), uid), ("backup.vmsnap.io/type".to_owned(), "Full".to_owned())];
    let metadata = vmsnap_backup::BackupMetadata {
        vm: vmsnap_backup::VmRef { namespace: "default".into(), name: "vm".into() },
        vm_spec: json!({}),
        base: None,
        labels: labels.into_iter().collect(),
    };
    let committed = session.commit_backup(metadata, vec![disk]).await.unwrap();
    backups
        .patch_status(
            "b1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "InProgress"}})),
        )
        .await
        .unwrap();

    env.start_backup_controllers();
    let b1 = env.await_succeeded("b1").await.status.unwrap();
    assert_eq!(b1.backup_id.as_deref(), Some(committed.id.as_str()), "the committed backup is adopted");
    assert_eq!(b1.type_.as_deref(), Some("Full"));
    assert_eq!(b1.disks[0].size_bytes, MIB as i64);
    assert_eq!(repository.list_backups().await.unwrap().len(), 1, "the run was not repeated");
}
