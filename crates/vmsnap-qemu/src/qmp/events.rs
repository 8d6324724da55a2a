//! Asynchronous QMP events: `{"event": NAME, "data": {...}, "timestamp": {...}}`.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::types::{JobStatus, JobType, ShutdownCause};

/// When QEMU emitted an event (host wall clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Timestamp {
    /// Seconds since the Unix epoch.
    pub seconds: i64,
    /// Microseconds within the second.
    pub microseconds: i64,
}

/// An event with its timestamp.
#[derive(Debug, Clone, PartialEq)]
pub struct QmpEvent {
    /// What happened.
    pub event: Event,
    /// When it happened.
    pub timestamp: Timestamp,
}

impl QmpEvent {
    /// The event name on the wire, e.g. `SHUTDOWN`.
    pub fn name(&self) -> &str {
        self.event.name()
    }
}

/// The events vmsnap reacts to, typed; anything else is kept as [`Event::Other`].
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// `SHUTDOWN`: the guest or the host shut the VM down (QEMU exits unless `-no-shutdown`).
    Shutdown(GuestCause),
    /// `RESET`: the VM was reset.
    Reset(GuestCause),
    /// `POWERDOWN`: an ACPI power-button request reached the guest.
    Powerdown,
    /// `STOP`: the vCPUs were paused.
    Stop,
    /// `RESUME`: the vCPUs resumed.
    Resume,
    /// `JOB_STATUS_CHANGE`: a background job changed status.
    JobStatusChange(JobStatusChange),
    /// `BLOCK_JOB_COMPLETED`: a block job finished, successfully or not.
    BlockJobCompleted(BlockJobCompleted),
    /// `BLOCK_JOB_ERROR`: a block job hit an I/O error.
    BlockJobError(BlockJobError),
    /// `DEVICE_DELETED`: the guest released an unplugged device.
    DeviceDeleted(DeviceDeleted),
    /// `BLOCK_IO_ERROR`: a guest read or write failed on the host (e.g. ENOSPC), and what the
    /// device's error policy (`werror`/`rerror`) did about it.
    BlockIoError(BlockIoError),
    /// Any other event, or a known one whose data did not have the expected shape.
    Other {
        /// The event name.
        name: String,
        /// The raw `data` member (`null` when absent).
        data: Value,
    },
}

/// The data of `SHUTDOWN` and `RESET`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestCause {
    /// Whether the guest initiated it.
    pub guest: bool,
    /// The precise cause.
    pub reason: ShutdownCause,
}

/// The data of `JOB_STATUS_CHANGE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStatusChange {
    /// The job id.
    pub id: String,
    /// The new status.
    pub status: JobStatus,
}

/// The data of `BLOCK_JOB_COMPLETED`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockJobCompleted {
    /// The kind of job.
    #[serde(rename = "type")]
    pub job_type: JobType,
    /// The job id (historically named `device`).
    pub device: String,
    /// The amount of work, in bytes.
    pub len: i64,
    /// How far the job got, in bytes.
    pub offset: i64,
    /// The rate limit, in bytes per second.
    pub speed: i64,
    /// Why the job failed; absent on success.
    #[serde(default)]
    pub error: Option<String>,
}

/// The data of `BLOCK_JOB_ERROR`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockJobError {
    /// The job id (historically named `device`).
    pub device: String,
    /// `read` or `write`.
    pub operation: String,
    /// What the job does about it: `ignore`, `report` or `stop`.
    pub action: String,
}

/// What a device's error policy did about a failed guest request (`BlockErrorAction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BlockErrorAction {
    /// The error was ignored: the guest was told the request succeeded.
    Ignore,
    /// The error was passed to the guest.
    Report,
    /// The VM was stopped (run state `io-error`, followed by `STOP`); `cont` retries the request.
    Stop,
    /// An action this version of vmsnap does not know.
    #[serde(other)]
    Unknown,
}

/// The data of `BLOCK_IO_ERROR`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockIoError {
    /// The backend name; empty for disks given with `-blockdev`, which are named by `node_name`.
    #[serde(default)]
    pub device: String,
    /// The block node the request failed on (the top node of the disk).
    #[serde(rename = "node-name", default)]
    pub node_name: Option<String>,
    /// `read` or `write`.
    pub operation: String,
    /// What the error policy did.
    pub action: BlockErrorAction,
    /// Whether the error was ENOSPC: the host storage behind the node is full.
    #[serde(default)]
    pub nospace: bool,
    /// The host error, as text (e.g. `No space left on device`).
    pub reason: String,
}

/// The data of `DEVICE_DELETED`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceDeleted {
    /// The device id, when it had one.
    #[serde(default)]
    pub device: Option<String>,
    /// The device's QOM path.
    pub path: String,
}

impl Event {
    /// Types an event from its wire name and `data` member.
    pub fn from_wire(name: &str, data: Value) -> Self {
        match name {
            "SHUTDOWN" => typed(name, data, Event::Shutdown),
            "RESET" => typed(name, data, Event::Reset),
            "POWERDOWN" => Event::Powerdown,
            "STOP" => Event::Stop,
            "RESUME" => Event::Resume,
            "JOB_STATUS_CHANGE" => typed(name, data, Event::JobStatusChange),
            "BLOCK_JOB_COMPLETED" => typed(name, data, Event::BlockJobCompleted),
            "BLOCK_JOB_ERROR" => typed(name, data, Event::BlockJobError),
            "DEVICE_DELETED" => typed(name, data, Event::DeviceDeleted),
            "BLOCK_IO_ERROR" => typed(name, data, Event::BlockIoError),
            _ => Event::Other { name: name.to_owned(), data },
        }
    }

    /// The event name on the wire.
    pub fn name(&self) -> &str {
        match self {
            Event::Shutdown(_) => "SHUTDOWN",
            Event::Reset(_) => "RESET",
            Event::Powerdown => "POWERDOWN",
            Event::Stop => "STOP",
            Event::Resume => "RESUME",
            Event::JobStatusChange(_) => "JOB_STATUS_CHANGE",
            Event::BlockJobCompleted(_) => "BLOCK_JOB_COMPLETED",
            Event::BlockJobError(_) => "BLOCK_JOB_ERROR",
            Event::DeviceDeleted(_) => "DEVICE_DELETED",
            Event::BlockIoError(_) => "BLOCK_IO_ERROR",
            Event::Other { name, .. } => name,
        }
    }
}

/// Decodes `data` into `T`, keeping the raw event if it does not fit: an
/// unexpected shape from a newer QEMU must not turn into a lost event.
fn typed<T: DeserializeOwned>(name: &str, data: Value, wrap: fn(T) -> Event) -> Event {
    match serde_json::from_value(data.clone()) {
        Ok(typed) => wrap(typed),
        Err(error) => {
            tracing::warn!(event = name, %error, "QMP event data did not match its type; kept as raw");
            Event::Other { name: name.to_owned(), data }
        }
    }
}
