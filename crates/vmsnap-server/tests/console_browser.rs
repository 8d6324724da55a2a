//! The web console in a real browser: Debian's Chromium, driven by playwright-core from
//! `crates/vmsnap-console/e2e/console.test.mjs`, logs in, takes snapshots (with and without the
//! excluded-disk warning), watches them become Ready, opens their details, restores a VM in place
//! and as a new VM, deletes a snapshot, and sees snapshots made and deleted with kubectl come and
//! go live. A screenshot of each screen is saved under `target/console-screenshots/` (or
//! `$VMSNAP_ARTIFACTS/console-screenshots/`).
//!
//! The server side here is the API server with the console routes, the real snapshot and restore
//! controllers, and fakes for the node agent (VMs as fake VMIs) and the storage driver. The
//! scenario only uses the UI and kubectl, so it runs unchanged against `vmsnap serve` with real
//! VMs: only [`ConsoleEnv::start`] needs to change.
//!
//! Needs `node`, `/usr/bin/chromium` and `npm ci` in `crates/vmsnap-console/e2e` (`scripts/setup.sh
//! --test` installs them). Without them the test is skipped, unless `VMSNAP_REQUIRE_BROWSER=1`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube::api::{Api, PostParams};
use vmsnap_api::kubevirt::VirtualMachine;
use vmsnap_controllers::{ControllerConfig, Controllers};
use vmsnap_testing::fakes::{FakeProvisioner, FakeSnapshotter, FakeVmRunner};
use vmsnap_testing::fixtures::{self, VmBuilder, VmiState};
use vmsnap_testing::{TestServer, await_value};

const NAMESPACE: &str = "default";
/// Running, with a guest agent; every disk can be snapshotted.
const VM: &str = "demo";
/// Stopped; one disk is on the `nfs` StorageClass, which has no VolumeSnapshotClass.
const PARTIAL_VM: &str = "legacy";
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(420);
const CHROMIUM: &str = "/usr/bin/chromium";

fn e2e_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../vmsnap-console/e2e")
}

/// Why the browser test cannot run here, if it cannot.
fn missing_prerequisite() -> Option<String> {
    let node_ok =
        std::process::Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    if !node_ok {
        return Some("node is not installed".into());
    }
    if !Path::new(CHROMIUM).exists() {
        return Some(format!("{CHROMIUM} is not installed (Debian package chromium)"));
    }
    if !e2e_dir().join("node_modules/playwright-core").exists() {
        return Some("playwright-core is not installed (npm ci in crates/vmsnap-console/e2e)".into());
    }
    None
}

/// Whether the browser test can run; panics when it cannot and `VMSNAP_REQUIRE_BROWSER=1`.
fn require_browser() -> bool {
    let Some(why) = missing_prerequisite() else { return true };
    if std::env::var("VMSNAP_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
        panic!(
            "the browser test is required (VMSNAP_REQUIRE_BROWSER=1) but {why}; run scripts/setup.sh --test"
        );
    }
    eprintln!(
        "skipping the browser test: {why} (run scripts/setup.sh --test; VMSNAP_REQUIRE_BROWSER=1 makes this a failure)"
    );
    false
}

/// `$VMSNAP_ARTIFACTS/console-screenshots`, else `console-screenshots` in the target directory.
fn screenshot_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("VMSNAP_ARTIFACTS") {
        return PathBuf::from(dir).join("console-screenshots");
    }
    // The test binary is target/<profile>/deps/<name>: three levels below the target directory.
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.ancestors().nth(3).expect("the target directory").join("console-screenshots")
}

/// The server the browser talks to, with everything a VM's snapshots need.
struct ConsoleEnv {
    server: TestServer,
    client: Client,
    _runner: Arc<FakeVmRunner>,
    _snapshotter: FakeSnapshotter,
    _provisioner: FakeProvisioner,
    _controllers: Controllers,
}

impl ConsoleEnv {
    async fn start() -> anyhow::Result<ConsoleEnv> {
        let server = TestServer::start_configured(fixtures::storage_objects(), |config| {
            config.extra_routes = Some(vmsnap_console::router());
        })
        .await?;
        let client = server.client().await?;
        let runner = FakeVmRunner::start(client.clone(), VmiState { agent: true, paused: false });
        server.api.set_subresources(runner.clone());
        // Disk snapshots become ready a moment after they are cut, so the browser sees the progress.
        let snapshotter = FakeSnapshotter::start(client.clone(), Duration::from_millis(1500));
        let provisioner = FakeProvisioner::start(client.clone());
        let controllers = vmsnap_controllers::start(client.clone(), ControllerConfig::default());
        let env = ConsoleEnv {
            server,
            client,
            _runner: runner,
            _snapshotter: snapshotter,
            _provisioner: provisioner,
            _controllers: controllers,
        };
        env.create_vms().await?;
        Ok(env)
    }

