//! The typed QMP commands vmsnap uses. Anything else goes through `execute_raw`.

use serde_json::Value;

use super::args::{
    BlockCommitArgs, BlockResizeArgs, BlockStreamArgs, BlockdevDelArgs, CapabilitiesArgs, DeviceDelArgs,
    JobIdArgs, NamedBlockNodesArgs, TransactionArgs,
};
use super::types::{BlockDeviceInfo, BlockInfo, ChardevInfo, JobInfo, StatusInfo};
use crate::command::{Empty, QmpPhase, commands};

commands!(QmpCommand {
    /// `qmp_capabilities`: leave capabilities negotiation. The session sends it by itself.
    QmpCapabilities = "qmp_capabilities", CapabilitiesArgs => Empty { const PHASE: QmpPhase = QmpPhase::Negotiation; };
    /// `query-status`: the VM run state.
    QueryStatus = "query-status", () => StatusInfo;
    /// `stop`: pause the vCPUs (emits `STOP`).
    Stop = "stop", () => Empty;
    /// `cont`: resume the vCPUs (emits `RESUME`).
    Cont = "cont", () => Empty;
    /// `system_powerdown`: press the ACPI power button (emits `POWERDOWN`); the guest decides what to do.
    SystemPowerdown = "system_powerdown", () => Empty;
    /// `system_reset`: hard-reset the VM (emits `RESET`).
    SystemReset = "system_reset", () => Empty;
    /// `quit`: exit QEMU at once; it replies, emits `SHUTDOWN` and closes the socket.
    Quit = "quit", () => Empty;
    /// `query-block`: the block backends and the nodes inserted in them.
    QueryBlock = "query-block", () => Vec<BlockInfo>;
    /// `query-named-block-nodes`: every named node, with backing images nested unless `flat`.
    QueryNamedBlockNodes = "query-named-block-nodes", NamedBlockNodesArgs => Vec<BlockDeviceInfo>;
    /// `blockdev-add`: add a node graph. The options are the (large) `BlockdevOptions` union, given as JSON.
    BlockdevAdd = "blockdev-add", Value => Empty;
    /// `blockdev-del`: remove an unused node.
    BlockdevDel = "blockdev-del", BlockdevDelArgs => Empty;
    /// `transaction`: apply several block actions atomically.
    Transaction = "transaction", TransactionArgs => Empty;
    /// `device_add`: hot-plug a device. The properties depend on the driver, so they are JSON.
    DeviceAdd = "device_add", Value => Empty;
    /// `device_del`: request unplug; completion is the `DEVICE_DELETED` event.
    DeviceDel = "device_del", DeviceDelArgs => Empty;
    /// `block-stream`: start a job pulling backing data into a node.
    BlockStream = "block-stream", BlockStreamArgs => Empty;
    /// `block-commit`: start a job merging a node into one below it.
    BlockCommit = "block-commit", BlockCommitArgs => Empty;
    /// `query-jobs`: the background jobs.
    QueryJobs = "query-jobs", () => Vec<JobInfo>;
    /// `job-dismiss`: remove a concluded job.
    JobDismiss = "job-dismiss", JobIdArgs => Empty;
    /// `job-finalize`: finalise a pending job (with `auto-finalize: false`).
    JobFinalize = "job-finalize", JobIdArgs => Empty;
    /// `block_resize`: grow or shrink a node.
    BlockResize = "block_resize", BlockResizeArgs => Empty;
    /// `query-chardev`: the character devices (e.g. the guest agent socket).
    QueryChardev = "query-chardev", () => Vec<ChardevInfo>;
});
