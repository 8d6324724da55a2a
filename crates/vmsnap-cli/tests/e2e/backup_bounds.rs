//! What backups put in the bucket, measured (issue 15's "done when", a real SeaweedFS and real
//! guests, one `vmsnap serve`): two VMs made from the same 1 GiB ext4 image (a file DataVolumes
//! import, holding a file of noise); the first VM's guest writes a file full of a marker string.
//! Each backup's `status.progress.bytesUploaded` is checked against the bucket's own listing
//! before and after it (the sizes of the chunk objects it added), and bounded:
//! - a backup with nothing changed uploads under 1 MiB;
//! - after the guest rewrote 1 % of the disk in place, inside a file of noise (the bytes it wrote
//!   are "the changed bytes"), at most 1.05 x those bytes + 1 MiB;
//! - the second VM's first (full) backup, under 5 % of the first VM's (chunks are deduplicated
//!   across VMs by identity).
//!
//! Then: every object in the bucket is read back and none holds the marker (which the machine's
//! own disk layers do hold); a repository object with a wrong passphrase says so, naming its
//! Secret; one byte flipped in one chunk object is found by `vmsnap repo verify`, naming the
//! backup, disk and offset, and a restore that needs the chunk fails naming them too, leaving no
//! VM, DataVolume or staged file behind.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt as _;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt as _};
use serde_json::Value;
use vmsnap_backup::{Backend, BackupId, BackupManifest, Repository, S3Config};
use vmsnap_testing::seaweedfs::{ACCESS_KEY, SECRET_KEY, Seaweed};

use crate::backups::{
    BUCKET, DISK_BYTES, PASSPHRASE, add_repository, await_repository_restore, back_up, create_restore, int,
    s3_repository, staged_files,
};
use crate::support::*;

const MIB: u64 = 1 << 20;
/// The noise in the image both VMs are made from.
const IMAGE_NOISE_BYTES: u64 = 24 * MIB;
/// What the guest rewrites for the incremental: ~1 % of the disk, inside the file of noise.
const CHANGED_BYTES: u64 = 10 * MIB;
/// Written in the first VM's guest, between blocks of noise (so no compression can hide it).
const MARKER: &str = "VMSNAP-PLAINTEXT-MARKER-9f2c4e1a-do-not-store-me";

/// The bucket as its S3 API shows it (the repository engine's S3 client, no repository logic).
struct Bucket(Arc<dyn ObjectStore>);

impl Bucket {
    fn new(seaweed: &Seaweed) -> Self {
        Bucket(Backend::s3(&s3_config(seaweed)).expect("an S3 client").object_store())
    }

    /// Every object's name and size.
    async fn objects(&self) -> BTreeMap<String, u64> {
        let listed: Vec<_> = self.0.list(None).try_collect().await.expect("list the bucket");
        listed.into_iter().map(|meta| (meta.location.to_string(), meta.size)).collect()
    }

    async fn read(&self, name: &str) -> Vec<u8> {
        let object = self.0.get(&ObjectPath::from(name)).await.unwrap_or_else(|e| panic!("get {name}: {e}"));
        object.bytes().await.expect("the object's bytes").to_vec()
    }

    async fn write(&self, name: &str, data: Vec<u8>) {
        self.0.put(&ObjectPath::from(name), data.into()).await.unwrap_or_else(|e| panic!("put {name}: {e}"));
    }
}

fn s3_config(seaweed: &Seaweed) -> S3Config {
    S3Config {
        endpoint: Some(seaweed.endpoint.clone()),
        region: "us-east-1".into(),
        bucket: BUCKET.into(),
        prefix: String::new(),
        access_key_id: ACCESS_KEY.into(),
        secret_access_key: SECRET_KEY.into(),
        allow_http: true,
    }
}

/// What one backup put in the bucket.
#[derive(Debug)]
struct Upload {
    /// `status.progress.bytesUploaded`.
    reported: u64,
    /// Bytes of the chunk and chunk-list objects that appeared.
    chunk_objects: u64,
    /// Bytes of every object that appeared (chunks, chunk lists and the manifest).
    all_objects: u64,
}

