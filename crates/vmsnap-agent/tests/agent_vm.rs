//! The node agent against the API server and real QEMU running the test guest:
//! VMs applied with kubectl, their subresources, hotplug, live block
//! operations, agent restarts and a hung guest agent.
//!
//! Booting is the expensive part (5 to 15 s under TCG), so each test boots
//! few guests and checks a sequence of behaviours on each.

mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;
use support::cluster::{Cluster, NS, VMIS, VMS, ms, phase, printable, running_with_agent, vmi_condition};
use support::manifests::{GuestDisk, guest_vm_yaml};
use support::{largest_gap_us, qcow2, sha256};
use vmsnap_storage::{LiveBlockOps, LiveSwitch, VolumeDriver, VolumeId};
use vmsnap_testing::await_value;
use vmsnap_vmm::Vmm;

/// Generous: two guests may boot at once under TCG on two cores.
const BOOT: Duration = Duration::from_secs(120);
const SHORT: Duration = Duration::from_secs(20);

/// `testvm`: the test guest with one virtio disk on `data-pvc`, always running.
fn vm_yaml() -> String {
    guest_vm_yaml("testvm", "Always", &[GuestDisk::virtio("data", "data-pvc")])
}

fn api_status(error: anyhow::Error) -> (u16, String) {
    match error.downcast::<kube::Error>() {
        Ok(kube::Error::Api(status)) => (status.code, status.message),
        Ok(other) => (0, other.to_string()),
        Err(other) => (0, other.to_string()),
    }
}

async fn refused(call: impl Future<Output = Result<Duration, kube::Error>>) -> (u16, String) {
    match call.await {
        Ok(_) => (200, String::new()),
        Err(error) => api_status(error.into()),
    }
}

async fn is_mounted(cluster: &Cluster, vmi: &str, mountpoint: &str) -> Result<bool> {
    let mounts = cluster.sh(vmi, "cat /proc/mounts").await?;
    Ok(mounts.lines().any(|line| line.split_whitespace().nth(1) == Some(mountpoint)))
}

