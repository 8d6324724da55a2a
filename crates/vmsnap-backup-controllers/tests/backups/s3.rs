//! A repository in a SeaweedFS bucket: opened with the credentials Secret (refused with wrong
//! ones), backups of VirtualMachineSnapshots into it (full, then incremental), restored
//! bit-exact, verified and pruned on request.

use kube::api::Api;
use vmsnap_api::backup::VirtualMachineBackupRepository;
use vmsnap_api::snapshot::{VirtualMachineSnapshot, find_condition};
use vmsnap_backup::Repository;
use vmsnap_testing::images::DiskModel;

use crate::seaweed::{ACCESS_KEY, SECRET_KEY, Seaweed, SeaweedRepository};
use crate::support::{CHUNK, Env, MIB, PASSPHRASE, await_some, chunks_touched};

pub(crate) fn s3_repository(name: &str, endpoint: &str, credentials: &str) -> String {
    format!(
        "apiVersion: backup.vmsnap.io/v1alpha1\nkind: VirtualMachineBackupRepository\nmetadata: {{name: {name}}}\nspec:\n  s3: {{endpoint: {endpoint:?}, bucket: vms, prefix: team-a, credentialsSecretRef: {{name: {credentials}}}}}\n  passphraseSecretRef: {{name: pass}}\n"
    )
}

pub(crate) fn credentials(name: &str, secret_key: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}}}\nstringData: {{accessKeyId: {ACCESS_KEY:?}, secretAccessKey: {secret_key:?}}}\n"
    )
}

/// A fresh SeaweedFS with the bucket `vms`, a Ready repository `main` in it, and a VM `vm` whose
/// 1 GiB disk holds `chunks` written chunks, each of its own byte pattern (nothing deduplicates).
pub(crate) async fn s3_repository_and_vm_with_distinct_chunks(chunks: u64) -> Option<(Seaweed, Env)> {
    let seaweed = Seaweed::start()?;
    seaweed.create_bucket("vms");
    let env = Env::start().await?;
    env.passphrase_secret("pass", PASSPHRASE).await;
    env.apply(&credentials("s3", SECRET_KEY)).await;
    env.apply(&s3_repository("main", &seaweed.endpoint, "s3")).await;
    env.await_repository_ready("main").await;
    env.bound_pvc("disk", "1Gi").await;
    env.vm_with_disk("vm", "disk").await;
    let volume = env.volume_of("disk").await;
    let mut qemu_io = std::process::Command::new(&env.qemu_io);
    qemu_io.args(["-f", volume.format.as_str()]);
    for chunk in 0..chunks {
        qemu_io.arg("-c").arg(format!("write -P {} {} {CHUNK}", chunk % 251 + 1, chunk * CHUNK));
    }
    let output = qemu_io.arg(&volume.path).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    Some((seaweed, env))
}

