//! The console's backup screens in a real browser: Debian's Chromium, driven by playwright-core
//! from `e2e/backups.test.mjs`, drives a VM's Backups tab (back up now with its progress, a failure,
//! a backup made elsewhere appearing with a moving progress bar, restore as a new VM with its
//! progress and a link to the VM, delete) and the Repositories page (readiness and why not, verify
//! and prune round trips), at 1280 and 400 px. Screenshots go to
//! `target/console-screenshots/backups/` (or `$VMSNAP_ARTIFACTS/console-screenshots/backups/`).
//!
//! The server is the API server of `vmsnap serve` with the console routes beside it, as
//! `vmsnap serve` mounts them (`crates/vmsnap-server/src/lib.rs`), on `127.0.0.1:0`. No controller
//! runs: the scenario plays the backup controllers by writing the objects' status subresource with
//! kubectl, so what it checks does not depend on them (nor race with them), and each step's
//! status is known.
//!
//! Needs `node`, `kubectl`, `/usr/bin/chromium` and `npm ci` in `crates/vmsnap-console/e2e`
//! (`scripts/setup.sh --test` installs them). Without them the test fails, unless
//! `VMSNAP_ALLOW_SKIP=1`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use vmsnap_testing::TestServer;

const NAMESPACE: &str = "default";
const VM: &str = "demo";
const CHROMIUM: &str = "/usr/bin/chromium";
/// Longer than the scenario's own watchdog, which closes Chromium itself.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(240);

fn e2e_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e")
}

/// Why the browser test cannot run here, if it cannot.
fn missing_prerequisite() -> Option<String> {
    for tool in ["node", "kubectl"] {
        let arg = if tool == "kubectl" { "version" } else { "--version" };
        let mut command = std::process::Command::new(tool);
        command.arg(arg);
        if tool == "kubectl" {
            command.arg("--client");
        }
        if !command.output().is_ok_and(|o| o.status.success()) {
            return Some(format!("{tool} is not installed"));
        }
    }
    if !Path::new(CHROMIUM).exists() {
        return Some(format!("{CHROMIUM} is not installed (Debian package chromium)"));
    }
    if !e2e_dir().join("node_modules/playwright-core").exists() {
        return Some("playwright-core is not installed (npm ci in crates/vmsnap-console/e2e)".into());
    }
    None
}

/// `$VMSNAP_ARTIFACTS/console-screenshots/backups`, else the same under the target directory.
fn screenshot_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("VMSNAP_ARTIFACTS") {
        return PathBuf::from(dir).join("console-screenshots/backups");
    }
    // The test binary is target/<profile>/deps/<name>: three levels below the target directory.
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.ancestors().nth(3).expect("the target directory").join("console-screenshots/backups")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backups_tab_and_the_repositories_page_follow_the_api_in_a_browser() {
    if let Some(why) = missing_prerequisite() {
        assert!(
            vmsnap_testing::skips_allowed(),
            "the browser test cannot run: {why}; run scripts/setup.sh --test, or set VMSNAP_ALLOW_SKIP=1 to skip it"
        );
        eprintln!("skipping the browser test: {why} (VMSNAP_ALLOW_SKIP=1)");
        return;
    }
    let server = TestServer::start_configured(Vec::new(), |config| {
        config.extra_routes = Some(vmsnap_console::router());
    })
    .await
    .expect("the API server starts");
    let api = &server.api;
    let screenshots = screenshot_dir();
    println!("web console: {}  screenshots: {}", api.console_url, screenshots.display());

    let mut child = tokio::process::Command::new("node")
        .arg("backups.test.mjs")
        .current_dir(e2e_dir())
        .env("CONSOLE_URL", &api.console_url)
        .env("VMSNAP_TOKEN", &api.token)
        .env("KUBECONFIG", &api.kubeconfig_path)
        .env("SCREENSHOT_DIR", &screenshots)
        .env("NAMESPACE", NAMESPACE)
        .env("VM_NAME", VM)
        .env("CHROMIUM", CHROMIUM)
        .kill_on_drop(true)
        .spawn()
        .expect("node starts");
    let status = match tokio::time::timeout(SCENARIO_TIMEOUT, child.wait()).await {
        Ok(status) => status.expect("node runs"),
        Err(_) => {
            // SIGTERM first: playwright then closes Chromium.
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
                let _ = tokio::time::timeout(Duration::from_secs(15), child.wait()).await;
            }
            let _ = child.kill().await;
            panic!("the browser scenario did not finish within {SCENARIO_TIMEOUT:?}");
        }
    };
    if !status.success() {
        let out = vmsnap_testing::Kubectl::new(&api.kubeconfig_path)
            .run_async(&["get", "vm,vmrepo,vmrbackup,vmrrestore", "-n", NAMESPACE, "-o", "yaml"])
            .await;
        println!("what the API held when the scenario failed:\n{}{}", out.stdout, out.stderr);
    }
    assert!(
        status.success(),
        "the browser scenario failed ({status}); its output above names the step, and {} holds the screenshots",
        screenshots.display()
    );
    let shots = std::fs::read_dir(&screenshots)
        .expect("the screenshot directory exists")
        .filter(|e| e.as_ref().is_ok_and(|e| e.path().extension().is_some_and(|x| x == "png")))
        .count();
    assert!(shots >= 15, "a screenshot of each screen was saved ({shots} in {})", screenshots.display());
}
