//! The node agent's disk buses and memory floor against the API server and real
//! QEMU: SCSI disks with KubeVirt's long serials, cold-plugged and hotplugged,
//! written in the test guest and snapshotted live with the other disks in one
//! cut; a SATA disk; and a VM asking for less memory than it can start with.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use serde_json::json;
use support::cluster::{Cluster, NS, VMS, phase, running_with_agent};
use support::manifests::{GuestDisk, guest_vm_yaml};
use vmsnap_storage::{LiveBlockOps, SnapshotId, VolumeDriver, VolumeId};
use vmsnap_testing::await_value;

/// Generous: two guests may boot at once under TCG on two cores.
const BOOT: Duration = Duration::from_secs(120);
const SHORT: Duration = Duration::from_secs(40);

/// The serial of the cold-plugged SCSI disk: 41 bytes, of which the guest reads 36.
const COLD_SERIAL: &str = "scsi-cold-plugged-disk-with-a-long-serial";
/// KubeVirt's hotplug tests name and serialize the disk `test-volume-<12 random>`: 24 bytes,
/// more than the 20 of a virtio-blk serial.
const HOT: &str = "test-volume-abcdefghijkl";

/// `scsivm`: the test guest with a virtio disk and a cold-plugged SCSI disk with a long serial.
fn scsi_vm_yaml() -> String {
    let cold = GuestDisk { name: "cold", bus: "scsi", claim: "cold-pvc", serial: Some(COLD_SERIAL) };
    guest_vm_yaml("scsivm", "Always", &[GuestDisk::virtio("data", "data-pvc"), cold])
}

/// The guest writes the same counter, 1, 2, 3..., to a file on each disk in turn
/// (data, then cold, then hot), each write `O_DIRECT` so it reaches QEMU before the
/// next one starts. Any instant's disks then hold `n, n, n` or `n, n-1, n-1` or
/// `n, n, n-1`: never a later disk ahead of an earlier one, nor two apart.
const COUNTER_LOOP: &str = r#"
touch /run/count
i=0
while [ -e /run/count ]; do
  i=$((i + 1))
  for disk in "$@"; do
    printf '%08d' "$i" | dd of="$disk/counter" bs=4096 count=1 conv=sync,notrunc oflag=direct 2>/dev/null
  done
done
"#;

fn targets(vmi: &vmsnap_api::kubevirt::VirtualMachineInstance) -> Vec<(String, String)> {
    let statuses = vmi.status.as_ref().map(|s| s.volume_status.as_slice()).unwrap_or_default();
    statuses.iter().map(|v| (v.name.clone(), v.target.clone())).collect()
}

