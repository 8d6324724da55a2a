//! Backend storage (persistent TPM or EFI state): KubeVirt snapshots it as an extra volume named
//! `persistent-state-for-<vm>` whose claim is the PVC labelled `persistent-state-for=<vm>`.

use vmsnap_api::kubevirt::VirtualMachine;

/// Whether a VM keeps persistent TPM or EFI state (`IsBackendStorageNeeded`, read from the raw VM spec).
pub fn needs_backend_storage(vm: &VirtualMachine) -> bool {
    let domain = &vm.spec.template.spec.domain;
    let tpm =
        domain.devices.tpm.as_ref().and_then(|t| t.get("persistent")).and_then(|p| p.as_bool()) == Some(true);
    let efi = domain
        .firmware
        .as_ref()
        .and_then(|f| f.bootloader.as_ref())
        .and_then(|b| b.pointer("/efi/persistent"))
        .and_then(|p| p.as_bool())
        == Some(true);
    tpm || efi
}

/// The synthetic volume name of a VM's backend storage (`naming.GetName("persistent-state-for", vm, 63)`).
pub fn backend_volume_name(vm_name: &str) -> String {
    crate::naming::get_name("persistent-state-for", vm_name, 63)
}
