//! DataVolume status as CDI writes it: the phase, `progress`, `restartCount`,
//! and the `Bound`, `Ready` and `Running` conditions (CDI's reasons and
//! messages), written with a merge patch only when something other than a
//! timestamp changed.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use vmsnap_api::cdi::{DataVolume, DataVolumeCondition, DataVolumeStatus};

use crate::context::Context;
use crate::error::ReconcileError;

/// The `Running` condition: whether data is being transferred.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Running {
    /// Nothing is running; the message (if any) says what is awaited.
    Idle(Option<String>),
    /// A transfer (import, clone, restore) is running.
    Transferring,
    /// The transfer finished.
    Completed,
    /// The last transfer failed with this message.
    Failed(String),
}

/// The status a DataVolume should have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// CDI phase (see `vmsnap_api::cdi::dv_phase`).
    pub phase: &'static str,
    /// `N/A`, `45.00%`, `100.0%`; `None` keeps what is there.
    pub progress: Option<String>,
    /// How many times the transfer failed and restarted; `None` keeps what is there.
    pub restart_count: Option<i32>,
    /// The transfer.
    pub running: Running,
}

impl Desired {
    /// A phase with the transfer idle.
    pub fn idle(phase: &'static str, waiting_for: Option<String>) -> Self {
        Self { phase, progress: None, restart_count: None, running: Running::Idle(waiting_for) }
    }
}

