//! The files of a VM's runtime directory.

use std::path::{Path, PathBuf};

/// The longest path a unix socket address holds (`sun_path` less its terminating NUL).
pub(crate) const MAX_SOCKET_PATH: usize = 107;

/// The layout of one VM's runtime directory (see the [module docs](crate)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimePaths {
    dir: PathBuf,
}

impl RuntimePaths {
    /// The layout under `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `spec.json`: the launch record.
    pub fn spec(&self) -> PathBuf {
        self.dir.join("spec.json")
    }

    /// `qemu.pid`: written by QEMU.
    pub fn pidfile(&self) -> PathBuf {
        self.dir.join("qemu.pid")
    }

    /// `qmp.sock`: the QMP monitor.
    pub fn qmp_socket(&self) -> PathBuf {
        self.dir.join("qmp.sock")
    }

    /// `qga.sock`: the guest agent channel.
    pub fn qga_socket(&self) -> PathBuf {
        self.dir.join("qga.sock")
    }

    /// `console.sock`: the interactive serial console.
    pub fn console_socket(&self) -> PathBuf {
        self.dir.join("console.sock")
    }

    /// `console.log`: the serial console output.
    pub fn console_log(&self) -> PathBuf {
        self.dir.join("console.log")
    }

    /// `qemu.log`: QEMU's stderr.
    pub fn qemu_log(&self) -> PathBuf {
        self.dir.join("qemu.log")
    }

    /// `freeze.json`: the auto-thaw deadline while the guest is frozen.
    pub fn freeze_record(&self) -> PathBuf {
        self.dir.join("freeze.json")
    }

    /// The sockets QEMU listens on.
    pub(crate) fn sockets(&self) -> [PathBuf; 3] {
        [self.qmp_socket(), self.qga_socket(), self.console_socket()]
    }

    /// What is meaningless once QEMU has exited: the sockets, the pid file and the freeze record.
    pub(crate) fn remove_stale(&self) {
        let files = self.sockets().into_iter().chain([self.pidfile(), self.freeze_record()]);
        for file in files {
            match std::fs::remove_file(&file) {
                Ok(()) => tracing::debug!(file = %file.display(), "removed a stale runtime file"),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => {
                    tracing::warn!(file = %file.display(), %error, "could not remove a stale runtime file")
                }
            }
        }
    }
}
