//! KubeVirt's run strategies as a pure decision: given the VM's strategy and
//! pending state change requests, and its VMI as it is, what the VM
//! controller does next (virt-controller's `syncRunStrategy`), and when a
//! request has been served (`isTrimFirstChangeRequestNeeded`).

use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use vmsnap_api::kubevirt::{VirtualMachineStateChangeRequest, VmiPhase, run_strategy};

use crate::kubevirt::{START_PAUSED_KEY, START_PAUSED_TRUE, request};

/// The VMI of a VM, as far as the run strategy cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmiView<'a> {
    /// Its uid.
    pub uid: &'a str,
    /// Its phase (`Unset` before the agent took it).
    pub phase: &'a VmiPhase,
    /// Whether it has a deletion timestamp.
    pub deleting: bool,
    /// Whether it ever reached `Running`.
    pub ran: bool,
}

impl VmiView<'_> {
    /// `Succeeded` or `Failed`: the guest is gone for good.
    pub fn is_final(&self) -> bool {
        matches!(self.phase, VmiPhase::Succeeded | VmiPhase::Failed)
    }
}

/// What the VM controller should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmAction {
    /// Leave things as they are.
    Nothing,
    /// Create the VMI (with paused vCPUs when a start request asked for it).
    Start {
        /// Start with the vCPUs paused.
        paused: bool,
    },
    /// Delete the VMI (the agent shuts its guest down first).
    Stop,
    /// Delete the failed VMI and queue a start request (RerunOnFailure).
    StopAndRequestStart,
    /// A Halted VM got a start request: switch it to `runStrategy: Always`.
    SwitchToAlways,
    /// Starts have been failing: try again after this long.
    BackOff(Duration),
}

/// A run strategy KubeVirt does not define.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown runStrategy {0:?}; use Always, Halted, Manual, RerunOnFailure or Once")]
pub struct UnknownRunStrategy(pub String);

/// What the VM says about the run strategy and its requests.
#[derive(Debug, Clone, Copy)]
pub struct VmView<'a> {
    /// The effective run strategy.
    pub strategy: &'a str,
    /// `status.runStrategy`: the strategy last acted on (unset until the VM first started).
    pub status_strategy: Option<&'a str>,
    /// `status.stateChangeRequests`.
    pub requests: &'a [VirtualMachineStateChangeRequest],
    /// How long the start failure backoff still runs, if it does.
    pub backoff_left: Option<Duration>,
}

/// Whether the first request is a start request.
pub fn has_start_request(requests: &[VirtualMachineStateChangeRequest]) -> bool {
    requests.first().is_some_and(|r| r.action == request::START)
}

/// Whether the first request is a start request asking for paused vCPUs.
pub fn start_request_paused(requests: &[VirtualMachineStateChangeRequest]) -> bool {
    requests.first().is_some_and(|r| {
        r.action == request::START
            && r.data.get(START_PAUSED_KEY).map(String::as_str) == Some(START_PAUSED_TRUE)
    })
}

/// Whether the first request asks to stop this VMI.
pub fn has_stop_request_for(requests: &[VirtualMachineStateChangeRequest], vmi: &VmiView<'_>) -> bool {
    requests.first().is_some_and(|r| r.action == request::STOP && r.uid.as_deref() == Some(vmi.uid))
}

/// The next step for a VM (virt-controller's `syncRunStrategy`).
pub fn decide(vm: VmView<'_>, vmi: Option<VmiView<'_>>) -> Result<VmAction, UnknownRunStrategy> {
    let stop = |vmi: &VmiView<'_>| if vmi.deleting { VmAction::Nothing } else { VmAction::Stop };
    let start = || match vm.backoff_left {
        Some(left) if !left.is_zero() => VmAction::BackOff(left),
        _ => VmAction::Start { paused: start_request_paused(vm.requests) },
    };
    Ok(match vm.strategy {
        run_strategy::ALWAYS => match vmi {
            Some(vmi) if has_stop_request_for(vm.requests, &vmi) || vmi.is_final() => stop(&vmi),
            Some(_) => VmAction::Nothing,
            None => start(),
        },
        run_strategy::RERUN_ON_FAILURE => match vmi {
            Some(vmi) if vmi.deleting => VmAction::Nothing,
            Some(vmi) if *vmi.phase == VmiPhase::Failed => VmAction::StopAndRequestStart,
            Some(vmi) if has_stop_request_for(vm.requests, &vmi) || *vmi.phase == VmiPhase::Succeeded => {
                VmAction::Stop
            }
            Some(_) => VmAction::Nothing,
            // Coming from another strategy (or never started): start.
            None if !has_start_request(vm.requests) && vm.status_strategy == Some(vm.strategy) => {
                VmAction::Nothing
            }
            None => start(),
        },
        run_strategy::MANUAL => match vmi {
            Some(vmi) if has_stop_request_for(vm.requests, &vmi) => stop(&vmi),
            Some(_) => VmAction::Nothing,
            None if has_start_request(vm.requests) => start(),
            None => VmAction::Nothing,
        },
        run_strategy::HALTED => match vmi {
            Some(vmi) => stop(&vmi),
            None if has_start_request(vm.requests) => VmAction::SwitchToAlways,
            None => VmAction::Nothing,
        },
        run_strategy::ONCE => match vmi {
            Some(_) => VmAction::Nothing,
            None => start(),
        },
        other => return Err(UnknownRunStrategy(other.to_owned())),
    })
}