async fn await_mount(cluster: &Cluster, vmi: &str, mountpoint: &str, mounted: bool) -> Result<Duration> {
    let started = Instant::now();
    while is_mounted(cluster, vmi, mountpoint).await? != mounted {
        ensure!(started.elapsed() < SHORT * 2, "{mountpoint} mounted={} did not happen", mounted);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(started.elapsed())
}

fn freeze_status(vmi: &vmsnap_api::kubevirt::VirtualMachineInstance) -> Option<String> {
    vmi.status.as_ref().and_then(|s| s.fs_freeze_status.clone())
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_applied_with_kubectl_runs_freezes_hotplugs_and_keeps_its_data_across_restarts() -> Result<()> {
    let Some(mut cluster) = Cluster::start().await? else { return Ok(()) };
    let data = cluster.volume("data-pvc", 64 << 20).await?;
    cluster.volume("hot-pvc", 32 << 20).await?;
    let vmi_hot = cluster.volume("vmi-hot-pvc", 32 << 20).await?;
    let applied = Instant::now();
    cluster.apply(&vm_yaml()).await?;

    // The VM runs, with its guest agent connected, and says so.
    let vmi =
        await_value(&cluster.vmis(), "testvm", BOOT, |v| running_with_agent(v).then(|| v.clone())).await?;
    println!("kubectl apply to AgentConnected: {:.1} s", applied.elapsed().as_secs_f64());
    // The VM mirrors its instance's conditions a moment after the instance has them.
    let vm = await_value(&cluster.vms(), "testvm", SHORT, |vm| {
        let ready = vm.status.as_ref().is_some_and(|s| s.ready);
        let agent = vm
            .status
            .as_ref()
            .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "AgentConnected" && c.status == "True"));
        (printable(vm) == "Running" && ready && agent).then(|| vm.clone())
    })
    .await?;
    let table = cluster.kubectl(&["get", "vm", "testvm"]).await?;
    let row = table.lines().nth(1).context("no row")?;
    assert!(row.contains("Running") && row.contains("True"), "{table}");
    let vm_status = vm.status.clone().unwrap_or_default();
    assert!(vm_status.created && vm_status.run_strategy.as_deref() == Some("Always"), "{vm_status:?}");
    let vm_conditions: Vec<(&str, &str)> =
        vm_status.conditions.iter().map(|c| (c.type_.as_str(), c.status.as_str())).collect();
    assert!(
        vm_conditions.contains(&("Ready", "True")) && vm_conditions.contains(&("AgentConnected", "True"))
    );
    let status = vmi.status.clone().unwrap_or_default();
    let phases: Vec<&str> = status.phase_transition_timestamps.iter().map(|p| p.phase.as_str()).collect();
    assert_eq!(phases, ["Scheduled", "Running"]);
    assert_eq!(status.node_name.as_deref(), Some("node1"));
    assert_eq!(
        vmi.metadata.labels.as_ref().and_then(|l| l.get("kubevirt.io/vm")).map(String::as_str),
        Some("testvm")
    );
    assert_eq!(vmi.metadata.finalizers.as_deref(), Some(&["foregroundDeleteVirtualMachine".to_owned()][..]));
    // The API server gave the VM a random firmware UUID at creation (KubeVirt's VM mutator);
    // its VMI carries it.
    let firmware_uuid = |spec: &vmsnap_api::kubevirt::VirtualMachineInstanceSpec| {
        spec.domain.firmware.as_ref().and_then(|f| f.uuid.clone())
    };
    let vm_uuid = firmware_uuid(&vm.spec.template.spec).context("the VM has no firmware UUID")?;
    assert_eq!(firmware_uuid(&vmi.spec), Some(vm_uuid));
    let volume = &status.volume_status[0];
    assert_eq!(
        (volume.name.as_str(), volume.target.as_str(), volume.phase.as_deref()),
        ("data", "vda", None)
    );
    assert_eq!(
        volume.persistent_volume_claim_info.as_ref().and_then(|c| c.claim_name.as_deref()),
        Some("data-pvc")
    );
    assert!(status.interfaces[0].mac.is_some(), "{:?}", status.interfaces);
    assert_eq!(status.machine.as_ref().and_then(|m| m.get("type")).and_then(|t| t.as_str()), Some("q35"));
    assert!(status.launcher_container_image_version.is_some());
    let with_os =
        await_value(&cluster.vmis(), "testvm", SHORT, |v| v.status.as_ref()?.guest_os_info.clone()).await?;
    assert!(with_os.kernel_release.is_some(), "{with_os:?}");

    // The guest writes to the PVC at /mnt/<volume>.
    cluster.sh("testvm", "echo persisted > /mnt/data/file && sync").await?;

    // Freeze: a guest writer blocks while frozen; fsFreezeStatus says so meanwhile.
    cluster.sh("testvm", "tswriter /mnt/data/ts 1000").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let freeze_body = json!({"unfreezeTimeout": "5m0s"});
    let freeze_took = cluster.subresource(VMIS, "testvm", "freeze", Some(freeze_body.clone())).await?;
    let frozen_at = Instant::now();
    let while_frozen =
        await_value(&cluster.vmis(), "testvm", SHORT, |v| freeze_status(v).filter(|s| s == "frozen"))
            .await
            .ok();
    let second_took = cluster.subresource(VMIS, "testvm", "freeze", Some(freeze_body.clone())).await?;
    tokio::time::sleep(Duration::from_millis(300).saturating_sub(frozen_at.elapsed())).await;
    let unfreeze_took = cluster.subresource(VMIS, "testvm", "unfreeze", None).await?;
    let after_thaw = freeze_status(&cluster.vmis().get("testvm").await?);
    println!(
        "freeze: {}, second freeze: {}, unfreeze: {}",
        ms(freeze_took),
        ms(second_took),
        ms(unfreeze_took)
    );
    assert_eq!(while_frozen.as_deref(), Some("frozen"));
    assert_eq!(after_thaw, None);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let gap_us = largest_gap_us(&cluster.sh("testvm", "cat /mnt/data/ts").await?)?;
    println!("freeze window seen by tswriter: {:.1} ms", gap_us as f64 / 1e3);
    assert!(gap_us >= 300_000, "the writer did not block while frozen (largest gap {gap_us} us)");
    let hooks = |log: String| {
        log.lines().filter_map(|l| l.split_whitespace().next().map(str::to_owned)).collect::<Vec<_>>()
    };
    assert_eq!(hooks(cluster.sh("testvm", "cat /run/fsfreeze-hook.log").await?), ["freeze", "thaw"]);

    // Latency of the subresources as a kube client sees them (HTTP round trip).
    let (mut freezes, mut thaws) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        freezes.push(cluster.subresource(VMIS, "testvm", "freeze", Some(freeze_body.clone())).await?);
        thaws.push(cluster.subresource(VMIS, "testvm", "unfreeze", None).await?);
    }
    println!(
        "freeze round trip: median {} (max {}); unfreeze: median {} (max {})",
        ms(median(freezes.clone())),
        ms(*freezes.iter().max().unwrap()),
        ms(median(thaws.clone())),
        ms(*thaws.iter().max().unwrap())
    );

    // An unfreezeTimeout of 5 s thaws by itself and clears fsFreezeStatus.
    let auto = Instant::now();
    cluster.subresource(VMIS, "testvm", "freeze", Some(json!({"unfreezeTimeout": "5s"}))).await?;
    await_value(&cluster.vmis(), "testvm", SHORT, |v| freeze_status(v).is_some().then_some(())).await?;
    await_value(&cluster.vmis(), "testvm", SHORT, |v| freeze_status(v).is_none().then_some(())).await?;
    let auto_after = auto.elapsed();
    println!("automatic thaw cleared fsFreezeStatus after {:.2} s", auto_after.as_secs_f64());
    assert!(auto_after >= Duration::from_secs(5), "thawed after {auto_after:?}");
    let log = hooks(cluster.sh("testvm", "cat /run/fsfreeze-hook.log").await?);
    assert_eq!((log.len(), log.last().map(String::as_str)), (14, Some("thaw")), "{log:?}");
    let (code, message) = refused(cluster.subresource(VMIS, "testvm", "freeze", Some(json!({})))).await;
    assert_eq!((code, message.as_str()), (400, "Unfreeze timeout in freeze request is not set"));

    // Pause and unpause.
    cluster.subresource(VMIS, "testvm", "pause", None).await?;
    let paused = cluster.vmis().get("testvm").await?;
    assert_eq!(vmi_condition(&paused, "Paused"), Some(("True".into(), Some("PausedByUser".into()))));
    await_value(&cluster.vms(), "testvm", SHORT, |vm| (printable(vm) == "Paused").then_some(())).await?;
    let (code, message) = refused(cluster.subresource(VMIS, "testvm", "pause", None)).await;
    assert_eq!((code, message.as_str()), (409, "VMI is already paused"));
    let (code, message) =
        refused(cluster.subresource(VMIS, "testvm", "freeze", Some(freeze_body.clone()))).await;
    assert_eq!(code, 400, "{message}");
    assert!(message.contains("paused"), "{message}");
    cluster.subresource(VMIS, "testvm", "unpause", None).await?;
    assert_eq!(vmi_condition(&cluster.vmis().get("testvm").await?, "Paused"), None);
    await_value(&cluster.vms(), "testvm", SHORT, |vm| (printable(vm) == "Running").then_some(())).await?;
    let (code, message) = refused(cluster.subresource(VMIS, "testvm", "unpause", None)).await;
    assert_eq!((code, message.as_str()), (409, "VMI is not paused"));
    await_value(&cluster.vmis(), "testvm", SHORT, |v| running_with_agent(v).then_some(())).await?;

    // Hotplug through the VM: persisted in the VM spec, attached to the VMI.
    let add = |name: &str, claim: &str| json!({"name": name, "volumeSource": {"persistentVolumeClaim": {"claimName": claim}}});
    cluster.subresource(VMS, "testvm", "addvolume", Some(add("hot", "hot-pvc"))).await?;
    let vm = cluster.vms().get("testvm").await?;
    let persisted =
        vm.spec.template.spec.volumes.iter().find(|v| v.name == "hot").context("not in the VM spec")?;
    assert!(persisted.is_hotpluggable());
    let attached = cluster.vmis().get("testvm").await?;
    let hot =
        attached.status.as_ref().and_then(|s| s.volume_status.iter().find(|v| v.name == "hot").cloned());
    assert_eq!(hot.as_ref().and_then(|h| h.phase.as_deref()), Some("Ready"), "{hot:?}");
    let mounted_after = await_mount(&cluster, "testvm", "/mnt/hot", true).await?;
    println!(
        "VM addvolume: mounted in the guest {:.2} s after the call returned",
        mounted_after.as_secs_f64()
    );
    // ...and through the VMI: on the VMI only.
    cluster.subresource(VMIS, "testvm", "addvolume", Some(add("vmihot", "vmi-hot-pvc"))).await?;
    await_mount(&cluster, "testvm", "/mnt/vmihot", true).await?;
    let vm = cluster.vms().get("testvm").await?;
    assert!(
        !vm.spec.template.spec.volumes.iter().any(|v| v.name == "vmihot"),
        "a VMI hotplug reached the VM spec"
    );
    assert!(cluster.vmis().get("testvm").await?.spec.volumes.iter().any(|v| v.name == "vmihot"));
    let (code, message) =
        refused(cluster.subresource(VMS, "testvm", "addvolume", Some(add("hot", "hot-pvc")))).await;
    assert_eq!(code, 409, "{message}");

    // Live block operations for the storage driver.
    let active =
        cluster.agent.active_file(&vmi_hot).await?.context("an attached volume has an active file")?;
    assert_eq!(active, cluster.driver.volume(&vmi_hot).await?.context("the volume")?.path);
    let spare = VolumeId::new("pvc-spare")?;
    cluster.driver.create_volume(&spare, 1 << 20).await?;
    assert_eq!(cluster.agent.active_file(&spare).await?, None);
    let overlay = cluster.runtime_dir().with_file_name("vmihot-overlay.qcow2");
    qcow2(&overlay, "32M", Some(&active))?;
    let stale = LiveSwitch { volume: vmi_hot.clone(), current: overlay.clone(), overlay: overlay.clone() };
    assert!(cluster.agent.switch_to_overlays(&[stale]).await.is_err());
    cluster.sh("testvm", "echo before > /mnt/vmihot/before && sync").await?;
    let switch = LiveSwitch { volume: vmi_hot.clone(), current: active.clone(), overlay: overlay.clone() };
    cluster.agent.switch_to_overlays(&[switch]).await?;
    assert_eq!(cluster.agent.active_file(&vmi_hot).await?, Some(overlay.clone()));
    let sealed = sha256(&active)?;
    let overlay_before = std::fs::metadata(&overlay)?.len();
    cluster
        .sh("testvm", "dd if=/dev/urandom of=/mnt/vmihot/after bs=64k count=8 2>/dev/null && sync")
        .await?;
    assert_eq!(sha256(&active)?, sealed, "the sealed layer changed after the switch");
    assert!(std::fs::metadata(&overlay)?.len() > overlay_before, "the guest did not write to the overlay");
    assert_eq!(cluster.sh("testvm", "cat /mnt/vmihot/before").await?, "before\n");

    // Remove both.
    cluster.subresource(VMIS, "testvm", "removevolume", Some(json!({"name": "vmihot"}))).await?;
    await_mount(&cluster, "testvm", "/mnt/vmihot", false).await?;
    cluster.subresource(VMS, "testvm", "removevolume", Some(json!({"name": "hot"}))).await?;
    await_mount(&cluster, "testvm", "/mnt/hot", false).await?;
    let vm = cluster.vms().get("testvm").await?;
    assert!(!vm.spec.template.spec.volumes.iter().any(|v| v.name == "hot"));
    let vmi = cluster.vmis().get("testvm").await?;
    let names: Vec<&str> = vmi
        .status
        .as_ref()
        .map(|s| s.volume_status.iter().map(|v| v.name.as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["data"]);
    assert_eq!(cluster.agent.active_file(&vmi_hot).await?, None);
    let (code, message) =
        refused(cluster.subresource(VMS, "testvm", "removevolume", Some(json!({"name": "data"})))).await;
    assert_eq!(code, 400, "{message}");

    // Agent restart, with the guest frozen: the same QEMU keeps running, is
    // re-attached, stays frozen until its deadline, and answers.
    let pid = cluster.pid("testvm")?;
    let frozen_at = Instant::now();
    cluster.subresource(VMIS, "testvm", "freeze", Some(json!({"unfreezeTimeout": "3s"}))).await?;
    let took = cluster.restart_agent().await?;
    println!("agent restart (re-attach) took {}", ms(took));
    assert_eq!(cluster.pid("testvm")?, pid);
    assert_eq!(Vmm::list_running(&cluster.runtime_dir())?.len(), 1, "a second QEMU was started");
    assert_eq!(freeze_status(&cluster.vmis().get("testvm").await?).as_deref(), Some("frozen"));
    await_value(&cluster.vmis(), "testvm", SHORT, |v| freeze_status(v).is_none().then_some(())).await?;
    assert!(frozen_at.elapsed() >= Duration::from_secs(3), "thawed before the deadline");
    await_value(&cluster.vmis(), "testvm", SHORT, |v| running_with_agent(v).then_some(())).await?;
    assert_eq!(
        cluster.agent.active_file(&data).await?,
        Some(cluster.driver.volume(&data).await?.context("data")?.path)
    );
    cluster.subresource(VMIS, "testvm", "freeze", Some(freeze_body.clone())).await?;
    cluster.subresource(VMIS, "testvm", "unfreeze", None).await?;
    assert_eq!(cluster.sh("testvm", "cat /mnt/data/file").await?, "persisted\n");

    // QEMU killed while no agent runs: the VMI is marked Failed and the VM (Always) restarted.
    let old_uid = cluster.vmis().get("testvm").await?.metadata.uid.clone();
    cluster.stop_agent().await;
    kill(Pid::from_raw(pid), Signal::SIGKILL)?;
    while Vmm::list_running(&cluster.runtime_dir())?.iter().any(|vm| vm.pid == pid) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.start_agent().await?;
    let right_after = cluster.vmis().get_opt("testvm").await?;
    if let Some(vmi) = right_after.filter(|v| v.metadata.uid == old_uid) {
        assert_eq!(phase(&vmi), "Failed", "{:?}", vmi.status);
    }
    let restarted = await_value(&cluster.vmis(), "testvm", BOOT, |v| {
        (v.metadata.uid != old_uid && running_with_agent(v)).then(|| v.clone())
    })
    .await?;
    assert_ne!(restarted.metadata.uid, old_uid);
    assert_eq!(cluster.sh("testvm", "cat /mnt/data/file").await?, "persisted\n");

    // Stop through the subresource: runStrategy Halted, the VMI goes, the data stays.
    let pid = cluster.pid("testvm")?;
    let stopping = Instant::now();
    cluster.subresource(VMS, "testvm", "stop", None).await?;
    assert_eq!(cluster.vms().get("testvm").await?.spec.run_strategy.as_deref(), Some("Halted"));
    await_value(&cluster.vms(), "testvm", SHORT, |vm| (printable(vm) == "Stopped").then_some(())).await?;
    println!("stop to Stopped: {:.2} s", stopping.elapsed().as_secs_f64());
    // Stopped as soon as the guest is down; the VMI object goes right after.
    while cluster.vmis().get_opt("testvm").await?.is_some() {
        ensure!(stopping.elapsed() < SHORT, "the stopped VMI was not deleted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!Vmm::list_running(&cluster.runtime_dir())?.iter().any(|vm| vm.pid == pid));
    let (code, _) = refused(cluster.subresource(VMIS, "testvm", "freeze", Some(freeze_body.clone()))).await;
    assert_eq!(code, 404);
    let (code, message) = refused(cluster.subresource(VMS, "testvm", "stop", None)).await;
    assert_eq!((code, message.as_str()), (409, "VM is not running"));

    // Start through the subresource: the same data.
    cluster.subresource(VMS, "testvm", "start", None).await?;
    assert_eq!(cluster.vms().get("testvm").await?.spec.run_strategy.as_deref(), Some("Always"));
    await_value(&cluster.vmis(), "testvm", BOOT, |v| running_with_agent(v).then_some(())).await?;
    assert_eq!(cluster.sh("testvm", "cat /mnt/data/file").await?, "persisted\n");
    let (code, message) = refused(cluster.subresource(VMS, "testvm", "start", None)).await;
    assert_eq!((code, message.as_str()), (409, "VM is already running"));

    // Deleting the VM shuts its guest down.
    cluster.kubectl(&["delete", "vm", "testvm"]).await?;
    let deleted = Instant::now();
    while !Vmm::list_running(&cluster.runtime_dir())?.is_empty()
        || cluster.vmis().get_opt("testvm").await?.is_some()
    {
        ensure!(deleted.elapsed() < SHORT * 2, "the VMI or its QEMU outlived the VM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

const SOLO_YAML: &str = r#"
apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata:
  name: solo
spec:
  terminationGracePeriodSeconds: 5
  domain:
    firmware:
      kernelBoot:
        container:
          image: vmsnap.local/test-guest:latest
    devices:
      disks:
      - name: dvdisk
        disk:
          bus: virtio
      - name: scratch
        disk:
          bus: virtio
  volumes:
  - name: dvdisk
    dataVolume:
      name: solo-dv
  - name: scratch
    emptyDisk:
      capacity: 16Mi
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_vmi_waits_for_its_data_volume_survives_a_hung_agent_and_ends_succeeded() -> Result<()> {
    let Some(cluster) = Cluster::start().await? else { return Ok(()) };
    cluster.data_volume("solo-dv", 32 << 20, "ImportInProgress").await?;
    cluster.apply(SOLO_YAML).await?;

    // A DataVolume still importing keeps the VMI Pending, saying why.
    let waiting =
        await_value(&cluster.vmis(), "solo", SHORT, |v| vmi_condition(v, "Synchronized").map(|_| v.clone()))
            .await?;
    assert_eq!(phase(&waiting), "Pending");
    let condition = waiting
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Synchronized").cloned());
    let message = condition.as_ref().and_then(|c| c.message.clone()).unwrap_or_default();
    assert_eq!(condition.and_then(|c| c.reason).as_deref(), Some("VolumeNotReady"));
    assert!(message.contains("solo-dv") && message.contains("ImportInProgress"), "{message}");
    let booted = Instant::now();
    cluster.set_data_volume_phase("solo-dv", "Succeeded").await?;
    let vmi =
        await_value(&cluster.vmis(), "solo", BOOT, |v| running_with_agent(v).then(|| v.clone())).await?;
    println!("DataVolume Succeeded to AgentConnected: {:.1} s", booted.elapsed().as_secs_f64());
    assert_eq!(vmi_condition(&vmi, "Synchronized"), None);
    let targets: Vec<(String, String)> = vmi
        .status
        .as_ref()
        .map(|s| s.volume_status.iter().map(|v| (v.name.clone(), v.target.clone())).collect())
        .unwrap_or_default();
    assert_eq!(targets, [("dvdisk".to_owned(), "vda".to_owned()), ("scratch".to_owned(), "vdb".to_owned())]);
    assert!(
        is_mounted(&cluster, "solo", "/mnt/dvdisk").await?
            && is_mounted(&cluster, "solo", "/mnt/scratch").await?
    );
    assert_eq!(vmi.metadata.finalizers.as_deref(), Some(&["foregroundDeleteVirtualMachine".to_owned()][..]));

    // A hung guest agent: AgentConnected goes within a few seconds and freeze fails fast.
    cluster.sh("solo", "(sleep 1; kill -STOP $(pidof qemu-ga)) >/dev/null 2>&1 &").await?;
    let hung_at = Instant::now() + Duration::from_secs(1);
    await_value(&cluster.vmis(), "solo", SHORT, |v| {
        vmi_condition(v, "AgentConnected").is_none().then_some(())
    })
    .await?;
    let noticed = Instant::now().saturating_duration_since(hung_at);
    println!("AgentConnected removed {:.2} s after the guest agent hung", noticed.as_secs_f64());
    assert!(noticed < Duration::from_secs(5), "took {noticed:?}");
    let refusing = Instant::now();
    let (code, message) =
        refused(cluster.subresource(VMIS, "solo", "freeze", Some(json!({"unfreezeTimeout": "1m"})))).await;
    let refused_after = refusing.elapsed();
    println!("freeze with a hung agent refused in {}", ms(refused_after));
    assert_eq!((code, message.as_str()), (400, "VMI does not have guest agent connected"));
    assert!(refused_after < Duration::from_secs(2), "took {refused_after:?}");
    // The serial console still works: wake the agent up from there.
    let socket = cluster.agent.console_socket(NS, "solo")?;
    let mut console = std::os::unix::net::UnixStream::connect(&socket)?;
    console.write_all(b"\nkill -CONT $(pidof qemu-ga)\n")?;
    await_value(&cluster.vmis(), "solo", SHORT, |v| running_with_agent(v).then_some(())).await?;
    drop(console);
    cluster.subresource(VMIS, "solo", "freeze", Some(json!({"unfreezeTimeout": "1m"}))).await?;
    cluster.subresource(VMIS, "solo", "unfreeze", None).await?;

    // The guest powers itself off: Succeeded, and the subresources say it does not run.
    cluster.sh("solo", "(sleep 1; /sbin/shutdown -h -P now) >/dev/null 2>&1 &").await?;
    let done =
        await_value(&cluster.vmis(), "solo", SHORT, |v| (phase(v) == "Succeeded").then(|| v.clone())).await?;
    assert_eq!(done.status.as_ref().and_then(|s| s.reason.clone()), None);
    assert_eq!(vmi_condition(&done, "Ready").map(|(s, _)| s).as_deref(), Some("False"));
    assert_eq!(vmi_condition(&done, "AgentConnected"), None);
    let (code, message) =
        refused(cluster.subresource(VMIS, "solo", "freeze", Some(json!({"unfreezeTimeout": "1m"})))).await;
    assert_eq!((code, message.as_str()), (409, "VM is not running"));
    let (code, message) = refused(cluster.subresource(VMIS, "solo", "unfreeze", None)).await;
    assert_eq!((code, message.as_str()), (409, "VMI is not running"));
    assert!(Vmm::list_running(&cluster.runtime_dir())?.is_empty());

    // Deleting it removes its runtime directory (and ephemeral disk) and the object.
    let dir = cluster.runtime_dir().join(vmi.metadata.uid.clone().unwrap_or_default());
    assert!(dir.join("empty-scratch.qcow2").exists());
    cluster.kubectl(&["delete", "vmi", "solo"]).await?;
    assert!(cluster.vmis().get_opt("solo").await?.is_none());
    assert!(!dir.exists(), "the runtime directory outlived the VMI");
    Ok(())
}
