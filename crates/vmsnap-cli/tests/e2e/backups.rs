//! Backups to an S3 bucket and restores from it in another vmsnap (issue 15's "done when"): a guest
//! writes files on its 1 GiB disk; a full backup; ~10 MiB changed and a file added; an incremental
//! backup that reads far less than the disk; then a second `vmsnap serve` with a fresh data
//! directory and a repository object over the same bucket and passphrase lists both backups
//! (imported) and restores each to a new VM, whose disk is bit-identical to the snapshot backed up
//! (`qemu-img compare`) and whose guest sees exactly the files of that point in time (checksums).
//! Everything through kubectl, the S3 server a real SeaweedFS.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use vmsnap_testing::images::tree_digest_with_coreutils;
use vmsnap_testing::seaweedfs::{ACCESS_KEY, SECRET_KEY, Seaweed};

use crate::support::*;

pub(crate) const BUCKET: &str = "vmsnap-e2e";
pub(crate) const PASSPHRASE: &str = "correct horse battery staple, e2e";
pub(crate) const DISK_BYTES: u64 = 1 << 30;

/// A repository object `name` over the bucket, its passphrase in Secret `passphrase_secret`.
pub(crate) fn s3_repository(seaweed: &Seaweed, name: &str, passphrase_secret: &str) -> Value {
    serde_json::json!({
        "apiVersion": "backup.vmsnap.io/v1alpha1",
        "kind": "VirtualMachineBackupRepository",
        "metadata": {"name": name},
        "spec": {
            "s3": {"endpoint": seaweed.endpoint, "bucket": BUCKET, "credentialsSecretRef": {"name": "s3-credentials"}},
            "passphraseSecretRef": {"name": passphrase_secret},
        },
    })
}

/// The Secrets and the repository object `name` over the bucket, waited Ready.
pub(crate) async fn add_repository(vmsnap: &Vmsnap, seaweed: &Seaweed, name: &str) {
    kubectl(
        vmsnap,
        &[
            "create",
            "secret",
            "generic",
            "s3-credentials",
            &format!("--from-literal=accessKeyId={ACCESS_KEY}"),
            &format!("--from-literal=secretAccessKey={SECRET_KEY}"),
        ],
    )
    .await;
    kubectl(
        vmsnap,
        &[
            "create",
            "secret",
            "generic",
            "repository-passphrase",
            &format!("--from-literal=passphrase={PASSPHRASE}"),
        ],
    )
    .await;
    let repository = s3_repository(seaweed, name, "repository-passphrase");
    vmsnap.kubectl().run_stdin_async(&["create", "-f", "-"], &repository.to_string()).await.ok();
    let out = vmsnap.kubectl_run(&["wait", "vmrepo", name, "--for=condition=Ready", "--timeout=60s"]).await;
    let object = get_json(vmsnap, "vmrepo", name).await.unwrap_or_default();
    assert_eq!(out.code, 0, "repository {name} is not Ready: {}\n{object:#}", out.stderr);
}

/// `sha256sum` of every file under /mnt/data in the guest of `vm`, by path.
pub(crate) async fn checksums(vmsnap: &Vmsnap, vm: &str) -> BTreeMap<String, String> {
    let out = vmsnap
        .sh(vm, "cd /mnt/data && find . -type f | sort | xargs sha256sum")
        .await
        .unwrap_or_else(|e| panic!("checksums in {vm}: {e}"));
    out.lines()
        .map(|line| {
            let (sum, path) = line.split_once(char::is_whitespace).expect("sha256sum lines");
            (path.trim().to_owned(), sum.to_owned())
        })
        .collect()
}

