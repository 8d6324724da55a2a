//! VirtualMachineSnapshot, VirtualMachineSnapshotContent and VirtualMachineRestore controllers on kube-runtime.
