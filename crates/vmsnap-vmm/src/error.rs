//! Errors, named for the operation that fails.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use vmsnap_qemu::{CommandError, ConnectError, EventError};

/// A [`crate::LaunchSpec`] or [`crate::DiskSpec`] that cannot be run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// A VM, disk or NIC name with characters QEMU ids cannot carry.
    #[error(
        "the {what} name {name:?} is not valid: use up to 63 ASCII letters, digits, '-', '.' or '_', starting with a letter or digit"
    )]
    InvalidName {
        /// `VM`, `disk` or `NIC`.
        what: &'static str,
        /// The name given.
        name: String,
    },
    /// An explicit serial that is empty, longer than 256 characters or has other characters than KubeVirt allows.
    #[error(
        "disk {disk:?} has serial {serial:?}, but a serial must be 1 to 256 of the characters [A-Za-z0-9_.+-]; omit it to derive one from the disk name"
    )]
    InvalidSerial {
        /// The disk.
        disk: String,
        /// The serial given.
        serial: String,
    },
    /// Two disks or two NICs with the same name.
    #[error("there are two {what}s named {name:?}; names must be unique within a VM")]
    DuplicateName {
        /// `disk` or `NIC`.
        what: &'static str,
        /// The repeated name.
        name: String,
    },
    /// Two disk names whose 20-byte short forms (used in QEMU node names) are equal.
    #[error("disks {first:?} and {second:?} both shorten to {short:?}; rename one of them")]
    ShortNameClash {
        /// The short form.
        short: String,
        /// The first disk.
        first: String,
        /// The second disk.
        second: String,
    },
    /// Two disks whose guest serials are equal, so the guest could not tell them apart.
    #[error(
        "disks {first:?} and {second:?} would both show the guest serial {serial:?} (it reads the first 20 bytes of a virtio or sata serial, 36 of a scsi one); give one another serial"
    )]
    DuplicateSerial {
        /// The serial.
        serial: String,
        /// The first disk with it.
        first: String,
        /// The second disk with it.
        second: String,
    },
    /// A disk device the bus cannot carry.
    #[error("disk {disk:?} cannot be attached: {reason}")]
    UnsupportedDisk {
        /// The disk.
        disk: String,
        /// Why, and what to use instead.
        reason: &'static str,
    },
    /// Less memory than the VM needs to start and boot.
    #[error(
        "memory_mib = {memory_mib} is too little: {} at least {min_mib} MiB",
        if *kernel_boot { "this kernel and initramfs need" } else { "the firmware needs" }
    )]
    TooLittleMemory {
        /// The memory given.
        memory_mib: u32,
        /// The least that works.
        min_mib: u32,
        /// Whether the floor is the kernel's (else the firmware's).
        kernel_boot: bool,
    },
    /// More SATA disks than the machine's controller has ports for.
    #[error("{disks} sata disks do not fit the {ports} ports of the machine's SATA/IDE controller")]
    TooManySataDisks {
        /// SATA disks in the spec.
        disks: usize,
        /// Ports of the controller.
        ports: usize,
    },
    /// A number out of range.
    #[error("{field} = {value} is not valid: {reason}")]
    InvalidValue {
        /// The field.
        field: &'static str,
        /// The value given.
        value: String,
        /// What is allowed.
        reason: &'static str,
    },
    /// A relative or non-UTF-8 path.
    #[error("the {field} path {} must be absolute and valid UTF-8", path.display())]
    BadPath {
        /// Which path.
        field: &'static str,
        /// The path given.
        path: PathBuf,
    },
    /// A machine type other than the q35 and pc families.
    #[error("machine type {machine:?} is not supported; use q35 (or pc)")]
    UnsupportedMachine {
        /// The machine given.
        machine: String,
    },
    /// More disks and hotplug slots than a q35 machine has PCIe root ports for.
    #[error(
        "{disks} disks and {hotplug_slots} hotplug slots need more PCIe root ports than the 24 a VM can have"
    )]
    TooManyDisks {
        /// Disks in the spec.
        disks: usize,
        /// Hotplug slots asked for.
        hotplug_slots: u32,
    },
}

