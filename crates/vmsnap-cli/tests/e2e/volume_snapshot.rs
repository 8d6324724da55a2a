//! The storage driver with a running guest: a VolumeSnapshot (CSI, no freeze) of a data disk taken
//! while a guest process writes and fsyncs, restored into a new PVC and attached to a second VM,
//! holds exactly the data written up to the cut.

use std::time::Duration;

use crate::support::*;

const SNAPSHOT: &str = r#"{"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
    "metadata": {"name": "cut"},
    "spec": {"volumeSnapshotClassName": "local-snapshots", "source": {"persistentVolumeClaimName": "demo-data"}}}"#;

const RESTORED_CLAIM: &str = r#"{"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "restored"},
    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
             "dataSource": {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "cut"}}}"#;

const SECOND_VM: &str = r#"{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": {"name": "second"},
    "spec": {"runStrategy": "Always", "template": {"spec": {
        "domain": {"firmware": {"kernelBoot": {"container": {"image": "vmsnap.local/test-guest:latest"}}},
                   "devices": {"disks": [{"name": "restored", "disk": {"bus": "virtio"}}]},
                   "resources": {"requests": {"memory": "256Mi"}}},
        "volumes": [{"name": "restored", "persistentVolumeClaim": {"claimName": "restored"}}]}}}}"#;

async fn line_count(vmsnap: &Vmsnap) -> usize {
    vmsnap.sh("demo", "wc -l < /mnt/data/ts.log").await.unwrap().trim().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_volume_snapshot_taken_during_writes_restores_exactly_the_data_up_to_the_cut() {
    let Some(vmsnap) = start("tcg") else { return };
    kubectl(&vmsnap, &["apply", "-f", &example("vm.yaml")]).await;
    await_running_with_agent(&vmsnap, "demo").await;
    // Files with a checksum manifest, then a writer that appends and fsyncs a line every 2 ms.
    let files = "mkdir -p /mnt/data/files && for i in $(seq 1 20); do \
                 head -c 65536 /dev/urandom > /mnt/data/files/$i; done && \
                 cd /mnt/data/files && sha256sum * > /mnt/data/manifest && sync";
    vmsnap.sh("demo", files).await.unwrap();
    vmsnap.sh("demo", "tswriter -s /mnt/data/ts.log 2000").await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;

    let written_before = line_count(&vmsnap).await;
    vmsnap.kubectl().run_stdin_async(&["create", "-f", "-"], SNAPSHOT).await.ok();
    let ready = "--for=jsonpath={.status.readyToUse}=true";
    kubectl(&vmsnap, &["wait", "volumesnapshot", "cut", ready, "--timeout=60s"]).await;
    let written_after = line_count(&vmsnap).await;
    // The guest goes on: the files change, the writer is stopped, and what it wrote is read.
    vmsnap
        .sh("demo", "for f in /mnt/data/files/*; do echo changed > $f; done; kill $(pidof tswriter); sync")
        .await
        .unwrap();
    let live = vmsnap.sh("demo", "cat /mnt/data/ts.log").await.unwrap();

    vmsnap.kubectl().run_stdin_async(&["create", "-f", "-"], RESTORED_CLAIM).await.ok();
    vmsnap.kubectl().run_stdin_async(&["create", "-f", "-"], SECOND_VM).await.ok();
    await_running_with_agent(&vmsnap, "second").await;
    let restored = vmsnap.sh("second", "cat /mnt/restored/ts.log").await.unwrap();
    let check = vmsnap.sh("second", "cd /mnt/restored/files && sha256sum -c /mnt/restored/manifest").await;
    assert!(check.is_ok(), "the files written before the snapshot are intact: {check:?}");

    assert!(live.starts_with(&restored), "the restored log is a prefix of what the guest wrote");
    assert!(restored.ends_with('\n'), "no torn line at the cut: {:?}", restored.lines().last());
    let restored_lines = restored.lines().count();
    assert!(
        (written_before..=written_after).contains(&restored_lines),
        "the cut is between the snapshot's creation and its readiness: {written_before} <= {restored_lines} <= {written_after}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disk_image_in_the_import_directory_becomes_a_data_volume_and_other_files_are_refused() {
    let Some(vmsnap) = start("tcg") else { return };
    let image = vmsnap.data_dir().join("import/disk.raw");
    std::fs::create_dir_all(image.parent().unwrap()).unwrap();
    std::fs::write(&image, vec![7u8; 4 << 20]).unwrap();
    let dv = |name: &str, url: &str| {
        format!(
            r#"{{"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume", "metadata": {{"name": "{name}"}},
                "spec": {{"source": {{"http": {{"url": "{url}"}}}},
                         "storage": {{"resources": {{"requests": {{"storage": "16Mi"}}}}}}}}}}"#
        )
    };
    let url = format!("file://{}", image.display());
    vmsnap.kubectl().run_stdin_async(&["create", "-f", "-"], &dv("imported", &url)).await.ok();
    let done = "--for=jsonpath={.status.phase}=Succeeded";
    kubectl(&vmsnap, &["wait", "dv", "imported", done, "--timeout=60s"]).await;
    assert_eq!(get_json(&vmsnap, "pvc", "imported").await.unwrap()["status"]["phase"], "Bound");

    vmsnap.kubectl().run_stdin_async(&["create", "-f", "-"], &dv("sneaky", "file:///etc/passwd")).await.ok();
    until(
        "the import of a file outside the import directories to be refused",
        Duration::from_secs(30),
        async || {
            let dv = get_json(&vmsnap, "dv", "sneaky").await.unwrap();
            let said = dv["status"]["conditions"].to_string();
            dv["status"]["phase"] != "Succeeded" && said.contains("/etc/passwd")
        },
    )
    .await;
}
