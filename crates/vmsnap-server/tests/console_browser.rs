//! The web console in a real browser: Debian's Chromium, driven by playwright-core from
//! `crates/vmsnap-console/e2e/console.test.mjs`, logs in, takes snapshots (with and without the
//! excluded-disk warning), watches them become Ready, opens their details, restores a VM in place
//! and as a new VM, deletes a snapshot, and sees snapshots made and deleted with kubectl come and
//! go live, and starts the VM restored as new. A screenshot of each screen is saved under `target/console-screenshots/` (or
//! `$VMSNAP_ARTIFACTS/console-screenshots/`).
//!
//! The server side is the real embedded control plane of `vmsnap serve`, in-process on
//! `127.0.0.1:0`: the API server with the console routes, the node agent running real QEMU guests
//! (the test guest, under TCG), the local storage driver and the snapshot and restore controllers.
//! The scenario only uses the UI and kubectl. It takes about 40 s here (the guests boot in seconds
//! under TCG); its timeouts allow for a loaded machine.
//!
//! Needs `node`, `/usr/bin/chromium` and `npm ci` in `crates/vmsnap-console/e2e` (`scripts/setup.sh
//! --test` installs them). Without them the test fails, unless `VMSNAP_ALLOW_SKIP=1`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;
use vmsnap_agent::AccelSetting;
use vmsnap_api::kubevirt::{VirtualMachine, VirtualMachineInstance};
use vmsnap_server::{DataPaths, EmbeddedServer, ServeConfig};
use vmsnap_testing::browser::{Console, require_browser, run_scenario};
use vmsnap_testing::serve::{BOOT_TIMEOUT, guest_cache};
use vmsnap_testing::{await_value, fixtures};

const NAMESPACE: &str = "default";
/// Running the test guest with its guest agent connected; every disk can be snapshotted.
const VM: &str = "demo";
/// Stopped; one disk is on the `nfs` StorageClass, which has no VolumeSnapshotClass.
const PARTIAL_VM: &str = "legacy";
/// The StorageClass of the disk that cannot be snapshotted: no provisioner serves it here and no
/// VolumeSnapshotClass names its provisioner.
const NFS_CLASS: &str = "nfs";
/// Longer than the scenario's own watchdog, which closes Chromium itself.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(300);

/// The test guest with one blank DataVolume disk per `(volume, DataVolume)`, from
/// `examples/vm.yaml`.
fn test_guest_vm(name: &str, disks: &[(&str, &str)], run_strategy: &str) -> serde_json::Value {
    let templates: Vec<_> = disks
        .iter()
        .map(|(_, dv)| {
            json!({"metadata": {"name": dv}, "spec": {"source": {"blank": {}}, "storage": {
                "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "64Mi"}},
                "storageClassName": "local"}}})
        })
        .collect();
    let devices: Vec<_> =
        disks.iter().map(|(volume, _)| json!({"name": volume, "disk": {"bus": "virtio"}})).collect();
    let volumes: Vec<_> =
        disks.iter().map(|(volume, dv)| json!({"name": volume, "dataVolume": {"name": dv}})).collect();
    json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "runStrategy": run_strategy,
            "dataVolumeTemplates": templates,
            "template": {
                "metadata": {"labels": {"kubevirt.io/vm": name}},
                "spec": {
                    "domain": {
                        "firmware": {"kernelBoot": {"container": {"image": "vmsnap.local/test-guest:latest"}}},
                        "devices": {"disks": devices},
                        "resources": {"requests": {"memory": "256Mi"}},
                    },
                    "volumes": volumes,
                },
            },
        },
    })
}

/// `vmsnap serve`'s control plane, in-process, with the VMs the scenario uses. On drop it stops,
/// and every QEMU it started is killed.
struct ConsoleEnv {
    server: Option<EmbeddedServer>,
    client: Client,
    runtime: PathBuf,
    _dir: tempfile::TempDir,
}

impl ConsoleEnv {
    async fn start() -> anyhow::Result<ConsoleEnv> {
        // Short: QEMU's socket paths under <data dir>/vms must fit 107 bytes.
        let dir = tempfile::Builder::new().prefix("vc").tempdir_in("/tmp").context("a data directory")?;
        let image_cache = guest_cache();
        let cache = image_cache.clone();
        tokio::task::spawn_blocking(move || {
            vmsnap_guestimage::ensure_built(&cache, &mut |line| println!("guest image: {line}"))
        })
        .await?
        .context("the test guest image")?;
        let mut config = ServeConfig::new(dir.path().to_owned());
        config.listen = "127.0.0.1:0".parse()?;
        config.accel = AccelSetting::Tcg;
        config.image_cache = image_cache;
        config.controllers = true;
        let runtime = DataPaths::new(dir.path()).runtime();
        let server = EmbeddedServer::start(config).await.context("start the embedded control plane")?;
        let client = vmsnap_testing::client_for(&server.api.kubeconfig_path).await?;
        let env = ConsoleEnv { server: Some(server), client, runtime, _dir: dir };
        env.create_vms().await?;
        Ok(env)
    }

