//! Backend storage (persistent TPM or EFI state): KubeVirt snapshots it as an extra volume named
//! `persistent-state-for-<vm>` whose claim is the PVC labelled `persistent-state-for=<vm>`.

use vmsnap_api::kubevirt::VirtualMachine;

/// Whether a VM keeps persistent TPM or EFI state (`IsBackendStorageNeeded`).
pub fn needs_backend_storage(vm: &VirtualMachine) -> bool {
    vm.spec.template.spec.domain.needs_backend_storage()
}

/// The synthetic volume name of a VM's backend storage (`naming.GetName("persistent-state-for", vm, 63)`).
pub fn backend_volume_name(vm_name: &str) -> String {
    crate::naming::get_name("persistent-state-for", vm_name, 63)
}
