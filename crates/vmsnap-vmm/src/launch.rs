//! [`Vmm`]: launching QEMU, and finding it again after the agent restarts.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use vmsnap_qemu::client::QmpOptions;
use vmsnap_qemu::qmp::commands::Cont;

use super::accel::Accel;
use super::cmdline::{ProcessMode, qemu_args};
use super::error::{AttachError, LaunchError, PathIoError};
use super::handle::VmHandle;
use super::paths::{MAX_SOCKET_PATH, RuntimePaths};
use super::process::{KillOnDrop, connect_qmp, read_pidfile, running_qemu};
use super::spec::LaunchSpec;

/// The version of the [`LaunchRecord`] format.
const RECORD_VERSION: u32 = 1;

/// How much of QEMU's stderr a [`LaunchError::QemuFailed`] quotes.
const STDERR_TAIL: u64 = 2048;

/// Deadlines of the runtime's calls. The defaults suit TCG on a busy 2-core host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// From running QEMU to its daemonized process being ready.
    pub qemu_start: Duration,
    /// Connecting to QMP (with retries while the socket comes up).
    pub qmp_connect: Duration,
    /// Each QMP command.
    pub qmp_command: Duration,
    /// `guest-ping` and `guest-fsfreeze-status`: short, so a hung agent is noticed quickly.
    pub guest_agent_ping: Duration,
    /// Other guest agent commands.
    pub agent_command: Duration,
    /// How long a caller waits for `guest-fsfreeze-freeze` (which syncs dirty data and runs the
    /// guest's freeze hooks first): KubeVirt's 60 s for Windows VSS, and never longer than the
    /// freeze's auto-thaw timeout.
    pub freeze: Duration,
    /// How long an answer to a freeze is still awaited after the caller gave up (then the guest is
    /// thawed at once).
    pub freeze_late_answer: Duration,
    /// `guest-fsfreeze-thaw`.
    pub thaw: Duration,
    /// How long [`crate::VmHandle::kill`] waits after `quit` before SIGKILL.
    pub kill_grace: Duration,
    /// How long the guest may take to release an unplugged disk.
    pub device_removal: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            qemu_start: Duration::from_secs(30),
            qmp_connect: Duration::from_secs(10),
            qmp_command: Duration::from_secs(30),
            guest_agent_ping: Duration::from_secs(2),
            agent_command: Duration::from_secs(10),
            freeze: Duration::from_secs(60),
            freeze_late_answer: Duration::from_secs(600),
            thaw: Duration::from_secs(10),
            kill_grace: Duration::from_secs(5),
            device_removal: Duration::from_secs(30),
        }
    }
}

/// How the runtime runs QEMU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmmConfig {
    /// The QEMU binary.
    pub qemu_binary: PathBuf,
    /// The accelerator (see [`crate::probe_accelerator`]).
    pub accel: Accel,
    /// Deadlines.
    pub timeouts: Timeouts,
}

impl VmmConfig {
    /// `qemu-system-x86_64` from `PATH` with `accel` and the default deadlines.
    pub fn new(accel: Accel) -> Self {
        Self { qemu_binary: PathBuf::from("qemu-system-x86_64"), accel, timeouts: Timeouts::default() }
    }
}

/// `spec.json`: what was launched, for re-attaching and post-mortems.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchRecord {
    /// The record format version.
    pub format_version: u32,
    /// The spec, with generated MACs filled in.
    pub spec: LaunchSpec,
    /// The accelerator used.
    pub accel: Accel,
    /// The QEMU binary.
    pub qemu_binary: PathBuf,
    /// The arguments QEMU was started with.
    pub argv: Vec<String>,
}

/// A VM found running by [`Vmm::list_running`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningVm {
    /// Its runtime directory.
    pub dir: PathBuf,
    /// Its name, from the launch record (the directory name if the record is unreadable).
    pub name: String,
    /// The QEMU pid.
    pub pid: i32,
}

/// Starts and re-attaches to QEMU processes. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Vmm {
    config: Arc<VmmConfig>,
}

impl Vmm {
    /// A runtime with `config`.
    pub fn new(config: VmmConfig) -> Self {
        Self { config: Arc::new(config) }
    }

    /// The configuration.
    pub fn config(&self) -> &VmmConfig {
        &self.config
    }

