//! A repository in a SeaweedFS bucket: opened with the credentials Secret, a backup of a
//! VirtualMachineSnapshot into it, restored bit-exact, verified and pruned on request.
