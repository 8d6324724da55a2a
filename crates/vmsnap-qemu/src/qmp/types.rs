//! QMP data types returned by commands and carried by events (QEMU 7.2 schema).
//!
//! Only the members vmsnap reads are typed; unknown members are ignored, and
//! enums have an `Unknown` fallback so a newer QEMU does not break decoding.

use serde::{Deserialize, Serialize};

/// The `QMP` member of the greeting QEMU sends on connect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Greeting {
    /// The QEMU version.
    pub version: QemuVersion,
    /// Optional protocol capabilities the server offers (e.g. `oob`); vmsnap enables none.
    pub capabilities: Vec<String>,
}

/// A QEMU version as reported by the greeting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QemuVersion {
    /// The upstream version number.
    pub qemu: VersionTriple,
    /// The distribution's package string, e.g. `Debian 1:7.2+dfsg-7`.
    #[serde(default)]
    pub package: String,
}

/// `major.minor.micro`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct VersionTriple {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Micro version.
    pub micro: u32,
}

/// The run state of the VM (`RunState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[allow(missing_docs)] // The variants are QEMU's run states, named exactly as on the wire.
pub enum RunState {
    Debug,
    Inmigrate,
    InternalError,
    IoError,
    Paused,
    Postmigrate,
    Prelaunch,
    FinishMigrate,
    RestoreVm,
    Running,
    SaveVm,
    Shutdown,
    Suspended,
    Watchdog,
    GuestPanicked,
    Colo,
    /// A state this version of vmsnap does not know.
    #[serde(other)]
    Unknown,
}

/// The reply to `query-status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusInfo {
    /// Whether the vCPUs are running.
    pub running: bool,
    /// The detailed run state.
    pub status: RunState,
}

/// Why the VM shut down or reset (`ShutdownCause`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[allow(missing_docs)] // The variants are QEMU's shutdown causes, named exactly as on the wire.
pub enum ShutdownCause {
    None,
    HostError,
    HostQmpQuit,
    HostQmpSystemReset,
    HostSignal,
    HostUi,
    GuestShutdown,
    GuestReset,
    GuestPanic,
    SubsystemReset,
    SnapshotLoad,
    /// A cause this version of vmsnap does not know.
    #[serde(other)]
    Unknown,
}

/// The status of a background job (`JobStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[allow(missing_docs)] // The variants are QEMU's job states, named exactly as on the wire.
pub enum JobStatus {
    Undefined,
    Created,
    Running,
    Paused,
    Ready,
    Standby,
    Waiting,
    Pending,
    Aborting,
    Concluded,
    Null,
    /// A status this version of vmsnap does not know.
    #[serde(other)]
    Unknown,
}

/// The kind of a background job (`JobType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[allow(missing_docs)] // The variants are QEMU's job types, named exactly as on the wire.
pub enum JobType {
    Commit,
    Stream,
    Mirror,
    Backup,
    Create,
    Amend,
    SnapshotLoad,
    SnapshotSave,
    SnapshotDelete,
    /// A job type this version of vmsnap does not know.
    #[serde(other)]
    Unknown,
}

/// One entry of `query-jobs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct JobInfo {
    /// The job id.
    pub id: String,
    /// The kind of job.
    #[serde(rename = "type")]
    pub job_type: JobType,
    /// Its current status.
    pub status: JobStatus,
    /// Progress so far, in units of `total_progress`.
    pub current_progress: i64,
    /// Estimated total work.
    pub total_progress: i64,
    /// Why the job failed, once it has concluded with an error.
    #[serde(default)]
    pub error: Option<String>,
}

/// One entry of `query-block`: a block backend, usually attached to a device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockInfo {
    /// The backend name (empty for `-blockdev` disks, which are named by `qdev`).
    pub device: String,
    /// The qdev id or QOM path of the attached device.
    #[serde(default)]
    pub qdev: Option<String>,
    /// The device type (e.g. `unknown`).
    #[serde(rename = "type")]
    pub device_type: String,
    /// Whether the medium is removable.
    pub removable: bool,
    /// Whether the medium is locked.
    pub locked: bool,
    /// The top node of the medium, when one is inserted.
    #[serde(default)]
    pub inserted: Option<BlockDeviceInfo>,
    /// How the device's last request went, for devices that report I/O status.
    #[serde(rename = "io-status", default)]
    pub io_status: Option<BlockDeviceIoStatus>,
}

/// The I/O status of a block device (`BlockDeviceIoStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BlockDeviceIoStatus {
    /// The last request succeeded.
    Ok,
    /// The last request failed on the host.
    Failed,
    /// The last request failed because the host is out of space.
    Nospace,
}

/// The cache mode of a block node (`BlockdevCacheInfo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockdevCacheInfo {
    /// Whether writes complete once in the host's page cache.
    pub writeback: bool,
    /// Whether the host page cache is bypassed (`O_DIRECT`).
    pub direct: bool,
    /// Whether flush requests are ignored.
    #[serde(rename = "no-flush")]
    pub no_flush: bool,
}

/// A block node (`BlockDeviceInfo`), as in `query-named-block-nodes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockDeviceInfo {
    /// The node name (auto-generated ones start with `#`).
    #[serde(rename = "node-name", default)]
    pub node_name: Option<String>,
    /// The block driver, e.g. `qcow2` or `file`.
    pub drv: String,
    /// The filename, or a `json:` description of the node.
    pub file: String,
    /// Whether the node is read-only.
    pub ro: bool,
    /// The backing file name, when the node has a backing file.
    #[serde(default)]
    pub backing_file: Option<String>,
    /// How many backing files are below this node.
    pub backing_file_depth: i64,
    /// Information about the image and, recursively, its backing images.
    pub image: ImageInfo,
    /// The node's cache mode.
    #[serde(default)]
    pub cache: Option<BlockdevCacheInfo>,
}

/// Image metadata (`ImageInfo`), with the backing chain nested in `backing_image`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ImageInfo {
    /// The image filename.
    pub filename: String,
    /// The image format, e.g. `qcow2`.
    pub format: String,
    /// The guest-visible size in bytes.
    pub virtual_size: i64,
    /// The allocated size on the host, when known.
    #[serde(default)]
    pub actual_size: Option<i64>,
    /// The backing file name as recorded in the image.
    #[serde(default)]
    pub backing_filename: Option<String>,
    /// The backing image, when the image has one.
    #[serde(default)]
    pub backing_image: Option<Box<ImageInfo>>,
}

/// One entry of `query-chardev`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChardevInfo {
    /// The chardev id.
    pub label: String,
    /// Its backend description, e.g. `unix:/run/qga.sock,server=on`.
    pub filename: String,
    /// Whether a frontend (device) has it open.
    #[serde(rename = "frontend-open")]
    pub frontend_open: bool,
}

/// What a block job does on an I/O error (`BlockdevOnError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[allow(missing_docs)] // The variants are QEMU's policies, named exactly as on the wire.
pub enum BlockdevOnError {
    Report,
    Ignore,
    Enospc,
    Stop,
    Auto,
}
