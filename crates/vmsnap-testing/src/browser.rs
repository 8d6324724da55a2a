//! The web console's browser scenarios (`crates/vmsnap-console/e2e/*.test.mjs`) run from Rust
//! tests: Debian's Chromium driven by playwright-core under `node`, against a server the test
//! started. What every such test needs lives here: the prerequisites, where the screenshots go,
//! running `node` with a timeout that lets playwright close Chromium, and counting the screenshots.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use vmsnap_apiserver::ApiServer;

/// Debian's Chromium (playwright's own browser builds cannot be downloaded here).
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// The console's e2e directory (`crates/vmsnap-console/e2e`): the scenarios and their
/// `node_modules`.
pub fn e2e_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../vmsnap-console/e2e")
}

/// Whether the browser scenario can run here; panics naming what is missing unless skips are
/// allowed (`VMSNAP_ALLOW_SKIP=1`), then returns false. `tools` are the commands it needs
/// besides `node` (e.g. `kubectl`).
pub fn require_browser(tools: &[&str]) -> bool {
    let Some(why) = missing_prerequisite(tools) else { return true };
    assert!(
        crate::skips_allowed(),
        "the browser test cannot run: {why}; run scripts/setup.sh --test, or set VMSNAP_ALLOW_SKIP=1 to skip it"
    );
    eprintln!("skipping the browser test: {why} (VMSNAP_ALLOW_SKIP=1)");
    false
}

fn missing_prerequisite(tools: &[&str]) -> Option<String> {
    for tool in std::iter::once(&"node").chain(tools) {
        let mut command = std::process::Command::new(tool);
        match *tool {
            "kubectl" => command.args(["version", "--client"]),
            _ => command.arg("--version"),
        };
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

/// `$VMSNAP_ARTIFACTS/console-screenshots/<sub>`, else the same under the target directory.
pub fn screenshot_dir(sub: &str) -> PathBuf {
    let root = match std::env::var_os("VMSNAP_ARTIFACTS") {
        Some(dir) => PathBuf::from(dir),
        None => {
            // The test binary is target/<profile>/deps/<name>: three levels below the target directory.
            let exe = std::env::current_exe().expect("the test binary's path");
            exe.ancestors().nth(3).expect("the target directory").to_owned()
        }
    };
    root.join("console-screenshots").join(sub)
}

/// What every scenario is given (`e2e/harness.mjs`, `settings()`): the console of an API server
/// (its URL, token and kubeconfig) and where the screenshots go.
pub struct Console<'a> {
    /// The API server serving the console.
    pub api: &'a ApiServer,
    /// Where the screenshots go (`screenshot_dir(sub)`).
    pub screenshots: PathBuf,
}

impl Console<'_> {
    /// The console of `api`, with its screenshots in `screenshot_dir(sub)`; says both.
    pub fn new<'a>(api: &'a ApiServer, sub: &str) -> Console<'a> {
        let screenshots = screenshot_dir(sub);
        println!("web console: {}  screenshots: {}", api.console_url, screenshots.display());
        Console { api, screenshots }
    }

    /// Fails the test unless the scenario passed (after showing what `kubectl ARGS` says the API
    /// held) and saved at least `screenshots` screenshots.
    pub async fn expect_passed(&self, status: ExitStatus, kubectl: &[&str], screenshots: usize) {
        if !status.success() {
            let out = crate::Kubectl::new(&self.api.kubeconfig_path).run_async(kubectl).await;
            println!("what the API held when the scenario failed:\n{}{}", out.stdout, out.stderr);
        }
        let dir = self.screenshots.display();
        assert!(
            status.success(),
            "the browser scenario failed ({status}); its output above names the step, and {dir} holds the screenshots"
        );
        let shots = screenshots_in(&self.screenshots);
        assert!(shots >= screenshots, "a screenshot of each screen was saved ({shots} in {dir})");
    }
}

/// Runs `node SCRIPT` in the e2e directory with `console`'s settings and `env`. On a timeout it is
/// asked to stop first (SIGTERM makes playwright close Chromium), then killed, and the error says
/// so.
pub async fn run_scenario(
    script: &str,
    console: &Console<'_>,
    env: &[(&str, &str)],
    timeout: Duration,
) -> anyhow::Result<ExitStatus> {
    let mut child = tokio::process::Command::new("node")
        .arg(script)
        .current_dir(e2e_dir())
        .env("CONSOLE_URL", &console.api.console_url)
        .env("VMSNAP_TOKEN", &console.api.token)
        .env("KUBECONFIG", &console.api.kubeconfig_path)
        .env("SCREENSHOT_DIR", &console.screenshots)
        .env("CHROMIUM", CHROMIUM)
        .envs(env.iter().copied())
        .kill_on_drop(true)
        .spawn()?;
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => Ok(status?),
        Err(_) => {
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
                let _ = tokio::time::timeout(Duration::from_secs(15), child.wait()).await;
            }
            let _ = child.kill().await;
            anyhow::bail!("the browser scenario {script} did not finish within {timeout:?}")
        }
    }
}

/// How many screenshots (`*.png`) `dir` holds.
fn screenshots_in(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .expect("the screenshot directory exists")
        .filter(|e| e.as_ref().is_ok_and(|e| e.path().extension().is_some_and(|x| x == "png")))
        .count()
}
