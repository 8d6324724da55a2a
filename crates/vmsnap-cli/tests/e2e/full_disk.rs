//! A real guest on a data directory that fills up: `vmsnap serve` on a small tmpfs, the guest
//! writing until QEMU stops it on ENOSPC. The VMI shows it as KubeVirt does (`Paused`, reason
//! `PausedIOError`, no `AgentConnected`, the VM `Paused`, an `IOerror` Warning naming the volume
//! and the full directory), and once the host frees space the guest resumes by itself, finishes
//! its write and keeps a working file system.
//!
//! It mounts a tmpfs: it must run as root, and fails (it does not skip) otherwise.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use vmsnap_testing::tmpfs::Tmpfs;

use crate::support::*;

const MIB: u64 = 1 << 20;

/// The tmpfs the data directory lives on.
const DISK_SIZE: &str = "192m";

/// What the test puts in the data directory before the guest writes, to delete later.
const BALLAST_MIB: u64 = 96;

/// How much more than the free space the guest writes: what is left to write once it resumes.
const OVERFLOW_MIB: u64 = 16;

fn free_bytes(dir: &Path) -> u64 {
    let stats = nix::sys::statvfs::statvfs(dir).unwrap();
    stats.blocks_available() * stats.fragment_size()
}

/// The VMI's `Paused` condition as `(status, reason, message)`.
fn paused(vmi: &Value) -> Option<(String, String, String)> {
    let list = vmi["status"]["conditions"].as_array()?;
    let c = list.iter().find(|c| c["type"] == "Paused")?;
    let text = |key: &str| c[key].as_str().unwrap_or_default().to_owned();
    Some((text("status"), text("reason"), text("message")))
}

