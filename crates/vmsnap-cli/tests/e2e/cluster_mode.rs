//! Cluster mode: `vmsnap serve --no-controllers` plays the cluster (API server, node agent, storage
//! driver) and two `vmsnap controller` processes, elected on a Lease, run the snapshot and restore
//! controllers over the network as they would against a real kube-apiserver.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::kubectl_flow::kubectl_flow;
use crate::support::*;

/// Seconds a leader holds the Lease without renewing it: short, so a takeover is quick.
const LEASE_SECONDS: &str = "3";

/// `vmsnap controller` processes (killed on drop).
struct ControllerProcesses {
    children: Vec<std::process::Child>,
}

impl ControllerProcesses {
    fn start(vmsnap: &Vmsnap, count: usize) -> ControllerProcesses {
        let children = (0..count)
            .map(|i| {
                let log =
                    std::fs::File::create(vmsnap.data_dir().join(format!("controller-{i}.log"))).unwrap();
                std::process::Command::new(env!("CARGO_BIN_EXE_vmsnap"))
                    .args(["controller", "--lease-namespace", "default", "--lease-duration", LEASE_SECONDS])
                    .arg("--kubeconfig")
                    .arg(vmsnap.kubeconfig())
                    .stdin(Stdio::null())
                    .stdout(log.try_clone().unwrap())
                    .stderr(log)
                    .spawn()
                    .expect("start vmsnap controller")
            })
            .collect();
        ControllerProcesses { children }
    }

    fn pids(&self) -> Vec<u32> {
        self.children.iter().map(std::process::Child::id).collect()
    }
}