async fn await_mounted(cluster: &Cluster, vmi: &str, mountpoint: &str) -> Result<()> {
    let started = Instant::now();
    loop {
        let mounts = cluster.sh(vmi, "cat /proc/mounts").await?;
        if mounts.lines().any(|line| line.split_whitespace().nth(1) == Some(mountpoint)) {
            return Ok(());
        }
        ensure!(started.elapsed() < SHORT, "{mountpoint} was not mounted:\n{mounts}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The contents of `file` in the ext4 filesystem of a qcow2 chain, after the journal
/// is replayed on a raw copy, as a mount after a crash would (`e2fsck` must find it sound).
fn ext4_file(image: &Path, file: &str) -> Result<String> {
    let dir = tempfile::tempdir()?;
    let raw = dir.path().join("disk.raw");
    let convert =
        Command::new("qemu-img").args(["convert", "-U", "-O", "raw"]).arg(image).arg(&raw).status()?;
    ensure!(convert.success(), "qemu-img convert {} failed", image.display());
    let fsck = Command::new("e2fsck").args(["-f", "-y"]).arg(&raw).output().context("running e2fsck")?;
    // 0: clean; 1: fixed (a replayed journal counts). Anything else is a damaged filesystem.
    ensure!(
        matches!(fsck.status.code(), Some(0 | 1)),
        "e2fsck of {} exited with {}: {}",
        image.display(),
        fsck.status,
        String::from_utf8_lossy(&fsck.stdout)
    );
    let cat = Command::new("debugfs").args(["-R", &format!("cat {file}")]).arg(&raw).output()?;
    ensure!(cat.status.success(), "debugfs could not read {file}");
    Ok(String::from_utf8_lossy(&cat.stdout).trim_end_matches('\0').to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scsi_disks_with_long_serials_are_cold_and_hot_plugged_and_snapshotted_with_the_others_in_one_cut()
-> Result<()> {
    let Some(cluster) = Cluster::start().await? else { return Ok(()) };
    let data = cluster.volume("data-pvc", 64 << 20).await?;
    let cold = cluster.volume("cold-pvc", 64 << 20).await?;
    let hot = cluster.volume("hot-pvc", 64 << 20).await?;
    cluster.apply(&scsi_vm_yaml()).await?;
    let vmi =
        await_value(&cluster.vmis(), "scsivm", BOOT, |v| running_with_agent(v).then(|| v.clone())).await?;

    // The SCSI disk is sda, the virtio one vda; the guest mounts it by the 36 bytes it reads.
    assert_eq!(targets(&vmi), [("data".into(), "vda".into()), ("cold".into(), "sda".into())]);
    let cold_mount = format!("/mnt/{}", &COLD_SERIAL[..36]);
    await_mounted(&cluster, "scsivm", &cold_mount).await?;
    await_mounted(&cluster, "scsivm", "/mnt/data").await?;

    // KubeVirt's AddVolumeAndVerify: a SCSI disk with a 24-byte serial, kept in the VM spec.
    let add = json!({
        "name": HOT,
        "disk": {"name": HOT, "disk": {"bus": "scsi"}, "serial": HOT},
        "volumeSource": {"persistentVolumeClaim": {"claimName": "hot-pvc"}},
    });
    cluster.subresource(VMS, "scsivm", "addvolume", Some(add)).await?;
    let hot_mount = format!("/mnt/{HOT}");
    await_mounted(&cluster, "scsivm", &hot_mount).await?;
    let vmi = cluster.vmis().get("scsivm").await?;
    assert_eq!(targets(&vmi).last(), Some(&(HOT.to_owned(), "sdb".to_owned())));
    // KubeVirt hotplugs only scsi and virtio disks.
    let sata = json!({
        "name": "satadisk", "disk": {"name": "satadisk", "disk": {"bus": "sata"}},
        "volumeSource": {"persistentVolumeClaim": {"claimName": "hot-pvc"}},
    });
    let refused = cluster.subresource(VMS, "scsivm", "addvolume", Some(sata)).await.unwrap_err();
    let kube::Error::Api(status) = refused else { anyhow::bail!("not refused by the API: {refused}") };
    assert_eq!(
        (status.code, status.message.as_str()),
        (
            422,
            "AddVolume request for disk [satadisk] requires bus to be 'scsi' or 'virtio'. [sata] is not permitted."
        )
    );

    // Write through all three disks, then keep writing the counter while they are snapshotted.
    let mounts = ["/mnt/data".to_owned(), cold_mount.clone(), hot_mount.clone()];
    for mount in &mounts {
        cluster
            .sh(
                "scsivm",
                &format!("echo before > {mount}/marker && head -c 4096 /dev/zero > {mount}/counter"),
            )
            .await?;
    }
    cluster.sh("scsivm", "sync").await?;
    cluster.sh("scsivm", &format!("cat > /run/counter.sh <<'EOF'\n{COUNTER_LOOP}\nEOF")).await?;
    let script = format!("sh /run/counter.sh {} </dev/null >/dev/null 2>&1 &", mounts.join(" "));
    cluster.sh("scsivm", &script).await?;
    let started = Instant::now();
    while cluster.sh("scsivm", &format!("cat {hot_mount}/counter")).await?.trim_matches('\0') < "00000020" {
        ensure!(started.elapsed() < SHORT, "the guest's counter loop does not advance");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let hot_before =
        cluster.agent.active_file(&hot).await?.context("the hotplugged SCSI disk's active file")?;
    let group: Vec<(VolumeId, SnapshotId)> = [&data, &cold, &hot]
        .iter()
        .map(|volume| Ok(((*volume).clone(), SnapshotId::new(format!("snap-{volume}"))?)))
        .collect::<Result<_>>()?;
    let agent: &dyn LiveBlockOps = cluster.agent.as_ref();
    cluster.driver.snapshot_volumes(&group, Some(agent)).await?;
    cluster.sh("scsivm", &format!("rm /run/count; sleep 0.5; echo after > {hot_mount}/marker; sync")).await?;
    // The storage driver found the SCSI disk's active layer and switched it, like the virtio one's.
    let hot_after = cluster.agent.active_file(&hot).await?.context("still attached")?;
    assert_ne!(hot_after, hot_before, "the hotplugged SCSI disk was not switched to a new layer");

    let mut counters = Vec::new();
    for ((_, snapshot), mount) in group.iter().zip(&mounts) {
        let restored = VolumeId::new(format!("restored-{snapshot}"))?;
        let image = cluster.driver.restore_volume(snapshot, &restored, 0).await?.path;
        assert_eq!(ext4_file(&image, "/marker")?, "before\n", "{mount} in its snapshot");
        let counter = ext4_file(&image, "/counter")?;
        counters.push(counter.parse::<u64>().with_context(|| format!("{mount}/counter holds {counter:?}"))?);
    }
    println!("counters in the snapshots (data, cold SCSI, hot SCSI): {counters:?}");
    let [data_n, cold_n, hot_n] = counters[..] else { unreachable!() };
    ensure!(
        data_n >= cold_n && cold_n >= hot_n && data_n <= hot_n + 1,
        "the disks were not cut at one instant: counters {counters:?}"
    );
    assert_eq!(cluster.sh("scsivm", &format!("cat {hot_mount}/marker")).await?, "after\n");

    // Unplugged: gone from the guest and from the VMI's volumes.
    cluster.subresource(VMS, "scsivm", "removevolume", Some(json!({"name": HOT}))).await?;
    let started = Instant::now();
    while cluster.sh("scsivm", "cat /proc/mounts").await?.contains(&hot_mount) {
        ensure!(started.elapsed() < SHORT, "{hot_mount} is still mounted after the unplug");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let vmi = cluster.vmis().get("scsivm").await?;
    assert_eq!(targets(&vmi), [("data".into(), "vda".into()), ("cold".into(), "sda".into())]);
    assert_eq!(cluster.agent.active_file(&hot).await?, None);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_asking_for_1mi_without_a_boot_image_runs_with_the_least_memory_its_firmware_needs_and_a_sata_disk()
-> Result<()> {
    let Some(cluster) = Cluster::start().await? else { return Ok(()) };
    cluster.volume("disk0-pvc", 16 << 20).await?;
    let sata = cluster.volume("sata-pvc", 16 << 20).await?;
    // KubeVirt's `libvmi.New(WithMemoryRequest("1Mi"), WithPersistentVolumeClaim("disk0", pvc))`,
    // with a SATA disk besides.
    let yaml = r#"
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: tiny
spec:
  runStrategy: Always
  template:
    spec:
      domain:
        resources:
          requests:
            memory: 1Mi
        devices:
          disks:
          - name: disk0
            disk:
              bus: virtio
          - name: sata
            disk:
              bus: sata
            serial: a-sata-serial-longer-than-20-bytes
      volumes:
      - name: disk0
        persistentVolumeClaim:
          claimName: disk0-pvc
      - name: sata
        persistentVolumeClaim:
          claimName: sata-pvc
"#;
    cluster.apply(yaml).await?;

    await_value(&cluster.vmis(), "tiny", SHORT, |v| (phase(v) == "Running").then_some(())).await?;
    let pid = cluster.pid("tiny")?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))?;
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let memory = args.windows(2).find(|w| w[0] == b"-m").map(|w| String::from_utf8_lossy(w[1]).into_owned());
    assert_eq!(memory.as_deref(), Some("2"));
    let events: Api<Event> = Api::namespaced(cluster.client.clone(), NS);
    let started = Instant::now();
    let note = loop {
        let found = events.list(&ListParams::default()).await?.items.into_iter().find(|e| {
            e.reason.as_deref() == Some("MemoryRaised")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("tiny")
        });
        if let Some(event) = found {
            assert_eq!(event.type_.as_deref(), Some("Normal"));
            break event.note.unwrap_or_default();
        }
        ensure!(started.elapsed() < SHORT, "no MemoryRaised event");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        note,
        "spec.domain.resources.requests.memory = 1Mi is less than the 2 MiB the firmware needs to set the VM \
         up; the VM runs with 2 MiB"
    );
    // The SATA disk is sda on the machine's AHCI controller, and live snapshots find it.
    let vmi = cluster.vmis().get("tiny").await?;
    assert_eq!(targets(&vmi), [("disk0".into(), "vda".into()), ("sata".into(), "sda".into())]);
    let before = cluster.agent.active_file(&sata).await?.context("the SATA disk's active file")?;
    let agent: &dyn LiveBlockOps = cluster.agent.as_ref();
    cluster.driver.snapshot_volumes(&[(sata.clone(), SnapshotId::new("snap-sata")?)], Some(agent)).await?;
    assert_ne!(cluster.agent.active_file(&sata).await?, Some(before));
    // Still running a few seconds later: the firmware found nothing to boot and waits.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(phase(&cluster.vmis().get("tiny").await?), "Running");
    assert_eq!(cluster.pid("tiny")?, pid);
    Ok(())
}
