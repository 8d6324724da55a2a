//! Backups, restores and a prune interrupted by a SIGKILL of `vmsnap serve`, and a backup whose S3
//! server (a real SeaweedFS) stops (issue 15's "done when"): after the restart, nothing is listed
//! complete with chunks missing, the killed backup resumes without uploading again what it had
//! uploaded, the restores complete bit-identical with nothing left staged, and a verify of every
//! backup passes; the S3 outage fails the backup clearly within a bounded time while the guest
//! keeps answering, and the next backup succeeds once the server is back. Each kill waits for an
//! observable state (a status value, an object in the bucket, a staging file), never a sleep.

use std::time::{Duration, Instant};

use serde_json::Value;
use vmsnap_testing::seaweedfs::{ACCESS_KEY, SECRET_KEY, Seaweed};

use crate::backups::{
    await_repository_restore, compare, create_restore, data_volume_layer, export_raw, snapshot_layer,
    staged_files,
};
use crate::support::*;

const BUCKET: &str = "vmsnap-crash";
const REPOSITORY: &str = "crash";
const PASSPHRASE: &str = "crash test passphrase";
/// The random data the guest writes before the first backup: enough for its upload to last a few
/// seconds, so that the kill lands in it.
const FIRST_MIB: u64 = 64;
/// The repository's chunk size (the default).
const CHUNK_BYTES: i64 = vmsnap_backup::DEFAULT_CHUNK_SIZE as i64;
/// A failed backup's S3 server stopped: the failure must be in status within this.
const OUTAGE_FAILURE_BOUND: Duration = Duration::from_secs(120);

async fn create(vmsnap: &Vmsnap, object: Value) {
    vmsnap.kubectl().run_stdin_async(&["create", "-f", "-"], &object.to_string()).await.ok();
}

async fn add_repository(vmsnap: &Vmsnap, seaweed: &Seaweed) {
    for (name, literals) in [
        (
            "s3-credentials",
            vec![format!("accessKeyId={ACCESS_KEY}"), format!("secretAccessKey={SECRET_KEY}")],
        ),
        ("repository-passphrase", vec![format!("passphrase={PASSPHRASE}")]),
    ] {
        let mut args = vec!["create".to_owned(), "secret".into(), "generic".into(), name.into()];
        args.extend(literals.into_iter().map(|l| format!("--from-literal={l}")));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        kubectl(vmsnap, &args).await;
    }
    create(
        vmsnap,
        serde_json::json!({
            "apiVersion": "backup.vmsnap.io/v1alpha1",
            "kind": "VirtualMachineBackupRepository",
            "metadata": {"name": REPOSITORY},
            "spec": {
                "s3": {"endpoint": seaweed.endpoint, "bucket": BUCKET, "credentialsSecretRef": {"name": "s3-credentials"}},
                "passphraseSecretRef": {"name": "repository-passphrase"},
            },
        }),
    )
    .await;
    let out =
        vmsnap.kubectl_run(&["wait", "vmrepo", REPOSITORY, "--for=condition=Ready", "--timeout=60s"]).await;
    assert_eq!(out.code, 0, "the repository is not Ready: {}", out.stderr);
}