    /// Starts `spec` from `runtime_dir` (created if needed) and connects to it.
    /// NICs without a MAC get a random one. QEMU is daemonized, so it keeps
    /// running if the agent exits; it is killed if the launch fails or the
    /// returned future is dropped before it completes.
    pub async fn launch(&self, runtime_dir: &Path, mut spec: LaunchSpec) -> Result<VmHandle, LaunchError> {
        let started = Instant::now();
        let timeouts = self.config.timeouts;
        spec.validate().map_err(LaunchError::InvalidSpec)?;
        spec.assign_macs();
        let paths = RuntimePaths::new(runtime_dir);
        let io = |what, path: PathBuf| move |source| LaunchError::Io(PathIoError { what, path, source });
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(runtime_dir)
            .map_err(io("create", runtime_dir.to_path_buf()))?;
        if let Some(pid) = running_qemu(&paths) {
            return Err(LaunchError::AlreadyRunning { dir: runtime_dir.to_path_buf(), pid });
        }
        paths.remove_stale();
        if let Some(path) = paths.sockets().into_iter().find(|p| p.as_os_str().len() > MAX_SOCKET_PATH) {
            return Err(LaunchError::SocketPathTooLong { path });
        }
        let argv = qemu_args(&spec, self.config.accel, &paths, ProcessMode::Daemon)
            .map_err(LaunchError::InvalidSpec)?;
        let record = LaunchRecord {
            format_version: RECORD_VERSION,
            spec,
            accel: self.config.accel,
            qemu_binary: self.config.qemu_binary.clone(),
            argv,
        };
        write_record(&paths.spec(), &record).map_err(io("write the launch record to", paths.spec()))?;

        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(paths.qemu_log())
            .map_err(io("open", paths.qemu_log()))?;
        let log_start = log.seek(SeekFrom::End(0)).unwrap_or(0);
        let stderr = log.try_clone().map_err(io("open", paths.qemu_log()))?;
        // With -daemonize, this process exits once the daemon is initialised
        // (sockets listening, pid file written) or has failed.
        let mut launcher = tokio::process::Command::new(&self.config.qemu_binary)
            .args(&record.argv)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| LaunchError::Spawn { binary: self.config.qemu_binary.clone(), source })?;
        let mut guard = KillOnDrop { pid: None };
        let status = match tokio::time::timeout(timeouts.qemu_start, launcher.wait()).await {
            Ok(status) => status.map_err(io("wait for", self.config.qemu_binary.clone()))?,
            Err(_) => {
                guard.pid = read_pidfile(&paths.pidfile());
                return Err(LaunchError::Timeout { what: "start", after: timeouts.qemu_start });
            }
        };
        if !status.success() {
            return Err(LaunchError::QemuFailed { status, message: read_tail(&mut log, log_start) });
        }
        let pid = read_pidfile(&paths.pidfile()).ok_or(LaunchError::NoPid { path: paths.pidfile() })?;
        guard.pid = Some(pid);
        // QEMU daemonizes with a umask of 027 (whatever vmsnap's is), so the sockets and the console
        // log it made are open to its group: the runtime directory is private to the service user.
        make_private(runtime_dir);

        let handle = self.connect(paths, record, pid).await.map_err(LaunchError::Qmp)?;
        if !handle.spec().start_paused {
            handle.qmp().execute::<Cont>(()).await.map_err(LaunchError::Resume)?;
        }
        guard.disarm();
        tracing::info!(
            vm = %handle.spec().name,
            pid,
            accel = %self.config.accel,
            took_ms = started.elapsed().as_secs_f64() * 1e3,
            "launched QEMU"
        );
        Ok(handle)
    }

    /// Re-attaches to the QEMU running from `runtime_dir`, typically after the
    /// agent restarted: `None` (after removing stale sockets, pid file and
    /// freeze record) when none runs. A freeze left by the earlier agent is
    /// picked up: thawed at once if its deadline passed, else its auto-thaw re-armed.
    pub async fn attach(&self, runtime_dir: &Path) -> Result<Option<VmHandle>, AttachError> {
        let paths = RuntimePaths::new(runtime_dir);
        let Some(pid) = running_qemu(&paths) else {
            paths.remove_stale();
            return Ok(None);
        };
        let spec_path = paths.spec();
        let bytes = std::fs::read(&spec_path)
            .map_err(|source| AttachError::Io { path: spec_path.clone(), source })?;
        let record: LaunchRecord = serde_json::from_slice(&bytes)
            .map_err(|source| AttachError::BadRecord { path: spec_path.clone(), source })?;
        if record.format_version != RECORD_VERSION {
            let version = record.format_version;
            return Err(AttachError::UnsupportedRecord { path: spec_path, version });
        }
        let handle =
            self.connect(paths, record, pid).await.map_err(|source| AttachError::Qmp { pid, source })?;
        handle.recover_freeze().await;
        tracing::info!(vm = %handle.spec().name, pid, "re-attached to a running QEMU");
        Ok(Some(handle))
    }

    /// The VMs running from the subdirectories of `root`.
    pub fn list_running(root: &Path) -> std::io::Result<Vec<RunningVm>> {
        let mut running = Vec::new();
        let entries = match std::fs::read_dir(root) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(running),
            Err(error) => return Err(error),
        };
        for entry in entries {
            let dir = entry?.path();
            let paths = RuntimePaths::new(&dir);
            let Some(pid) = running_qemu(&paths) else { continue };
            let name = std::fs::read(paths.spec())
                .ok()
                .and_then(|bytes| serde_json::from_slice::<LaunchRecord>(&bytes).ok())
                .map(|record| record.spec.name)
                .unwrap_or_else(|| dir.file_name().unwrap_or_default().to_string_lossy().into_owned());
            running.push(RunningVm { dir, name, pid });
        }
        running.sort_by(|a, b| a.dir.cmp(&b.dir));
        Ok(running)
    }

    async fn connect(
        &self,
        paths: RuntimePaths,
        record: LaunchRecord,
        pid: i32,
    ) -> Result<VmHandle, vmsnap_qemu::ConnectError> {
        let timeouts = self.config.timeouts;
        let options = QmpOptions {
            connect_timeout: timeouts.qmp_connect,
            command_timeout: timeouts.qmp_command,
            ..QmpOptions::default()
        };
        let qmp = connect_qmp(&paths.qmp_socket(), options).await?;
        Ok(VmHandle::new(paths, record, pid, qmp, timeouts))
    }
}

