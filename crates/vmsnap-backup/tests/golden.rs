//! Format v3 pinned by golden files: `tests/golden/repository-v3/` is a repository written once
//! by this build's format (regenerate only for a new format version, with
//! `VMSNAP_REGENERATE_GOLDEN=1 cargo test -p vmsnap-backup --test golden`, which rewrites it and
//! then checks it like every run). Every later build must open it with
//! its passphrase (Argon2id at the recommended costs), list its backup with exactly the manifest
//! in `tests/golden/manifest-v3.json`, restore the disk's known content, and re-encode the plain
//! documents (`config`, the key file) byte for byte. `tests/golden/repository-v1/` and
//! `repository-v2/`, written by formats 1 and 2, are what repositories of other versions look
//! like: refused, by name.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use vmsnap_backup::*;

const PASSPHRASE: &str = "golden passphrase v1";

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// The golden disk: 200 KiB in 64 KiB chunks: text, a hole, noise, then a short last chunk of text.
fn golden_disk() -> Vec<u8> {
    let chunk = 64 * 1024;
    let text: Vec<u8> =
        b"golden chunk: vmsnap backup format v1\n".iter().copied().cycle().take(chunk).collect();
    let mut noise = Vec::with_capacity(chunk);
    let mut x: u32 = 0x1234_5678;
    while noise.len() < chunk {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        noise.extend_from_slice(&x.to_le_bytes());
    }
    let mut disk = Vec::new();
    disk.extend_from_slice(&text);
    disk.extend_from_slice(&vec![0; chunk]);
    disk.extend_from_slice(&noise);
    disk.extend_from_slice(&text[..8 * 1024]);
    disk
}

/// Writes the golden repository (only for a new format version, see the module doc).
async fn regenerate_golden_repository() {
    let dir = golden_dir().join("repository-v3");
    let _ = std::fs::remove_dir_all(&dir);
    let options = InitOptions { chunk_size: 64 * 1024, kdf: KdfParams::recommended() };
    let repo = Repository::init_with(Backend::local(&dir).unwrap(), PASSPHRASE, options).await.unwrap();
    let disk = golden_disk();
    let image = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(image.path(), &disk).unwrap();
    let mut session = repo.begin_backup().await.unwrap();
    let manifest = session
        .backup_disk(
            DiskBackup {
                name: "rootdisk".to_string(),
                source: Arc::new(std::fs::File::open(image.path()).unwrap()),
                size: disk.len() as u64,
                extents: None,
                previous: None,
            },
            &mut |_| {},
        )
        .await
        .unwrap();
    let metadata = BackupMetadata {
        vm: VmRef { namespace: "golden".to_string(), name: "vm-golden".to_string() },
        vm_spec: serde_json::json!({"running": false, "template": {"spec": {"domain": {"devices": {}}}}}),
        base: None,
        labels: [("snapshot".to_string(), "golden-snap".to_string())].into(),
    };
    let backup = session.commit_backup(metadata, vec![manifest]).await.unwrap();
    std::fs::write(golden_dir().join("manifest-v3.json"), manifest_json(&backup)).unwrap();
}

#[tokio::test]
async fn the_golden_repository_opens_lists_and_restores() {
    if std::env::var("VMSNAP_REGENERATE_GOLDEN").is_ok_and(|v| v == "1") {
        regenerate_golden_repository().await;
    }
    // A copy: opening never writes, but a restore test must not risk the golden files.
    let work = tempfile::tempdir().unwrap();
    vmsnap_testing::copy_dir(&golden_dir().join("repository-v3"), &work.path().join("repo"));
    let backend = Backend::local(work.path().join("repo")).unwrap();
    let repo = Repository::open(backend.clone(), PASSPHRASE).await.unwrap();
    assert_eq!(repo.config().format, "vmsnap-backup");
    assert_eq!(repo.config().version, 3);
    assert_eq!(repo.config().chunk_size, 64 * 1024);

    let backups = repo.list_backups().await.unwrap();
    assert_eq!(backups.len(), 1);
    let golden_manifest = std::fs::read(golden_dir().join("manifest-v3.json")).unwrap();
    assert_eq!(
        String::from_utf8(manifest_json(&backups[0])).unwrap(),
        String::from_utf8(golden_manifest).unwrap()
    );
    let disk = &backups[0].disks[0];
    assert_eq!(disk.chunks.iter().map(Option::is_some).collect::<Vec<_>>(), [true, false, true, true]);
    assert_eq!(disk.chunk_lists.len(), 1, "four entries fit one list");
    let list = work.path().join("repo").join(disk.chunk_lists[0].object_path());
    assert!(list.is_file(), "{} is stored", list.display());
    assert_eq!(disk.stats.chunks_uploaded, 3);

    let target = tempfile::NamedTempFile::new().unwrap();
    let report =
        repo.restore_disk(&backups[0], "rootdisk", target.as_file().try_clone().unwrap()).await.unwrap();
    assert_eq!(std::fs::read(target.path()).unwrap(), golden_disk());
    // The list's entries are the chunks' plain SHA-256s: coreutils gets the same tree digest.
    assert_eq!(
        disk.sha256_tree,
        vmsnap_testing::images::tree_digest_with_coreutils(target.path(), 64 * 1024)
    );
    assert_eq!(report.sha256_tree, disk.sha256_tree);
    assert!(repo.verify(VerifyScope::All).await.unwrap().is_ok());

    assert!(matches!(
        Repository::open(backend, "not the passphrase").await,
        Err(Error::WrongPassphrase { keys: 1, .. })
    ));
}

#[test]
fn the_plain_documents_re_encode_byte_for_byte() {
    let dir = golden_dir().join("repository-v3");
    let config_bytes = std::fs::read(dir.join("config")).unwrap();
    let config: RepositoryConfig = serde_json::from_slice(&config_bytes).unwrap();
    assert_eq!(
        serde_json::to_string_pretty(&config).unwrap() + "\n",
        String::from_utf8(config_bytes).unwrap()
    );
    let key_path = std::fs::read_dir(dir.join("keys")).unwrap().next().unwrap().unwrap().path();
    let key_bytes = std::fs::read(key_path).unwrap();
    let key: KeyFile = serde_json::from_slice(&key_bytes).unwrap();
    assert_eq!(key.kdf.algorithm, "argon2id");
    assert_eq!((key.kdf.memory_kib, key.kdf.iterations, key.kdf.parallelism), (65536, 3, 4));
    assert_eq!(serde_json::to_string_pretty(&key).unwrap() + "\n", String::from_utf8(key_bytes).unwrap());
}

#[tokio::test]
async fn a_repository_of_another_format_version_is_refused_by_name() {
    for version in [1, 2] {
        let work = tempfile::tempdir().unwrap();
        vmsnap_testing::copy_dir(&golden_dir().join(format!("repository-v{version}")), work.path());
        let err = Repository::open(Backend::local(work.path()).unwrap(), PASSPHRASE).await.unwrap_err();
        assert!(
            matches!(err, Error::UnsupportedFormat { version: v, supported: 3, .. } if v == version),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(message.contains(&format!("version {version}")) && message.contains('3'), "{message}");
    }
    let empty = tempfile::tempdir().unwrap();
    let err = Repository::open(Backend::local(empty.path()).unwrap(), PASSPHRASE).await.unwrap_err();
    assert!(matches!(err, Error::NotARepository { .. }), "{err:?}");
}