/// Backs up VM `vm` as `name` through kubectl and waits until it succeeded.
pub(crate) async fn back_up(vmsnap: &Vmsnap, name: &str, vm: &str) -> Value {
    let backup = serde_json::json!({
        "apiVersion": "backup.vmsnap.io/v1alpha1",
        "kind": "VirtualMachineRepositoryBackup",
        "metadata": {"name": name},
        "spec": {"repository": "offsite", "source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": vm}},
    });
    vmsnap.kubectl().run_stdin_async(&["create", "-f", "-"], &backup.to_string()).await.ok();
    let mut object = Value::Null;
    until(&format!("backup {name} to end"), std::time::Duration::from_secs(120), async || {
        object = get_json(vmsnap, "vmrbackup", name).await.unwrap_or_default();
        matches!(object["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
    })
    .await;
    assert_eq!(object["status"]["phase"], "Succeeded", "backup {name}: {object:#}\n{}", tail(&vmsnap.log()));
    object
}

/// Restores backup `backup` to VM `target` as `name`; returns the restore's uid.
pub(crate) async fn create_restore(vmsnap: &Vmsnap, name: &str, backup: &str, target: &str) -> String {
    let restore = serde_json::json!({
        "apiVersion": "backup.vmsnap.io/v1alpha1",
        "kind": "VirtualMachineRepositoryRestore",
        "metadata": {"name": name},
        "spec": {"backupName": backup, "target": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": target}},
    });
    vmsnap.kubectl().run_stdin_async(&["create", "-f", "-"], &restore.to_string()).await.ok();
    let created = get_json(vmsnap, "vmrrestore", name).await.expect("the restore was created");
    created["metadata"]["uid"].as_str().expect("a uid").to_owned()
}

/// Sets VM `vm`'s `spec.runStrategy` (`Halted` stops it, `Always` starts it).
async fn set_run_strategy(vmsnap: &Vmsnap, vm: &str, strategy: &str) {
    let patch = serde_json::json!({"spec": {"runStrategy": strategy}}).to_string();
    kubectl(vmsnap, &["patch", "vm", vm, "--type=merge", "-p", &patch]).await;
}

/// Waits until restore `name` completed (`kubectl wait`) and succeeded, and returns it.
pub(crate) async fn await_repository_restore(vmsnap: &Vmsnap, name: &str) -> Value {
    let out = vmsnap
        .kubectl_run(&[
            "wait",
            "vmrrestore",
            name,
            "--for=jsonpath={.status.complete}=true",
            "--timeout=150s",
        ])
        .await;
    let restore = get_json(vmsnap, "vmrrestore", name).await.unwrap_or_default();
    assert_eq!(out.code, 0, "{name} did not complete: {}\n{restore:#}\n{}", out.stderr, tail(&vmsnap.log()));
    assert_eq!(restore["status"]["phase"], "Succeeded", "{restore:#}");
    restore
}

/// `<data dir>/volumes/manifest.json` of the storage engine (`docs/storage-layers.md`).
fn storage_manifest(vmsnap: &Vmsnap) -> Value {
    let text = std::fs::read_to_string(vmsnap.data_dir().join("volumes/manifest.json"))
        .expect("the storage manifest");
    serde_json::from_str(&text).unwrap()
}

fn layer_file(vmsnap: &Vmsnap, layer: &Value) -> PathBuf {
    let layer = layer.as_str().expect("a layer id");
    let manifest = storage_manifest(vmsnap);
    let file = manifest["layers"][layer]["file"].as_str().expect("the layer's file");
    vmsnap.data_dir().join("volumes/layers").join(file)
}

/// The engine's qcow2 layer (with its chain) of the snapshot a backup read.
pub(crate) async fn snapshot_layer(vmsnap: &Vmsnap, backup: &Value) -> PathBuf {
    let snapshot = backup["status"]["snapshotName"].as_str().expect("status.snapshotName");
    let snapshot = get_json(vmsnap, "vmsnapshot", snapshot).await.unwrap();
    let content = snapshot["status"]["virtualMachineSnapshotContentName"].as_str().unwrap();
    let content = get_json(vmsnap, "vmsnapshotcontent", content).await.unwrap();
    let backups = content["spec"]["volumeBackups"].as_array().unwrap();
    assert_eq!(backups.len(), 1, "one disk: {content:#}");
    let volume_snapshot = backups[0]["volumeSnapshotName"].as_str().unwrap();
    let volume_snapshot = get_json(vmsnap, "volumesnapshot", volume_snapshot).await.unwrap();
    let bound = volume_snapshot["status"]["boundVolumeSnapshotContentName"].as_str().unwrap();
    let bound = get_json(vmsnap, "volumesnapshotcontent", bound).await.unwrap();
    let handle = bound["status"]["snapshotHandle"].as_str().unwrap();
    layer_file(vmsnap, &storage_manifest(vmsnap)["snapshots"][handle]["layer"])
}

/// The engine's active qcow2 layer (with its chain) of DataVolume `dv`.
pub(crate) async fn data_volume_layer(vmsnap: &Vmsnap, dv: &str) -> PathBuf {
    let claim = get_json(vmsnap, "pvc", dv).await.unwrap();
    let pv = claim["spec"]["volumeName"].as_str().expect("a bound claim");
    let pv = get_json(vmsnap, "pv", pv).await.unwrap();
    let handle = pv["spec"]["csi"]["volumeHandle"].as_str().unwrap();
    layer_file(vmsnap, &storage_manifest(vmsnap)["volumes"][handle]["activeLayer"])
}

/// The files under the restore controller's staging directory (`<namespace>/<restore uid>/`);
/// none when it was never made.
pub(crate) fn staged_files(vmsnap: &Vmsnap) -> Vec<PathBuf> {
    fn walk(dir: &std::path::Path, files: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&entry.path(), files);
            } else {
                files.push(entry.path());
            }
        }
    }
    let mut files = Vec::new();
    walk(&vmsnap.data_dir().join("restore-staging"), &mut files);
    files
}

