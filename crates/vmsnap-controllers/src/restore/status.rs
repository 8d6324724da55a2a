//! Restore conditions and the status writes of the restore controller.

use vmsnap_api::snapshot::{Condition, VirtualMachineRestoreStatus, condition_type, update_condition};

use crate::kube_util::now;

/// Sets `Progressing` and `Ready` with their reasons (KubeVirt's `updateRestoreCondition` pair).
pub fn set_progress(
    st: &mut VirtualMachineRestoreStatus,
    progressing: bool,
    progressing_reason: &str,
    ready: bool,
    ready_reason: &str,
) {
    update_condition(
        &mut st.conditions,
        Condition::new(condition_type::PROGRESSING, progressing, progressing_reason),
        now(),
    );
    update_condition(&mut st.conditions, Condition::new(condition_type::READY, ready, ready_reason), now());
}

/// Both conditions False with the same reason (`doUpdateError` and the waiting states).
pub fn set_waiting(st: &mut VirtualMachineRestoreStatus, reason: &str) {
    set_progress(st, false, reason, false, reason);
}

/// Failed for good: both False plus `Failure` True, all with the message.
pub fn set_failed(st: &mut VirtualMachineRestoreStatus, message: &str) {
    set_waiting(st, message);
    update_condition(&mut st.conditions, Condition::new(condition_type::FAILURE, true, message), now());
}

/// Whether the restore has ended (complete, or failed: failure is final).
pub fn finished(st: &VirtualMachineRestoreStatus) -> bool {
    st.complete == Some(true) || st.conditions.iter().any(|c| c.type_ == condition_type::FAILURE)
}