/// Backs VM `vm` up as `name` and measures what it added to the bucket.
async fn measured_backup(vmsnap: &Vmsnap, bucket: &Bucket, name: &str, vm: &str) -> (Value, Upload) {
    let before = bucket.objects().await;
    let backup = back_up(vmsnap, name, vm).await;
    let after = bucket.objects().await;
    let added = |prefix: &str| -> u64 {
        after.iter().filter(|(k, _)| k.starts_with(prefix) && !before.contains_key(*k)).map(|(_, s)| s).sum()
    };
    let upload = Upload {
        reported: int(&backup["status"]["progress"]["bytesUploaded"]),
        chunk_objects: added("chunks/") + added("lists/"),
        all_objects: added(""),
    };
    println!(
        "backup {name} ({}) of {vm}: {upload:?}; progress {}",
        backup["status"]["type"], backup["status"]["progress"]
    );
    assert_eq!(
        upload.reported, upload.chunk_objects,
        "{name}: bytesUploaded is what the bucket gained in chunk and chunk-list objects"
    );
    (backup, upload)
}

/// A VM like `examples/vm.yaml` whose disk is imported from `image`.
fn vm_from_image(name: &str, image: &std::path::Path) -> String {
    let example = std::fs::read_to_string(example("vm.yaml")).expect("examples/vm.yaml");
    let mut vm: Value = serde_norway::from_str(&example).expect("the example parses");
    vm["metadata"]["name"] = name.into();
    let template = &mut vm["spec"]["dataVolumeTemplates"][0];
    template["metadata"]["name"] = format!("{name}-data").into();
    template["spec"]["source"] = serde_json::json!({"http": {"url": format!("file://{}", image.display())}});
    vm["spec"]["template"]["metadata"]["labels"]["kubevirt.io/vm"] = name.into();
    vm["spec"]["template"]["spec"]["volumes"][0]["dataVolume"]["name"] = format!("{name}-data").into();
    vm.to_string()
}

/// A 1 GiB ext4 image (as a golden image is: fully initialized) holding `noise`, a file of random
/// bytes, in the server's import directory.
fn make_image(vmsnap: &Vmsnap) -> std::path::PathBuf {
    let root = tempfile::tempdir().unwrap();
    let mut noise = vec![0u8; IMAGE_NOISE_BYTES as usize];
    rand::fill(&mut noise[..]);
    std::fs::write(root.path().join("noise"), noise).unwrap();
    let image = vmsnap.data_dir().join("import/golden.raw");
    std::fs::create_dir_all(image.parent().unwrap()).unwrap();
    let out = std::process::Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-E", "lazy_itable_init=0,lazy_journal_init=0", "-d"])
        .arg(root.path())
        .arg(&image)
        .arg("1G")
        .output()
        .expect("mke2fs");
    assert!(out.status.success(), "mke2fs: {}", String::from_utf8_lossy(&out.stderr));
    image
}

/// How many times `needle` occurs in `haystack`.
fn occurrences(haystack: &[u8], needle: &[u8]) -> usize {
    haystack.windows(needle.len()).filter(|w| *w == needle).count()
}

