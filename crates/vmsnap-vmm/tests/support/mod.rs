//! Shared by the tests that run real QEMU with the test guest: this crate's and, through a
//! `#[path]` module, the node agent's (`crates/vmsnap-agent/tests/support`), so that each helper
//! has one home.

#![allow(dead_code)] // Each test binary uses its own subset of these helpers.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sha2::{Digest, Sha256};
use vmsnap_guestimage::{BuildError, GuestImage, ensure_built, test_cache_root};
use vmsnap_vmm::{
    Accel, AccelSetting, Boot, KernelBoot, LaunchSpec, ProbeOptions, VmHandle, Vmm, VmmConfig,
    probe_accelerator,
};

/// Generous: under TCG the guest boots in 4 to 10 s depending on load.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

/// The test guest and the accelerator to run it with.
pub struct Env {
    pub image: GuestImage,
    pub accel: Accel,
}

impl Env {
    /// `None` (after saying why) when this machine lacks QEMU or cannot build
    /// the guest and `VMSNAP_ALLOW_SKIP=1`; else that is a failure.
    pub async fn new() -> Result<Option<Self>> {
        init_tracing();
        for program in ["qemu-system-x86_64", "qemu-img"] {
            if which(program).is_none() {
                return missing(&format!(
                    "{program} is not installed (apt-get install qemu-system-x86 qemu-utils)"
                ));
            }
        }
        let image = match ensure_built(&test_cache_root(), &mut |line| println!("guestimage: {line}")) {
            Ok(image) => image,
            Err(
                error @ (BuildError::ProgramMissing { .. }
                | BuildError::PackageNotInstalled { .. }
                | BuildError::KernelNotFound { .. }),
            ) => return missing(&error.to_string()),
            Err(error) => return Err(error.into()),
        };
        // Shared across test runs: the probe boots a guest once per host boot.
        let cache = std::env::temp_dir().join("vmsnap-agent-tests");
        let outcome = probe_accelerator(AccelSetting::Auto, &cache, &image, &ProbeOptions::default()).await?;
        println!(
            "accelerator: {} ({}{})",
            outcome.accel,
            outcome.reason,
            if outcome.cached { ", cached" } else { "" }
        );
        Ok(Some(Self { image, accel: outcome.accel }))
    }

    pub fn vmm(&self) -> Vmm {
        Vmm::new(VmmConfig::new(self.accel))
    }

    /// A one-vCPU, 256 MiB spec booting the test guest, without disks.
    pub fn spec(&self, name: &str) -> LaunchSpec {
        LaunchSpec::new(name, 256, Boot::Kernel(KernelBoot::from_guest_image(&self.image, "")))
    }
}

fn missing<T>(reason: &str) -> Result<Option<T>> {
    if !skips_allowed() {
        bail!("{reason}: run ./x test (it installs what the tests need), or set VMSNAP_ALLOW_SKIP=1 to skip");
    }
    println!("skipped: {reason} (VMSNAP_ALLOW_SKIP=1)");
    Ok(None)
}

/// `vmsnap_testing::skips_allowed`'s rule (`VMSNAP_ALLOW_SKIP=1`), read here because that
/// harness brings the API server and Kubernetes clients, which this crate's tests do not need.
fn skips_allowed() -> bool {
    std::env::var("VMSNAP_ALLOW_SKIP").is_ok_and(|v| v == "1")
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|p| p.is_file())
}

pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("vmsnap_vmm=info,vmsnap_agent=info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
}

/// SIGKILLs a daemonized QEMU when dropped, so a failing test leaves no VM behind.
pub struct QemuGuard {
    pids: Vec<i32>,
}

impl QemuGuard {
    pub fn new() -> Self {
        Self { pids: Vec::new() }
    }

    pub fn watch(&mut self, vm: &VmHandle) {
        self.pids.push(vm.pid());
    }
}

impl Drop for QemuGuard {
    fn drop(&mut self) {
        for pid in &self.pids {
            // The pid may be gone already, which is fine.
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
    }
}

/// `qemu-img create -f qcow2` of `size`, over `backing` if given (without opening it: QEMU may hold it).
pub fn qcow2(path: &Path, size: &str, backing: Option<&Path>) -> Result<()> {
    let mut command = Command::new("qemu-img");
    command.args(["create", "-q", "-f", "qcow2"]);
    if let Some(backing) = backing {
        command.args(["-F", "qcow2", "-u", "-b"]).arg(backing);
    }
    let status = command.arg(path).arg(size).status().context("running qemu-img")?;
    ensure!(status.success(), "qemu-img create {} failed", path.display());
    Ok(())
}

/// Runs `script` with `sh -c` in the guest and returns its stdout; fails on a non-zero exit.
pub async fn guest_sh(vm: &VmHandle, script: &str) -> Result<String> {
    let output = vm.exec("/bin/sh", &["-c", script], Duration::from_secs(30)).await?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    ensure!(
        output.success(),
        "`{script}` failed with {:?}: {stdout}{}",
        output.exit_code,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(stdout)
}

/// Polls `condition` every 100 ms until it holds or `timeout` passes.
pub async fn eventually<F: Future<Output = Result<bool>>>(
    what: &str,
    timeout: Duration,
    mut condition: impl FnMut() -> F,
) -> Result<Duration> {
    let started = Instant::now();
    loop {
        if condition().await? {
            return Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            bail!("{what} did not happen within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The largest gap between consecutive `<microseconds> <seq>` lines of a tswriter file.
pub fn largest_gap_us(ts: &str) -> Result<u64> {
    let stamps: Vec<u64> = ts
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(|stamp| stamp.parse::<u64>().context("a tswriter line"))
        .collect::<Result<_>>()?;
    ensure!(stamps.len() > 10, "tswriter wrote only {} lines", stamps.len());
    Ok(stamps.windows(2).map(|w| w[1].saturating_sub(w[0])).max().unwrap_or(0))
}

/// The SHA-256 of a file.
pub fn sha256(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(hex::encode(Sha256::digest(bytes)))
}

/// Whether process `pid` has `path` open.
pub fn has_open(pid: i32, path: &Path) -> Result<bool> {
    let target = path.canonicalize()?;
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        if std::fs::read_link(fd?.path()).is_ok_and(|link| link == target) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The backing file name recorded in a qcow2 header (read with `-U`: QEMU may hold the image).
pub fn backing_file_of(image: &Path) -> Result<String> {
    let output = Command::new("qemu-img").args(["info", "-U", "--output=json"]).arg(image).output()?;
    ensure!(output.status.success(), "qemu-img info {} failed", image.display());
    let info: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    Ok(info["backing-filename"].as_str().unwrap_or_default().to_owned())
}
