//! `spec.chunkSize`: a repository made for an object with one is cut in that size (the engine's
//! `config` says so, and the backups' chunks are that long); the status shows the repository's own
//! chunk size, and an object whose spec names another over an existing repository is Ready, with
//! the difference said.

use std::process::Command;

use kube::api::Api;
use vmsnap_api::backup::VirtualMachineBackupRepository;
use vmsnap_api::snapshot::find_condition;
use vmsnap_testing::images::DiskModel;

use crate::support::{Env, MIB, PASSPHRASE, await_some};

const FOUR_MIB: u64 = 4 * MIB;

/// A repository object in directory `path` with `spec.chunkSize: chunk_size`.
async fn sized_repository(env: &Env, name: &str, path: &std::path::Path, chunk_size: &str) {
    env.apply(&format!(
        "apiVersion: backup.vmsnap.io/v1alpha1\nkind: VirtualMachineBackupRepository\nmetadata: {{name: {name}}}\nspec:\n  local: {{path: {path:?}}}\n  passphraseSecretRef: {{name: pass}}\n  chunkSize: {chunk_size}\n",
        path = path.display().to_string()
    ))
    .await;
}

/// The object once Ready is True: its status's chunk size and the Ready message.
async fn await_ready(env: &Env, name: &str) -> (Option<String>, String) {
    let api: Api<VirtualMachineBackupRepository> = env.api();
    await_some(&api, name, |r| {
        let status = r.status.as_ref()?;
        let ready = find_condition(&status.conditions, "Ready")?;
        ready.is_true().then(|| (status.chunk_size.clone(), ready.message.clone().unwrap_or_default()))
    })
    .await
}

/// The SHA-256 of `bytes` in hex, by `sha256sum` (a reference the engine did not write).
fn sha256_of(env: &Env, bytes: &[u8]) -> String {
    let path = env.dir.path().join("piece.raw");
    std::fs::write(&path, bytes).unwrap();
    let out = Command::new("sha256sum").arg(&path).output().unwrap();
    String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_made_with_a_chunk_size_cuts_its_backups_in_it() {
    let Some(env) = Env::start().await else { return };
    env.passphrase_secret("pass", PASSPHRASE).await;
    let path = env.dir.path().join("repo");
    sized_repository(&env, "big", &path, "4Mi").await;
    let (chunk_size, message) = await_ready(&env, "big").await;
    assert_eq!(chunk_size.as_deref(), Some("4Mi"));
    assert!(!message.contains("chunk size"), "the spec's size is the repository's: {message}");
    assert_eq!(env.open_local(&path).await.config().chunk_size as u64, FOUR_MIB);

    // 1 MiB at 1 MiB and 1 MiB at 9 MiB: two 4 MiB chunks with data, two holes.
    env.bound_pvc("disk", "16Mi").await;
    env.vm_with_disk("vm", "disk").await;
    let mut model = DiskModel::blank(16 * MIB);
    env.write("disk", &mut model, MIB, MIB, 0x5a).await;
    env.write("disk", &mut model, 9 * MIB, MIB, 0xa5).await;
    env.backup("b1", "big", "VirtualMachine/vm").await;
    let b1 = env.await_succeeded("b1").await;
    let id = b1.status.unwrap().backup_id.unwrap();
    let repository = env.open_local(&path).await;
    let manifest = repository.backup(&id.parse().unwrap()).await.unwrap();
    let disk = manifest.disk("rootdisk").unwrap();
    assert_eq!(disk.chunk_size as u64, FOUR_MIB);
    let bytes = model.bytes();
    let plain_sha256 = |from: u64| sha256_of(&env, &bytes[from as usize..(from + FOUR_MIB) as usize]);
    let chunks: Vec<Option<String>> =
        disk.chunks.iter().map(|c| c.as_ref().map(|c| c.sha256.to_string())).collect();
    assert_eq!(chunks, vec![Some(plain_sha256(0)), None, Some(plain_sha256(2 * FOUR_MIB)), None]);
    let restored = env.restore(&repository, &manifest, "rootdisk").await;
    env.assert_same_as_model(&restored, &model);

    // Another object over the same location asking for 1Mi: the repository keeps its 4 MiB, the
    // object is Ready and says so.
    sized_repository(&env, "again", &path, "1Mi").await;
    let (chunk_size, message) = await_ready(&env, "again").await;
    assert_eq!(chunk_size.as_deref(), Some("4Mi"));
    assert!(
        message.ends_with(
            "; its chunk size is 4Mi (it was made so), not spec.chunkSize 1Mi: a chunk size is chosen only when a repository is created"
        ),
        "{message}"
    );
    assert_eq!(env.open_local(&path).await.config().chunk_size as u64, FOUR_MIB);
}
