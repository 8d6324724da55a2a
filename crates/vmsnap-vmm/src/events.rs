//! The lifecycle events of a VM, for controllers that follow guest-initiated
//! shutdowns, pauses and resets, and the disk errors that pause it.

use tokio::sync::watch;
use vmsnap_qemu::EventError;
use vmsnap_qemu::client::QmpEvents;
use vmsnap_qemu::qmp::Event;
use vmsnap_qemu::qmp::events::{BlockErrorAction, BlockIoError};
use vmsnap_qemu::qmp::types::ShutdownCause;

use super::names::parse_node;

/// Why the VM shut down or reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownInfo {
    /// Whether the guest asked for it (power-off from inside, ACPI button honoured).
    pub guest: bool,
    /// QEMU's precise cause.
    pub reason: ShutdownCause,
}

/// A guest request that failed on the host (QEMU's `BLOCK_IO_ERROR`).
///
/// With the device defaults QEMU 7.2 uses for vmsnap's disks (`werror=enospc`,
/// `rerror=report`), a write that fails with ENOSPC stops the VM: this event
/// (`stops_vm`, `no_space`), then [`VmEvent::Stop`], and `query-status` says
/// `io-error`. `cont` retries the failed request; if the host is still full the
/// same pair of events follows at once. Any other error is passed to the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskIoError {
    /// The block node the request failed on, e.g. `fmt3-data`.
    pub node: Option<String>,
    /// The disk key of that node ([`crate::short_name`] of the disk name), when
    /// the node is one of the runtime's.
    pub disk_key: Option<String>,
    /// `read` or `write`.
    pub operation: String,
    /// Whether the host file system is full (ENOSPC).
    pub no_space: bool,
    /// Whether QEMU stopped the VM for it (a `STOP` follows).
    pub stops_vm: bool,
    /// The host error, e.g. `No space left on device`.
    pub reason: String,
}

impl DiskIoError {
    fn from_qmp(error: &BlockIoError) -> Self {
        let disk_key = error.node_name.as_deref().and_then(parse_node).map(|parsed| parsed.key.to_owned());
        DiskIoError {
            node: error.node_name.clone(),
            disk_key,
            operation: error.operation.clone(),
            no_space: error.nospace,
            stops_vm: error.action == BlockErrorAction::Stop,
            reason: error.reason.clone(),
        }
    }
}

/// A lifecycle event of the VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmEvent {
    /// The VM shut down; QEMU exits right after.
    Shutdown(ShutdownInfo),
    /// The VM was reset (rebooted).
    Reset(ShutdownInfo),
    /// The ACPI power button was pressed; the guest decides what to do.
    Powerdown,
    /// The vCPUs were paused.
    Stop,
    /// The vCPUs resumed.
    Resume,
    /// A disk request failed on the host; when it stops the VM, [`VmEvent::Stop`] follows.
    IoError(DiskIoError),
    /// This receiver fell behind and lost events: re-read the state with `status()`.
    Lagged {
        /// How many events were lost (of all kinds, not only lifecycle ones).
        missed: u64,
    },
}

/// Receives the lifecycle events emitted after it was created (see [`crate::VmHandle::events`]).
#[derive(Debug)]
pub struct VmEvents {
    inner: QmpEvents,
}

impl VmEvents {
    /// The lifecycle events of a QMP connection's event stream.
    pub fn new(inner: QmpEvents) -> Self {
        Self { inner }
    }

    /// The next lifecycle event, or `None` once the monitor connection is gone
    /// (QEMU exited, or the handle was dropped).
    pub async fn next(&mut self) -> Option<VmEvent> {
        loop {
            match self.inner.next().await {
                Ok(event) => {
                    if let Some(event) = lifecycle(&event.event) {
                        return Some(event);
                    }
                }
                Err(EventError::Lagged { missed }) => return Some(VmEvent::Lagged { missed }),
                Err(_) => return None,
            }
        }
    }
}

/// The lifecycle meaning of a QMP event, if it has one.
pub(crate) fn lifecycle(event: &Event) -> Option<VmEvent> {
    match event {
        Event::Shutdown(cause) => {
            Some(VmEvent::Shutdown(ShutdownInfo { guest: cause.guest, reason: cause.reason }))
        }
        Event::Reset(cause) => {
            Some(VmEvent::Reset(ShutdownInfo { guest: cause.guest, reason: cause.reason }))
        }
        Event::Powerdown => Some(VmEvent::Powerdown),
        Event::Stop => Some(VmEvent::Stop),
        Event::Resume => Some(VmEvent::Resume),
        Event::BlockIoError(error) => Some(VmEvent::IoError(DiskIoError::from_qmp(error))),
        _ => None,
    }
}

/// What the runtime learnt from events, for callers that did not listen.
#[derive(Debug, Default)]
pub(crate) struct Observed {
    /// The last `SHUTDOWN`.
    pub(crate) shutdown: Option<ShutdownInfo>,
    /// Whether the event stream has ended (every event before the close was seen).
    pub(crate) done: bool,
}

/// Records lifecycle facts from `events` into `observed` until the connection closes.
pub(crate) async fn follow(mut events: VmEvents, observed: watch::Sender<Observed>) {
    while let Some(event) = events.next().await {
        tracing::debug!(?event, "VM event");
        if let VmEvent::Shutdown(info) = event {
            observed.send_modify(|o| o.shutdown = Some(info));
        }
    }
    observed.send_modify(|o| o.done = true);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_lifecycle_events_are_passed_on() {
        let shutdown = Event::from_wire("SHUTDOWN", json!({"guest": true, "reason": "guest-shutdown"}));
        assert_eq!(
            lifecycle(&shutdown),
            Some(VmEvent::Shutdown(ShutdownInfo { guest: true, reason: ShutdownCause::GuestShutdown }))
        );
        assert_eq!(lifecycle(&Event::from_wire("STOP", json!(null))), Some(VmEvent::Stop));
        // What QEMU 7.2 sent when the file system under a test guest's qcow2 filled up.
        let full = Event::from_wire(
            "BLOCK_IO_ERROR",
            json!({"device": "", "nospace": true, "node-name": "fmt2-data", "reason": "No space left on device",
                   "operation": "write", "action": "stop"}),
        );
        let Some(VmEvent::IoError(error)) = lifecycle(&full) else { panic!("not an I/O error: {full:?}") };
        assert_eq!((error.disk_key.as_deref(), error.no_space, error.stops_vm), (Some("data"), true, true));
        let reported = Event::from_wire(
            "BLOCK_IO_ERROR",
            json!({"device": "", "node-name": "qemu-node", "reason": "Input/output error",
                   "operation": "read", "action": "report"}),
        );
        let Some(VmEvent::IoError(error)) = lifecycle(&reported) else { panic!("not an I/O error") };
        assert_eq!((error.disk_key, error.no_space, error.stops_vm), (None, false, false));
        let job = Event::from_wire("JOB_STATUS_CHANGE", json!({"id": "j", "status": "running"}));
        assert_eq!(lifecycle(&job), None);
    }
}
