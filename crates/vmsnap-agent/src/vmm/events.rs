//! The lifecycle events of a VM, for controllers that follow guest-initiated
//! shutdowns, pauses and resets.

use tokio::sync::watch;
use vmsnap_qemu::EventError;
use vmsnap_qemu::client::QmpEvents;
use vmsnap_qemu::qmp::Event;
use vmsnap_qemu::qmp::types::ShutdownCause;

/// Why the VM shut down or reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownInfo {
    /// Whether the guest asked for it (power-off from inside, ACPI button honoured).
    pub guest: bool,
    /// QEMU's precise cause.
    pub reason: ShutdownCause,
}

/// A lifecycle event of the VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// This receiver fell behind and lost events: re-read the state with `status()`.
    Lagged {
        /// How many events were lost (of all kinds, not only lifecycle ones).
        missed: u64,
    },
}

/// Receives the lifecycle events emitted after it was created (see [`crate::vmm::VmHandle::events`]).
#[derive(Debug)]
pub struct VmEvents {
    inner: QmpEvents,
}

impl VmEvents {
    pub(crate) fn new(inner: QmpEvents) -> Self {
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
        let job = Event::from_wire("JOB_STATUS_CHANGE", json!({"id": "j", "status": "running"}));
        assert_eq!(lifecycle(&job), None);
    }
}
