//! The QEMU process seen from outside: pid file, liveness, signals.
//!
//! A daemonized QEMU is not the agent's child, so nothing reaps it for the
//! agent: liveness comes from `/proc`, where a zombie (left behind when the
//! init process does not reap) counts as dead, and a pid is only trusted when
//! its command line names this runtime directory's pid file (pids get reused).

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use vmsnap_qemu::ConnectError;
use vmsnap_qemu::client::{QmpClient, QmpOptions};

use super::paths::RuntimePaths;

/// How often liveness is polled while waiting for a process to go.
const POLL: Duration = Duration::from_millis(20);

/// The pid in a pid file, if the file exists and holds one.
pub(crate) fn read_pidfile(path: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(path).ok()?;
    text.trim().parse().ok().filter(|pid: &i32| *pid > 0)
}

/// Whether `pid` exists and is not a zombie.
pub(crate) fn is_alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `pid (comm) S ...`: the command may hold spaces and parentheses, so look after the last `)`.
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, None | Some('Z' | 'X'))
}

/// Whether `pid` is a live QEMU started with `pidfile` as its `-pidfile`.
pub(crate) fn is_qemu_of(pid: i32, pidfile: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let wanted = pidfile.as_os_str().as_encoded_bytes();
    is_alive(pid) && cmdline.split(|b| *b == 0).any(|arg| arg == wanted)
}

/// The pid of the QEMU running from `paths`, if one runs.
pub(crate) fn running_qemu(paths: &RuntimePaths) -> Option<i32> {
    let pidfile = paths.pidfile();
    read_pidfile(&pidfile).filter(|pid| is_qemu_of(*pid, &pidfile))
}

/// Sends `signal` to `pid`; a process already gone is not an error.
pub(crate) fn signal(pid: i32, signal: Signal) -> nix::Result<()> {
    match kill(Pid::from_raw(pid), signal) {
        Ok(()) | Err(nix::Error::ESRCH) => Ok(()),
        Err(error) => Err(error),
    }
}

/// Waits up to `timeout` for `pid` to exit; true when it has.
pub(crate) async fn wait_gone(pid: i32, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if !is_alive(pid) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Connects to a QMP socket, retrying while it is missing or refuses
/// connections (QEMU creates the socket file before it listens), up to `options.connect_timeout`.
pub(crate) async fn connect_qmp(path: &Path, options: QmpOptions) -> Result<QmpClient, ConnectError> {
    let deadline = tokio::time::Instant::now() + options.connect_timeout;
    loop {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let attempt = QmpOptions { connect_timeout: remaining.max(Duration::from_millis(1)), ..options };
        match QmpClient::connect_with(path, attempt).await {
            Err(ConnectError::Io { .. }) if tokio::time::Instant::now() + POLL < deadline => {
                tokio::time::sleep(POLL).await;
            }
            other => return other,
        }
    }
}

/// Kills `pid` with SIGKILL when dropped while armed: no half-launched QEMU survives a failed or cancelled launch.
pub(crate) struct KillOnDrop {
    pub(crate) pid: Option<i32>,
}

impl KillOnDrop {
    /// Keeps the process running.
    pub(crate) fn disarm(mut self) {
        self.pid = None;
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            tracing::warn!(pid, "killing QEMU left behind by a failed launch");
            if let Err(error) = signal(pid, Signal::SIGKILL) {
                tracing::warn!(pid, %error, "could not kill QEMU");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_free_pid_is_not() {
        assert!(is_alive(std::process::id() as i32));
        assert!(!is_alive(i32::MAX));
    }

    #[test]
    fn pid_files_are_read_leniently() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qemu.pid");
        assert_eq!(read_pidfile(&path), None);
        std::fs::write(&path, "1234\n").unwrap();
        assert_eq!(read_pidfile(&path), Some(1234));
        std::fs::write(&path, "garbage").unwrap();
        assert_eq!(read_pidfile(&path), None);
    }

    #[test]
    fn a_pid_is_only_ours_when_its_command_line_names_our_pid_file() {
        let me = std::process::id() as i32;
        assert!(!is_qemu_of(me, Path::new("/nonexistent/qemu.pid")));
    }
}