fn qemu_img(args: &[&str]) -> std::process::Output {
    Command::new("qemu-img").args(args).output().expect("qemu-img")
}

/// A raw copy of a qcow2 chain (read while QEMU may hold it: `-U`).
pub(crate) fn export_raw(qcow2: &Path, raw: &Path) {
    let out = qemu_img(&[
        "convert",
        "-U",
        "-f",
        "qcow2",
        "-O",
        "raw",
        &qcow2.to_string_lossy(),
        &raw.to_string_lossy(),
    ]);
    assert!(out.status.success(), "qemu-img convert: {}", String::from_utf8_lossy(&out.stderr));
}

/// `qemu-img compare` of a raw image and a qcow2 chain: `Ok` when their contents are identical.
pub(crate) fn compare(raw: &Path, qcow2: &Path) -> Result<(), String> {
    let out = qemu_img(&[
        "compare",
        "-U",
        "-f",
        "raw",
        "-F",
        "qcow2",
        &raw.to_string_lossy(),
        &qcow2.to_string_lossy(),
    ]);
    if out.status.success() {
        return Ok(());
    }
    Err(format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

pub(crate) fn int(value: &Value) -> u64 {
    value.as_u64().unwrap_or_else(|| panic!("{value} is not a count"))
}

#[tokio::test(flavor = "multi_thread")]
async fn backups_in_s3_restore_in_another_vmsnap_bit_identical_with_each_point_in_time() {
    let started = std::time::Instant::now();
    let Some(seaweed) = Seaweed::start() else { return };
    seaweed.create_bucket(BUCKET);
    let exports = tempfile::tempdir().unwrap();
    let mut points: Vec<(String, BTreeMap<String, String>, PathBuf)> = Vec::new();
    {
        let Some(vmsnap) = start("auto") else { return };
        add_repository(&vmsnap, &seaweed, "offsite").await;
        kubectl(&vmsnap, &["apply", "-f", &example("vm.yaml")]).await;
        await_running_with_agent(&vmsnap, "demo").await;

        // Point in time 1: 16 MiB of noise and a note.
        vmsnap
            .sh("demo", "dd if=/dev/urandom of=/mnt/data/big bs=1M count=16 2>/dev/null && echo first > /mnt/data/note && sync")
            .await
            .unwrap();
        let first = checksums(&vmsnap, "demo").await;
        assert_eq!(first.len(), 2, "{first:?}");
        let backup = back_up(&vmsnap, "demo-1", "demo").await;
        assert_eq!(backup["status"]["type"], "Full", "{backup:#}");
        let raw = exports.path().join("demo-1.raw");
        export_raw(&snapshot_layer(&vmsnap, &backup).await, &raw);
        points.push(("demo-1".into(), first.clone(), raw));

        // Point in time 2: 10 MiB of the file rewritten (1% of the disk), another file.
        vmsnap
            .sh(
                "demo",
                "dd if=/dev/urandom of=/mnt/data/big bs=1M count=10 conv=notrunc 2>/dev/null && echo second > /mnt/data/later && sync",
            )
            .await
            .unwrap();
        let second = checksums(&vmsnap, "demo").await;
        assert_eq!(second.len(), 3, "{second:?}");
        assert_ne!(first["./big"], second["./big"]);
        let backup = back_up(&vmsnap, "demo-2", "demo").await;
        let status = &backup["status"];
        assert_eq!(status["type"], "Incremental", "{backup:#}");
        assert_eq!(status["baseBackup"], "demo-1", "{backup:#}");
        let read = int(&status["progress"]["bytesRead"]);
        println!(
            "incremental backup read {read} bytes of a {DISK_BYTES}-byte disk: {:#}",
            status["progress"]
        );
        assert!(
            (10 << 20..=DISK_BYTES / 20).contains(&read),
            "the incremental reads the ~10 MiB changed (and the file system's metadata), not the disk: {read} bytes"
        );
        let raw = exports.path().join("demo-2.raw");
        export_raw(&snapshot_layer(&vmsnap, &backup).await, &raw);
        points.push(("demo-2".into(), second, raw));

        // In place: refused while the VM runs, done once it is stopped; its old disk goes.
        create_restore(&vmsnap, "demo-back-to-1", "demo-1", "demo").await;
        until(
            "the in-place restore to ask for a stopped VM",
            std::time::Duration::from_secs(30),
            async || {
                let restore = get_json(&vmsnap, "vmrrestore", "demo-back-to-1").await.unwrap_or_default();
                restore["status"]["conditions"].as_array().is_some_and(|c| {
                    c.iter().any(|c| {
                        c["type"] == "Progressing"
                            && c["message"].as_str().unwrap_or_default().starts_with("stop the VM first")
                    })
                })
            },
        )
        .await;
        set_run_strategy(&vmsnap, "demo", "Halted").await;
        await_stopped(&vmsnap, "demo").await;
        let restore = await_repository_restore(&vmsnap, "demo-back-to-1").await;
        let dv = restore["status"]["disks"][0]["dataVolumeName"].as_str().unwrap().to_owned();
        let uid = restore["metadata"]["uid"].as_str().unwrap();
        assert_eq!(dv, format!("restore-{}-data", &uid[..8]));
        let vm = get_json(&vmsnap, "vm", "demo").await.unwrap();
        assert_eq!(vm["spec"]["template"]["spec"]["volumes"][0]["dataVolume"]["name"], dv.as_str());
        assert_eq!(vm["spec"]["runStrategy"], "Halted", "the VM keeps its run strategy");
        until("the replaced DataVolume to go", std::time::Duration::from_secs(30), async || {
            !exists(&vmsnap, "dv", "demo-data").await
        })
        .await;
        set_run_strategy(&vmsnap, "demo", "Always").await;
        await_running_with_agent(&vmsnap, "demo").await;
        assert_eq!(
            checksums(&vmsnap, "demo").await,
            first,
            "demo restored in place to its first point in time"
        );
    }

    // Another vmsnap, nothing in common with the first but the bucket and the passphrase.
    let Some(other) = start("auto") else { return };
    add_repository(&other, &seaweed, "offsite").await;
    until("both backups to be imported", std::time::Duration::from_secs(60), async || {
        let listed =
            kubectl(&other, &["get", "vmrbackup", "-l", "backup.vmsnap.io/imported=true", "-o", "name"])
                .await;
        let mut names: Vec<&str> = listed.lines().collect();
        names.sort();
        names
            == [
                "virtualmachinerepositorybackup.backup.vmsnap.io/demo-1",
                "virtualmachinerepositorybackup.backup.vmsnap.io/demo-2",
            ]
    })
    .await;
    let repository = get_json(&other, "vmrepo", "offsite").await.unwrap();
    let chunk_size = repository["status"]["chunkSize"].as_str().expect("the repository shows its chunk size");
    let chunk_size = u64::from(vmsnap_api::backup::parse_chunk_size(chunk_size).unwrap());
    for (backup, _, raw) in &points {
        let imported = get_json(&other, "vmrbackup", backup).await.unwrap();
        assert_eq!(imported["status"]["phase"], "Succeeded", "{imported:#}");
        // Each backup, full or incremental, shows its disk's checksum, which anyone can check
        // against an image of the snapshot it was taken from.
        assert_eq!(
            imported["status"]["disks"][0]["sha256Tree"].as_str(),
            Some(tree_digest_with_coreutils(raw, chunk_size).as_str()),
            "{imported:#}"
        );
        create_restore(&other, &format!("restore-{backup}"), backup, &format!("at-{backup}")).await;
    }
    for (backup, _, raw) in &points {
        let (name, vm) = (format!("restore-{backup}"), format!("at-{backup}"));
        let restore = await_repository_restore(&other, &name).await;
        let status = &restore["status"];
        assert_eq!(status["phase"], "Succeeded", "{restore:#}");
        assert!(status["restoreTime"].is_string(), "{restore:#}");
        assert_eq!(conditions(&restore).iter().find(|c| c.0 == "Ready").map(|c| c.1.as_str()), Some("True"));
        assert_eq!(status["progress"]["percent"], 100, "{restore:#}");
        assert!(int(&status["progress"]["bytesWritten"]) >= 16 << 20, "{restore:#}");
        let dv = format!("{vm}-data");
        assert_eq!(status["disks"], serde_json::json!([{"name": "data", "dataVolumeName": dv}]));
        // Created stopped (as KubeVirt creates a restore's new VM): its disk is as restored.
        let restored = get_json(&other, "vm", &vm).await.unwrap();
        assert_eq!(restored["spec"]["runStrategy"], "Halted", "{restored:#}");
        compare(raw, &data_volume_layer(&other, &dv).await)
            .unwrap_or_else(|diff| panic!("{vm}'s disk differs from the snapshot of {backup}: {diff}"));
    }
    let staged = staged_files(&other);
    assert!(staged.is_empty(), "nothing stays staged after the restores: {staged:?}");

    // A restore onto a VM that exists and is not the backed-up one is refused.
    create_restore(&other, "onto-another", "demo-2", "at-demo-1").await;
    let mut refused = Value::Null;
    until("the restore onto another VM to fail", std::time::Duration::from_secs(30), async || {
        refused = get_json(&other, "vmrrestore", "onto-another").await.unwrap_or_default();
        refused["status"]["phase"] == "Failed"
    })
    .await;
    let message = refused["status"]["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("target VM at-demo-1 exists and is not the backed-up VM default/demo"),
        "{refused:#}"
    );

    // Both copies started: each guest sees exactly the files of its point in time.
    for (backup, _, _) in &points {
        set_run_strategy(&other, &format!("at-{backup}"), "Always").await;
    }
    for (backup, files, _) in &points {
        let vm = format!("at-{backup}");
        await_running_with_agent(&other, &vm).await;
        assert_eq!(&checksums(&other, &vm).await, files, "the files of {vm}, restored from {backup}");
    }
    println!("backups and restores with real guests took {:?}", started.elapsed());
}
