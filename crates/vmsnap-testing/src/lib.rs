//! Shared test harness: an embedded vmsnap server on `127.0.0.1:0` (in-process or as a child process),
//! a `kube` client and a `kubectl` runner for it, and `await_*` helpers with timeouts.
//!
//! Tests that need QEMU call [`require_qemu`]: with `VMSNAP_REQUIRE_QEMU=1` (set by `cargo xtask test`)
//! a missing QEMU fails the test instead of skipping it.

mod kubectl;
mod process;
mod wait;

use std::path::{Path, PathBuf};

use anyhow::Context;
use vmsnap_server::{EmbeddedServer, ServeConfig};

pub use kubectl::{Kubectl, KubectlOutput};
pub use process::ServerProcess;
pub use wait::{await_condition, await_value, eventually};

/// An embedded server running inside the test process, on a free loopback port.
pub struct TestServer {
    /// The server.
    pub server: EmbeddedServer,
    /// Its data directory (removed on drop).
    pub data_dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server with a fresh data directory.
    pub async fn start() -> anyhow::Result<TestServer> {
        Self::start_with(|_| {}).await
    }

    /// Starts a server, letting the caller adjust the configuration.
    pub async fn start_with(adjust: impl FnOnce(&mut ServeConfig)) -> anyhow::Result<TestServer> {
        let data_dir = tempfile::Builder::new().prefix("vmsnap-test-").tempdir()?;
        let mut config = ServeConfig::new(data_dir.path().to_owned());
        config.listen = "127.0.0.1:0".parse().expect("a valid address");
        adjust(&mut config);
        let server = EmbeddedServer::start(config).await.context("start the embedded server")?;
        Ok(TestServer { server, data_dir })
    }

    /// The kubeconfig path.
    pub fn kubeconfig(&self) -> PathBuf {
        self.server.api.kubeconfig_path.clone()
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

/// A `kube` client from a kubeconfig file.
pub async fn client_for(kubeconfig: &Path) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).context("read the kubeconfig")?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.context("load the kubeconfig")?;
    Ok(kube::Client::try_from(config)?)
}

/// Whether QEMU is usable; panics when it is missing and `VMSNAP_REQUIRE_QEMU=1`.
pub fn require_qemu() -> bool {
    let found = ["qemu-system-x86_64", "qemu-img"].iter().all(|bin| {
        std::process::Command::new(bin).arg("--version").output().is_ok_and(|o| o.status.success())
    });
    if !found && std::env::var("VMSNAP_REQUIRE_QEMU").is_ok_and(|v| v == "1") {
        panic!(
            "QEMU is required (VMSNAP_REQUIRE_QEMU=1) but qemu-system-x86_64 or qemu-img is missing; run scripts/setup.sh"
        );
    }
    if !found {
        eprintln!("skipping: QEMU is not installed (set VMSNAP_REQUIRE_QEMU=1 to make this a failure)");
    }
    found
}