    fn api(&self) -> &vmsnap_apiserver::ApiServer {
        &self.server.as_ref().expect("the server runs").api
    }

    async fn create_vms(&self) -> anyhow::Result<()> {
        let classes: Api<StorageClass> = Api::all(self.client.clone());
        let nfs = serde_json::from_value(json!({
            "metadata": {"name": NFS_CLASS}, "provisioner": "nfs.example.com", "volumeBindingMode": "Immediate"
        }))?;
        classes.create(&PostParams::default(), &nfs).await?;
        // Bound by hand, as the NFS provisioner this machine does not have would.
        fixtures::create_bound_pvc(&self.client, NAMESPACE, "legacy-shared", NFS_CLASS).await?;

        let vms: Api<VirtualMachine> = Api::namespaced(self.client.clone(), NAMESPACE);
        let demo = test_guest_vm(VM, &[("data", "demo-data"), ("logs", "demo-logs")], "Always");
        let mut legacy = test_guest_vm(PARTIAL_VM, &[("rootdisk", "legacy-root")], "Halted");
        let template = &mut legacy["spec"]["template"]["spec"];
        template["domain"]["devices"]["disks"]
            .as_array_mut()
            .expect("disks")
            .push(json!({"name": "shared", "disk": {"bus": "virtio"}}));
        template["volumes"]
            .as_array_mut()
            .expect("volumes")
            .push(json!({"name": "shared", "persistentVolumeClaim": {"claimName": "legacy-shared"}}));
        for vm in [demo, legacy] {
            vms.create(&PostParams::default(), &serde_json::from_value(vm)?).await?;
        }

        // Start from a settled state: the demo VM runs with its guest agent, and both VMs know
        // which of their disks can be snapshotted.
        for (name, printable, disks) in [(VM, "Running", 2), (PARTIAL_VM, "Stopped", 2)] {
            await_value(&vms, name, BOOT_TIMEOUT, |vm: &VirtualMachine| {
                let status = vm.status.as_ref()?;
                let settled = status.printable_status.as_deref() == Some(printable)
                    && status.volume_snapshot_statuses.len() == disks;
                settled.then_some(())
            })
            .await
            .with_context(|| format!("VM {name} is {printable} with {disks} disks"))?;
        }
        let vmis: Api<VirtualMachineInstance> = Api::namespaced(self.client.clone(), NAMESPACE);
        await_value(&vmis, VM, BOOT_TIMEOUT, |vmi: &VirtualMachineInstance| {
            let status = vmi.status.as_ref()?;
            status.conditions.iter().any(|c| c.type_ == "AgentConnected" && c.status == "True").then_some(())
        })
        .await
        .context("the guest agent of the demo VM connects")?;
        Ok(())
    }
}

impl Drop for ConsoleEnv {
    fn drop(&mut self) {
        // Stop the agent first, so that it does not start again a VM whose QEMU is killed below.
        if let Some(server) = self.server.take() {
            tokio::task::block_in_place(|| {
                let handle = tokio::runtime::Handle::current();
                let _ = handle.block_on(tokio::time::timeout(Duration::from_secs(30), server.shutdown()));
            });
        }
        // Whatever the test did, no QEMU outlives it.
        vmsnap_testing::guests::kill_qemus(&self.runtime);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_takes_restores_and_deletes_snapshots_in_a_browser() {
    if !vmsnap_testing::require_qemu() || !require_browser(&["kubectl"]) {
        return;
    }
    let env = ConsoleEnv::start().await.expect("the control plane starts and the VMs settle");
    let console = Console::new(env.api(), "");
    let settings = [("NAMESPACE", NAMESPACE), ("VM_NAME", VM), ("VM_PARTIAL", PARTIAL_VM)];
    let status = run_scenario("console.test.mjs", &console, &settings, SCENARIO_TIMEOUT)
        .await
        .expect("node runs the scenario");

    let dump = ["get", "vm,vmi,vmsnapshot,vmrestore,dv,pvc", "-n", NAMESPACE, "-o", "wide"];
    console.expect_passed(status, &dump, 20).await;
    // What the browser showed is what the API holds.
    let vms: Api<VirtualMachine> = Api::namespaced(env.client.clone(), NAMESPACE);
    let copy = vms.get("copy").await.expect("the VM restored as new exists");
    let disks: Vec<_> = copy.spec.template.spec.volumes.iter().filter_map(|v| v.claim_name()).collect();
    assert!(
        !disks.is_empty() && disks.iter().all(|c| c.starts_with("restore-")),
        "the copy uses restored disks: {disks:?}"
    );
    let demo = vms.get(VM).await.expect("the demo VM exists");
    assert!(
        demo.metadata.annotations.unwrap_or_default().contains_key("restore.kubevirt.io/lastRestoreUID"),
        "the demo VM was restored in place"
    );
}
