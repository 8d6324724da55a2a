//! Runs the real `kubectl` against a test server.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What a kubectl run printed.
#[derive(Debug, Clone)]
pub struct KubectlOutput {
    /// Exit status code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl KubectlOutput {
    /// Panics with the output unless kubectl succeeded; returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "kubectl failed:\nstdout: {}\nstderr: {}", self.stdout, self.stderr);
        &self.stdout
    }

    /// Panics unless kubectl failed; returns stderr.
    #[track_caller]
    pub fn err(&self) -> &str {
        assert_ne!(self.code, 0, "kubectl unexpectedly succeeded:\nstdout: {}", self.stdout);
        &self.stderr
    }
}

/// A kubectl runner with its own kubeconfig and cache directory.
#[derive(Clone)]
pub struct Kubectl {
    kubeconfig: PathBuf,
    cache: PathBuf,
}

impl Kubectl {
    /// A runner for a kubeconfig, caching discovery beside it.
    pub fn new(kubeconfig: &Path) -> Kubectl {
        Kubectl::with_cache(
            kubeconfig,
            &kubeconfig.parent().unwrap_or(Path::new("/tmp")).join("kubectl-cache"),
        )
    }

    /// A runner for a kubeconfig, caching discovery in `cache` (e.g. to keep a data directory
    /// holding the kubeconfig free of other files).
    pub fn with_cache(kubeconfig: &Path, cache: &Path) -> Kubectl {
        Kubectl { kubeconfig: kubeconfig.to_owned(), cache: cache.to_owned() }
    }

    /// Runs `kubectl ARGS`.
    pub fn run(&self, args: &[&str]) -> KubectlOutput {
        self.run_with_stdin(args, None)
    }

    /// Runs `kubectl ARGS` with `stdin` piped in (for `-f -`).
    pub fn run_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> KubectlOutput {
        let mut cmd = Command::new("kubectl");
        cmd.args(args)
            .arg(format!("--cache-dir={}", self.cache.display()))
            .env("KUBECONFIG", &self.kubeconfig)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("kubectl is installed (scripts/setup.sh installs it)");
        if let Some(input) = stdin {
            child.stdin.take().expect("piped stdin").write_all(input.as_bytes()).expect("write to kubectl");
        }
        let out = child.wait_with_output().expect("kubectl runs");
        KubectlOutput {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs kubectl off the async runtime's threads.
    pub async fn run_async(&self, args: &[&str]) -> KubectlOutput {
        let me = self.clone();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || me.run(&args.iter().map(String::as_str).collect::<Vec<_>>()))
            .await
            .expect("kubectl task")
    }

    /// Like [`Kubectl::run_with_stdin`], off the async runtime's threads.
    pub async fn run_stdin_async(&self, args: &[&str], stdin: &str) -> KubectlOutput {
        let me = self.clone();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let stdin = stdin.to_owned();
        tokio::task::spawn_blocking(move || {
            me.run_with_stdin(&args.iter().map(String::as_str).collect::<Vec<_>>(), Some(&stdin))
        })
        .await
        .expect("kubectl task")
    }
}