/// Starts backup `name` of `vm` into `main` and suspends SeaweedFS as soon as the backup has
/// stored a chunk: the backup is held mid-upload however fast the machine reads and seals.
pub(crate) async fn backup_held_mid_upload(env: &Env, seaweed: &Seaweed, name: &str) {
    let chunks_before = seaweed.keys("vms", "team-a/chunks/").len();
    env.backup(name, "main", "VirtualMachine/vm").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while seaweed.keys("vms", "team-a/chunks/").len() == chunks_before {
        assert!(std::time::Instant::now() < deadline, "the backup stored no chunk");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    seaweed.pause();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_of_snapshots_to_an_s3_bucket_restore_bit_exact_and_verify() {
    let Some(seaweed) = Seaweed::start() else { return };
    seaweed.create_bucket("vms");
    let Some(env) = Env::start().await else { return };
    env.passphrase_secret("pass", PASSPHRASE).await;
    env.apply(&credentials("s3", SECRET_KEY)).await;
    env.apply(&s3_repository("remote", &seaweed.endpoint, "s3")).await;
    let repos: Api<VirtualMachineBackupRepository> = env.api();
    let status = await_some(&repos, "remote", |r| {
        let status = r.status.clone()?;
        find_condition(&status.conditions, "Ready")?.is_true().then_some(status)
    })
    .await;
    assert_eq!(status.location, Some(format!("s3://vms/team-a at {}", seaweed.endpoint)));

    // Wrong credentials: the condition says the store refused, and what to check.
    env.apply(&credentials("bad", "not-the-secret-key")).await;
    env.apply(&s3_repository("refused", &seaweed.endpoint, "bad")).await;
    let ready = await_some(&repos, "refused", |r| {
        let ready = find_condition(&r.status.as_ref()?.conditions, "Ready")?.clone();
        (ready.status == "False").then_some(ready)
    })
    .await;
    assert_eq!(ready.reason.as_deref(), Some("RepositoryUnreachable"));
    assert!(ready.message.as_deref().unwrap().contains("credentials"), "{ready:?}");
    assert!(!ready.message.as_deref().unwrap().contains("not-the-secret-key"), "{ready:?}");

    env.bound_pvc("disk", "32Mi").await;
    env.vm_with_disk("vm", "disk").await;
    let mut model = DiskModel::blank(32 * MIB);
    env.write("disk", &mut model, 2 * MIB, 6 * MIB, 0x5a).await;
    let snap1 = env.ready_vm_snapshot("snap1", "vm").await;
    let at_snap1 = model.clone();
    env.write("disk", &mut model, 24 * MIB, MIB, 0xa5).await;
    let snap2 = env.ready_vm_snapshot("snap2", "vm").await;

    env.backup("b1", "remote", "VirtualMachineSnapshot/snap1").await;
    let b1 = env.await_succeeded("b1").await.status.unwrap();
    assert_eq!((b1.type_.as_deref(), b1.snapshot_name.as_deref()), (Some("Full"), Some("snap1")));
    assert_eq!(b1.point_in_time, snap1.status.clone().unwrap().creation_time);
    assert_eq!(b1.progress.unwrap().bytes_read, Some((6 * MIB) as i64));
    env.backup("b2", "remote", "VirtualMachineSnapshot/snap2").await;
    let b2 = env.await_succeeded("b2").await.status.unwrap();
    assert_eq!((b2.type_.as_deref(), b2.base_backup.as_deref()), (Some("Incremental"), Some("b1")));
    // Only the chunks 24 MiB..25 MiB touch are read.
    assert_eq!(b2.progress.unwrap().bytes_read, Some((chunks_touched(24 * MIB, MIB) * CHUNK) as i64));
    // Snapshots the backups did not take are the user's: both are still there.
    let snapshots: Api<VirtualMachineSnapshot> = env.api();
    assert!(
        snapshots.get_opt("snap1").await.unwrap().is_some()
            && snapshots.get_opt("snap2").await.unwrap().is_some()
    );
    let _ = snap2;

    let repository = Repository::open(seaweed.backend("vms", "team-a"), PASSPHRASE).await.unwrap();
    let engine = env.engine_snapshots_of("disk").await;
    assert_eq!(engine.len(), 2);
    for (status, snapshot, expected) in
        [(&b1.backup_id, &engine[0], &at_snap1), (&b2.backup_id, &engine[1], &model)]
    {
        let manifest = repository.backup(&status.as_deref().unwrap().parse().unwrap()).await.unwrap();
        let restored = env.restore(&repository, &manifest, "rootdisk").await;
        env.assert_same_as_snapshot(&restored, snapshot).await;
        env.assert_same_as_model(&restored, expected);
    }

    env.kubectl()
        .run_async(&[
            "annotate",
            "vmrepo",
            "remote",
            "backup.vmsnap.io/verify-request=v1",
            "backup.vmsnap.io/prune-request=p1",
        ])
        .await
        .ok();
    let status = await_some(&repos, "remote", |r| {
        let status = r.status.clone()?;
        let verified = status.last_verify.as_ref()?.request.as_deref() == Some("v1");
        let pruned = status.last_prune.as_ref()?.request.as_deref() == Some("p1");
        (verified && pruned).then_some(status)
    })
    .await;
    let verify = status.last_verify.unwrap();
    assert!(verify.ok && verify.error.is_none(), "{verify:?}");
    assert_eq!(verify.backups_checked, 2);
    // At least a chunk of 0x5a and one of 0xa5 (identical chunks are stored, and checked, once).
    assert!(verify.chunks_checked >= 2, "{verify:?}");
    let prune = status.last_prune.unwrap();
    assert_eq!((prune.error, prune.chunks_deleted), (None, 0), "every chunk is referenced");
    let progressing = find_condition(&status.conditions, "Progressing").unwrap();
    assert!(!progressing.is_true(), "{progressing:?}");
}
