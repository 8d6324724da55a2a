//! The vmsnap side, through its real path: a `VirtualMachineBackupRepository` over an S3 bucket
//! (Secrets for the credentials and passphrase), `VirtualMachineRepositoryBackup` objects timed
//! from create to `Succeeded`, a `VirtualMachineRepositoryRestore` to a new VM timed to its guest
//! agent; and the raw image of the snapshot a backup read, exported with `qemu-img` for restic.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};
use vmsnap_api::backup::{
    VirtualMachineBackupRepository, VirtualMachineRepositoryBackup, VirtualMachineRepositoryRestore,
};
use vmsnap_testing::seaweedfs::{ACCESS_KEY, SECRET_KEY};

use crate::lab::Lab;
use crate::vms::{NS, as_json, condition, wait_object};

/// The repository object's name.
pub(crate) const REPOSITORY: &str = "bench";
/// How long one backup or restore may take (a debug build backs up slowly).
const TIMEOUT: Duration = Duration::from_secs(3 * 3600);

/// A finished backup.
pub(crate) struct Backup {
    /// Create -> `Succeeded`.
    pub took: Duration,
    /// `Full` or `Incremental`.
    pub kind: String,
    /// `status.progress.bytesUploaded`.
    pub bytes_uploaded: u64,
    /// The VirtualMachineSnapshot it read.
    pub snapshot: String,
}

/// Creates the Secrets and the repository over `bucket` at `endpoint`, and waits until it is Ready.
pub(crate) async fn add_repository(lab: &Lab, endpoint: &str, bucket: &str) -> anyhow::Result<()> {
    for (name, data) in [
        ("bench-s3", json!({"accessKeyId": ACCESS_KEY, "secretAccessKey": SECRET_KEY})),
        ("bench-passphrase", json!({"passphrase": "vmsnap bench repository"})),
    ] {
        let secret =
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data});
        let request = http::Request::post(format!("/api/v1/namespaces/{NS}/secrets"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(&secret)?)?;
        lab.client.request_text(request).await.with_context(|| format!("create Secret {name}"))?;
    }
    let repository: VirtualMachineBackupRepository = serde_json::from_value(json!({
        "apiVersion": "backup.vmsnap.io/v1alpha1", "kind": "VirtualMachineBackupRepository",
        "metadata": {"name": REPOSITORY, "namespace": NS},
        "spec": {"s3": {"endpoint": endpoint, "bucket": bucket, "credentialsSecretRef": {"name": "bench-s3"}},
                 "passphraseSecretRef": {"name": "bench-passphrase"}}
    }))?;
    let api: Api<VirtualMachineBackupRepository> = Api::namespaced(lab.client.clone(), NS);
    api.create(&PostParams::default(), &repository).await.context("create the repository")?;
    let ready =
        |r: Option<&VirtualMachineBackupRepository>| r.is_some_and(|r| condition(&as_json(r), "Ready"));
    wait_object(api, REPOSITORY, Duration::from_secs(120), ready)
        .await
        .context("the repository is not Ready")?;
    Ok(())
}

/// Creates backup `name` of VM `vm` (full when `force_full`).
pub(crate) async fn start_backup(
    lab: &Lab,
    name: &str,
    vm: &str,
    force_full: bool,
) -> anyhow::Result<Instant> {
    let backup: VirtualMachineRepositoryBackup = serde_json::from_value(json!({
        "apiVersion": "backup.vmsnap.io/v1alpha1", "kind": "VirtualMachineRepositoryBackup",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"repository": REPOSITORY, "forceFull": force_full,
                 "source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": vm}}
    }))?;
    super::settle().await?;
    let started = Instant::now();
    backups(lab)
        .create(&PostParams::default(), &backup)
        .await
        .with_context(|| format!("create backup {name}"))?;
    Ok(started)
}

/// Waits until backup `name` is `InProgress` (or over).
pub(crate) async fn await_in_progress(lab: &Lab, name: &str) -> anyhow::Result<()> {
    let running = |b: Option<&VirtualMachineRepositoryBackup>| {
        phase(b).is_some_and(|p| matches!(p, "InProgress" | "Succeeded" | "Failed"))
    };
    wait_object(backups(lab), name, TIMEOUT, running).await?;
    Ok(())
}

/// Whether backup `name` is still running.
pub(crate) async fn in_progress(lab: &Lab, name: &str) -> anyhow::Result<bool> {
    let backup = backups(lab).get(name).await?;
    Ok(phase(Some(&backup)) == Some("InProgress"))
}

/// Waits until backup `name`, created at `started`, ends; fails unless it succeeded.
pub(crate) async fn finish_backup(lab: &Lab, name: &str, started: Instant) -> anyhow::Result<Backup> {
    let over = |b: Option<&VirtualMachineRepositoryBackup>| {
        phase(b).is_some_and(|p| matches!(p, "Succeeded" | "Failed"))
    };
    let backup = wait_object(backups(lab), name, TIMEOUT, over).await?;
    let took = started.elapsed();
    let status = backup.status.unwrap_or_default();
    if status.phase.as_deref() != Some("Succeeded") {
        bail!("backup {name} failed: {:?}", status.error.map(|e| e.message));
    }
    Ok(Backup {
        took,
        kind: status.type_.unwrap_or_default(),
        bytes_uploaded: status.progress.and_then(|p| p.bytes_uploaded).unwrap_or(0).max(0) as u64,
        snapshot: status.snapshot_name.context("a succeeded backup names its snapshot")?,
    })
}