async fn create_backup(vmsnap: &Vmsnap, name: &str) {
    create(
        vmsnap,
        serde_json::json!({
            "apiVersion": "backup.vmsnap.io/v1alpha1",
            "kind": "VirtualMachineRepositoryBackup",
            "metadata": {"name": name},
            "spec": {"repository": REPOSITORY, "source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "demo"}},
        }),
    )
    .await;
}

/// Polls backup `name` until `probe` holds of it; returns it.
async fn await_backup(vmsnap: &Vmsnap, name: &str, what: &str, probe: impl Fn(&Value) -> bool) -> Value {
    let mut object = Value::Null;
    until(&format!("backup {name}: {what}"), Duration::from_secs(150), async || {
        object = get_json(vmsnap, "vmrbackup", name).await.unwrap_or_default();
        if object["status"]["phase"] == "Failed" && !what.contains("Failed") {
            panic!("backup {name} failed: {object:#}\n{}", tail(&vmsnap.log()));
        }
        probe(&object)
    })
    .await;
    object
}

async fn await_succeeded(vmsnap: &Vmsnap, name: &str) -> Value {
    await_backup(vmsnap, name, "Succeeded", |b| b["status"]["phase"] == "Succeeded").await
}

/// Waits until backup `name` runs and has uploaded something (its progress says so).
async fn await_uploading(vmsnap: &Vmsnap, name: &str) -> Value {
    let backup = await_backup(vmsnap, name, "InProgress with bytes uploaded", |b| {
        b["status"]["phase"] == "InProgress" && b["status"]["progress"]["bytesUploaded"].as_i64() > Some(0)
    })
    .await;
    backup["status"]["progress"].clone()
}

fn count(value: &Value) -> i64 {
    value.as_i64().unwrap_or_else(|| panic!("{value} is not a count"))
}

/// Sets annotation `key` of the repository (a verify or prune request) to `token`.
async fn request_on_repository(vmsnap: &Vmsnap, key: &str, token: &str) {
    let annotation = format!("{key}={token}");
    kubectl(vmsnap, &["annotate", "--overwrite", "vmrepo", REPOSITORY, &annotation]).await;
}

/// Waits until the repository's `status.<field>` is the result of request `token`; returns it.
async fn await_repository_result(vmsnap: &Vmsnap, field: &str, token: &str) -> Value {
    let mut result = Value::Null;
    until(&format!("status.{field} of request {token}"), Duration::from_secs(120), async || {
        let repo = get_json(vmsnap, "vmrepo", REPOSITORY).await.unwrap_or_default();
        result = repo["status"][field].clone();
        result["request"] == token
    })
    .await;
    result
}

/// A verify of every backup in the repository: it must pass, and cover `backups` backups.
async fn verify_all(vmsnap: &Vmsnap, token: &str, backups: i64) {
    request_on_repository(vmsnap, "backup.vmsnap.io/verify-request", token).await;
    let verify = await_repository_result(vmsnap, "lastVerify", token).await;
    assert_eq!(verify["ok"], true, "verify {token}: {verify:#}");
    assert_eq!(verify["backupsChecked"], backups, "verify {token}: {verify:#}");
}

/// Asks for prune `token` and returns as soon as the repository's status says it runs
/// (`Progressing` `Pruning`, written just before the prune starts), seen through a watch so that
/// the caller's kill lands while the prune's requests are in flight.
async fn watch_for_pruning(vmsnap: &Vmsnap, token: &str) {
    use futures::{StreamExt as _, TryStreamExt as _};
    use kube::api::{Api, WatchEvent, WatchParams};
    use vmsnap_api::backup::VirtualMachineBackupRepository;
    let repos: Api<VirtualMachineBackupRepository> =
        Api::namespaced(vmsnap.client().await.unwrap(), "default");
    let version = repos.get(REPOSITORY).await.unwrap().metadata.resource_version.unwrap();
    let params = WatchParams::default().fields(&format!("metadata.name={REPOSITORY}")).timeout(60);
    let mut events = repos.watch(&params, &version).await.unwrap().boxed();
    request_on_repository(vmsnap, "backup.vmsnap.io/prune-request", token).await;
    while let Some(event) = events.try_next().await.unwrap() {
        if let WatchEvent::Modified(repo) = event {
            let status = repo.status.unwrap_or_default();
            let running = status.conditions.iter().any(|c| {
                c.type_ == "Progressing" && c.status == "True" && c.reason.as_deref() == Some("Pruning")
            });
            assert!(
                status.last_prune.and_then(|p| p.request).as_deref() != Some(token),
                "prune {token} ended before it was seen running"
            );
            if running {
                return;
            }
        }
    }
    panic!("prune {token} was not seen running within 60 s");
}

/// Polls `probe` (a look at the bucket) with no pause between looks, for a state that lasts
/// a few milliseconds; false if it was not seen within `within`.
fn seen_in_bucket(within: Duration, mut probe: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < within {
        if probe() {
            return true;
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn backups_restores_and_prunes_survive_a_killed_server_and_an_s3_outage() {
    let started = Instant::now();
    let Some(mut seaweed) = Seaweed::start() else { return };
    seaweed.create_bucket(BUCKET);
    let Some(mut vmsnap) = start("auto") else { return };
    add_repository(&vmsnap, &seaweed).await;
    kubectl(&vmsnap, &["apply", "-f", &example("vm.yaml")]).await;
    await_running_with_agent(&vmsnap, "demo").await;
    vmsnap
        .sh(
            "demo",
            &format!("dd if=/dev/urandom of=/mnt/data/big bs=1M count={FIRST_MIB} 2>/dev/null && sync"),
        )
        .await
        .unwrap();
    let exports = tempfile::tempdir().unwrap();

    // 1. Killed while uploading: the rerun resumes the session and finds what was uploaded.
    // Held mid-upload whatever the machine's speed: the S3 server is suspended as soon as a chunk
    // is stored, so that the backup cannot finish before the kill.
    create_backup(&vmsnap, "crash-1").await;
    let uploading = seen_in_bucket(Duration::from_secs(120), || !seaweed.keys(BUCKET, "chunks/").is_empty());
    seaweed.pause();
    assert!(uploading, "crash-1 uploads: {}", tail(&vmsnap.log()));
    let at_kill = await_uploading(&vmsnap, "crash-1").await;
    vmsnap.stop();
    seaweed.resume();
    assert!(seaweed.keys(BUCKET, "manifests/").is_empty(), "killed before the commit");
    let leases = seaweed.keys(BUCKET, "leases/");
    assert!(!leases.is_empty(), "the killed run's lease stays");
    // At least these (a request in flight at the kill may still land).
    let stored_at_kill = seaweed.keys(BUCKET, "chunks/").len() as i64;
    println!("crash-1 killed at {at_kill}; {stored_at_kill} chunk object(s) stored");
    vmsnap.restart().expect("vmsnap serve starts again");
    let backup = await_succeeded(&vmsnap, "crash-1").await;
    let rerun = &backup["status"]["progress"];
    println!("crash-1 after the restart: {rerun}");
    // Every chunk stored before the kill (whole chunks: the disk is 1 GiB) is found, not uploaded.
    let deduplicated = count(&rerun["bytesDeduplicated"]);
    assert!(
        deduplicated >= stored_at_kill * CHUNK_BYTES && deduplicated % CHUNK_BYTES == 0,
        "the rerun found what the killed run uploaded: at the kill {at_kill}, rerun {rerun}"
    );
    let stored_at_kill = deduplicated / CHUNK_BYTES;
    let chunks = seaweed.keys(BUCKET, "chunks/").len() as i64;
    assert!(
        count(&rerun["bytesUploaded"]) < (chunks - stored_at_kill + 1) * CHUNK_BYTES,
        "the rerun uploaded only the {} other chunks: {rerun}",
        chunks - stored_at_kill
    );
    assert!(seaweed.keys(BUCKET, "leases/").is_empty(), "the resumed session released the lease: {leases:?}");
    assert_eq!(seaweed.keys(BUCKET, "manifests/").len(), 1);
    let raw_1 = exports.path().join("crash-1.raw");
    export_raw(&snapshot_layer(&vmsnap, &backup).await, &raw_1);

    // 2. Killed as soon as its manifest is in the bucket (likely before the status says so):
    // the rerun adopts the committed backup rather than committing another.
    vmsnap
        .sh("demo", "dd if=/dev/urandom of=/mnt/data/big bs=1M count=8 conv=notrunc 2>/dev/null && sync")
        .await
        .unwrap();
    create_backup(&vmsnap, "crash-2").await;
    let committed =
        seen_in_bucket(Duration::from_secs(120), || seaweed.keys(BUCKET, "manifests/").len() == 2);
    vmsnap.stop();
    assert!(committed, "crash-2 committed: {}", tail(&vmsnap.log()));
    vmsnap.restart().expect("vmsnap serve starts again");
    let backup = await_succeeded(&vmsnap, "crash-2").await;
    assert_eq!(backup["status"]["type"], "Incremental", "{backup:#}");
    assert_eq!(seaweed.keys(BUCKET, "manifests/").len(), 2, "one commit only");
    assert!(seaweed.keys(BUCKET, "leases/").is_empty(), "no lease left of the committed backup");
    println!(
        "crash-2 killed after its commit; adopted by the rerun: {}",
        vmsnap.log().contains("adopting the backup an earlier run committed")
    );
    let raw_2 = exports.path().join("crash-2.raw");
    export_raw(&snapshot_layer(&vmsnap, &backup).await, &raw_2);

    // 3. A restore killed while it stages, another while its DataVolume imports.
    let uid = create_restore(&vmsnap, "restore-1", "crash-1", "copy-1").await;
    let staging = vmsnap.data_dir().join("restore-staging/default").join(&uid).join("data.img");
    until("restore-1 to stage", Duration::from_secs(60), async || staging.exists()).await;
    vmsnap.stop();
    vmsnap.restart().expect("vmsnap serve starts again");
    await_repository_restore(&vmsnap, "restore-1").await;
    create_restore(&vmsnap, "restore-2", "crash-2", "copy-2").await;
    until("restore-2's DataVolume", Duration::from_secs(120), async || {
        get_json(&vmsnap, "vmrrestore", "restore-2").await.unwrap_or_default()["status"]["disks"][0]
            ["dataVolumeName"]
            .is_string()
    })
    .await;
    vmsnap.stop();
    vmsnap.restart().expect("vmsnap serve starts again");
    await_repository_restore(&vmsnap, "restore-2").await;
    for (vm, raw) in [("copy-1", &raw_1), ("copy-2", &raw_2)] {
        compare(raw, &data_volume_layer(&vmsnap, &format!("{vm}-data")).await)
            .unwrap_or_else(|diff| panic!("{vm} differs from its backup's snapshot: {diff}"));
    }
    let staged = staged_files(&vmsnap);
    assert!(staged.is_empty(), "nothing stays staged: {staged:?}");

    // 4. A prune killed while it runs (its marker is in the bucket), then a verify of everything.
    watch_for_pruning(&vmsnap, "prune-1").await;
    vmsnap.stop();
    println!(
        "prune killed while its status said Pruning; its marker left in the bucket: {:?}",
        seaweed.keys(BUCKET, "prune/")
    );
    vmsnap.restart().expect("vmsnap serve starts again");
    let prune = await_repository_result(&vmsnap, "lastPrune", "prune-1").await;
    assert!(prune["error"].is_null(), "{prune:#}");
    verify_all(&vmsnap, "verify-1", 2).await;

    // 5. The S3 server stops mid-backup: a clear failure, soon; the guest is not affected.
    vmsnap
        .sh("demo", "dd if=/dev/urandom of=/mnt/data/more bs=1M count=32 2>/dev/null && sync")
        .await
        .unwrap();
    let stored = seaweed.keys(BUCKET, "chunks/").len();
    create_backup(&vmsnap, "crash-3").await;
    let uploading =
        seen_in_bucket(Duration::from_secs(120), || seaweed.keys(BUCKET, "chunks/").len() > stored);
    seaweed.stop();
    assert!(uploading, "crash-3 uploads: {}", tail(&vmsnap.log()));
    let outage = Instant::now();
    assert_eq!(
        vmsnap.sh("demo", "echo alive").await.unwrap(),
        "alive\n",
        "the guest answers during the outage"
    );
    let failed = await_backup(&vmsnap, "crash-3", "Failed", |b| b["status"]["phase"] == "Failed").await;
    let took = outage.elapsed();
    println!("crash-3 failed {took:?} after the S3 server stopped: {}", failed["status"]["error"]["message"]);
    assert!(took < OUTAGE_FAILURE_BOUND, "the failure took {took:?}");
    let message = failed["status"]["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&seaweed.endpoint)
            && message.contains("check that")
            && message.contains("reachable"),
        "the error names the endpoint and what to do: {failed:#}"
    );
    assert!(conditions(&failed).contains(&("Failure".into(), "True".into(), "Failed".into())), "{failed:#}");
    let vmi = get_json(&vmsnap, "vmi", "demo").await.unwrap();
    assert!(vmi["status"]["fsFreezeStatus"].is_null(), "the guest is not left frozen: {vmi:#}");
    assert_eq!(vmsnap.sh("demo", "echo alive").await.unwrap(), "alive\n");
    seaweed.start_again();
    // Its S3 gateway answers before its volumes are loaded: wait until objects read again.
    let manifest = seaweed.keys(BUCKET, "manifests/")[0].clone();
    until("SeaweedFS to serve objects again", Duration::from_secs(60), async || {
        seaweed.read(BUCKET, &manifest).is_ok()
    })
    .await;
    create_backup(&vmsnap, "crash-4").await;
    let backup = await_succeeded(&vmsnap, "crash-4").await;
    println!("crash-4 after the outage: {} {}", backup["status"]["type"], backup["status"]["progress"]);

    // 6. Backups that will not be committed leave no lease once deleted: the one that failed in
    // the outage (its lease could not be released then), and one deleted while it uploads.
    println!("leases after the outage: {:?}", seaweed.keys(BUCKET, "leases/"));
    vmsnap
        .sh("demo", "dd if=/dev/urandom of=/mnt/data/last bs=1M count=32 2>/dev/null && sync")
        .await
        .unwrap();
    // Held mid-upload as crash-1 was (the S3 server suspended once a chunk of it is stored), and
    // deleted while held: nothing it uploaded can commit after the delete.
    let chunks_before = seaweed.keys(BUCKET, "chunks/").len();
    create_backup(&vmsnap, "crash-5").await;
    let uploading =
        seen_in_bucket(Duration::from_secs(120), || seaweed.keys(BUCKET, "chunks/").len() > chunks_before);
    seaweed.pause();
    assert!(uploading, "crash-5 uploads: {}", tail(&vmsnap.log()));
    await_uploading(&vmsnap, "crash-5").await;
    kubectl(&vmsnap, &["delete", "vmrbackup", "crash-3", "crash-5", "--wait=false"]).await;
    seaweed.resume();
    kubectl(&vmsnap, &["delete", "vmrbackup", "crash-3", "crash-5", "--ignore-not-found", "--timeout=60s"])
        .await;
    assert!(seaweed.keys(BUCKET, "leases/").is_empty(), "{:?}", seaweed.keys(BUCKET, "leases/"));
    assert_eq!(seaweed.keys(BUCKET, "manifests/").len(), 3, "nothing of crash-5 committed");
    verify_all(&vmsnap, "verify-2", 3).await;
    let listed = vmsnap.cli(&["backup", "list", "demo", "--repo", REPOSITORY]).await;
    println!("{}", listed.ok());
    println!("kills of a backup, a restore and a prune, and an S3 outage took {:?}", started.elapsed());
}
