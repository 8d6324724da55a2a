//! `vmsnap serve` as a child process, for tests that kill it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `vmsnap serve` child process.
pub struct ServerProcess {
    child: Option<Child>,
    /// Data directory.
    pub data_dir: PathBuf,
    /// `127.0.0.1:PORT`.
    pub listen: String,
    binary: PathBuf,
    extra_args: Vec<String>,
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

impl ServerProcess {
    /// Starts `binary serve --data-dir DIR --listen 127.0.0.1:PORT EXTRA...` and waits until it answers.
    pub fn start(binary: &Path, data_dir: &Path, extra_args: &[&str]) -> anyhow::Result<ServerProcess> {
        let mut p = ServerProcess {
            child: None,
            data_dir: data_dir.to_owned(),
            listen: format!("127.0.0.1:{}", free_port()),
            binary: binary.to_owned(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
        };
        p.spawn()?;
        Ok(p)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.data_dir)?;
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.data_dir.join("serve.log"))?;
        let child = Command::new(&self.binary)
            .arg("serve")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(&self.listen)
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = format!("{}/healthz", self.listen);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(&self.listen).is_ok() && self.data_dir.join("kubeconfig").exists()
            {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                anyhow::bail!(
                    "vmsnap serve exited with {status}; see {}",
                    self.data_dir.join("serve.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        anyhow::bail!("vmsnap serve did not answer on {url} within 60 s")
    }

    /// The kubeconfig path.
    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir.join("kubeconfig")
    }

    /// Kills the process with SIGKILL and waits for it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and data directory.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill9();
        self.spawn()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}