    async fn create_vms(&self) -> anyhow::Result<()> {
        for (pvc, class) in [
            ("demo-root", "local"),
            ("demo-data", "local"),
            ("legacy-root", "local"),
            ("legacy-shared", "nfs"),
        ] {
            fixtures::create_bound_pvc(&self.client, NAMESPACE, pvc, class).await?;
        }
        let vms: Api<VirtualMachine> = Api::namespaced(self.client.clone(), NAMESPACE);
        let demo =
            VmBuilder::new(VM).with_pvc("rootdisk", "demo-root").with_pvc("datadisk", "demo-data").running();
        let legacy = VmBuilder::new(PARTIAL_VM)
            .with_pvc("rootdisk", "legacy-root")
            .with_pvc("shared", "legacy-shared");
        for vm in [demo.build(), legacy.build()] {
            vms.create(&PostParams::default(), &vm).await?;
        }
        // Start from a settled state: the demo VM runs and both know which disks can be snapshotted.
        for (name, printable) in [(VM, "Running"), (PARTIAL_VM, "Stopped")] {
            await_value(&vms, name, Duration::from_secs(30), |vm: &VirtualMachine| {
                let status = vm.status.as_ref()?;
                let settled = status.printable_status.as_deref() == Some(printable)
                    && status.volume_snapshot_statuses.len() == 2;
                settled.then_some(())
            })
            .await?;
        }
        Ok(())
    }
}

/// Runs the scenario with `node`; on a timeout it is asked to stop (SIGTERM makes playwright close
/// Chromium) before being killed.
async fn run_scenario(env: &ConsoleEnv, screenshots: &Path) -> anyhow::Result<std::process::ExitStatus> {
    let mut child = tokio::process::Command::new("node")
        .arg("console.test.mjs")
        .current_dir(e2e_dir())
        .env("CONSOLE_URL", &env.server.api.console_url)
        .env("VMSNAP_TOKEN", &env.server.api.token)
        .env("KUBECONFIG", env.server.kubeconfig())
        .env("SCREENSHOT_DIR", screenshots)
        .env("NAMESPACE", NAMESPACE)
        .env("VM_NAME", VM)
        .env("VM_PARTIAL", PARTIAL_VM)
        .env("CHROMIUM", CHROMIUM)
        .kill_on_drop(true)
        .spawn()?;
    match tokio::time::timeout(SCENARIO_TIMEOUT, child.wait()).await {
        Ok(status) => Ok(status?),
        Err(_) => {
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
                let _ = tokio::time::timeout(Duration::from_secs(15), child.wait()).await;
            }
            let _ = child.kill().await;
            anyhow::bail!("the browser scenario did not finish within {SCENARIO_TIMEOUT:?}")
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_takes_restores_and_deletes_snapshots_in_a_browser() {
    if !require_browser() {
        return;
    }
    let env = ConsoleEnv::start().await.expect("the server, controllers, fakes and VMs start");
    let screenshots = screenshot_dir();
    println!("web console: {}  screenshots: {}", env.server.api.console_url, screenshots.display());

    let status = run_scenario(&env, &screenshots).await.expect("node runs the scenario");

    assert!(
        status.success(),
        "the browser scenario failed ({status}); its output above names the step, and {} holds the screenshots",
        screenshots.display()
    );
    // What the browser showed is what the API holds.
    let vms: Api<VirtualMachine> = Api::namespaced(env.client.clone(), NAMESPACE);
    let copy = vms.get("copy").await.expect("the VM restored as new exists");
    let disks: Vec<_> = copy.spec.template.spec.volumes.iter().filter_map(|v| v.claim_name()).collect();
    assert!(disks.iter().all(|c| c.starts_with("restore-")), "the copy uses restored disks: {disks:?}");
    let demo = vms.get(VM).await.expect("the demo VM exists");
    assert!(
        demo.metadata.annotations.unwrap_or_default().contains_key("restore.kubevirt.io/lastRestoreUID"),
        "the demo VM was restored in place"
    );
    let shots = std::fs::read_dir(&screenshots)
        .expect("the screenshot directory exists")
        .filter(|e| e.as_ref().is_ok_and(|e| e.path().extension().is_some_and(|x| x == "png")))
        .count();
    assert!(shots >= 15, "a screenshot of each screen was saved ({shots} in {})", screenshots.display());
}
