//! Node agent: runs kubevirt.io VirtualMachines as QEMU processes and serves their subresources.
//!
//! The crate is the embedded mode's stand-in for KubeVirt's virt-controller
//! VM logic, virt-handler and virt-launcher, talking to the rest of the system
//! only through the Kubernetes API:
//!
//! - [`vmsnap_vmm`] (its own crate) is the VM runtime: one QEMU process per VM, launched,
//!   re-attached after an agent restart, frozen, hotplugged and snapshotted,
//!   written against a plain [`vmsnap_vmm::LaunchSpec`] and free of Kubernetes code.
//! - [`Agent`] runs two kube-runtime controllers on top of it. The VM
//!   controller creates DataVolumes from `dataVolumeTemplates`, creates and
//!   deletes each VM's VirtualMachineInstance as its run strategy and state
//!   change requests say, and writes the VM status (`printableStatus`,
//!   `ready`, conditions). The VMI controller resolves each VMI's volumes
//!   (PVC → PersistentVolume → storage driver volume), launches QEMU, keeps
//!   the VMI status true (phase, `AgentConnected`, `Paused`, guest OS,
//!   interfaces, volumes) from QEMU events and the guest agent's health, and
//!   shuts the guest down when the VMI is deleted.
//! - The agent serves the `subresources.kubevirt.io` actions
//!   ([`vmsnap_contracts::subresources::VmSubresources`]: freeze, unfreeze, pause, unpause,
//!   start, stop, restart, addvolume, removevolume) with KubeVirt's checks and
//!   messages, and the storage driver's operations on attached volumes
//!   ([`vmsnap_storage::LiveBlockOps`]).
//!
//! Each VMI has a runtime directory named by its uid under
//! [`AgentConfig::runtime_dir`], holding the runtime's files (see [`vmsnap_vmm`])
//! and `agent.json`, which names the VMI and the storage volume of each disk.
//! QEMU outlives the agent; [`Agent::start`] re-attaches to what runs and
//! never starts a VMI twice.
//!
//! Not implemented: live migration, instance types,
//! cloud-init and other config volumes (ignored with a warning event), and
//! disk buses other than virtio, SCSI and SATA.

mod agent;
mod domain;
mod error;
mod hotplug;
pub mod kubevirt;
mod live;
mod recover;
mod registry;
mod running;
mod runstrategy;
mod subresources;
mod time;
mod vm_controller;
mod vm_status;
mod vm_upkeep;
mod vmi_controller;
mod vmi_status;
mod volumes;

pub use agent::{Agent, AgentConfig};
pub use error::{AgentStartError, ConsoleError, ExecError};
pub use vmsnap_vmm::{AccelSetting, ExecOutput};
