//! The VM runtime: one daemonized QEMU process per VM, driven over QMP and the
//! guest agent.
//!
//! # Shape
//!
//! - [`LaunchSpec`] is the intent: what to run (firmware UUID, CPUs, memory,
//!   kernel or disk boot, disks, NICs). It is plain data that the controller fills
//!   in; [`qemu_args`] turns it into a QEMU command line without any I/O.
//! - [`Vmm::launch`] starts QEMU with `-daemonize`, so a VM outlives the agent
//!   process, like libvirt's domains; [`Vmm::attach`] finds it again after the
//!   agent restarts, and [`Vmm::list_running`] lists what still runs under a root.
//! - [`VmHandle`] is the live view of one QEMU process: run state, events, the
//!   guest agent, filesystem freeze with a safety auto-thaw that survives agent
//!   restarts, and the block operations the storage driver needs (active layer,
//!   atomic overlay snapshots, streaming, hotplug).
//! - [`probe_accelerator`] decides between KVM and TCG with one short boot per
//!   host boot.
//!
//! # The runtime directory of a VM
//!
//! Everything about one VM lives in the directory given to [`Vmm::launch`]
//! (see [`RuntimePaths`]):
//!
//! | file | what |
//! |---|---|
//! | `spec.json` | the [`LaunchRecord`]: the spec as launched (MACs filled in), the accelerator and the argv |
//! | `qemu.pid` | QEMU's pid, written by QEMU itself |
//! | `qmp.sock` | the QMP monitor (one client at a time: the agent) |
//! | `qga.sock` | the guest agent's virtio-serial port |
//! | `console.sock` | the serial console, interactive (one client at a time) |
//! | `console.log` | everything the serial console printed, appended across boots |
//! | `qemu.log` | QEMU's own stderr (start-up errors, warnings) |
//! | `freeze.json` | present while the agent has the guest frozen: the auto-thaw deadline |
//!
//! When QEMU has exited, the sockets, the pid file and the freeze record are
//! removed; the spec and the logs stay for post-mortems.
//!
//! # Timing
//!
//! Every call that talks to QEMU or the guest agent is bounded (see
//! [`Timeouts`]), so a hung QEMU or guest agent becomes an error, never a hung
//! caller. The freeze path does no sleeping and no polling: one file write
//! before `guest-fsfreeze-freeze`, one file removal after the thaw.

mod accel;
mod block;
mod cmdline;
mod error;
mod events;
mod freeze;
mod freeze_record;
mod guest_agent;
mod guest_agent_health;
mod handle;
mod hotplug;
mod launch;
mod mac;
mod names;
mod paths;
mod process;
mod spec;

pub use accel::{Accel, AccelSetting, ParseAccelSettingError, ProbeOptions, ProbeOutcome, probe_accelerator};
pub use block::{DiskLayer, StreamReport};
pub use cmdline::{ProcessMode, qemu_args};
pub use error::{
    AttachError, BlockError, ControlError, FreezeError, GuestAgentError, LaunchError, PathIoError,
    ProbeError, SpecError,
};
pub use events::{DiskIoError, ShutdownInfo, VmEvent, VmEvents};
pub use freeze::{FreezeOutcome, FreezeReport, ThawReport};
pub use guest_agent_health::{GuestAgentHealth, spawn_guest_agent_health};
pub use handle::{ExitReport, KillReport, VmHandle};
pub use launch::{LaunchRecord, RunningVm, Timeouts, Vmm, VmmConfig};
pub use mac::{MacAddress, ParseMacError};
pub use names::{MAX_SERIAL_LEN, SHORT_NAME_LEN, device_id, guest_mount_point, short_name};
pub use paths::RuntimePaths;
pub use spec::{
    Boot, CacheMode, CpuTopology, DEFAULT_HOTPLUG_SLOTS, DiskBus, DiskFormat, DiskSpec,
    FIRMWARE_MIN_MEMORY_MIB, KernelBoot, LaunchSpec, MAX_ROOT_PORTS, NicModel, NicSpec,
};

/// Re-exported from `vmsnap-qemu` because they appear in this module's API.
pub use vmsnap_qemu::client::ExecOutput;
pub use vmsnap_qemu::qga::commands::ExecArgs;
pub use vmsnap_qemu::qga::types::{FsfreezeStatus, GuestFilesystemInfo, GuestNetworkInterface, GuestOsInfo};
pub use vmsnap_qemu::qmp::types::{RunState, ShutdownCause, StatusInfo};
