//! End-to-end tests: the `vmsnap` binary serving (`vmsnap serve`, with its node agent running the
//! test guest under QEMU and its storage driver), driven by the real `kubectl` and the `vmsnap`
//! CLI as a user drives them. They need QEMU and the test guest image (`cargo xtask test` builds
//! it first); a missing QEMU is a failure, not a skip, unless `VMSNAP_ALLOW_SKIP=1`.

/// One test per `Entry` of a KubeVirt `DescribeTable`: each entry's doc (the table and entry as
/// KubeVirt names them), test name and the call of the table's body with the entry's arguments.
macro_rules! table_entries {
    ($($(#[doc = $doc:expr])+ $name:ident => $body:expr;)+) => {
        $(
            $(#[doc = $doc])+
            #[tokio::test(flavor = "multi_thread")]
            async fn $name() {
                $body.await;
            }
        )+
    };
}

mod backup_bounds;
mod backup_cli;
mod backup_crash;
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
