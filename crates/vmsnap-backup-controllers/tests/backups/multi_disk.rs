//! A VM with two disks: both are in each backup; an incremental reads only the disk that changed
//! and takes the other whole from its base; each disk restores bit-exact.

use kube::api::{Api, PostParams};
use vmsnap_testing::fixtures::VmBuilder;
use vmsnap_testing::images::DiskModel;

use crate::support::{CHUNK, Env, MIB, PASSPHRASE, chunks_touched};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_of_a_two_disk_vm_reads_only_the_disk_that_changed() {
    let Some(env) = Env::start().await else { return };
    env.passphrase_secret("pass", PASSPHRASE).await;
    let path = env.dir.path().join("repo");
    env.local_repository("main", &path, "pass").await;
    env.await_repository_ready("main").await;
    env.bound_pvc("os", "16Mi").await;
    env.bound_pvc("data", "24Mi").await;
    let vm = VmBuilder::new("two").with_pvc("osdisk", "os").with_pvc("datadisk", "data").build();
    let vms: Api<vmsnap_api::kubevirt::VirtualMachine> = env.api();
    vms.create(&PostParams::default(), &vm).await.unwrap();
    let (mut os, mut data) = (DiskModel::blank(16 * MIB), DiskModel::blank(24 * MIB));
    env.write("os", &mut os, 0, 5 * MIB, 0x0a).await;
    env.write("data", &mut data, 8 * MIB, 2 * MIB, 0xda).await;

    env.backup("b1", "main", "VirtualMachine/two").await;
    let b1 = env.await_succeeded("b1").await.status.unwrap();
    let mut disks: Vec<(String, i64)> = b1.disks.iter().map(|d| (d.name.clone(), d.size_bytes)).collect();
    disks.sort();
    assert_eq!(disks, vec![("datadisk".into(), (24 * MIB) as i64), ("osdisk".into(), (16 * MIB) as i64)]);
    assert_eq!(b1.size.as_deref(), Some("40Mi"));
    let progress = b1.progress.unwrap();
    assert_eq!(
        (progress.bytes_read, progress.bytes_to_read),
        (Some((7 * MIB) as i64), Some((7 * MIB) as i64))
    );

    env.write("data", &mut data, 20 * MIB, 64 * 1024, 0xdb).await;
    env.backup("b2", "main", "VirtualMachine/two").await;
    let b2 = env.await_succeeded("b2").await.status.unwrap();
    assert_eq!(b2.type_.as_deref(), Some("Incremental"));
    let progress = b2.progress.unwrap();
    // One chunk of datadisk read; osdisk's data chunks and datadisk's others reused.
    assert_eq!(progress.bytes_read, Some(CHUNK as i64), "{progress:?}");
    let reused = chunks_touched(0, 5 * MIB) + chunks_touched(8 * MIB, 2 * MIB);
    assert_eq!(progress.bytes_reused, Some((reused * CHUNK) as i64), "{progress:?}");
    assert_eq!(progress.percent, Some(100));

    let repository = env.open_local(&path).await;
    let manifest = repository.backup(&b2.backup_id.unwrap().parse().unwrap()).await.unwrap();
    for (disk, pvc, model) in [("osdisk", "os", &os), ("datadisk", "data", &data)] {
        let restored = env.restore(&repository, &manifest, disk).await;
        env.assert_same_as_model(&restored, model);
        let snapshots = env.engine_snapshots_of(pvc).await;
        env.assert_same_as_snapshot(&restored, snapshots.last().unwrap()).await;
    }
}