/// [`crate::Vmm::launch`] failed. QEMU is not left running after any of these.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The spec was rejected before anything was started.
    #[error("the launch spec is invalid")]
    InvalidSpec(#[source] SpecError),
    /// A QEMU process already runs from this runtime directory.
    #[error("VM already running from {} (pid {pid}); attach to it instead", dir.display())]
    AlreadyRunning {
        /// The runtime directory.
        dir: PathBuf,
        /// The running QEMU's pid.
        pid: i32,
    },
    /// A unix socket path longer than the 107 bytes `sun_path` holds.
    #[error("socket path {} is too long for a unix socket; use a shorter runtime directory", path.display())]
    SocketPathTooLong {
        /// The socket path.
        path: PathBuf,
    },
    /// Preparing the runtime directory failed.
    #[error(transparent)]
    Io(#[from] PathIoError),
    /// The QEMU binary could not be started.
    #[error("could not run {}; install qemu-system-x86 or set the QEMU binary", binary.display())]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// The operating system error.
        #[source]
        source: std::io::Error,
    },
    /// QEMU refused to start; the message is what it printed.
    #[error("QEMU exited with {status} before the VM started: {message}")]
    QemuFailed {
        /// Its exit status.
        status: ExitStatus,
        /// The end of its stderr (also in `qemu.log`).
        message: String,
    },
    /// QEMU did not finish starting in time.
    #[error("QEMU did not {what} within {after:?}")]
    Timeout {
        /// The step.
        what: &'static str,
        /// The time allowed.
        after: Duration,
    },
    /// QEMU daemonized but its pid file is missing or unreadable.
    #[error("QEMU started but its pid file {} is missing or invalid", path.display())]
    NoPid {
        /// The pid file.
        path: PathBuf,
    },
    /// The QMP monitor could not be reached.
    #[error("could not connect to the QMP monitor of the new VM")]
    Qmp(#[source] ConnectError),
    /// `cont` failed.
    #[error("could not start the vCPUs")]
    Resume(#[source] CommandError),
}

/// [`crate::Vmm::attach`] failed (the VM itself may well be running).
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// Reading the runtime directory failed.
    #[error("could not read {}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The operating system error.
        #[source]
        source: std::io::Error,
    },
    /// `spec.json` is not a launch record this version understands.
    #[error("{} is not a valid launch record", path.display())]
    BadRecord {
        /// The path.
        path: PathBuf,
        /// What serde_json objected to.
        #[source]
        source: serde_json::Error,
    },
    /// `spec.json` has a format version this agent does not know (written by a newer agent).
    #[error("{} has launch record format version {version}, which this agent does not know", path.display())]
    UnsupportedRecord {
        /// The path.
        path: PathBuf,
        /// The version found.
        version: u32,
    },
    /// QEMU runs but its monitor did not answer (another client may hold it).
    #[error("QEMU (pid {pid}) runs but its QMP monitor did not answer")]
    Qmp {
        /// The QEMU pid.
        pid: i32,
        /// Why.
        #[source]
        source: ConnectError,
    },
}

/// A lifecycle operation on a running VM failed (status, pause, resume, powerdown, kill, wait).
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The QMP command failed or timed out.
    #[error(transparent)]
    Qmp(#[from] CommandError),
    /// QEMU was still running when the time allowed ran out.
    #[error("QEMU (pid {pid}) was still running {after:?} later")]
    StillRunning {
        /// The QEMU pid.
        pid: i32,
        /// The time allowed.
        after: Duration,
    },
    /// Signalling QEMU failed.
    #[error("could not signal QEMU (pid {pid})")]
    Signal {
        /// The QEMU pid.
        pid: i32,
        /// The error.
        #[source]
        source: nix::Error,
    },
}

