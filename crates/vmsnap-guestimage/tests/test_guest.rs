//! Builds the test guest and boots it for real under TCG.

mod support;

use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::json;
use support::qga::Qga;
use support::vm::Vm;
use vmsnap_guestimage::{TEST_GUEST_IMAGE, ensure_built, find_built, test_cache_root};

#[test]
fn second_ensure_built_is_a_cache_hit() -> Result<()> {
    let Some(first) = support::test_guest()? else {
        return Ok(());
    };
    let mut lines = Vec::new();
    let started = Instant::now();

    let second = ensure_built(&test_cache_root(), &mut |line| lines.push(line.to_owned()))?;

    let took = started.elapsed();
    println!("cache hit took {:.2} s: {lines:?}", took.as_secs_f64());
    assert_eq!(second, first);
    assert_eq!(second.image_name, TEST_GUEST_IMAGE);
    assert!(lines.iter().all(|l| !l.contains("downloading") && !l.contains("built")), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("cached")), "{lines:?}");
    assert!(took < Duration::from_secs(5), "a cache hit took {took:?}");
    assert_eq!(find_built(&test_cache_root()), Some(second));
    Ok(())
}

#[test]
fn guest_mounts_data_disk_freezes_runs_tswriter_and_shuts_down() -> Result<()> {
    let Some(image) = support::test_guest()? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let booted = Instant::now();
    let mut vm = Vm::boot(&image, dir.path())?;
    let mut qga = Qga::connect(&vm.agent_socket(), Duration::from_secs(60))?;
    println!("boot to agent: {:.2} s", booted.elapsed().as_secs_f64());
    assert_eq!(qga.execute("guest-ping", json!({}))?, json!({}));
    vm.wait_console("vmsnap-guest: ready", Duration::from_secs(5))?;

    let mounts = qga.run("cat", &["/proc/mounts"])?;
    assert!(mounts.lines().any(|l| l.starts_with("/dev/vda /mnt/data ext4 ")), "{mounts}");
    qga.run("sh", &["-c", "echo hello > /mnt/data/hello && sync"])?;
    assert_eq!(qga.run("cat", &["/mnt/data/hello"])?, "hello\n");

    // tswriter detaches: guest-exec with captured output finishes at once.
    let pid = qga.spawn("tswriter", &["/mnt/data/ts", "1000"])?;
    let output = qga.wait(pid, Duration::from_secs(3))?;
    assert_eq!(output.exit_code, 0, "{output:?}");
    assert!(output.stdout.trim().parse::<u32>().is_ok(), "tswriter prints its daemon's pid: {output:?}");
    let before = line_count(&mut qga, "/mnt/data/ts")?;
    thread::sleep(Duration::from_millis(300));
    let after = line_count(&mut qga, "/mnt/data/ts")?;
    assert!(after > before, "the timestamp file does not grow: {before} then {after} lines");

    let frozen = qga.execute("guest-fsfreeze-freeze", json!({}))?;
    assert!(frozen.as_u64().is_some_and(|n| n >= 1), "froze {frozen}");
    assert_eq!(qga.execute("guest-fsfreeze-status", json!({}))?, "frozen");
    thread::sleep(Duration::from_millis(500));
    qga.execute("guest-fsfreeze-thaw", json!({}))?;
    assert_eq!(qga.execute("guest-fsfreeze-status", json!({}))?, "thawed");

    let hook_log = qga.run("cat", &["/run/fsfreeze-hook.log"])?;
    let (freeze_us, thaw_us) = freeze_and_thaw_times(&hook_log)?;
    assert!(thaw_us - freeze_us >= 400_000, "hook log {hook_log:?}");
    thread::sleep(Duration::from_millis(100));
    let gap_us = largest_gap_us(&qga.run("cat", &["/mnt/data/ts"])?)?;
    println!("freeze seen by tswriter: {:.1} ms", gap_us as f64 / 1000.0);
    assert!(gap_us >= 400_000, "tswriter's writes did not block while frozen (largest gap {gap_us} us)");

    qga.send_only("guest-shutdown", json!({}))?;
    let status = vm.wait_exit(Duration::from_secs(15))?;
    assert!(status.success(), "QEMU exited with {status}");
    vm.wait_console("vmsnap-guest: shutdown (poweroff)", Duration::ZERO)?;
    // tswriter still had its file open: shutdown stopped it and unmounted cleanly.
    let summary = support::vm::ext4_summary(&vm.data_disk())?;
    assert!(
        summary.lines().any(|l| l.starts_with("Filesystem state:") && l.ends_with(" clean")),
        "{summary}"
    );
    assert!(!summary.contains("needs_recovery"), "{summary}");
    Ok(())
}

#[test]
fn acpi_power_button_powers_the_guest_off() -> Result<()> {
    let Some(image) = support::test_guest()? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let mut vm = Vm::boot(&image, dir.path())?;
    Qga::connect(&vm.agent_socket(), Duration::from_secs(60))?;

    vm.qmp("system_powerdown", json!({}))?;

    let status = vm.wait_exit(Duration::from_secs(15))?;
    assert!(status.success(), "QEMU exited with {status}");
    vm.wait_console("vmsnap-guest: shutdown (poweroff)", Duration::ZERO)?;
    Ok(())
}

