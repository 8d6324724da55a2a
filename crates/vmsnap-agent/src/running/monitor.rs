//! The tasks that keep a running VMI's status true: QEMU's lifecycle events
//! (pause, resume, disk errors, shutdown, exit) and the guest agent's health.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use kube::runtime::events::EventType;
use tokio::sync::watch;
use vmsnap_api::kubevirt::VmiPhase;

use super::RunningVmi;
use super::pause::{self, PauseState, PauseTracker, Reaction};
use super::resume::RESUMED_REASON;
use crate::vmi_status;
use vmsnap_vmm::{RunState, ShutdownCause, ShutdownInfo, VmEvent, VmEvents};

/// How often guest OS and network details are refreshed while the agent answers.
const REFRESH: Duration = Duration::from_secs(15);

/// The first refresh after the agent connects; the pause doubles up to [`REFRESH`].
const FIRST_REFRESH: Duration = Duration::from_secs(1);

/// How long the first agent ping may take to give a verdict.
const FIRST_VERDICT: Duration = Duration::from_secs(3);

/// How long QEMU may take to exit once its monitor connection closed.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// The final phase of a VMI whose QEMU exited, and the reason to report.
pub fn exit_phase(requested: bool, shutdown: Option<ShutdownInfo>) -> (VmiPhase, Option<&'static str>) {
    match shutdown {
        _ if requested => (VmiPhase::Succeeded, None),
        Some(info) if info.reason == ShutdownCause::GuestPanic => (VmiPhase::Failed, Some("GuestPanicked")),
        Some(info) if info.guest => (VmiPhase::Succeeded, None),
        Some(_) => (VmiPhase::Failed, Some("HypervisorStopped")),
        None => (VmiPhase::Failed, Some("HypervisorCrashed")),
    }
}

/// How long after an event the monitor waits for the next before it writes
/// the status: `cont` on a disk that is still full brings `RESUME`,
/// `BLOCK_IO_ERROR` and `STOP` within a millisecond, and the VMI should not
/// flicker to running and back.
const BURST: Duration = Duration::from_millis(20);

/// The most events taken as one burst.
const BURST_MAX: usize = 64;

/// Follows QEMU's events until it exits, keeping the pause state (and with it
/// the `Paused` condition) true, then records the final phase.
pub async fn follow_events(vm: Arc<RunningVmi>, mut events: VmEvents) {
    let mut tracker = PauseTracker::new(vm.facts().pause);
    let mut shutdown = None;
    // QEMU's word first: the VM may have stopped before the events were followed
    // (or while no agent watched, for one that re-attached).
    let before = tracker.state().clone();
    resync(&vm, &mut tracker).await;
    // A pause on a full disk found now is a new one for this agent: report it and wait for room.
    let shown = if tracker.state().io_error().is_some() { PauseState::Running } else { before };
    show(&vm, &shown, tracker.state()).await;
    let mut ended = false;
    while !ended {
        let Some(event) = events.next().await else { break };
        let before = tracker.state().clone();
        let mut pause_events = apply(&vm, &mut tracker, event, &mut shutdown).await;
        for _ in 0..BURST_MAX {
            match tokio::time::timeout(BURST, events.next()).await {
                Ok(Some(event)) => pause_events |= apply(&vm, &mut tracker, event, &mut shutdown).await,
                Ok(None) => {
                    ended = true;
                    break;
                }
                Err(_) => break,
            }
        }
        show(&vm, &before, tracker.state()).await;
        if pause_events {
            vm.pause_applied.send_modify(|count| *count += 1);
        }
    }
    vm.stop_resumer();
    // The monitor connection closed: QEMU exited (it is the agent's only client).
    let report = match vm.handle.wait_exit(EXIT_TIMEOUT).await {
        Ok(report) => report,
        Err(error) => {
            tracing::error!(vmi = %vm.key(), %error, "lost the QMP connection but QEMU still runs");
            return;
        }
    };
    let requested = vm.stopping.load(Ordering::SeqCst);
    let (phase, reason) = exit_phase(requested, report.shutdown.or(shutdown));
    tracing::info!(vmi = %vm.key(), %phase, ?reason, "QEMU exited");
    let now = crate::time::now_time();
    vm.update_facts(|f| {
        f.set_phase(phase, &now);
        f.reason = reason.map(Into::into);
        f.agent_connected = false;
        f.pause = PauseState::Running;
    });
    vm.publish().await;
    let (type_, note) = match reason {
        None => (EventType::Normal, "The VirtualMachineInstance was shut down.".to_owned()),
        Some(reason) => (EventType::Warning, format!("The VirtualMachineInstance crashed ({reason}).")),
    };
    vm.event(type_, if reason.is_none() { "Stopped" } else { "Failed" }, note);
    if let Some(registry) = vm.deps.registry.upgrade() {
        registry.remove(&vm);
    }
    vm.exited.send_replace(true);
}

