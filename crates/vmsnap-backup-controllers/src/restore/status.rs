//! The restore's conditions and phase: `Progressing` says what it does or awaits, `Ready` that it
//! completed, `Failure` why it failed for good (KubeVirt's condition types).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use vmsnap_api::backup::{RestorePhase, VirtualMachineRepositoryRestoreStatus, reason};
use vmsnap_api::snapshot::{Condition, SnapshotError, condition_type, update_condition};

/// Now, as a Kubernetes time.
pub fn now() -> Time {
    Time(Timestamp::now())
}

fn set(conditions: &mut Vec<Condition>, type_: &str, status: bool, reason: &str, message: &str) {
    update_condition(
        conditions,
        Condition::new(type_, status, reason).with_message(Some(message.to_owned())),
        now(),
    );
}

/// Waiting for something (`message` says what): phase `Pending`, `Progressing` False.
pub fn waiting(st: &mut VirtualMachineRepositoryRestoreStatus, why: &str, message: &str) {
    st.phase = Some(RestorePhase::Pending);
    let st = &mut st.conditions;
    set(st, condition_type::PROGRESSING, false, why, message);
    set(st, condition_type::READY, false, why, message);
}

/// Working (`message` says on what): phase `InProgress`, `Progressing` True.
pub fn in_progress(st: &mut VirtualMachineRepositoryRestoreStatus, message: &str) {
    st.phase = Some(RestorePhase::InProgress);
    st.complete = Some(false);
    let st = &mut st.conditions;
    set(st, condition_type::PROGRESSING, true, reason::RESTORE_IN_PROGRESS, message);
    set(st, condition_type::READY, false, reason::RESTORE_IN_PROGRESS, message);
}

/// Completed: phase `Succeeded`, `complete`, `restoreTime`, `Ready` True.
pub fn succeeded(st: &mut VirtualMachineRepositoryRestoreStatus, message: &str) {
    st.phase = Some(RestorePhase::Succeeded);
    st.complete = Some(true);
    st.restore_time = Some(now());
    let st = &mut st.conditions;
    set(st, condition_type::PROGRESSING, false, reason::SUCCEEDED, message);
    set(st, condition_type::READY, true, reason::SUCCEEDED, message);
}

/// Failed for good: phase `Failed`, `error`, `Failure` True with `why` and the message.
pub fn failed(st: &mut VirtualMachineRepositoryRestoreStatus, why: &str, message: &str) {
    st.phase = Some(RestorePhase::Failed);
    st.complete = Some(false);
    st.error = Some(SnapshotError { time: Some(now()), message: Some(message.to_owned()) });
    let st = &mut st.conditions;
    set(st, condition_type::PROGRESSING, false, why, message);
    set(st, condition_type::READY, false, why, message);
    set(st, condition_type::FAILURE, true, why, message);
}

/// Whether the restore has ended (succeeded or failed: both are final).
pub fn finished(st: &VirtualMachineRepositoryRestoreStatus) -> bool {
    st.phase.as_ref().is_some_and(RestorePhase::is_final)
}