#[test]
fn hotplugged_disk_is_formatted_mounted_and_unmounted_when_unplugged() -> Result<()> {
    let Some(image) = support::test_guest()? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let vm = Vm::boot(&image, dir.path())?;
    let mut qga = Qga::connect(&vm.agent_socket(), Duration::from_secs(60))?;

    let plugged = Instant::now();
    vm.hotplug_disk("extra")?;
    wait_for_mount(&mut qga, " /mnt/extra ext4 ", true)?;
    println!("hotplug to mounted: {:.2} s", plugged.elapsed().as_secs_f64());
    qga.run("sh", &["-c", "echo hotplugged > /mnt/extra/file"])?;
    vm.unplug_disk("extra")?;

    wait_for_mount(&mut qga, " /mnt/extra ", false)?;
    Ok(())
}

#[test]
fn scsi_disks_are_mounted_by_the_36_bytes_of_serial_the_guest_reads_and_virtio_ones_by_20() -> Result<()> {
    let Some(image) = support::test_guest()? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let vm = Vm::boot(&image, dir.path())?;
    let mut qga = Qga::connect(&vm.agent_socket(), Duration::from_secs(60))?;
    // KubeVirt's hotplug tests use 24-byte serials (`test-volume-<12 random>`).
    let (kubevirt_like, forty) = ("test-volume-abcdefghijkl", "scsi-serial-of-forty-bytes-0123456789ab");

    vm.hotplug("scsi1", json!({"driver": "scsi-hd", "bus": "scsi0.0", "serial": kubevirt_like}))?;
    vm.hotplug("scsi2", json!({"driver": "scsi-hd", "bus": "scsi0.0", "serial": forty}))?;
    vm.hotplug("virtio2", json!({"driver": "virtio-blk-pci", "serial": "virtio-volume-abcdefghijkl"}))?;

    wait_for_mount(&mut qga, &format!(" /mnt/{kubevirt_like} ext4 "), true)?;
    wait_for_mount(&mut qga, &format!(" /mnt/{} ext4 ", &forty[..36]), true)?;
    wait_for_mount(&mut qga, " /mnt/virtio-volume-abcdef ext4 ", true)?;
    let mounts = qga.run("cat", &["/proc/mounts"])?;
    assert!(mounts.lines().any(|l| l.starts_with(&format!("/dev/sda /mnt/{kubevirt_like} "))), "{mounts}");
    qga.run("sh", &["-c", &format!("echo scsi > /mnt/{kubevirt_like}/file && sync")])?;
    assert_eq!(qga.run("cat", &[&format!("/mnt/{kubevirt_like}/file")])?, "scsi\n");

    vm.unplug_disk("scsi1")?;
    wait_for_mount(&mut qga, &format!(" /mnt/{kubevirt_like} "), false)?;
    Ok(())
}

#[test]
fn the_guest_boots_and_mounts_its_disk_with_its_least_memory() -> Result<()> {
    let Some(image) = support::test_guest()? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let vm = Vm::boot_with_memory(&image, dir.path(), vmsnap_guestimage::MIN_MEMORY_MIB)?;
    let mut qga = Qga::connect(&vm.agent_socket(), Duration::from_secs(60))?;

    wait_for_mount(&mut qga, "/dev/vda /mnt/data ext4 ", true)?;
    qga.run("sh", &["-c", "echo small > /mnt/data/file && sync"])?;
    let meminfo = qga.run("cat", &["/proc/meminfo"])?;
    println!("{}", meminfo.lines().take(3).collect::<Vec<_>>().join("; "));
    Ok(())
}

/// Waits until a line of /proc/mounts contains `text` (or none does, if `present` is false).
fn wait_for_mount(qga: &mut Qga, text: &str, present: bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mounts = qga.run("cat", &["/proc/mounts"])?;
        if mounts.contains(text) == present {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "waited for {text:?} present={present} in:\n{mounts}");
        thread::sleep(Duration::from_millis(200));
    }
}

fn line_count(qga: &mut Qga, file: &str) -> Result<usize> {
    Ok(qga.run("cat", &[file])?.lines().count())
}

/// The times of the first `freeze` and the following `thaw` in the hook log.
fn freeze_and_thaw_times(log: &str) -> Result<(i64, i64)> {
    let time = |verb: &str| -> Result<i64> {
        let line = log
            .lines()
            .find(|l| l.starts_with(verb))
            .with_context(|| format!("no {verb} line in {log:?}"))?;
        line[verb.len()..].trim().parse().with_context(|| format!("bad line {line:?}"))
    };
    Ok((time("freeze ")?, time("thaw ")?))
}

/// The largest time between two consecutive tswriter lines, checking their sequence numbers.
fn largest_gap_us(lines: &str) -> Result<i64> {
    let mut previous: Option<i64> = None;
    let mut largest = 0;
    for (expected_seq, line) in lines.lines().enumerate() {
        let (time, seq) = line.split_once(' ').with_context(|| format!("bad line {line:?}"))?;
        ensure!(seq.parse::<usize>()? == expected_seq, "sequence jumps at {line:?}");
        let time: i64 = time.parse()?;
        if let Some(previous) = previous {
            largest = largest.max(time - previous);
        }
        previous = Some(time);
    }
    Ok(largest)
}