/// Whether the first state change request has been served and can be removed.
pub fn first_request_served(requests: &[VirtualMachineStateChangeRequest], vmi: Option<VmiView<'_>>) -> bool {
    let Some(first) = requests.first() else { return false };
    match first.action.as_str() {
        request::STOP => match (vmi, first.uid.as_deref()) {
            (None, _) | (Some(_), None) => true,
            (Some(vmi), Some(uid)) => uid != vmi.uid,
        },
        request::START => vmi.is_some_and(|vmi| !vmi.deleting && !vmi.is_final()),
        // A request nobody can act on would block the queue for ever.
        _ => true,
    }
}

/// `status.startFailure`: consecutive VMIs that failed before they ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartFailure {
    /// How many VMIs in a row failed to start.
    pub consecutive_fail_count: u32,
    /// The uid of the last one.
    #[serde(rename = "lastFailedVMIUID")]
    pub last_failed_vmi_uid: String,
    /// No new VMI before this time.
    pub retry_after_timestamp: Timestamp,
}

/// The delay before start number `failures + 1`: 10 s, doubling, at most 5 minutes.
pub fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(5);
    Duration::from_secs(10 << doublings).min(Duration::from_secs(300))
}

/// The start failure record after seeing `vmi` (virt-controller's `syncStartFailureStatus`):
/// a VMI that ran clears it, one more VMI that failed without running extends it.
pub fn next_start_failure(
    previous: Option<StartFailure>,
    vmi: Option<&VmiView<'_>>,
    now: Timestamp,
) -> Option<StartFailure> {
    let Some(vmi) = vmi else { return previous };
    if vmi.ran {
        return None;
    }
    if *vmi.phase != VmiPhase::Failed {
        return previous;
    }
    match previous {
        Some(previous) if previous.last_failed_vmi_uid == vmi.uid => Some(previous),
        previous => {
            let count = previous.map_or(0, |p| p.consecutive_fail_count) + 1;
            let delay = SignedDuration::try_from(backoff(count)).unwrap_or(SignedDuration::MAX);
            Some(StartFailure {
                consecutive_fail_count: count,
                last_failed_vmi_uid: vmi.uid.to_owned(),
                retry_after_timestamp: now.saturating_add(delay).unwrap_or(now),
            })
        }
    }
}

