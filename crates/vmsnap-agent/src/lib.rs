//! Node agent: runs kubevirt.io VirtualMachines as QEMU processes and serves their subresources.
//!
//! The crate is the embedded mode's stand-in for KubeVirt's virt-handler and
//! virt-launcher. Today it holds the VM runtime, [`vmm`]: everything needed to
//! start, follow, quiesce and stop one QEMU process per VM, written against a
//! plain [`vmm::LaunchSpec`] and free of Kubernetes API code. The controllers
//! that turn VirtualMachine and VirtualMachineInstance objects into launch specs
//! (and serve the VMI subresources through it) build on top of it.

pub mod vmm;