/// Writes `desired` (with conditions derived from `claim`) if it differs from the DataVolume's status.
pub async fn set_status(
    ctx: &Context,
    dv: &DataVolume,
    claim: Option<&PersistentVolumeClaim>,
    desired: &Desired,
) -> Result<(), ReconcileError> {
    let current = dv.status.clone().unwrap_or_default();
    let next = next_status(&current, &dv.name_any(), claim, desired, Time(Timestamp::now()));
    if same_ignoring_times(&current, &next) {
        return Ok(());
    }
    let patch = json!({"status": next});
    let dvs = ctx.namespaced::<DataVolume>(&dv.namespace().unwrap_or_default());
    dvs.patch_status(&dv.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}

/// The status after applying `desired` to `current` at time `now`.
pub fn next_status(
    current: &DataVolumeStatus,
    claim_name: &str,
    claim: Option<&PersistentVolumeClaim>,
    desired: &Desired,
    now: Time,
) -> DataVolumeStatus {
    let mut conditions = current.conditions.clone();
    let (bound, bound_reason, bound_message) =
        match claim.and_then(|c| c.status.as_ref()).and_then(|s| s.phase.as_deref()) {
            None if claim.is_none() => ("False", "NotFound", "No PVC found".to_owned()),
            Some("Bound") => ("True", "Bound", format!("PVC {claim_name} Bound")),
            Some("Lost") => ("False", "ClaimLost", "Claim Lost".to_owned()),
            _ => ("False", "Pending", format!("PVC {claim_name} Pending")),
        };
    set_condition(&mut conditions, "Bound", bound, Some(bound_reason), Some(&bound_message), &now);
    let (running, running_reason, running_message) = match &desired.running {
        Running::Idle(message) => ("False", None, message.clone()),
        Running::Transferring => ("True", None, None),
        Running::Completed => ("False", Some("Completed"), None),
        Running::Failed(message) => ("False", Some("Error"), Some(message.clone())),
    };
    set_condition(&mut conditions, "Running", running, running_reason, running_message.as_deref(), &now);
    let (ready, ready_reason) = match (desired.phase, &desired.running) {
        (vmsnap_api::cdi::dv_phase::SUCCEEDED, _) => ("True", None),
        (_, Running::Transferring) => ("False", Some("TransferRunning")),
        _ => ("False", None),
    };
    set_condition(&mut conditions, "Ready", ready, ready_reason, None, &now);
    DataVolumeStatus {
        claim_name: Some(claim_name.to_owned()),
        phase: Some(desired.phase.to_owned()),
        progress: desired
            .progress
            .clone()
            .or_else(|| current.progress.clone())
            .or_else(|| Some("N/A".into())),
        restart_count: desired.restart_count.or(current.restart_count).or(Some(0)),
        conditions,
    }
}

/// Sets a condition as CDI's `updateCondition` does: the transition time
/// moves when the status changes, the heartbeat when anything changes.
fn set_condition(
    conditions: &mut Vec<DataVolumeCondition>,
    type_: &str,
    status: &str,
    reason: Option<&str>,
    message: Option<&str>,
    now: &Time,
) {
    let index = match conditions.iter().position(|c| c.type_ == type_) {
        Some(index) => index,
        None => {
            conditions.push(DataVolumeCondition { type_: type_.into(), ..Default::default() });
            conditions.len() - 1
        }
    };
    let condition = &mut conditions[index];
    let (reason, message) = (reason.map(str::to_owned), message.map(str::to_owned));
    if condition.status != status {
        condition.status = status.into();
        condition.last_transition_time = Some(now.clone());
        condition.last_heartbeat_time = Some(now.clone());
    } else if condition.reason != reason || condition.message != message {
        condition.last_heartbeat_time = Some(now.clone());
    }
    condition.reason = reason;
    condition.message = message;
}

fn same_ignoring_times(a: &DataVolumeStatus, b: &DataVolumeStatus) -> bool {
    let strip = |status: &DataVolumeStatus| {
        let mut status = status.clone();
        for condition in &mut status.conditions {
            condition.last_transition_time = None;
            condition.last_heartbeat_time = None;
        }
        status
    };
    strip(a) == strip(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmsnap_api::cdi::dv_phase;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap())
    }

    fn bound_claim() -> PersistentVolumeClaim {
        serde_json::from_value(json!({"metadata": {"name": "disk"}, "status": {"phase": "Bound"}})).unwrap()
    }

    fn condition<'a>(status: &'a DataVolumeStatus, type_: &str) -> &'a DataVolumeCondition {
        status.conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    #[test]
    fn a_running_import_has_cdis_conditions() {
        let desired = Desired {
            phase: dv_phase::IMPORT_IN_PROGRESS,
            progress: Some("45.00%".into()),
            restart_count: None,
            running: Running::Transferring,
        };
        let status = next_status(&DataVolumeStatus::default(), "disk", None, &desired, at(10));
        assert_eq!(status.phase.as_deref(), Some("ImportInProgress"));
        assert_eq!(status.progress.as_deref(), Some("45.00%"));
        assert_eq!(status.restart_count, Some(0));
        assert_eq!(condition(&status, "Bound").message.as_deref(), Some("No PVC found"));
        assert_eq!(condition(&status, "Running").status, "True");
        assert_eq!(condition(&status, "Ready").reason.as_deref(), Some("TransferRunning"));
    }

    #[test]
    fn success_marks_ready_and_bound_and_keeps_unchanged_transition_times() {
        let claim = bound_claim();
        let running = Desired {
            phase: dv_phase::IMPORT_IN_PROGRESS,
            progress: Some("50.00%".into()),
            restart_count: None,
            running: Running::Transferring,
        };
        let first = next_status(&DataVolumeStatus::default(), "disk", Some(&claim), &running, at(10));
        let done = Desired {
            phase: dv_phase::SUCCEEDED,
            progress: Some("100.0%".into()),
            restart_count: None,
            running: Running::Completed,
        };
        let second = next_status(&first, "disk", Some(&claim), &done, at(20));
        assert_eq!(condition(&second, "Ready").status, "True");
        assert_eq!(condition(&second, "Bound").message.as_deref(), Some("PVC disk Bound"));
        assert_eq!(condition(&second, "Bound").last_transition_time, Some(at(10)));
        assert_eq!(condition(&second, "Running").reason.as_deref(), Some("Completed"));
        assert_eq!(condition(&second, "Running").last_transition_time, Some(at(20)));
    }

    #[test]
    fn only_timestamps_changing_is_no_change() {
        let desired = Desired::idle(dv_phase::PENDING, Some("waiting".into()));
        let first = next_status(&DataVolumeStatus::default(), "disk", None, &desired, at(10));
        let again = next_status(&first, "disk", None, &desired, at(99));
        assert!(same_ignoring_times(&first, &again));
        assert_eq!(first, again, "nothing changed, so no heartbeat moved either");
    }
}
