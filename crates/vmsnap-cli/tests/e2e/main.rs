//! End-to-end tests: the `vmsnap` binary serving (`vmsnap serve`, with its node agent running the
//! test guest under QEMU and its storage driver), driven by the real `kubectl` and the `vmsnap`
//! CLI as a user drives them. They need QEMU and the test guest image (`cargo xtask test` builds
//! it first); a missing QEMU is a failure, not a skip, unless `VMSNAP_ALLOW_SKIP=1`.

mod backups;
mod cluster_mode;
mod crash;
mod full_disk;
mod kubectl_flow;
mod kubevirt_restore;
mod kubevirt_snapshot;
mod kubevirt_support;
mod readme;
mod restore_policies;
mod schedules;
mod snapshot_cases;
mod support;
mod volume_snapshot;
