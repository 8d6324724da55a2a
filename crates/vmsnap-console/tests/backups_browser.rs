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

use std::time::Duration;

use vmsnap_testing::TestServer;
use vmsnap_testing::browser::{Console, require_browser, run_scenario};

const NAMESPACE: &str = "default";
const VM: &str = "demo";
/// Longer than the scenario's own watchdog, which closes Chromium itself.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(240);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backups_tab_and_the_repositories_page_follow_the_api_in_a_browser() {
    if !require_browser(&["kubectl"]) {
        return;
    }
    let server = TestServer::start_configured(Vec::new(), |config| {
        config.extra_routes = Some(vmsnap_console::router());
    })
    .await
    .expect("the API server starts");
    let api = &server.api;
    let console = Console::new(api, "backups");
    let env = [("NAMESPACE", NAMESPACE), ("VM_NAME", VM)];
    let status = run_scenario("backups.test.mjs", &console, &env, SCENARIO_TIMEOUT).await.expect("node runs");
    let dump = ["get", "vm,vmrepo,vmrbackup,vmrrestore", "-n", NAMESPACE, "-o", "yaml"];
    console.expect_passed(status, &dump, 15).await;
}