/// Backs up VM `vm` as `name` and waits until it succeeded.
pub(crate) async fn backup(lab: &Lab, name: &str, vm: &str, force_full: bool) -> anyhow::Result<Backup> {
    let started = start_backup(lab, name, vm, force_full).await?;
    finish_backup(lab, name, started).await
}

fn backups(lab: &Lab) -> Api<VirtualMachineRepositoryBackup> {
    Api::namespaced(lab.client.clone(), NS)
}

fn phase(backup: Option<&VirtualMachineRepositoryBackup>) -> Option<&str> {
    backup?.status.as_ref()?.phase.as_deref()
}

/// Restores backup `backup` to the new VM `target`, starts it and waits for its guest agent;
/// returns the time from the restore's create to its completion and to the guest agent.
pub(crate) async fn restore_and_boot(
    lab: &Lab,
    backup: &str,
    target: &str,
) -> anyhow::Result<(Duration, Duration)> {
    let name = format!("{target}-restore");
    let restore: VirtualMachineRepositoryRestore = serde_json::from_value(json!({
        "apiVersion": "backup.vmsnap.io/v1alpha1", "kind": "VirtualMachineRepositoryRestore",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"backupName": backup, "target": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": target}}
    }))?;
    let api: Api<VirtualMachineRepositoryRestore> = Api::namespaced(lab.client.clone(), NS);
    super::settle().await?;
    let started = Instant::now();
    api.create(&PostParams::default(), &restore).await.with_context(|| format!("create restore {name}"))?;
    let over = |r: Option<&VirtualMachineRepositoryRestore>| {
        r.and_then(|r| r.status.as_ref())
            .is_some_and(|s| s.complete == Some(true) || s.phase.as_deref() == Some("Failed"))
    };
    let restore = wait_object(api, &name, TIMEOUT, over).await?;
    let status = restore.status.unwrap_or_default();
    if status.complete != Some(true) {
        bail!("restore {name} failed: {:?}", status.error.map(|e| e.message));
    }
    let restored = started.elapsed();
    // A restored VM is created stopped, as KubeVirt's: the user starts it.
    lab.set_run_strategy(target, "Always").await?;
    lab.await_agent(target).await?;
    Ok((restored, started.elapsed()))
}

/// Exports the disk of VirtualMachineSnapshot `snapshot` (one volume) to the raw image `raw` with
/// `qemu-img convert`; returns the time it took.
pub(crate) async fn export_raw(lab: &Lab, snapshot: &str, raw: &Path) -> anyhow::Result<Duration> {
    let vm_snapshot = get(
        lab,
        &format!("/apis/snapshot.kubevirt.io/v1beta1/namespaces/{NS}/virtualmachinesnapshots/{snapshot}"),
    )
    .await?;
    let content = str_at(&vm_snapshot, "/status/virtualMachineSnapshotContentName")?;
    let content = get(
        lab,
        &format!(
            "/apis/snapshot.kubevirt.io/v1beta1/namespaces/{NS}/virtualmachinesnapshotcontents/{content}"
        ),
    )
    .await?;
    let volume_snapshot = str_at(&content, "/spec/volumeBackups/0/volumeSnapshotName")?;
    let volume_snapshot = get(
        lab,
        &format!("/apis/snapshot.storage.k8s.io/v1/namespaces/{NS}/volumesnapshots/{volume_snapshot}"),
    )
    .await?;
    let bound = str_at(&volume_snapshot, "/status/boundVolumeSnapshotContentName")?;
    let bound = get(lab, &format!("/apis/snapshot.storage.k8s.io/v1/volumesnapshotcontents/{bound}")).await?;
    let layer = lab.snapshot_layer(&str_at(&bound, "/status/snapshotHandle")?)?;
    let _ = std::fs::remove_file(raw);
    let started = Instant::now();
    // `-U`: the running VM's QEMU holds the chain; the snapshot's layers do not change.
    let out = tokio::process::Command::new("qemu-img")
        .args(["convert", "-U", "-f", "qcow2", "-O", "raw"])
        .arg(&layer)
        .arg(raw)
        .output()
        .await
        .context("run qemu-img (install qemu-utils)")?;
    anyhow::ensure!(
        out.status.success(),
        "qemu-img convert failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(started.elapsed())
}

async fn get(lab: &Lab, path: &str) -> anyhow::Result<Value> {
    let request = http::Request::get(path).body(Vec::new())?;
    let text = lab.client.request_text(request).await.with_context(|| format!("GET {path}"))?;
    Ok(serde_json::from_str(&text)?)
}

fn str_at(object: &Value, pointer: &str) -> anyhow::Result<String> {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .with_context(|| format!("no {pointer} in {}", object["metadata"]["name"]))
}