/// Takes group and other access away from the entries of `dir`.
fn make_private(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        // `DirEntry::metadata` does not follow links; a link's mode means nothing.
        let Ok(meta) = entry.metadata() else { continue };
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 && !meta.file_type().is_symlink() {
            let private = std::fs::Permissions::from_mode(mode & !0o077);
            if let Err(error) = std::fs::set_permissions(entry.path(), private) {
                tracing::warn!(path = %entry.path().display(), %error, "cannot make a QEMU file private");
            }
        }
    }
}

fn write_record(path: &Path, record: &LaunchRecord) -> std::io::Result<()> {
    let temp = path.with_extension("json.tmp");
    std::fs::write(&temp, serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?)?;
    std::fs::rename(&temp, path)
}

/// What QEMU wrote to its log since `start`, at most the last [`STDERR_TAIL`] bytes.
fn read_tail(log: &mut std::fs::File, start: u64) -> String {
    let end = log.seek(SeekFrom::End(0)).unwrap_or(start);
    let from = start.max(end.saturating_sub(STDERR_TAIL));
    let mut text = String::new();
    if log.seek(SeekFrom::Start(from)).is_ok() {
        let _ = log.read_to_string(&mut text);
    }
    text.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::{Boot, DiskFormat, DiskSpec, KernelBoot, NicModel, NicSpec};

    /// `spec.json` is read back by later agents: its format changes only on purpose.
    #[test]
    fn the_launch_record_format_matches_its_golden_file() {
        let mut spec = LaunchSpec::new(
            "golden",
            512,
            Boot::Kernel(KernelBoot {
                kernel: "/images/vmlinuz".into(),
                initrd: Some("/images/initrd.cpio".into()),
                cmdline: "console=ttyS0".into(),
                min_memory_mib: 128,
            }),
        );
        spec.uuid = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        spec.disks.push(DiskSpec::new("data", "/volumes/data.qcow2", DiskFormat::Qcow2));
        spec.nics.push(NicSpec {
            name: "default".into(),
            mac: Some("02:00:00:00:00:01".parse().unwrap()),
            model: NicModel::Virtio,
        });
        let paths = RuntimePaths::new("/run/vmsnap/vms/golden");
        let argv = qemu_args(&spec, Accel::Tcg, &paths, ProcessMode::Daemon).unwrap();
        let record = LaunchRecord {
            format_version: RECORD_VERSION,
            spec,
            accel: Accel::Tcg,
            qemu_binary: "qemu-system-x86_64".into(),
            argv,
        };

        let actual = serde_json::to_string_pretty(&record).unwrap() + "\n";

        let golden = include_str!("testdata/launch-record.json");
        assert!(
            actual == golden,
            "spec.json changed; if on purpose, update testdata/launch-record.json to:\n{actual}"
        );
        assert_eq!(serde_json::from_str::<LaunchRecord>(golden).unwrap(), record);
    }
}