/// A guest agent command failed.
#[derive(Debug, thiserror::Error)]
pub enum GuestAgentError {
    /// The agent answered with an error; `message` is the agent's own, fit to show a user.
    #[error("the guest agent failed {command}: {message}")]
    Failed {
        /// The command.
        command: String,
        /// The error class, e.g. `GenericError`.
        class: String,
        /// The agent's description.
        message: String,
    },
    /// No answer in time: the agent is hung, busy, not running yet, or the vCPUs are paused.
    #[error("the guest agent did not answer {command} within {after:?}; it may be hung, busy or not running")]
    Timeout {
        /// The command.
        command: String,
        /// The time allowed.
        after: Duration,
    },
    /// The agent socket could not be used (QEMU gone, socket closed).
    #[error("the guest agent could not be reached for {command}")]
    Unreachable {
        /// The command.
        command: String,
        /// Why.
        #[source]
        source: CommandError,
    },
    /// The task waiting for the agent's answer ended before it came (the runtime is shutting down).
    #[error("the wait for the guest agent's answer to {command} was interrupted")]
    Interrupted {
        /// The command.
        command: String,
    },
    /// The agent answered something that does not fit the protocol or the command.
    #[error("the guest agent sent a bad reply to {command}")]
    BadReply {
        /// The command.
        command: String,
        /// What was wrong.
        #[source]
        source: CommandError,
    },
}

impl GuestAgentError {
    /// The message for a user: the agent's own for [`GuestAgentError::Failed`], else this error's.
    pub fn message(&self) -> String {
        match self {
            GuestAgentError::Failed { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }

    /// Whether the agent did not answer in time.
    pub fn is_timeout(&self) -> bool {
        matches!(self, GuestAgentError::Timeout { .. })
    }
}

impl From<CommandError> for GuestAgentError {
    fn from(error: CommandError) -> Self {
        match error {
            CommandError::Qemu { command, class, desc } => {
                GuestAgentError::Failed { command, class, message: desc }
            }
            CommandError::Timeout { command, after }
            | CommandError::SyncTimeout { command, after }
            | CommandError::Busy { command, after } => GuestAgentError::Timeout { command, after },
            CommandError::Decode { ref command, .. }
            | CommandError::Protocol { ref command, .. }
            | CommandError::Start { ref command, .. } => {
                GuestAgentError::BadReply { command: command.clone(), source: error }
            }
            CommandError::Disconnected { ref command }
            | CommandError::Io { ref command, .. }
            | CommandError::Connect { ref command, .. } => {
                GuestAgentError::Unreachable { command: command.clone(), source: error }
            }
        }
    }
}

/// Freezing or thawing the guest filesystems failed.
#[derive(Debug, thiserror::Error)]
pub enum FreezeError {
    /// The guest agent failed or did not answer. After a failed or timed-out
    /// freeze a thaw has been attempted, and is retried in the background until it succeeds.
    #[error(transparent)]
    Agent(#[from] GuestAgentError),
    /// An earlier freeze could not be undone yet (the agent did not answer
    /// the thaw) and the thaw is being retried, so a new freeze cannot be trusted.
    #[error("the guest is being thawed after an earlier failure and cannot be frozen again yet; retry later")]
    ThawPending,
    /// The agent did not answer the freeze in the time the caller allowed. Its freeze hooks may
    /// still run; when the freeze completes the guest is thawed at once.
    #[error(
        "the guest agent did not answer guest-fsfreeze-freeze within {}s (a freeze hook in the guest may hang); the guest is thawed as soon as that freeze completes",
        waited.as_secs_f64().round()
    )]
    Unanswered {
        /// How long the caller waited.
        waited: Duration,
    },
    /// An earlier freeze is still unanswered; sending another would freeze the guest again after
    /// the first is undone.
    #[error(
        "the guest agent has not answered the guest-fsfreeze-freeze sent {}s ago (a freeze hook in the guest may hang); no new freeze is sent until it does",
        since.as_secs_f64().round()
    )]
    PreviousFreezeUnanswered {
        /// How long ago the unanswered freeze was sent.
        since: Duration,
    },
    /// The freeze record (the auto-thaw deadline) could not be written or removed.
    #[error("could not {what} the freeze record {}", path.display())]
    Record {
        /// `write` or `remove`.
        what: &'static str,
        /// The record path.
        path: PathBuf,
        /// The operating system error.
        #[source]
        source: std::io::Error,
    },
}

