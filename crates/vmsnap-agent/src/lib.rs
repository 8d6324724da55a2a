//! Node agent: runs kubevirt.io VirtualMachines as QEMU processes and serves their subresources.