/// How long until `failure` allows a new start.
pub fn backoff_left(failure: Option<&StartFailure>, now: Timestamp) -> Option<Duration> {
    let left = failure?.retry_after_timestamp.duration_since(now);
    Duration::try_from(left).ok().filter(|d| !d.is_zero())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn req(action: &str, uid: Option<&str>) -> VirtualMachineStateChangeRequest {
        VirtualMachineStateChangeRequest {
            action: action.into(),
            uid: uid.map(Into::into),
            data: BTreeMap::new(),
        }
    }

    fn vm<'a>(strategy: &'a str, requests: &'a [VirtualMachineStateChangeRequest]) -> VmView<'a> {
        VmView { strategy, status_strategy: Some(strategy), requests, backoff_left: None }
    }

    fn vmi(phase: &str) -> VmiView<'static> {
        // Leaked: a test's few phases live as long as the test binary.
        let phase: &'static VmiPhase = Box::leak(Box::new(VmiPhase::from(phase)));
        VmiView { uid: "u1", phase, deleting: false, ran: true }
    }

    const START: VmAction = VmAction::Start { paused: false };

    #[test]
    fn always_starts_a_missing_vmi_and_restarts_a_finished_one() {
        assert_eq!(decide(vm("Always", &[]), None).unwrap(), START);
        assert_eq!(decide(vm("Always", &[]), Some(vmi("Running"))).unwrap(), VmAction::Nothing);
        assert_eq!(decide(vm("Always", &[]), Some(vmi("Succeeded"))).unwrap(), VmAction::Stop);
        assert_eq!(decide(vm("Always", &[]), Some(vmi("Failed"))).unwrap(), VmAction::Stop);
        let restart = [req("Stop", Some("u1")), req("Start", None)];
        assert_eq!(decide(vm("Always", &restart), Some(vmi("Running"))).unwrap(), VmAction::Stop);
        let deleting = VmiView { deleting: true, ..vmi("Running") };
        assert_eq!(decide(vm("Always", &restart), Some(deleting)).unwrap(), VmAction::Nothing);
    }

    #[test]
    fn halted_stops_the_vmi_and_turns_a_start_request_into_always() {
        assert_eq!(decide(vm("Halted", &[]), Some(vmi("Running"))).unwrap(), VmAction::Stop);
        assert_eq!(decide(vm("Halted", &[]), None).unwrap(), VmAction::Nothing);
        assert_eq!(decide(vm("Halted", &[req("Start", None)]), None).unwrap(), VmAction::SwitchToAlways);
    }

    #[test]
    fn manual_acts_only_on_requests() {
        assert_eq!(decide(vm("Manual", &[]), None).unwrap(), VmAction::Nothing);
        assert_eq!(decide(vm("Manual", &[]), Some(vmi("Succeeded"))).unwrap(), VmAction::Nothing);
        let mut paused = req("Start", None);
        paused.data.insert("paused".into(), "true".into());
        assert_eq!(decide(vm("Manual", &[paused]), None).unwrap(), VmAction::Start { paused: true });
        let stop_other = [req("Stop", Some("u0"))];
        assert_eq!(decide(vm("Manual", &stop_other), Some(vmi("Running"))).unwrap(), VmAction::Nothing);
        let stop = [req("Stop", Some("u1"))];
        assert_eq!(decide(vm("Manual", &stop), Some(vmi("Running"))).unwrap(), VmAction::Stop);
    }

    #[test]
    fn rerun_on_failure_restarts_failures_only() {
        let rerun = |requests, vmi| decide(vm("RerunOnFailure", requests), vmi).unwrap();
        assert_eq!(rerun(&[], Some(vmi("Failed"))), VmAction::StopAndRequestStart);
        assert_eq!(rerun(&[], Some(vmi("Succeeded"))), VmAction::Stop);
        assert_eq!(rerun(&[], None), VmAction::Nothing);
        assert_eq!(rerun(&[req("Start", None)], None), START);
        let fresh = VmView { status_strategy: None, ..vm("RerunOnFailure", &[]) };
        assert_eq!(decide(fresh, None).unwrap(), START);
    }

    #[test]
    fn once_runs_a_single_vmi_and_unknown_strategies_are_refused() {
        assert_eq!(decide(vm("Once", &[]), None).unwrap(), START);
        assert_eq!(decide(vm("Once", &[]), Some(vmi("Succeeded"))).unwrap(), VmAction::Nothing);
        assert_eq!(decide(vm("Sometimes", &[]), None).unwrap_err(), UnknownRunStrategy("Sometimes".into()));
    }

    #[test]
    fn a_start_in_backoff_waits() {
        let view = VmView { backoff_left: Some(Duration::from_secs(7)), ..vm("Always", &[]) };
        assert_eq!(decide(view, None).unwrap(), VmAction::BackOff(Duration::from_secs(7)));
    }

    #[test]
    fn requests_are_served_when_their_vmi_is_gone_or_running() {
        let stop = [req("Stop", Some("u1"))];
        assert!(first_request_served(&stop, None));
        assert!(!first_request_served(&stop, Some(vmi("Running"))));
        assert!(first_request_served(&[req("Stop", Some("u0"))], Some(vmi("Running"))));
        let start = [req("Start", None)];
        assert!(!first_request_served(&start, None));
        assert!(!first_request_served(&start, Some(vmi("Succeeded"))));
        assert!(first_request_served(&start, Some(vmi("Scheduled"))));
        assert!(!first_request_served(&[], None));
    }

    #[test]
    fn start_failures_count_up_with_backoff_and_a_run_clears_them() {
        let now: Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
        let failed = VmiView { ran: false, ..vmi("Failed") };
        let first = next_start_failure(None, Some(&failed), now).unwrap();
        assert_eq!(first.consecutive_fail_count, 1);
        assert_eq!(backoff_left(Some(&first), now), Some(Duration::from_secs(10)));
        // The same VMI seen again does not count twice.
        assert_eq!(next_start_failure(Some(first.clone()), Some(&failed), now), Some(first.clone()));
        let again = VmiView { uid: "u2", ..failed };
        let second = next_start_failure(Some(first), Some(&again), now).unwrap();
        assert_eq!(second.consecutive_fail_count, 2);
        assert_eq!(backoff_left(Some(&second), now), Some(Duration::from_secs(20)));
        assert_eq!(next_start_failure(Some(second), Some(&vmi("Running")), now), None);
        assert_eq!(backoff(40), Duration::from_secs(300));
    }
}
