//! Hotplug of a running VMI's volumes, top to bottom:
//!
//! 1. [`requests`]: the `addvolume` and `removevolume` subresources of a VM and a VMI, with
//!    virt-api's checks and messages, change the specs (the VM's template and the running
//!    VMI's spec) and apply the change at once.
//! 2. [`apply`]: level-triggered: the hotpluggable volumes of the VMI spec that are not attached
//!    are resolved (PVC -> PV -> storage volume) and attached, the hotplugged ones no longer in
//!    it detached. The VMI controller runs it on every change of the VMI, so a volume whose PVC
//!    is not bound yet is attached once it is.
//! 3. [`devices`]: one disk in and out of the running QEMU (through
//!    [`vmsnap_vmm::VmHandle::add_disk`] and `remove_disk`) and its bookkeeping: the guest
//!    device name, `volumeStatus`, the agent record and the storage driver's live volume map.

pub mod apply;
pub mod devices;
pub mod requests;

pub use apply::sync;