/// Applies one event to the pause state; returns whether it was a `STOP` or `RESUME` (or a resync).
async fn apply(
    vm: &RunningVmi,
    tracker: &mut PauseTracker,
    event: VmEvent,
    shutdown: &mut Option<ShutdownInfo>,
) -> bool {
    match &event {
        VmEvent::Lagged { missed } => {
            tracing::debug!(vmi = %vm.key(), missed, "lost QEMU events; asking QEMU");
            resync(vm, tracker).await;
            return true;
        }
        VmEvent::Shutdown(info) => *shutdown = Some(*info),
        VmEvent::IoError(error) => {
            let disk = error.disk_key.as_deref().map(|key| vm.disk_of_key(key));
            let effect = if error.stops_vm { "QEMU stops the VM" } else { "the guest was told" };
            tracing::warn!(vmi = %vm.key(), ?disk, node = ?error.node, reason = %error.reason, "a disk request failed; {effect}");
        }
        _ => {}
    }
    tracker.on_event(&event, |key| vm.disk_of_key(key))
}

/// Asks QEMU whether the vCPUs run and, if a disk error stopped them, on which disks.
async fn resync(vm: &RunningVmi, tracker: &mut PauseTracker) {
    let Ok(status) = vm.handle.status().await else { return };
    let failed = if status.status == RunState::IoError {
        vm.handle.disks_with_io_errors().await.unwrap_or_default()
    } else {
        Vec::new()
    };
    tracker.resync(&status, &failed);
}

/// Shows a change of the pause state and acts on it: warns about (and waits
/// out) a pause on a full disk, says when the agent resumed one.
async fn show(vm: &Arc<RunningVmi>, before: &PauseState, after: &PauseState) {
    let reaction = pause::reaction(before, after);
    if reaction != Reaction::None {
        vm.update_facts(|f| f.pause = after.clone());
        vm.publish().await;
    }
    match reaction {
        Reaction::None | Reaction::Show => {}
        Reaction::IoErrorPaused(pause) => vm.start_resumer(pause),
        Reaction::MoreDisks { mut pause, added } => {
            pause.disks = added.into_iter().collect();
            vm.warn_more_disks(pause);
        }
        Reaction::IoErrorResumed(pause) => {
            if let Some(note) = vm.take_auto_resume_note(&pause) {
                tracing::info!(vmi = %vm.key(), "{note}");
                vm.event(EventType::Normal, RESUMED_REASON, note);
            }
        }
    }
    if after.io_error().is_none() {
        vm.stop_resumer();
    }
}

/// Mirrors the agent health flag into `AgentConnected`. Nothing else runs in
/// this task, so a hung agent call elsewhere never delays the flag.
pub async fn follow_agent(vm: Arc<RunningVmi>, mut connected: watch::Receiver<bool>) {
    // The flag reads `false` until the first ping has been answered or has
    // timed out: wait for that verdict rather than report a guess (an agent
    // that re-attaches would otherwise flap `AgentConnected` off and on).
    let _ = tokio::time::timeout(FIRST_VERDICT, connected.changed()).await;
    vm.health_known.store(true, Ordering::SeqCst);
    loop {
        let now = *connected.borrow_and_update();
        vm.update_facts(|f| f.agent_connected = now);
        vm.publish().await;
        if connected.changed().await.is_err() {
            return;
        }
    }
}

/// Refreshes the guest OS and interfaces while the agent answers: soon after
/// it connects (addresses come a little later, with DHCP), then less and less often.
pub async fn follow_guest_info(vm: Arc<RunningVmi>, mut connected: watch::Receiver<bool>) {
    loop {
        if connected.wait_for(|up| *up).await.is_err() {
            return;
        }
        let mut pause = FIRST_REFRESH;
        while *connected.borrow() {
            refresh_guest_info(&vm).await;
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(REFRESH);
        }
    }
}

async fn refresh_guest_info(vm: &RunningVmi) {
    let os = vm.handle.guest_os_info().await.ok().map(|info| vmi_status::guest_os(&info));
    let Ok(guest) = vm.handle.guest_interfaces().await else { return };
    let interfaces = vmi_status::interfaces(&vm.nics, &guest);
    vm.update_facts(|f| {
        if os.is_some() {
            f.guest_os = os;
        }
        f.interfaces = interfaces;
    });
    vm.publish().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(guest: bool, reason: ShutdownCause) -> Option<ShutdownInfo> {
        Some(ShutdownInfo { guest, reason })
    }

    #[test]
    fn guest_power_offs_succeed_and_crashes_fail() {
        assert_eq!(exit_phase(false, info(true, ShutdownCause::GuestShutdown)), (VmiPhase::Succeeded, None));
        assert_eq!(
            exit_phase(false, info(true, ShutdownCause::GuestPanic)),
            (VmiPhase::Failed, Some("GuestPanicked"))
        );
        assert_eq!(exit_phase(false, info(false, ShutdownCause::HostSignal)).0, VmiPhase::Failed);
        assert_eq!(exit_phase(false, None), (VmiPhase::Failed, Some("HypervisorCrashed")));
        // A stop the agent asked for succeeds, even if QEMU had to be killed.
        assert_eq!(exit_phase(true, None), (VmiPhase::Succeeded, None));
    }
}