/// A block operation (active layer, snapshot, stream, hotplug) failed.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// No disk of that name is attached.
    #[error("the VM has no disk named {disk:?}")]
    NoSuchDisk {
        /// The disk name.
        disk: String,
    },
    /// A disk of that name is already attached.
    #[error("the VM already has a disk named {disk:?}")]
    DiskExists {
        /// The disk name.
        disk: String,
    },
    /// The disk spec is invalid.
    #[error("the disk spec is invalid")]
    InvalidDisk(#[source] SpecError),
    /// Another attached disk already shows the guest this serial.
    #[error("disk {disk:?} would have serial {serial:?}, which disk {other:?} already has")]
    SerialInUse {
        /// The new disk.
        disk: String,
        /// The serial.
        serial: String,
        /// The disk that has it.
        other: String,
    },
    /// Every hotplug root port is taken.
    #[error("no free PCIe root port is left to hotplug disk {disk:?}; launch the VM with more hotplug_slots")]
    NoFreeSlot {
        /// The disk name.
        disk: String,
    },
    /// The disk's active layer is not the file the caller expected (another snapshot came first).
    #[error("disk {disk:?} writes to {}, not {}; nothing was changed", actual.display(), expected.display())]
    ActiveFileChanged {
        /// The disk name.
        disk: String,
        /// The file the caller expected.
        expected: PathBuf,
        /// The file QEMU has as the active layer.
        actual: PathBuf,
    },
    /// The base given to a stream is not below the disk's active layer.
    #[error("{} is not in the backing chain of disk {disk:?}", base.display())]
    BaseNotInChain {
        /// The disk name.
        disk: String,
        /// The base given.
        base: PathBuf,
    },
    /// A path that QEMU's JSON options cannot carry.
    #[error("the path {} must be absolute and valid UTF-8", path.display())]
    BadPath {
        /// The path.
        path: PathBuf,
    },
    /// A stream job is still running on the disk.
    #[error("job {job:?} is still running on disk {disk:?}; wait for it to finish")]
    JobRunning {
        /// The disk name.
        disk: String,
        /// The job id.
        job: String,
    },
    /// The block job ended with an error.
    #[error("job {job:?} on disk {disk:?} failed: {message}")]
    JobFailed {
        /// The disk name.
        disk: String,
        /// The job id.
        job: String,
        /// QEMU's message.
        message: String,
    },
    /// A QMP command failed; QEMU's message is in the source.
    #[error("{operation} failed")]
    Qmp {
        /// What was being done, e.g. `snapshotting disks data, logs`.
        operation: String,
        /// The command error.
        #[source]
        source: CommandError,
    },
    /// The event QEMU signals completion with did not come.
    #[error("{waiting} did not finish")]
    Event {
        /// What was awaited.
        waiting: String,
        /// Why the wait ended.
        #[source]
        source: EventError,
    },
    /// Nodes of a removed disk could not be deleted (they keep their files open).
    #[error("disk {disk:?} was detached but QEMU kept its nodes {nodes:?}")]
    NodesLeft {
        /// The disk name.
        disk: String,
        /// The nodes still present.
        nodes: Vec<String>,
    },
}

/// [`crate::probe_accelerator`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The probe's scratch or cache files could not be used.
    #[error(transparent)]
    Io(#[from] PathIoError),
    /// The setting is `kvm` but this host cannot run KVM guests at all.
    #[error("the accelerator setting is kvm, but {reason}; use auto or tcg")]
    KvmUnavailable {
        /// Why.
        reason: String,
    },
    /// The probe VM could not be started.
    #[error("could not run {} for the accelerator probe", binary.display())]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// The operating system error.
        #[source]
        source: std::io::Error,
    },
    /// The probe spec did not turn into a command line.
    #[error("the probe VM spec is invalid")]
    Spec(#[source] SpecError),
}

/// A file operation on `path` failed: what was being done, where, and the operating system's error.
#[derive(Debug, thiserror::Error)]
#[error("could not {what} {}", path.display())]
pub struct PathIoError {
    /// What was being done, e.g. `write the spec to`.
    pub what: &'static str,
    /// The path.
    pub path: PathBuf,
    /// The operating system error.
    #[source]
    pub source: std::io::Error,
}
