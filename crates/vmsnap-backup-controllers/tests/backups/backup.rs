//! Backups of a VM to a local repository: a full one, then an incremental one reading only the
//! chunks written since, both restoring bit-exact; a second repository object over the same
//! location imports both; deleting removes a backup from the repository (or keeps it, Retain);
//! a verify names the backup a corrupt chunk breaks.

use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::json;
use vmsnap_api::backup::{VirtualMachineBackupRepository, VirtualMachineRepositoryBackup};
use vmsnap_api::snapshot::{VirtualMachineSnapshot, find_condition};
use vmsnap_testing::images::DiskModel;

use crate::support::{CHUNK, Env, MIB, PASSPHRASE, WAIT, await_gone, await_some, chunks_touched};

fn backups_api(env: &Env) -> Api<VirtualMachineRepositoryBackup> {
    env.api()
}

/// The tree digest of the disk `model` holds, by coreutils rather than by the engine.
fn tree_digest_of(env: &Env, model: &DiskModel) -> String {
    let path = env.dir.path().join("model.raw");
    std::fs::write(&path, model.bytes()).unwrap();
    vmsnap_testing::images::tree_digest_with_coreutils(&path, CHUNK)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_then_an_incremental_backup_restore_bit_exact_import_elsewhere_and_delete() {
    let Some(env) = Env::start().await else { return };
    env.passphrase_secret("pass", PASSPHRASE).await;
    let path = env.dir.path().join("repo");
    env.local_repository("main", &path, "pass").await;
    env.bound_pvc("disk", "64Mi").await;
    env.vm_with_disk("vm", "disk").await;
    let mut model = DiskModel::blank(64 * MIB);
    env.write("disk", &mut model, 0, 8 * MIB, 0x11).await;
    env.write("disk", &mut model, 20 * MIB, 3 * MIB, 0x22).await;

    // The first backup takes a snapshot and reads every allocated byte.
    env.backup("b1", "main", "VirtualMachine/vm").await;
    let b1 = env.await_succeeded("b1").await;
    let status = b1.status.clone().unwrap();
    assert_eq!(status.type_.as_deref(), Some("Full"));
    let full_reason = status.full_reason.clone().unwrap();
    assert!(full_reason.contains("no earlier backup of VM vm in repository main"), "{full_reason}");
    assert_eq!(
        (status.vm_name.as_deref(), status.snapshot_name.as_deref()),
        (Some("vm"), Some("b1-snapshot"))
    );
    assert_eq!(status.disks.len(), 1);
    assert_eq!((status.disks[0].name.as_str(), status.disks[0].size_bytes), ("rootdisk", (64 * MIB) as i64));
    assert_eq!(status.disks[0].sha256_tree.as_deref(), Some(tree_digest_of(&env, &model).as_str()));
    assert_eq!(status.size.as_deref(), Some("64Mi"));
    let progress = status.progress.clone().unwrap();
    assert_eq!(
        progress.bytes_read,
        Some((11 * MIB) as i64),
        "only the allocated bytes are read: {progress:?}"
    );
    assert_eq!(progress.percent, Some(100));
    let ready = find_condition(&status.conditions, "Ready").unwrap();
    assert!(ready.is_true() && ready.message.as_deref().unwrap().contains("Full backup"), "{ready:?}");
    let b1_id = status.backup_id.clone().unwrap();
    assert_eq!(b1.labels().get("backup.vmsnap.io/backup-id"), Some(&b1_id));
    let snapshots: Api<VirtualMachineSnapshot> = env.api();
    let snapshot = snapshots.get("b1-snapshot").await.unwrap();
    assert_eq!(snapshot.labels().get("backup.vmsnap.io/backup").map(String::as_str), Some("b1"));
    assert_eq!(snapshot.labels().get("backup.vmsnap.io/vm").map(String::as_str), Some("vm"));
    assert_eq!(status.point_in_time, snapshot.status.unwrap().creation_time);
    env.await_event("b1", "Succeeded: Full backup").await;

    let repository = env.open_local(&path).await;
    let manifest1 = repository.backup(&b1_id.parse().unwrap()).await.unwrap();
    assert_eq!(manifest1.labels.get("backup.vmsnap.io/name").map(String::as_str), Some("b1"));
    assert_eq!(manifest1.vm.name, "vm");
    assert_eq!(manifest1.vm_spec["spec"]["template"]["spec"]["volumes"][0]["name"], "rootdisk");
    let engine = env.engine_snapshots_of("disk").await;
    assert_eq!(engine.len(), 1);
    let restored = env.restore(&repository, &manifest1, "rootdisk").await;
    env.assert_same_as_snapshot(&restored, &engine[0]).await;
    env.assert_same_as_model(&restored, &model);
    let at_b1 = model.clone();

    // Changes in the first chunk and at 30 MiB (holes before): the incremental reads the chunks
    // they touch only, and takes the other chunks with data from the first backup unread.
    env.write("disk", &mut model, 0, 64 * 1024, 0x44).await;
    env.write("disk", &mut model, 30 * MIB, MIB, 0x33).await;
    env.backup("b2", "main", "VirtualMachine/vm").await;
    let b2 = env.await_succeeded("b2").await;
    let status = b2.status.clone().unwrap();
    assert_eq!(status.type_.as_deref(), Some("Incremental"), "{status:?}");
    assert_eq!(status.full_reason, None);
    assert_eq!(status.base_backup.as_deref(), Some("b1"));
    assert_eq!(status.base_backup_id.as_deref(), Some(b1_id.as_str()));
    let progress = status.progress.clone().unwrap();
    let read = chunks_touched(0, 64 * 1024) + chunks_touched(30 * MIB, MIB);
    assert_eq!(progress.bytes_read, Some((read * CHUNK) as i64), "{progress:?}");
    let reused = chunks_touched(0, 8 * MIB) - 1 + chunks_touched(20 * MIB, 3 * MIB);
    assert_eq!(progress.bytes_reused, Some((reused * CHUNK) as i64), "{progress:?}");
    assert_eq!(status.disks[0].sha256_tree.as_deref(), Some(tree_digest_of(&env, &model).as_str()));
    let b2_id = status.backup_id.clone().unwrap();
    // The repository's figures follow without waiting for its resync.
    let repos: Api<VirtualMachineBackupRepository> = env.api();
    await_some(&repos, "main", |r| (r.status.as_ref()?.backups == Some(2)).then_some(())).await;
    // A verify of one backup, asked for on its object.
    env.kubectl()
        .run_async(&["annotate", "vmrbackup", "b2", "backup.vmsnap.io/verify-request=bv1"])
        .await
        .ok();
    let verify = await_some(&backups_api(&env), "b2", |b| {
        let last = b.status.as_ref()?.last_verify.clone()?;
        (last.request.as_deref() == Some("bv1")).then_some(last)
    })
    .await;
    assert!(verify.ok && verify.backups_checked == 1 && verify.chunks_checked >= 3, "{verify:?}");
    // Only the newest backup's snapshot is kept, as the next base.
    await_gone(&snapshots, "b1-snapshot").await;
    assert!(snapshots.get_opt("b2-snapshot").await.unwrap().is_some());
    let engine = vmsnap_testing::eventually("one engine snapshot left", WAIT, || async {
        let engine = env.engine_snapshots_of("disk").await;
        (engine.len() == 1).then_some(engine)
    })
    .await
    .unwrap();
    let manifest2 = repository.backup(&b2_id.parse().unwrap()).await.unwrap();
    assert_eq!(manifest2.base.as_ref().map(|b| b.to_string()), Some(b1_id.clone()));
    let restored = env.restore(&repository, &manifest2, "rootdisk").await;
    env.assert_same_as_snapshot(&restored, &engine[0]).await;
    env.assert_same_as_model(&restored, &model);
    let restored = env.restore(&repository, &manifest1, "rootdisk").await;
    env.assert_same_as_model(&restored, &at_b1);

    // A second object over the same location imports both backups under names of its own.
    env.local_repository("mirror", &path, "pass").await;
    let backups: Api<VirtualMachineRepositoryBackup> = env.api();
    let selector =
        ListParams::default().labels("backup.vmsnap.io/imported=true,backup.vmsnap.io/repository=mirror");
    let imported = vmsnap_testing::eventually("two imported backups", WAIT, || async {
        let items = backups.list(&selector).await.unwrap().items;
        (items.len() == 2
            && items.iter().all(|b| b.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded")))
        .then_some(items)
    })
    .await
    .unwrap();
    for (original, id) in [(&b1, &b1_id), (&b2, &b2_id)] {
        let copy =
            imported.iter().find(|b| b.status.as_ref().unwrap().backup_id.as_ref() == Some(id)).unwrap();
        assert_eq!(copy.name_any(), format!("vm-{}", &id[..8]), "b1 and b2 are taken");
        assert_eq!(copy.labels().get("backup.vmsnap.io/vm").map(String::as_str), Some("vm"));
        let (theirs, ours) = (copy.status.clone().unwrap(), original.status.clone().unwrap());
        assert_eq!(
            (theirs.type_, theirs.point_in_time, theirs.disks),
            (ours.type_, ours.point_in_time, ours.disks)
        );
        assert_eq!(theirs.base_backup_id, ours.base_backup_id);
        assert!(copy.spec.source.is_none());
        assert_eq!(copy.spec.deletion_policy.as_deref(), Some("Retain"), "an imported view keeps the data");
    }
    let mirror =
        await_some(&repos, "mirror", |r| (r.status.as_ref()?.backups == Some(2)).then(|| r.clone())).await;
    let mirror_status = mirror.status.unwrap();
    assert!(
        mirror_status.chunks.unwrap() >= 4 && mirror_status.stored_bytes.unwrap() > 0,
        "{mirror_status:?}"
    );
    assert!(mirror_status.deduplication_ratio.is_some());

    // Retain keeps the backup in the repository; Delete (the default) removes it.
    backups
        .patch("b1", &PatchParams::default(), &Patch::Merge(json!({"spec": {"deletionPolicy": "Retain"}})))
        .await
        .unwrap();
    backups.delete("b1", &DeleteParams::default()).await.unwrap();
    await_gone(&backups, "b1").await;
    backups.delete("b2", &DeleteParams::default()).await.unwrap();
    await_gone(&backups, "b2").await;
    let left: Vec<String> =
        repository.list_backups().await.unwrap().into_iter().map(|m| m.id.to_string()).collect();
    assert_eq!(left, vec![b1_id.clone()]);
    await_gone(&snapshots, "b2-snapshot").await;
    await_some(&repos, "main", |r| (r.status.as_ref()?.backups == Some(1)).then_some(())).await;
    // The retained backup is not imported back into the object it was deleted from.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let of_main = ListParams::default().labels("backup.vmsnap.io/repository=main");
    let names: Vec<String> =
        backups.list(&of_main).await.unwrap().items.iter().map(|b| b.name_any()).collect();
    assert!(names.is_empty(), "{names:?}");

    // A corrupt chunk: the verify asked for on the mirror names the backup it breaks.
    let chunk = manifest1.disks[0].chunks[1].as_ref().unwrap();
    std::fs::write(path.join(chunk.id.object_path()), b"not a chunk").unwrap();
    let out = env
        .kubectl()
        .run_async(&["annotate", "vmrepo", "mirror", "backup.vmsnap.io/verify-request=v1"])
        .await;
    out.ok();
    let verify = await_some(&repos, "mirror", |r| {
        let last = r.status.as_ref()?.last_verify.clone()?;
        (last.request.as_deref() == Some("v1")).then_some(last)
    })
    .await;
    assert!(!verify.ok);
    assert_eq!(verify.backups_checked, 1);
    assert_eq!(verify.bad_chunks.len(), 1, "{verify:?}");
    assert_eq!(verify.bad_chunks[0].chunk, chunk.id.to_string());
    // Every chunk of b1's first 8 MiB held only 0x11: one stored chunk, so all of them break. The
    // backup is named as the mirror's object for it, the one made when the mirror found it.
    let b1_copy = format!("vm-{}", &b1_id[..8]);
    let breaks: Vec<String> =
        (0..8 * MIB / CHUNK).map(|i| format!("{b1_copy} ({b1_id}) rootdisk @ {}", i * CHUNK)).collect();
    assert_eq!(verify.bad_chunks[0].breaks, breaks);
    env.await_event("mirror", "VerifyFailed:").await;
    // The mirror's view of b2, deleted through main, says it is gone.
    let copy = format!("vm-{}", &b2_id[..8]);
    let ready = await_some(&backups, &copy, |b| {
        let ready = find_condition(&b.status.as_ref()?.conditions, "Ready")?.clone();
        (ready.reason.as_deref() == Some("BackupMissing")).then_some(ready)
    })
    .await;
    assert!(!ready.is_true() && ready.message.unwrap().contains("is no longer in repository mirror"));
}

/// A disk grown since the last backup, with nothing written since: an incremental with no
/// changes, which still reads the chunks past the old end (zeros: holes), and restores at the new
/// size. The storage engine maps the chain for those reads, although no change asked for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_grown_with_nothing_written_is_an_incremental_that_restores_at_its_new_size() {
    let Some((env, path)) = Env::with_vm_and_local_repository().await else { return };
    let mut model = DiskModel::blank(16 * MIB);
    env.write("disk", &mut model, 0, 4 * MIB, 0x11).await;
    env.backup("b1", "main", "VirtualMachine/vm").await;
    env.await_succeeded("b1").await;

    let volume = env.volume_of("disk").await.id;
    vmsnap_storage::VolumeDriver::resize_volume(env.driver.as_ref(), &volume, 24 * MIB).await.unwrap();
    let model = model.resized(24 * MIB);
    env.backup("b2", "main", "VirtualMachine/vm").await;
    let status = env.await_succeeded("b2").await.status.unwrap();
    assert_eq!(status.type_.as_deref(), Some("Incremental"), "{status:?}");
    assert_eq!(status.disks[0].size_bytes, (24 * MIB) as i64);
    let progress = status.progress.clone().unwrap();
    assert_eq!(progress.bytes_read, Some((8 * MIB) as i64), "the chunks past the old end: {progress:?}");
    assert_eq!(progress.bytes_reused, Some((4 * MIB) as i64), "{progress:?}");
    assert_eq!(status.disks[0].sha256_tree.as_deref(), Some(tree_digest_of(&env, &model).as_str()));

    let repository = env.open_local(&path).await;
    let manifest = repository.backup(&status.backup_id.unwrap().parse().unwrap()).await.unwrap();
    let restored = env.restore(&repository, &manifest, "rootdisk").await;
    env.assert_same_as_model(&restored, &model);
}

/// A repository's read limit paces a backup's reads past the first 64 MiB of each disk: 4 MiB
/// more at 1 MiB/s take at least 4 s, where the default limit (256 MiB/s) takes milliseconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repositorys_read_limit_paces_a_backup_past_the_first_64_mebibytes_of_a_disk() {
    let Some(env) = Env::start().await else { return };
    env.passphrase_secret("pass", PASSPHRASE).await;
    let path = env.dir.path().join("repo");
    env.apply(&format!(
        "apiVersion: backup.vmsnap.io/v1alpha1\nkind: VirtualMachineBackupRepository\nmetadata: {{name: slow}}\nspec:\n  local: {{path: {:?}}}\n  passphraseSecretRef: {{name: pass}}\n  readLimit: 1Mi\n",
        path.display().to_string()
    ))
    .await;
    env.bound_pvc("disk", "96Mi").await;
    env.vm_with_disk("vm", "disk").await;
    let mut model = DiskModel::blank(96 * MIB);
    env.write("disk", &mut model, 0, 68 * MIB, 0x11).await;

    env.backup("b1", "slow", "VirtualMachine/vm").await;
    let status = env.await_succeeded("b1").await.status.unwrap();
    let repository = env.open_local(&path).await;
    let manifest = repository.backup(&status.backup_id.unwrap().parse().unwrap()).await.unwrap();
    let took = manifest.disks[0].stats.duration_ms;
    assert!(took >= 3_900, "68 MiB read in {took} ms: the 4 MiB past the burst were not paced at 1 MiB/s");
    let restored = env.restore(&repository, &manifest, "rootdisk").await;
    env.assert_same_as_model(&restored, &model);
}
