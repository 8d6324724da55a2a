//! Shared test harness: an embedded vmsnap server on `127.0.0.1:0` (in-process or as a child process),
//! a `kube` client and a `kubectl` runner for it, and `await_*` helpers with timeouts.
//!
//! Tests that need QEMU call [`require_qemu`]: a missing QEMU fails the test, so a plain `cargo test`
//! never passes without running it. Only [`skips_allowed`] (`VMSNAP_ALLOW_SKIP=1`, never set by
//! CI) turns a missing prerequisite into a skip, with a message naming it.

pub mod browser;
pub mod fakes;
pub mod fixtures;
pub mod guests;
pub mod images;
mod kubectl;
mod process;
pub mod seaweedfs;
pub mod serve;
pub mod storage;
pub mod tmpfs;
mod wait;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use serde_json::Value;
use vmsnap_apiserver::{ApiServer, ApiServerConfig};

pub use kubectl::{Kubectl, KubectlOutput};
pub use process::ServerProcess;
pub use wait::{await_condition, await_value, eventually};

/// An API server (only the API server: no agent, storage driver or controllers) running inside the
/// test process on a free loopback port. Components under test are started beside it as API clients.
pub struct TestServer {
    /// The API server.
    pub api: ApiServer,
    /// Its data directory (removed on drop).
    pub data_dir: tempfile::TempDir,
    configure: Option<Configure>,
}

/// Adjusts the API server's configuration before it starts (e.g. to serve the web console beside
/// the API); applied again on [`TestServer::restart`].
pub type Configure = Arc<dyn Fn(&mut ApiServerConfig) + Send + Sync>;

impl TestServer {
    /// Starts an API server with a fresh data directory.
    pub async fn start() -> anyhow::Result<TestServer> {
        Self::start_with_seed(Vec::new()).await
    }

    /// Starts an API server that creates `seed` objects at start (e.g. a StorageClass).
    pub async fn start_with_seed(seed: Vec<Value>) -> anyhow::Result<TestServer> {
        let data_dir = tempfile::Builder::new().prefix("vmsnap-test-").tempdir()?;
        let api = start_api(data_dir.path(), "127.0.0.1:0", seed, None).await?;
        Ok(TestServer { api, data_dir, configure: None })
    }

    /// Starts an API server with `seed` objects and a configuration adjusted by `configure`, e.g.
    /// `|c| c.extra_routes = Some(vmsnap_console::router())` to serve the web console beside the API.
    pub async fn start_configured(
        seed: Vec<Value>,
        configure: impl Fn(&mut ApiServerConfig) + Send + Sync + 'static,
    ) -> anyhow::Result<TestServer> {
        let configure: Configure = Arc::new(configure);
        let data_dir = tempfile::Builder::new().prefix("vmsnap-test-").tempdir()?;
        let api = start_api(data_dir.path(), "127.0.0.1:0", seed, Some(&configure)).await?;
        Ok(TestServer { api, data_dir, configure: Some(configure) })
    }

    /// Stops the API server and starts it again on the same port and data directory.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let listen = self.api.addr.to_string();
        self.api.shutdown();
        self.api = start_api(self.data_dir.path(), &listen, Vec::new(), self.configure.as_ref()).await?;
        Ok(())
    }

    /// The kubeconfig path.
    pub fn kubeconfig(&self) -> PathBuf {
        self.api.kubeconfig_path.clone()
    }

    /// A `kube` client for this server.
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        client_for(&self.kubeconfig()).await
    }

    /// A `kubectl` runner for this server.
    pub fn kubectl(&self) -> Kubectl {
        Kubectl::new(&self.kubeconfig())
    }
}

async fn start_api(
    dir: &Path,
    listen: &str,
    seed: Vec<Value>,
    configure: Option<&Configure>,
) -> anyhow::Result<ApiServer> {
    let mut config = ApiServerConfig {
        data_dir: dir.to_owned(),
        listen: listen.parse().context("listen address")?,
        certificate_names: Vec::new(),
        store: Default::default(),
        seed,
        extra_routes: None,
    };
    if let Some(configure) = configure {
        configure(&mut config);
    }
    ApiServer::start(config).await.context("start the API server")
}

/// A `kube` client from a kubeconfig file.
pub async fn client_for(kubeconfig: &Path) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).context("read the kubeconfig")?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.context("load the kubeconfig")?;
    Ok(kube::Client::try_from(config)?)
}

/// A `kube` client that sends `X-Vmsnap-Component: <component>` on every request, so that tests can
/// tell its requests apart in the API server's request log.
pub async fn client_tagged(kubeconfig: &Path, component: &str) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).context("read the kubeconfig")?;
    let mut config =
        kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.context("load the kubeconfig")?;
    config.headers.push((
        http::HeaderName::from_static("x-vmsnap-component"),
        http::HeaderValue::from_str(component).context("a header value")?,
    ));
    Ok(kube::Client::try_from(config)?)
}

/// Whether a test may skip itself when a prerequisite (QEMU, a browser, restic) is missing:
/// only when `VMSNAP_ALLOW_SKIP=1`. Otherwise a missing prerequisite is a failure, so no test
/// passes without having run.
pub fn skips_allowed() -> bool {
    std::env::var("VMSNAP_ALLOW_SKIP").is_ok_and(|v| v == "1")
}

/// Skips (returns false) when `what` is missing and skips are allowed; panics otherwise.
fn missing_prerequisite(what: &str) -> bool {
    assert!(
        skips_allowed(),
        "{what} is missing: run ./x test (it installs what the tests need), or set VMSNAP_ALLOW_SKIP=1 to skip such tests"
    );
    eprintln!("skipping: {what} is missing (VMSNAP_ALLOW_SKIP=1)");
    false
}

/// Whether QEMU is usable; a missing QEMU panics unless [`skips_allowed`].
pub fn require_qemu() -> bool {
    let found = ["qemu-system-x86_64", "qemu-img"].iter().all(|bin| {
        std::process::Command::new(bin).arg("--version").output().is_ok_and(|o| o.status.success())
    });
    found || missing_prerequisite("QEMU (qemu-system-x86_64 and qemu-img)")
}

/// Copies directory `from` into `to` (created), recursively, as a test's fixture: a store's or a
/// repository's files. Panics on any error.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