/// The notes of the events on VMI `name` with `reason`.
async fn event_notes(vmsnap: &Vmsnap, name: &str, reason: &str) -> Vec<(String, String)> {
    let out = vmsnap.kubectl_run(&["get", "events.events.k8s.io", "-o", "json"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let list: Value = serde_json::from_str(&out.stdout).unwrap();
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["reason"] == reason && e["regarding"]["name"] == name)
        .map(|e| {
            (e["type"].as_str().unwrap_or_default().into(), e["note"].as_str().unwrap_or_default().into())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_paused_on_a_full_data_directory_is_shown_and_resumes_once_space_is_freed() {
    let root = tempfile::Builder::new().prefix("vf").tempdir_in("/tmp").unwrap();
    let disk = Tmpfs::mount(&root.path().join("d"), DISK_SIZE, 0o700);
    let data = disk.path().join("data");
    let Some(vmsnap) = Vmsnap::start_in(Path::new(env!("CARGO_BIN_EXE_vmsnap")), &data, "tcg", &[])
        .expect("start vmsnap serve")
    else {
        return;
    };
    kubectl(&vmsnap, &["apply", "-f", &example("vm.yaml")]).await;
    await_running_with_agent(&vmsnap, "demo").await;
    // `vmsnap serve` keeps an 8 MiB space reserve and gives it back when the disk fills up.
    assert!(data.join("space-reserve").exists(), "no space reserve:\n{}", tail(&vmsnap.log()));
    let ballast = data.join("ballast");
    std::fs::write(&ballast, vec![0x5a; (BALLAST_MIB * MIB) as usize]).unwrap();

    // The guest writes more than the data directory has room for, in the background (its agent
    // cannot answer while QEMU has it stopped).
    let free_mib = free_bytes(&data) / MIB;
    let count = free_mib + OVERFLOW_MIB;
    let write = format!(
        "(dd if=/dev/zero of=/mnt/data/fill bs=1M count={count} oflag=direct conv=fsync; echo $? > /run/dd.rc) \
         >/run/dd.log 2>&1 </dev/null &"
    );
    vmsnap.sh("demo", &write).await.unwrap();
    let started = Instant::now();

    // Shown as KubeVirt shows it.
    let mut vmi;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        vmi = get_json(&vmsnap, "vmi", "demo").await.unwrap();
        if paused(&vmi).is_some_and(|(status, _, _)| status == "True") {
            break;
        }
        if Instant::now() > deadline {
            // No `vmsnap exec` here: a stopped guest's agent does not answer.
            let write =
                vmsnap.kubectl_run(&["annotate", "vmi", "demo", "probe=1", "--request-timeout=10s"]).await;
            panic!(
                "the VMI was not paused within 60 s; {} MiB free on the host; a write to the API: {write:?}\n\
                 {vmi:#}\n{}",
                free_bytes(&data) / MIB,
                tail(&vmsnap.log())
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("paused on ENOSPC after {:.1} s", started.elapsed().as_secs_f64());
    assert_eq!(
        paused(&vmi),
        Some(("True".into(), "PausedIOError".into(), "VMI was paused, low-level IO error detected".into())),
        "{vmi:#}"
    );
    assert!(
        !conditions(&vmi).iter().any(|(kind, _, _)| kind == "AgentConnected"),
        "a stopped guest's agent is shown connected: {vmi:#}"
    );
    kubectl(
        &vmsnap,
        &["wait", "vm", "demo", "--for=jsonpath={.status.printableStatus}=Paused", "--timeout=30s"],
    )
    .await;
    let mut warnings = Vec::new();
    until("the IOerror event", Duration::from_secs(30), async || {
        warnings = event_notes(&vmsnap, "demo", "IOerror").await;
        !warnings.is_empty()
    })
    .await;
    let (kind, note) = &warnings[0];
    assert_eq!(kind, "Warning");
    assert!(
        note.starts_with("VM Paused due to not enough space on volume: data. The data directory is full: "),
        "{note}"
    );
    assert!(note.contains(&data.display().to_string()), "the note does not say where: {note}");
    assert!(
        note.contains("delete snapshots") && note.contains("resumes by itself once 64 MiB are free"),
        "{note}"
    );
    // The one reserve was given back (by vmsnap serve's watch, or by the first write the store
    // could not make), and the store keeps no reserve of its own.
    assert!(!data.join("space-reserve").exists(), "no space reserve was given back on the full disk");
    assert!(!data.join("store/reserve").exists(), "the store made a second reserve");

    // Still paused a while later: the reserve given back is not room enough to resume into.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let vmi = get_json(&vmsnap, "vmi", "demo").await.unwrap();
    assert_eq!(
        paused(&vmi).map(|(status, reason, _)| (status, reason)),
        Some(("True".into(), "PausedIOError".into()))
    );

    // Free space on the host: the guest resumes by itself, finishes its write and its file system works.
    std::fs::remove_file(&ballast).unwrap();
    let freed = Instant::now();
    until("the guest to resume by itself", Duration::from_secs(30), async || {
        paused(&get_json(&vmsnap, "vmi", "demo").await.unwrap()).is_none()
    })
    .await;
    println!("resumed {:.1} s after space was freed", freed.elapsed().as_secs_f64());
    kubectl(
        &vmsnap,
        &["wait", "vm", "demo", "--for=jsonpath={.status.printableStatus}=Running", "--timeout=30s"],
    )
    .await;
    kubectl(&vmsnap, &["wait", "vmi", "demo", "--for", "condition=AgentConnected", "--timeout=30s"]).await;
    let resumed = event_notes(&vmsnap, "demo", "Resumed").await;
    assert!(
        resumed.iter().any(|(kind, note)| kind == "Normal" && note.contains("has room again")),
        "{resumed:?}"
    );
    let mut rc = String::new();
    until("the guest's write to finish", Duration::from_secs(60), async || {
        rc = vmsnap.sh("demo", "cat /run/dd.rc 2>/dev/null || true").await.unwrap();
        !rc.trim().is_empty()
    })
    .await;
    let log = vmsnap.sh("demo", "cat /run/dd.log").await.unwrap();
    assert_eq!(rc.trim(), "0", "dd failed in the guest: {log}");
    let size = vmsnap.sh("demo", "stat -c %s /mnt/data/fill").await.unwrap();
    assert_eq!(size.trim(), (count * MIB).to_string(), "{log}");
    let check = "echo still-works > /mnt/data/after && sync && echo 3 > /proc/sys/vm/drop_caches && cat /mnt/data/after";
    assert_eq!(vmsnap.sh("demo", check).await.unwrap().trim(), "still-works");
    let vmi = get_json(&vmsnap, "vmi", "demo").await.unwrap();
    assert_eq!(vmi["status"]["phase"], "Running");
    println!("whole scenario: {:.1} s", started.elapsed().as_secs_f64());
    drop(vmsnap);
}
