//! A repository handle reads each committed manifest once (they never change), while
//! verification still reads the stored objects: a manifest corrupted after it was read is listed
//! from memory by the handle that read it, refused by a fresh handle, and found by verify.

use std::sync::Arc;

use vmsnap_backup::*;

fn cheap_init() -> InitOptions {
    InitOptions { chunk_size: 64 << 10, kdf: KdfParams::with_cost(8 * 1024, 1, 1) }
}

async fn commit(repo: &Repository, disk: &std::path::Path, vm: &str) -> BackupManifest {
    let mut session = repo.begin_backup().await.unwrap();
    let source = Arc::new(std::fs::File::open(disk).unwrap());
    let size = std::fs::metadata(disk).unwrap().len();
    let backup = DiskBackup { name: "root".to_string(), source, size, extents: None, previous: None };
    let manifest = session.backup_disk(backup, &mut |_| {}).await.unwrap();
    let metadata = BackupMetadata {
        vm: VmRef { namespace: "default".to_string(), name: vm.to_string() },
        vm_spec: serde_json::json!({}),
        base: None,
        labels: Default::default(),
    };
    session.commit_backup(metadata, vec![manifest]).await.unwrap()
}

#[tokio::test]
async fn manifests_are_read_once_per_handle_and_verify_reads_the_stored_ones() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    std::fs::create_dir(&root).unwrap();
    let repo = Repository::init_with(Backend::local(&root).unwrap(), "pass", cheap_init()).await.unwrap();
    let disk = dir.path().join("disk.raw");
    std::fs::write(&disk, vec![0x5a; 256 << 10]).unwrap();
    let first = commit(&repo, &disk, "a").await;
    std::fs::write(&disk, vec![0xa5; 256 << 10]).unwrap();
    let second = commit(&repo, &disk, "b").await;
    let ids =
        |list: Vec<std::sync::Arc<BackupManifest>>| list.iter().map(|m| m.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(repo.list_backups().await.unwrap()), [first.id.clone(), second.id.clone()]);

    // One byte of the first manifest changes in the store.
    let stored = root.join("manifests").join(first.id.as_str());
    let mut bytes = std::fs::read(&stored).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&stored, bytes).unwrap();

    assert_eq!(ids(repo.list_backups().await.unwrap()).len(), 2, "from memory: not read again");
    let fresh = Repository::open(Backend::local(&root).unwrap(), "pass").await.unwrap();
    let error = fresh.list_backups().await.unwrap_err();
    assert!(error.to_string().contains(first.id.as_str()), "{error}");
    let error = repo.verify(VerifyScope::All).await.unwrap_err();
    assert!(error.to_string().contains(first.id.as_str()), "verify reads the stored manifest: {error}");

    // A deleted backup leaves the listing, cached or not.
    repo.delete_backup(&second.id).await.unwrap();
    std::fs::remove_file(&stored).unwrap();
    assert!(repo.list_backups().await.unwrap().is_empty());
}
