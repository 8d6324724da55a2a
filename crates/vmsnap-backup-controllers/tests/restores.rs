//! The restore controller against the real API server (in-process), the storage controllers and
//! KubeVirt's snapshot controllers over a layered engine, with a local repository: what a restore
//! awaits, and a bad chunk failing it with the disk and offset named and nothing left staged.
//! (Completing a restore needs the node agent, which creates a VM's DataVolumes: the end-to-end
//! test `crates/vmsnap-cli/tests/e2e/backups.rs` covers it with real guests.)

#![allow(missing_docs)] // Test helpers need no rustdoc.

#[path = "backups/support.rs"]
mod support;

use kube::api::{Api, DeleteParams};
use vmsnap_api::backup::VirtualMachineRepositoryRestore;
use vmsnap_api::kubevirt::VirtualMachine;
use vmsnap_api::snapshot::find_condition;
use vmsnap_backup::BackupId;
use vmsnap_testing::images::DiskModel;

use support::{CHUNK, Env, MIB, PASSPHRASE, await_gone, await_some};

async fn restore(env: &Env, name: &str, backup: &str, target: &str) {
    env.apply(&format!(
        "apiVersion: backup.vmsnap.io/v1alpha1\nkind: VirtualMachineRepositoryRestore\nmetadata: {{name: {name}}}\nspec:\n  backupName: {backup}\n  target: {{apiGroup: kubevirt.io, kind: VirtualMachine, name: {target}}}\n"
    ))
    .await;
}

/// The restore once its `Progressing` condition has a message starting with `prefix`: (phase,
/// message).
async fn await_progressing(env: &Env, name: &str, prefix: &str) -> (String, String) {
    let api: Api<VirtualMachineRepositoryRestore> = env.api();
    await_some(&api, name, |r| {
        let status = r.status.as_ref()?;
        let message = find_condition(&status.conditions, "Progressing")?.message.clone()?;
        message
            .starts_with(prefix)
            .then(|| (status.phase.clone().map(String::from).unwrap_or_default(), message))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_waits_for_its_backup_and_a_bad_chunk_fails_it_naming_disk_and_offset_leaving_nothing() {
    let Some(env) = Env::start().await else { return };
    env.passphrase_secret("pass", PASSPHRASE).await;
    let path = env.dir.path().join("repo");
    env.local_repository("main", &path, "pass").await;
    env.bound_pvc("disk", "64Mi").await;
    let mut model = DiskModel::blank(64 * MIB);
    env.write("disk", &mut model, 8 * MIB, MIB, 0xab).await;
    env.write("disk", &mut model, 40 * MIB, MIB, 0xcd).await;
    env.vm_with_disk("vm", "disk").await;

    // A backup that does not exist (yet): waiting, saying for what.
    restore(&env, "early", "b0", "early-copy").await;
    let (phase, message) =
        await_progressing(&env, "early", "waiting for VirtualMachineRepositoryBackup b0 to exist").await;
    assert_eq!(phase, "Pending", "{message}");
    env.backup("b1", "main", "VirtualMachine/vm").await;
    let backup = env.await_succeeded("b1").await;

    // A chunk of the disk goes missing from the repository.
    let id: BackupId = backup.status.unwrap().backup_id.unwrap().parse().unwrap();
    let manifest = env.open_local(&path).await.backup(&id).await.unwrap();
    let disk = &manifest.disks[0];
    // The first chunk of what was written at 40 MiB (its twins after it break later offsets).
    let index = (40 * MIB / CHUNK) as usize;
    let chunk = disk.chunks[index].clone().expect("a chunk with data at 40 MiB");
    let (offset, _) = disk.chunk_range(index);
    std::fs::remove_file(path.join(chunk.id.object_path())).unwrap();

    restore(&env, "broken", "b1", "copy").await;
    let api: Api<VirtualMachineRepositoryRestore> = env.api();
    let broken = await_some(&api, "broken", |r| {
        (r.status.as_ref()?.phase.as_deref() == Some("Failed")).then(|| r.clone())
    })
    .await;
    let status = broken.status.unwrap();
    let message = status.error.and_then(|e| e.message).unwrap_or_default();
    assert!(
        message.contains(&format!("disk {:?}, offset {offset}: chunk {}", disk.name, chunk.id)),
        "the error names the disk, the offset and the chunk: {message}"
    );
    let failure = find_condition(&status.conditions, "Failure").expect("a Failure condition");
    assert_eq!((failure.status.as_str(), failure.message.as_deref()), ("True", Some(message.as_str())));
    assert_eq!(status.complete, Some(false));
    let uid = broken.metadata.uid.unwrap();
    let namespace = broken.metadata.namespace.unwrap();
    assert!(
        !env.dir.path().join("staging").join(namespace).join(&uid).exists(),
        "the failed restore's staging files are gone"
    );
    let vms: Api<VirtualMachine> = env.api();
    assert!(
        vms.get_opt("copy").await.unwrap().is_none(),
        "no VM is made from a backup that does not restore"
    );

    // Deleting a restore goes through its finalizer.
    for name in ["broken", "early"] {
        api.delete(name, &DeleteParams::default()).await.unwrap();
        await_gone(&api, name).await;
    }
    let namespaces = std::fs::read_dir(env.dir.path().join("staging")).into_iter().flatten().flatten();
    let staged: Vec<_> =
        namespaces.flat_map(|ns| std::fs::read_dir(ns.path()).into_iter().flatten().flatten()).collect();
    assert!(staged.is_empty(), "nothing staged is left: {staged:?}");
}
