//! The VM runtime against real QEMU running the test guest.
//!
//! Booting is the expensive part (4 to 10 s under TCG), so each test boots
//! one guest and checks a sequence of behaviours on it.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use support::{
    BOOT_TIMEOUT, Env, QemuGuard, backing_file_of, eventually, guest_sh, has_open, largest_gap_us, qcow2,
    sha256,
};
use vmsnap_vmm::{
    BlockError, DiskFormat, DiskSpec, FreezeOutcome, FsfreezeStatus, LaunchError, NicModel, NicSpec,
    RunState, ShutdownCause, VmEvent, VmHandle, Vmm, short_name,
};

async fn is_mounted(vm: &VmHandle, mountpoint: &str) -> Result<bool> {
    let mounts = guest_sh(vm, "cat /proc/mounts").await?;
    Ok(mounts.lines().any(|line| line.split_whitespace().nth(1) == Some(mountpoint)))
}

async fn freeze_status_is(vm: &VmHandle, wanted: FsfreezeStatus) -> Result<bool> {
    Ok(vm.freeze_status().await? == wanted)
}

fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1e3)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_guest_freezes_hotplugs_snapshots_and_survives_an_agent_restart() -> Result<()> {
    let Some(env) = Env::new().await? else { return Ok(()) };
    let mut guard = QemuGuard::new();
    let root = tempfile::tempdir()?;
    let dir = root.path().join("vm");
    let (data, logs) = (root.path().join("data.qcow2"), root.path().join("logs.qcow2"));
    qcow2(&data, "64M", None)?;
    qcow2(&logs, "32M", None)?;
    let mut spec = env.spec("runtime-test");
    spec.disks.push(DiskSpec::new("data", &data, DiskFormat::Qcow2));
    spec.disks.push(DiskSpec::new("logs", &logs, DiskFormat::Qcow2));
    let vmm = env.vmm();

    // Launch: the agent comes up, and the VM is listed as running.
    let launched = Instant::now();
    let vm = vmm.launch(&dir, spec).await?;
    guard.watch(&vm);
    let agent_after = vm.wait_for_agent(BOOT_TIMEOUT).await?;
    println!("launch to agent: {:.2} s", launched.elapsed().as_secs_f64());
    let running = Vmm::list_running(root.path())?;
    assert_eq!(
        running.iter().map(|r| (r.pid, r.name.as_str())).collect::<Vec<_>>(),
        [(vm.pid(), "runtime-test")]
    );
    assert!(agent_after < BOOT_TIMEOUT);

    // The agent runs commands, and the data disk is mounted at /mnt/<serial>.
    guest_sh(&vm, "echo hello > /mnt/data/hello && sync").await?;
    assert_eq!(guest_sh(&vm, "cat /mnt/data/hello").await?, "hello\n");
    let filesystems = vm.fsinfo().await?;
    let data_fs =
        filesystems.iter().find(|fs| fs.mountpoint == "/mnt/data").context("no /mnt/data in fsinfo")?;
    // The test guest's qemu-ga has no udev to read serials from, so the disk is known by its node.
    assert_eq!(
        (data_fs.fs_type.as_str(), data_fs.disk[0].dev.as_deref()),
        ("ext4", Some("/dev/vda")),
        "{data_fs:?}"
    );
    assert!(vm.guest_os_info().await?.kernel_release.is_some());
    assert!(vm.guest_interfaces().await?.iter().any(|i| i.name == "lo"));

    // Freeze: a guest writer blocks for as long as the filesystems are frozen.
    guest_sh(&vm, "tswriter /mnt/data/ts 1000").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let freeze = vm.freeze(Duration::from_secs(60)).await?;
    let frozen_at = Instant::now();
    let status_while_frozen = vm.freeze_status().await?;
    let second = vm.freeze(Duration::from_secs(60)).await?;
    tokio::time::sleep(Duration::from_millis(300).saturating_sub(frozen_at.elapsed())).await;
    let thaw = vm.unfreeze().await?;
    println!("freeze call: {}, thaw call: {}", ms(freeze.took), ms(thaw.took));
    assert!(
        matches!(freeze.outcome, FreezeOutcome::Frozen { filesystems } if filesystems >= 1),
        "{freeze:?}"
    );
    assert_eq!(status_while_frozen, FsfreezeStatus::Frozen);
    assert_eq!(second.outcome, FreezeOutcome::AlreadyFrozen);
    assert!(thaw.filesystems >= 1, "{thaw:?}");
    assert_eq!(vm.freeze_status().await?, FsfreezeStatus::Thawed);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let gap_us = largest_gap_us(&guest_sh(&vm, "cat /mnt/data/ts").await?)?;
    println!("freeze window seen by tswriter: {:.1} ms", gap_us as f64 / 1e3);
    assert!(gap_us >= 300_000, "the writer did not block while frozen (largest gap {gap_us} us)");
    let hook_log = guest_sh(&vm, "cat /run/fsfreeze-hook.log").await?;
    let hooks: Vec<&str> = hook_log.lines().filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(hooks, ["freeze", "thaw"], "{hook_log}");
    // Only the filesystems asked for, with guest-fsfreeze-freeze-list.
    let listed = vm.freeze_mountpoints(&["/mnt/data".to_owned()], Duration::from_secs(60)).await?;
    let thawed = vm.unfreeze().await?;
    assert_eq!((listed.outcome, thawed.filesystems), (FreezeOutcome::Frozen { filesystems: 1 }, 1));
    let pinged = Instant::now();
    for _ in 0..10 {
        vm.guest_agent_ping().await?;
    }
    println!("guest-ping round trip: {}", ms(pinged.elapsed() / 10));

    // The auto-thaw: a 2 s unfreeze timeout thaws by itself.
    let auto = Instant::now();
    vm.freeze(Duration::from_secs(2)).await?;
    assert!(vm.paths().freeze_record().exists());
    eventually("the auto-thaw", Duration::from_secs(15), || freeze_status_is(&vm, FsfreezeStatus::Thawed))
        .await?;
    let auto_after = auto.elapsed();
    println!("auto-thaw after {:.2} s", auto_after.as_secs_f64());
    assert!(auto_after >= Duration::from_secs(2), "thawed after {auto_after:?}");
    eventually("the freeze record removal", Duration::from_secs(5), || async {
        Ok(!vm.paths().freeze_record().exists())
    })
    .await?;

    // Pause and resume, seen in the run state, the events and the agent health flag.
    let mut health = vm.guest_agent_health(Duration::from_millis(250));
    tokio::time::timeout(Duration::from_secs(5), health.wait_for(true)).await.context("agent health")?;
    let mut events = vm.events();
    vm.pause().await?;
    let paused = vm.status().await?;
    let noticed = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), health.wait_for(false)).await.context("paused agent")?;
    println!(
        "a paused guest's agent was reported disconnected after {:.2} s",
        noticed.elapsed().as_secs_f64()
    );
    vm.resume().await?;
    let resumed = vm.status().await?;
    tokio::time::timeout(Duration::from_secs(10), health.wait_for(true)).await.context("resumed agent")?;
    drop(health);
    assert_eq!((paused.running, paused.status), (false, RunState::Paused));
    assert_eq!((resumed.running, resumed.status), (true, RunState::Running));
    assert_eq!(events.next().await, Some(VmEvent::Stop));
    assert_eq!(events.next().await, Some(VmEvent::Resume));

    // Hotplug: a disk with a long name appears at /mnt/<mapped serial>, then goes away.
    let hot = root.path().join("hot.qcow2");
    qcow2(&hot, "32M", None)?;
    let hot_name = "hotplugged-volume-with-a-long-name";
    let hot_mount = format!("/mnt/{}", short_name(hot_name));
    vm.add_disk(DiskSpec::new(hot_name, &hot, DiskFormat::Qcow2)).await?;
    let mounted_after =
        eventually("the hotplugged disk mount", Duration::from_secs(30), || is_mounted(&vm, &hot_mount))
            .await?;
    println!("hotplugged disk mounted at {hot_mount} after {:.2} s", mounted_after.as_secs_f64());
    assert_eq!(vm.disk_names().await?, ["data", "logs", hot_name]);
    let removing = Instant::now();
    vm.remove_disk(hot_name).await?;
    println!("remove_disk: {}", ms(removing.elapsed()));
    eventually("the unplugged disk unmount", Duration::from_secs(30), || async {
        Ok(!is_mounted(&vm, &hot_mount).await?)
    })
    .await?;
    assert_eq!(vm.disk_names().await?, ["data", "logs"]);
    assert!(!has_open(vm.pid(), &hot)?, "QEMU still holds the unplugged disk's file");

    // Snapshot: one call puts overlays on both disks; the old layers stop changing.
    guest_sh(&vm, "echo before > /mnt/data/snap && echo log > /mnt/logs/log && sync").await?;
    let (overlay, logs_overlay) = (root.path().join("data-1.qcow2"), root.path().join("logs-1.qcow2"));
    qcow2(&overlay, "64M", Some(&data))?;
    qcow2(&logs_overlay, "32M", Some(&logs))?;
    // A failing disk fails the whole call, and nothing changes.
    let missing = root.path().join("missing.qcow2");
    let error = vm.snapshot_disks(&[("data", &overlay), ("logs", &missing)]).await.unwrap_err();
    println!("a snapshot with a missing overlay: {error}");
    let error = vm.snapshot_disks_checked(&[("data", &overlay, &overlay)]).await.unwrap_err();
    assert!(matches!(error, BlockError::ActiveFileChanged { .. }), "{error}");
    assert_eq!((vm.active_file("data").await?, vm.active_file("logs").await?), (data.clone(), logs.clone()));
    assert!(!has_open(vm.pid(), &overlay)?, "a rolled-back overlay is still open");
    let snapshot_took = vm.snapshot_disks(&[("data", &overlay), ("logs", &logs_overlay)]).await?;
    println!("snapshot_disks call (2 disks): {}", ms(snapshot_took));
    assert_eq!(vm.active_file("data").await?, overlay);
    assert_eq!(vm.active_file("logs").await?, logs_overlay);
    let chain: Vec<_> = vm.disk_chain("data").await?.into_iter().map(|layer| layer.path).collect();
    assert_eq!(chain, [overlay.clone(), data.clone()]);
    let sealed = (sha256(&data)?, sha256(&logs)?);
    guest_sh(&vm, "echo after > /mnt/data/snap2 && echo more >> /mnt/logs/log && sync").await?;
    tokio::time::sleep(Duration::from_millis(200)).await; // tswriter keeps writing too
    assert_eq!((sha256(&data)?, sha256(&logs)?), sealed, "a sealed layer changed after the snapshot");

    // Stream: the chain collapses into the overlay and QEMU lets go of the old layer.
    let stream = vm.stream_disk("data", None).await?;
    println!("stream_disk: {} for {} bytes", ms(stream.took), stream.bytes);
    let chain: Vec<_> = vm.disk_chain("data").await?.into_iter().map(|layer| layer.path).collect();
    assert_eq!(chain, std::slice::from_ref(&overlay));
    assert!(!has_open(vm.pid(), &data)?, "QEMU still holds the streamed-away layer");
    assert_eq!(guest_sh(&vm, "cat /mnt/data/hello /mnt/data/snap").await?, "hello\nbefore\n");
    // Two more snapshots, then a partial stream down to the first overlay,
    // recording a relative backing file name: the middle layer is let go.
    let (second, third) = (root.path().join("data-2.qcow2"), root.path().join("data-3.qcow2"));
    qcow2(&second, "64M", Some(&overlay))?;
    vm.snapshot_disks(&[("data", &second)]).await?;
    qcow2(&third, "64M", Some(&second))?;
    vm.snapshot_disks(&[("data", &third)]).await?;
    guest_sh(&vm, "echo third > /mnt/data/third && sync").await?;
    vm.stream_disk_recording("data", Some(&overlay), Some("data-1.qcow2")).await?;
    let chain: Vec<_> = vm.disk_chain("data").await?.into_iter().map(|layer| layer.path).collect();
    assert_eq!(chain, [third.clone(), overlay.clone()]);
    assert!(!has_open(vm.pid(), &second)?, "QEMU still holds the streamed-away middle layer");
    assert_eq!(backing_file_of(&third)?, "data-1.qcow2");
    assert_eq!(guest_sh(&vm, "cat /mnt/data/snap2 /mnt/data/third").await?, "after\nthird\n");

    // A chain deeper than QEMU's 4,095-byte filenames can describe (layers recording their backing
    // by relative name, as the storage driver's do, are described as nested `json:` options): each
    // layer is still found.
    let mut below = logs_overlay.clone();
    for i in 0..40 {
        let layer = root.path().join(format!("logs-deep-{i}.qcow2"));
        qcow2(&layer, "32M", Some(Path::new(below.file_name().unwrap())))?;
        vm.snapshot_disks_checked(&[("logs", &below, &layer)]).await?;
        below = layer;
    }
    assert_eq!(vm.active_file("logs").await?, below);
    let chain: Vec<_> = vm.disk_chain("logs").await?.into_iter().map(|layer| layer.path).collect();
    assert_eq!((chain.len(), chain.first(), chain.last()), (42, Some(&below), Some(&logs)));

    // Agent restart: a freeze whose deadline passes while no agent runs is thawed on attach.
    let pid = vm.pid();
    vm.freeze(Duration::from_secs(1)).await?;
    drop(events);
    drop(vm);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let vm = vmm.attach(&dir).await?.context("the VM did not survive the agent restart")?;
    assert_eq!(vm.pid(), pid);
    assert_eq!(
        vm.freeze_status().await?,
        FsfreezeStatus::Thawed,
        "the overdue freeze was not thawed on attach"
    );
    assert_eq!(vm.status().await?.status, RunState::Running);
    // ...and one whose deadline is still ahead is re-armed.
    vm.freeze(Duration::from_secs(2)).await?;
    drop(vm);
    let vm = vmm.attach(&dir).await?.context("the VM did not survive the second agent restart")?;
    assert_eq!(vm.freeze_status().await?, FsfreezeStatus::Frozen, "the pending freeze was thawed early");
    eventually("the re-armed auto-thaw", Duration::from_secs(15), || {
        freeze_status_is(&vm, FsfreezeStatus::Thawed)
    })
    .await?;

    // Power-down: the guest powers off and QEMU exits.
    vm.powerdown().await?;
    let exit = vm.wait_exit(Duration::from_secs(30)).await?;
    let shutdown = exit.shutdown.context("no SHUTDOWN event")?;
    assert!(shutdown.guest && shutdown.reason == ShutdownCause::GuestShutdown, "{shutdown:?}");
    assert!(!vm.is_running());
    assert!(!vm.paths().qmp_socket().exists() && !vm.paths().pidfile().exists());
    assert!(std::fs::read_to_string(vm.console_log_path())?.contains("vmsnap-guest: ready"));
    assert!(vmm.attach(&dir).await?.is_none());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_launch_waits_for_resume_and_guest_shutdown_and_kill_end_qemu() -> Result<()> {
    let Some(env) = Env::new().await? else { return Ok(()) };
    let mut guard = QemuGuard::new();
    let root = tempfile::tempdir()?;
    let dir = root.path().join("vm");
    let mut spec = env.spec("paused-test");
    spec.start_paused = true;
    spec.nics.push(NicSpec { name: "default".into(), mac: None, model: NicModel::Virtio });
    let vmm = env.vmm();

    // A paused launch stays paused until resumed; the NIC got a MAC.
    let vm = vmm.launch(&dir, spec.clone()).await?;
    guard.watch(&vm);
    let status = vm.status().await?;
    assert!(!status.running, "{status:?}");
    let mac = vm.spec().nics[0].mac.context("no MAC assigned")?;
    assert!(mac.is_locally_administered());
    let error = vmm.launch(&dir, spec.clone()).await.unwrap_err();
    assert!(matches!(error, LaunchError::AlreadyRunning { pid, .. } if pid == vm.pid()), "{error}");
    let mut events = vm.events();
    let resumed = Instant::now();
    vm.resume().await?;
    assert_eq!(events.next().await, Some(VmEvent::Resume));
    vm.wait_for_agent(BOOT_TIMEOUT).await?;
    println!("resume to agent: {:.2} s", resumed.elapsed().as_secs_f64());
    let interfaces = vm.guest_interfaces().await?;
    assert!(
        interfaces.iter().any(|i| i.hardware_address.as_deref() == Some(mac.to_string().as_str())),
        "{interfaces:?}"
    );

    // guest-shutdown powers the guest off; the controller sees it in the events.
    vm.shutdown_guest().await?;
    let exit = vm.wait_exit(Duration::from_secs(30)).await?;
    assert_eq!(exit.shutdown.map(|s| s.guest), Some(true));
    assert!(matches!(events.next().await, Some(VmEvent::Shutdown(info)) if info.guest));
    assert!(vmm.attach(&dir).await?.is_none());

    // kill stops a VM that never ran.
    let vm = vmm.launch(&dir, spec).await?;
    guard.watch(&vm);
    let report = vm.kill().await?;
    println!("kill: {} (forced: {})", ms(report.took), report.forced);
    assert!(!report.forced);
    assert!(!vm.is_running());
    assert!(Vmm::list_running(root.path())?.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_launch_that_qemu_refuses_reports_its_message_and_leaves_nothing_running() -> Result<()> {
    let Some(env) = Env::new().await? else { return Ok(()) };
    let root = tempfile::tempdir()?;
    let mut spec = env.spec("broken");
    spec.disks.push(DiskSpec::new("data", root.path().join("missing.qcow2"), DiskFormat::Qcow2));

    let error = env.vmm().launch(&root.path().join("vm"), spec).await.unwrap_err();

    let LaunchError::QemuFailed { message, .. } = &error else { panic!("unexpected error: {error}") };
    assert!(message.contains("missing.qcow2"), "{message}");
    ensure!(Vmm::list_running(root.path())?.is_empty(), "a QEMU is left running");
    Ok(())
}