impl Drop for ControllerProcesses {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn start_cluster() -> Option<(Vmsnap, ControllerProcesses)> {
    let vmsnap = Vmsnap::start(Path::new(env!("CARGO_BIN_EXE_vmsnap")), "tcg", &["--no-controllers"])
        .expect("start vmsnap serve --no-controllers")?;
    let controllers = ControllerProcesses::start(&vmsnap, 2);
    Some((vmsnap, controllers))
}

/// The pid of the replica holding the Lease (its identity is `<host>-<pid>`).
async fn leader(vmsnap: &Vmsnap, controllers: &ControllerProcesses) -> u32 {
    let mut found = None;
    until("a controller to lead", Duration::from_secs(30), async || {
        let lease = get_json(vmsnap, "lease", "vmsnap-controllers").await.unwrap_or_default();
        let holder = lease["spec"]["holderIdentity"].as_str().unwrap_or_default().to_owned();
        found = controllers.pids().into_iter().find(|pid| holder.ends_with(&format!("-{pid}")));
        found.is_some()
    })
    .await;
    found.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_kubectl_flow_works_with_the_controllers_in_two_elected_processes() {
    let Some((vmsnap, _controllers)) = start_cluster() else { return };
    kubectl_flow(&vmsnap).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_leader_during_a_freeze_lets_the_other_replica_finish_and_thaw() {
    let Some((vmsnap, controllers)) = start_cluster() else { return };
    kubectl(&vmsnap, &["apply", "-f", &example("vm.yaml")]).await;
    await_running_with_agent(&vmsnap, "demo").await;
    // A guest whose freeze takes 4 s: the leader is killed while its freeze call is in flight.
    let slow_hook = "printf '#!/bin/sh\\n[ \"$1\" = freeze ] && sleep 4\\nexit 0\\n' > /etc/qemu/fsfreeze-hook.d/00-slow \
                     && chmod +x /etc/qemu/fsfreeze-hook.d/00-slow && echo A > /mnt/data/f && sync";
    vmsnap.sh("demo", slow_hook).await.unwrap();
    let leader = leader(&vmsnap, &controllers).await;

    kubectl(&vmsnap, &["create", "-f", &example("snapshot.yaml")]).await;
    until("the snapshot to lock the VM", Duration::from_secs(30), async || {
        let vm = get_json(&vmsnap, "vm", "demo").await.unwrap();
        vm["status"]["snapshotInProgress"] == "demo-snapshot"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    kill(Pid::from_raw(leader as i32), Signal::SIGKILL).unwrap();

    let timeout = format!("--timeout={OPERATION_TIMEOUT}");
    kubectl(&vmsnap, &["wait", "vmsnapshot", "demo-snapshot", "--for", "condition=Ready", &timeout]).await;
    let snapshot = get_json(&vmsnap, "vmsnapshot", "demo-snapshot").await.unwrap();
    assert_eq!(strings(&snapshot["status"]["indications"]), ["GuestAgent", "Online"], "{snapshot:#}");
    let new_leader = leader_after(&vmsnap, &controllers, leader).await;
    assert_ne!(new_leader, leader);
    // Thawed by the new leader, long before the 5 minute safety thaw.
    let vmi = get_json(&vmsnap, "vmi", "demo").await.unwrap();
    assert!(vmi["status"]["fsFreezeStatus"].is_null(), "the guest is still frozen: {vmi:#}");
    let hooks =
        vmsnap.sh("demo", "echo B > /mnt/data/f && sync && cat /run/fsfreeze-hook.log").await.unwrap();
    assert!(hooks.trim_end().lines().last().unwrap_or_default().starts_with("thaw"), "{hooks}");
    let vm = get_json(&vmsnap, "vm", "demo").await.unwrap();
    assert!(vm["status"]["snapshotInProgress"].is_null(), "the VM is unlocked: {vm:#}");
}

/// The leader once `previous` is gone.
async fn leader_after(vmsnap: &Vmsnap, controllers: &ControllerProcesses, previous: u32) -> u32 {
    let mut found = previous;
    until("another controller to lead", Duration::from_secs(30), async || {
        found = leader(vmsnap, controllers).await;
        found != previous
    })
    .await;
    found
}

/// Backups in cluster mode: the elected controller takes the VM's snapshot, and `vmsnap serve
/// --no-controllers` (whose backup controllers run beside the node's disks) uploads it and
/// restores it as a new VM.
#[tokio::test(flavor = "multi_thread")]
async fn a_backup_taken_with_the_controllers_elsewhere_restores_as_a_new_vm() {
    let Some((vmsnap, _controllers)) = start_cluster() else { return };
    kubectl(&vmsnap, &["apply", "-f", &example("vm.yaml")]).await;
    await_running_with_agent(&vmsnap, "demo").await;
    vmsnap.sh("demo", "echo backed-up > /mnt/data/f && sync").await.unwrap();
    let passphrase = vmsnap.data_dir().join("../passphrase");
    std::fs::write(&passphrase, "a passphrase for the cluster test\n").unwrap();
    vmsnap.cli(&["repo", "add", "local", "--passphrase-file", passphrase.to_str().unwrap()]).await.ok();

    let out = vmsnap.cli(&["backup", "create", "demo", "--repo", "local", "--name", "demo-1"]).await;
    assert!(out.ok().contains("Full"), "{}", out.stdout);
    let backup = get_json(&vmsnap, "vmrbackup", "demo-1").await.unwrap();
    let snapshot = backup["status"]["snapshotName"].as_str().unwrap_or_default().to_owned();
    let taken = get_json(&vmsnap, "vmsnapshot", &snapshot).await.unwrap();
    assert_eq!(taken["status"]["readyToUse"], true, "the elected controller took the snapshot: {taken:#}");

    vmsnap.cli(&["backup", "restore", "demo-1", "--to", "demo-copy"]).await.ok();
    vmsnap.cli(&["vm", "start", "demo-copy"]).await.ok();
    await_running_with_agent(&vmsnap, "demo-copy").await;
    assert_eq!(vmsnap.sh("demo-copy", "cat /mnt/data/f").await.unwrap().trim(), "backed-up");
    vmsnap.cli(&["vm", "stop", "demo-copy"]).await.ok();
}