/// The manifest of backup object `name`, read with the engine.
async fn manifest(repository: &Repository, vmsnap: &Vmsnap, name: &str) -> BackupManifest {
    let backup = get_json(vmsnap, "vmrbackup", name).await.unwrap();
    let id: BackupId = backup["status"]["backupId"].as_str().expect("status.backupId").parse().unwrap();
    repository.backup(&id).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn backups_upload_what_changed_deduplicate_across_vms_store_no_plaintext_and_name_a_bad_chunk() {
    let started = std::time::Instant::now();
    let Some(seaweed) = Seaweed::start() else { return };
    seaweed.create_bucket(BUCKET);
    let bucket = Bucket::new(&seaweed);
    let Some(vmsnap) = start("auto") else { return };
    let image = make_image(&vmsnap);
    for vm in ["first", "second"] {
        vmsnap.kubectl().run_stdin_async(&["create", "-f", "-"], &vm_from_image(vm, &image)).await.ok();
    }
    add_repository(&vmsnap, &seaweed, "offsite").await;
    await_running_with_agent(&vmsnap, "first").await;
    await_running_with_agent(&vmsnap, "second").await;

    // The first VM's first backup: the image's noise and a file of markers between noise.
    let script = format!(
        "i=0; while [ $i -lt 256 ]; do echo {MARKER}; head -c 16384 /dev/urandom; i=$((i+1)); done > /mnt/data/secret && sync"
    );
    vmsnap.sh("first", &script).await.unwrap();
    let (full, first_full) = measured_backup(&vmsnap, &bucket, "first-1", "first").await;
    assert_eq!(full["status"]["type"], "Full", "{full:#}");
    assert!(
        first_full.reported > IMAGE_NOISE_BYTES + 4 * MIB,
        "a full backup stores the noise of the image and of the marker file: {first_full:?}"
    );

    // Nothing changed: under 1 MiB, manifest included.
    let (unchanged, nothing) = measured_backup(&vmsnap, &bucket, "first-2", "first").await;
    assert_eq!(unchanged["status"]["type"], "Incremental", "{unchanged:#}");
    assert!(nothing.all_objects < MIB, "a backup with no change uploads under 1 MiB: {nothing:?}");

    // 1 % of the disk rewritten in place, in the middle of the image's file of noise.
    let script = format!(
        "dd if=/dev/urandom of=/mnt/data/noise bs=65536 seek=113 count={} conv=notrunc 2>/dev/null && sync",
        CHANGED_BYTES / 65536
    );
    vmsnap.sh("first", &script).await.unwrap();
    let (incremental, changed) = measured_backup(&vmsnap, &bucket, "first-3", "first").await;
    assert_eq!(incremental["status"]["type"], "Incremental", "{incremental:#}");
    let bound = CHANGED_BYTES * 105 / 100 + MIB;
    println!(
        "1 % changed: {} bytes written in the guest of a {DISK_BYTES}-byte disk; uploaded {} (bucket {}), bound {bound}",
        CHANGED_BYTES, changed.reported, changed.all_objects
    );
    assert!(
        changed.all_objects <= bound,
        "an incremental after {CHANGED_BYTES} bytes changed uploads at most 1.05x that + 1 MiB ({bound}): {changed:?}"
    );

    // A VM made from the same image: its full backup finds the image's chunks stored.
    let (other, second_full) = measured_backup(&vmsnap, &bucket, "second-1", "second").await;
    assert_eq!(other["status"]["type"], "Full", "{other:#}");
    assert!(
        second_full.all_objects * 20 < first_full.reported,
        "the second VM's first backup uploads under 5 % of the first's ({first_full:?}): {second_full:?}"
    );

    // No plaintext: the marker is on the machine's disk layers, and in no object of the bucket.
    let layers = vmsnap.data_dir().join("volumes/layers");
    let on_disk: usize = std::fs::read_dir(&layers)
        .unwrap()
        .flatten()
        .map(|layer| occurrences(&std::fs::read(layer.path()).unwrap(), MARKER.as_bytes()))
        .sum();
    assert!(on_disk >= 200, "the guest's marker file is in the disk layers: {on_disk} occurrences");
    let objects = bucket.objects().await;
    for name in objects.keys() {
        assert!(!name.contains(MARKER), "an object name holds the marker: {name}");
        let data = bucket.read(name).await;
        assert_eq!(occurrences(&data, MARKER.as_bytes()), 0, "object {name} holds the marker in plaintext");
    }
    println!("{} objects ({} bytes) read back: no marker", objects.len(), objects.values().sum::<u64>());

    // The same bucket with another passphrase: the repository says so and names the Secret.
    kubectl(
        &vmsnap,
        &["create", "secret", "generic", "not-the-passphrase", "--from-literal=passphrase=guess"],
    )
    .await;
    let wrong = s3_repository(&seaweed, "guessed", "not-the-passphrase");
    vmsnap.kubectl().run_stdin_async(&["create", "-f", "-"], &wrong.to_string()).await.ok();
    let mut ready = (String::new(), String::new(), String::new());
    until("the repository with a wrong passphrase to say so", Duration::from_secs(60), async || {
        let repo = get_json(&vmsnap, "vmrepo", "guessed").await.unwrap_or_default();
        let found = repo["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready" && c["status"] == "False").cloned());
        if let Some(c) = found {
            let text = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
            ready = (text("status"), text("reason"), text("message"));
        }
        ready.1 == "WrongPassphrase"
    })
    .await;
    assert!(
        ready.2.contains("wrong passphrase") && ready.2.contains("Secret \"not-the-passphrase\""),
        "{ready:?}"
    );

    // One byte flipped in a chunk only the incremental has.
    let repository = Repository::open(Backend::s3(&s3_config(&seaweed)).unwrap(), PASSPHRASE).await.unwrap();
    let third = manifest(&repository, &vmsnap, "first-3").await;
    let mut elsewhere = HashSet::new();
    for name in ["first-1", "first-2", "second-1"] {
        let other = manifest(&repository, &vmsnap, name).await;
        elsewhere.extend(other.disks.iter().flat_map(|d| d.chunks.iter().flatten().map(|c| c.id)));
    }
    let disk = &third.disks[0];
    let (index, chunk) = disk
        .chunks
        .iter()
        .enumerate()
        .find_map(|(i, c)| c.as_ref().filter(|c| !elsewhere.contains(&c.id)).map(|c| (i, c.id)))
        .expect("a chunk the incremental uploaded");
    let (offset, _) = disk.chunk_range(index);
    let object = chunk.object_path();
    let mut sealed = bucket.read(&object).await;
    let middle = sealed.len() / 2;
    sealed[middle] ^= 0x01;
    bucket.write(&object, sealed).await;
    let broken = format!("first-3 ({}) {} @ {offset}", third.id, disk.name);

    let verify = vmsnap.cli(&["repo", "verify", "offsite"]).await;
    assert_ne!(verify.code, 0, "verify fails on a bad chunk: {verify:?}");
    let row = verify.stdout.lines().find(|l| l.contains(&chunk.to_string())).unwrap_or_default();
    assert!(row.contains("Corrupt") && row.contains(&broken), "verify names {broken}: {verify:?}");
    assert!(verify.stderr.contains("has bad chunks"), "{verify:?}");
    // Asked of one backup: the one that needs the chunk fails, one that does not passes.
    let verify = vmsnap.cli(&["backup", "verify", "first-3"]).await;
    assert_ne!(verify.code, 0, "{verify:?}");
    assert!(verify.stdout.contains(&broken), "backup verify names {broken}: {verify:?}");
    vmsnap.cli(&["backup", "verify", "first-1"]).await.ok();

    create_restore(&vmsnap, "from-broken", "first-3", "broken-copy").await;
    let mut failed = Value::Null;
    until("the restore that needs the bad chunk to fail", Duration::from_secs(60), async || {
        failed = get_json(&vmsnap, "vmrrestore", "from-broken").await.unwrap_or_default();
        failed["status"]["phase"] == "Failed"
    })
    .await;
    let message = failed["status"]["error"]["message"].as_str().unwrap_or_default();
    let named = format!("backup {}, disk \"{}\", offset {offset}: chunk {chunk}", third.id, disk.name);
    assert!(message.contains(&named), "the restore names {named}: {failed:#}");
    assert!(!exists(&vmsnap, "vm", "broken-copy").await, "no VM from a broken restore");
    assert!(!exists(&vmsnap, "dv", "broken-copy-data").await, "no DataVolume from a broken restore");
    let staged = staged_files(&vmsnap);
    assert!(staged.is_empty(), "nothing staged after a failed restore: {staged:?}");

    // The backups that do not use the chunk still restore.
    create_restore(&vmsnap, "from-first", "first-1", "first-copy").await;
    let restore = await_repository_restore(&vmsnap, "from-first").await;
    assert_eq!(restore["status"]["phase"], "Succeeded", "{restore:#}");
    println!("backup bounds with real guests took {:?}", started.elapsed());
}
