//! `vmsnap serve` killed with SIGKILL in the middle of a restore or an online snapshot and started
//! again: the operation finishes, the data is right, and no guest stays frozen.

use std::time::Duration;

use crate::support::*;

/// Kill points after a restore is created, spread over its ~0.3 s (more under load).
const RESTORE_KILL_DELAYS_MS: [u64; 4] = [0, 60, 150, 400];

fn restore_yaml(name: &str) -> String {
    format!(
        r#"{{"apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineRestore",
            "metadata": {{"name": "{name}"}},
            "spec": {{"target": {{"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "demo"}},
                     "virtualMachineSnapshotName": "demo-snapshot"}}}}"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn restores_interrupted_by_a_killed_server_complete_after_it_restarts() {
    let Some(mut vmsnap) = start("tcg") else { return };
    kubectl(&vmsnap, &["apply", "-f", &example("vm.yaml")]).await;
    await_running_with_agent(&vmsnap, "demo").await;
    vmsnap.sh("demo", "echo A > /mnt/data/f && sync").await.unwrap();
    take_example_snapshot(&vmsnap).await;

    for delay in RESTORE_KILL_DELAYS_MS {
        vmsnap.sh("demo", &format!("echo changed-{delay} > /mnt/data/f && sync")).await.unwrap();
        vmsnap.cli(&["vm", "stop", "demo", "--wait"]).await.ok();
        let name = format!("restore-killed-after-{delay}ms");
        vmsnap.kubectl().run_stdin_async(&["create", "-f", "-"], &restore_yaml(&name)).await.ok();
        tokio::time::sleep(Duration::from_millis(delay)).await;
        vmsnap.restart().expect("vmsnap serve starts again");

        let restore = await_restore_complete(&vmsnap, &name).await;
        assert_eq!(conditions(&restore).len(), 2, "{restore:#}");
        vmsnap.cli(&["vm", "start", "demo", "--wait"]).await.ok();
        let data = vmsnap.sh("demo", "cat /mnt/data/f").await.unwrap();
        assert_eq!(data, "A\n", "after a kill {delay} ms into restore {name}");
        let claims = kubectl(&vmsnap, &["get", "pvc", "-o", "name"]).await;
        assert_eq!(claims.lines().count(), 1, "one disk, no leftover PVC after {name}: {claims}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_online_snapshot_interrupted_by_a_killed_server_completes_and_thaws_the_guest() {
    let Some(mut vmsnap) = start("tcg") else { return };
    kubectl(&vmsnap, &["apply", "-f", &example("vm.yaml")]).await;
    await_running_with_agent(&vmsnap, "demo").await;
    // A freeze that takes 3 s, so that the kill lands while the guest is being frozen.
    let slow_hook = "printf '#!/bin/sh\\n[ \"$1\" = freeze ] && sleep 3\\nexit 0\\n' > /etc/qemu/fsfreeze-hook.d/00-slow \
                     && chmod +x /etc/qemu/fsfreeze-hook.d/00-slow && echo A > /mnt/data/f && sync";
    vmsnap.sh("demo", slow_hook).await.unwrap();
    let qemu_before = vmsnap.qemu_pids();

    kubectl(&vmsnap, &["create", "-f", &example("snapshot.yaml")]).await;
    until("the snapshot to lock the VM", Duration::from_secs(30), async || {
        get_json(&vmsnap, "vm", "demo").await.unwrap()["status"]["snapshotInProgress"] == "demo-snapshot"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    vmsnap.restart().expect("vmsnap serve starts again");

    let timeout = format!("--timeout={OPERATION_TIMEOUT}");
    kubectl(&vmsnap, &["wait", "vmsnapshot", "demo-snapshot", "--for", "condition=Ready", &timeout]).await;
    assert_eq!(vmsnap.qemu_pids(), qemu_before, "the guest kept running through the restart, and only once");
    until("the guest to be thawed", Duration::from_secs(30), async || {
        get_json(&vmsnap, "vmi", "demo").await.unwrap()["status"]["fsFreezeStatus"].is_null()
    })
    .await;
    let hooks =
        vmsnap.sh("demo", "echo B > /mnt/data/f && sync && cat /run/fsfreeze-hook.log").await.unwrap();
    assert!(hooks.trim_end().lines().last().unwrap_or_default().starts_with("thaw"), "{hooks}");
    let vm = get_json(&vmsnap, "vm", "demo").await.unwrap();
    assert!(vm["status"]["snapshotInProgress"].is_null(), "the VM is unlocked: {vm:#}");
}
