//! A real `vmsnap serve` (the binary, as a child process) with real QEMU guests, for end-to-end
//! tests that drive it the way a user does: with `kubectl`, the `vmsnap` CLI and the example YAML.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::kubectl::{Kubectl, KubectlOutput};
use crate::process::ServerProcess;

/// What a `vmsnap` (CLI) run printed, and how it exited.
#[derive(Debug, Clone)]
pub struct CliOutput {
    /// The exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl CliOutput {
    /// Panics with the output unless the command succeeded; returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "vmsnap failed:\nstdout: {}\nstderr: {}", self.stdout, self.stderr);
        &self.stdout
    }
}

/// `vmsnap serve` on a fresh data directory, and the QEMU processes it starts (all killed on drop).
pub struct Vmsnap {
    /// The server process.
    pub process: ServerProcess,
    binary: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Vmsnap {
    /// Starts `binary serve` with the test guest image cache of the workspace (`VMSNAP_GUEST_CACHE`),
    /// the given accelerator setting (`auto`, `kvm`, `tcg`), and `extra` arguments. `None` (after
    /// saying why) when QEMU is missing and not required.
    pub fn start(binary: &Path, accel: &str, extra: &[&str]) -> anyhow::Result<Option<Vmsnap>> {
        if !crate::require_qemu() {
            return Ok(None);
        }
        // Short: QEMU's socket paths under <data dir>/vms must fit 107 bytes.
        let dir = tempfile::Builder::new().prefix("vs").tempdir_in("/tmp").context("a data directory")?;
        let mut vmsnap = Self::start_in(binary, &dir.path().join("data"), accel, extra)?;
        if let Some(vmsnap) = &mut vmsnap {
            vmsnap._dir = Some(dir);
        }
        Ok(vmsnap)
    }

    /// [`Vmsnap::start`] with the data directory `data_dir` (e.g. on a small file system of the
    /// test's own), which the caller removes. Keep its path short: QEMU's socket paths under it
    /// must fit 107 bytes.
    pub fn start_in(
        binary: &Path,
        data_dir: &Path,
        accel: &str,
        extra: &[&str],
    ) -> anyhow::Result<Option<Vmsnap>> {
        if !crate::require_qemu() {
            return Ok(None);
        }
        let cache = guest_cache();
        let cache = cache.to_str().context("the guest cache path is not UTF-8")?;
        let mut args = vec!["--accel", accel, "--image-cache", cache];
        args.extend_from_slice(extra);
        let process = ServerProcess::start(binary, data_dir, &args)?;
        Ok(Some(Vmsnap { process, binary: binary.to_owned(), _dir: None }))
    }

    /// The kubeconfig `vmsnap serve` wrote.
    pub fn kubeconfig(&self) -> PathBuf {
        self.process.kubeconfig()
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.process.data_dir
    }

    /// A kubectl runner for it.
    pub fn kubectl(&self) -> Kubectl {
        Kubectl::new(&self.kubeconfig())
    }

    /// `kubectl ARGS`, off the async runtime's threads.
    pub async fn kubectl_run(&self, args: &[&str]) -> KubectlOutput {
        let kubectl = self.kubectl();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            kubectl.run(&args)
        })
        .await
        .expect("kubectl runner")
    }

    /// A kube client for it.
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        crate::client_for(&self.kubeconfig()).await
    }

    /// `vmsnap ARGS` (the user commands) against this server.
    pub async fn cli(&self, args: &[&str]) -> CliOutput {
        self.cli_with_stdin(args, None).await
    }

    /// `vmsnap ARGS` with `stdin` piped in.
    pub async fn cli_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> CliOutput {
        use tokio::io::AsyncWriteExt;
        let mut child = tokio::process::Command::new(&self.binary)
            .args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .env("NO_COLOR", "1")
            .current_dir(repository_root())
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start vmsnap");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin pipe");
            pipe.write_all(input.as_bytes()).await.expect("write stdin");
        }
        let out = child.wait_with_output().await.expect("run vmsnap");
        CliOutput {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs `script` with `sh -c` in the guest of VM `vm` (through `vmsnap exec`) and returns its
    /// standard output; fails unless the script exits 0.
    pub async fn sh(&self, vm: &str, script: &str) -> anyhow::Result<String> {
        let out = self.cli(&["exec", vm, "--", "sh", "-c", script]).await;
        if out.code != 0 {
            bail!("`{script}` in {vm} exited {}: {}{}", out.code, out.stdout, out.stderr);
        }
        Ok(out.stdout)
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir().join("serve.log")).unwrap_or_default()
    }

    /// The pids of the QEMU processes of this server's VMs.
    pub fn qemu_pids(&self) -> Vec<i32> {
        crate::guests::qemu_pids(&self.data_dir().join("vms"))
    }

    /// Kills the server with SIGKILL (its VMs keep running); [`Vmsnap::restart`] starts it again
    /// on the same data directory, for tests of what happens while it is down.
    pub fn stop(&mut self) {
        self.process.kill9();
    }

    /// Kills the server with SIGKILL (its VMs keep running) and starts it again.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.process.restart()
    }
}

impl Drop for Vmsnap {
    fn drop(&mut self) {
        self.process.kill9();
        // Whatever the test did, no QEMU outlives it.
        crate::guests::kill_qemus(&self.data_dir().join("vms"));
    }
}

/// The workspace root (where `examples/` and `README.md` are).
pub fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("the repository root")
}

/// `$VMSNAP_GUEST_CACHE` if set, else `target/guest-cache` in the workspace (what `cargo xtask test`
/// builds before the tests).
pub fn guest_cache() -> PathBuf {
    match std::env::var_os("VMSNAP_GUEST_CACHE") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => repository_root().join("target/guest-cache"),
    }
}

/// How long a test guest may take to boot under TCG with another guest booting beside it.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
