//! Volumes attached to a real, running QEMU: the switch to overlays through
//! one QMP transaction, compaction through `block-stream`, and recovery of a
//! switch interrupted by a crash, resolved from what QEMU reports.

mod common;

use std::sync::Arc;

use common::live_vm::LiveVm;
use common::{DiskModel, Kind, MIB, Store, sid, vid};
use vmsnap_storage::{LiveBlockOps, StepHook, StorageError, StorageOptions};

/// A layered store and a QEMU holding volumes `a` and `b` (16 MiB each), or `None` (skip).
async fn two_attached_volumes() -> Option<(Store, LiveVm, DiskModel, DiskModel)> {
    let store = Store::new(Kind::Layered).await?;
    let vm = LiveVm::start().await?;
    let (a, a_model) = store.create("a", 16 * MIB).await;
    let (b, b_model) = store.create("b", 16 * MIB).await;
    vm.attach(&vid("a"), &a.path, a.format).await;
    vm.attach(&vid("b"), &b.path, b.format).await;
    Some((store, vm, a_model, b_model))
}

/// A guest write through QEMU, recorded in the model.
async fn guest_write(vm: &LiveVm, name: &str, model: &mut DiskModel, offset: u64, len: u64, pattern: u8) {
    vm.write(&vid(name), offset, len, pattern).await;
    model.push_write(offset, len, pattern);
}

#[tokio::test]
async fn a_group_snapshot_of_attached_volumes_holds_exactly_the_writes_before_the_cut() {
    let Some((store, vm, mut a, mut b)) = two_attached_volumes().await else { return };
    guest_write(&vm, "a", &mut a, 0, MIB, 0xa1).await;
    guest_write(&vm, "b", &mut b, 2 * MIB, MIB, 0xb1).await;
    let (a_at_cut, b_at_cut) = (a.clone(), b.clone());

    let group = [(vid("a"), sid("a-1")), (vid("b"), sid("b-1"))];
    let taken = store.driver.snapshot_volumes(&group, Some(&vm)).await.unwrap();
    guest_write(&vm, "a", &mut a, 0, 64 << 10, 0xa2).await;
    guest_write(&vm, "b", &mut b, 8 * MIB, MIB, 0xb2).await;

    assert_eq!(taken[0].created_at, taken[1].created_at);
    for name in ["a", "b"] {
        let info = store.info(name).await;
        assert_eq!(info.chain_depth, 2);
        assert_eq!(vm.active_file(&vid(name)).await.unwrap(), Some(info.path), "QEMU writes the new overlay");
    }
    // The sealed layers are stable while QEMU runs: read them now.
    store.assert_snapshot("a-1", &a_at_cut).await;
    store.assert_snapshot("b-1", &b_at_cut).await;
    vm.quit().await;
    store.assert_volume("a", &a).await;
    store.assert_volume("b", &b).await;
    store.assert_no_leaks().await;
}

#[tokio::test]
async fn the_transaction_cuts_two_disks_at_one_point_while_another_client_writes() {
    let Some((store, vm, _, _)) = two_attached_volumes().await else { return };
    // A writer on its own QMP connection stamps sequence numbers, first on a, then on b.
    let vm = Arc::new(vm);
    let writer = vm.second_connection().await;
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let (progress_tx, mut progress_rx) = tokio::sync::watch::channel(0u8);
    // On a loaded machine the cut can take longer than the writer's 250 writes; the writer waits
    // at 200 until the cut is done, so writes always run before, during (up to 200) and after it.
    let (cut_tx, mut cut_rx) = tokio::sync::watch::channel(false);
    let writing = {
        let vm = vm.clone();
        tokio::spawn(async move {
            let mut seq = 0u8;
            while seq < 250 && !*stop_rx.borrow_and_update() {
                if seq == 200 {
                    cut_rx.wait_for(|&cut| cut).await.unwrap();
                }
                seq += 1;
                vm.write_on(&writer, &vid("a"), 0, 4096, seq).await;
                vm.write_on(&writer, &vid("b"), 0, 4096, seq).await;
                progress_tx.send_replace(seq);
            }
            seq
        })
    };
    progress_rx.wait_for(|&seq| seq >= 20).await.unwrap();
    let group = [(vid("a"), sid("a-1")), (vid("b"), sid("b-1"))];
    store.driver.snapshot_volumes(&group, Some(vm.as_ref())).await.unwrap();
    let after_cut = *progress_rx.borrow();
    cut_tx.send_replace(true);
    progress_rx.wait_for(|&seq| seq >= after_cut.saturating_add(20).min(240)).await.unwrap();
    stop_tx.send_replace(true);
    let last = writing.await.unwrap();

    let stamp = |name: &str| {
        let store = &store;
        let name = name.to_owned();
        async move {
            let probe = vid(&format!("probe-{name}"));
            let info = store.driver.restore_volume(&sid(&name), &probe, 0).await.unwrap();
            store.read(&info)[0]
        }
    };
    let (seq_a, seq_b) = (stamp("a-1").await, stamp("b-1").await);
    eprintln!("cut at a={seq_a}, b={seq_b}; the writer stopped at {last}");
    // Writes go to a then b, so an atomic cut sees a equal to b or one ahead.
    assert!(seq_a == seq_b || seq_a == seq_b + 1, "a at {seq_a}, b at {seq_b}: the cut was not atomic");
    assert!(seq_b >= 20 && seq_a < last, "the cut fell inside the writes: a {seq_a}, b {seq_b}, last {last}");
    into_vm(vm).quit().await;
}

#[tokio::test]
async fn a_failed_transaction_switches_no_disk_and_leaves_nothing_behind() {
    let Some((store, vm, mut a, b)) = two_attached_volumes().await else { return };
    let before = (store.info("a").await, store.info("b").await);
    vm.abort_next_transaction();
    let group = [(vid("a"), sid("a-1")), (vid("b"), sid("b-1"))];
    let error = store.driver.snapshot_volumes(&group, Some(&vm)).await.unwrap_err();
    assert!(matches!(error, StorageError::Live { .. }), "{error}");

    assert_eq!(vm.active_file(&vid("a")).await.unwrap(), Some(before.0.path.clone()));
    assert_eq!(vm.active_file(&vid("b")).await.unwrap(), Some(before.1.path.clone()));
    assert_eq!((store.info("a").await, store.info("b").await), before);
    assert!(store.driver.snapshots().await.unwrap().is_empty());
    store.assert_no_leaks().await;
    // QEMU still writes the old files, and the next snapshot works.
    guest_write(&vm, "a", &mut a, 0, MIB, 0x5a).await;
    store.driver.snapshot_volumes(&group, Some(&vm)).await.unwrap();
    store.assert_snapshot("a-1", &a).await;
    store.assert_snapshot("b-1", &b).await;
    vm.quit().await;
}

#[tokio::test]
async fn compaction_of_an_attached_volume_streams_through_qemu_and_keeps_every_byte() {
    let options = StorageOptions { max_chain_depth: 3, ..StorageOptions::default() };
    let Some(store) = Store::with_options(Kind::Layered, options).await else { return };
    let Some(vm) = LiveVm::start().await else { return };
    let (info, mut model) = store.create("v", 16 * MIB).await;
    vm.attach(&vid("v"), &info.path, info.format).await;
    let mut snapshots = Vec::new();
    for i in 0..6u8 {
        guest_write(&vm, "v", &mut model, u64::from(i) * MIB, 2 * MIB, 0x60 + i).await;
        store.driver.snapshot_volumes(&[(vid("v"), sid(&format!("s{i}")))], Some(&vm)).await.unwrap();
        snapshots.push(model.clone());
    }
    // Only s0 stays, so the layers above it become garbage once streamed.
    for i in 1..6 {
        store.driver.delete_snapshot(&sid(&format!("s{i}"))).await.unwrap();
    }
    assert_eq!(store.info("v").await.chain_depth, 7);

    let skipped = store.driver.compact(None).await.unwrap();
    assert_eq!(skipped.skipped.len(), 1, "without live ops an attached volume is left alone: {skipped:?}");
    let report = store.driver.compact(Some(&vm)).await.unwrap();
    assert_eq!(report.compacted, vec![vid("v")], "{report:?}");
    assert_eq!(report.freed_layers, 5, "{report:?}");

    let info = store.info("v").await;
    assert_eq!(info.chain_depth, 2);
    assert_eq!(vm.active_file(&vid("v")).await.unwrap(), Some(info.path.clone()));
    store.assert_no_leaks().await;
    guest_write(&vm, "v", &mut model, 15 * MIB, MIB, 0x7f).await;
    store.assert_snapshot("s0", &snapshots[0]).await;
    vm.quit().await;
    store.assert_volume("v", &model).await;
    // The header names the new base by its relative file name.
    let header = std::process::Command::new(&store.options.qemu_img)
        .args(["info", "--output=json"])
        .arg(&info.path)
        .output()
        .unwrap();
    let header: serde_json::Value = serde_json::from_slice(&header.stdout).unwrap();
    let base = header["backing-filename"].as_str().unwrap();
    assert!(!base.contains('/') && base.ends_with(".qcow2"), "{base}");
}

/// Starts a snapshot of attached volume `a` that panics (crashes) at `step`,
/// then opens a fresh driver over the same root.
async fn crash_live_snapshot_at(step: &'static str) -> Option<(Store, Arc<LiveVm>, DiskModel)> {
    let (mut store, vm, mut a, _) = two_attached_volumes().await?;
    guest_write(&vm, "a", &mut a, 0, MIB, 0x01).await;
    let vm = Arc::new(vm);
    let hook: StepHook = Arc::new(move |reached| assert_ne!(reached, step, "injected crash"));
    let driver = Kind::Layered.open(store.root(), store.options.clone(), Some(hook)).await.unwrap();
    let live = vm.clone();
    let crashed = tokio::spawn(async move {
        let live: &dyn LiveBlockOps = live.as_ref();
        driver.snapshot_volumes(&[(vid("a"), sid("a-1"))], Some(live)).await
    })
    .await;
    assert!(crashed.is_err_and(|e| e.is_panic()), "the snapshot did not crash at {step}");
    store.reopen().await;
    Some((store, vm, a))
}

fn into_vm(vm: Arc<LiveVm>) -> LiveVm {
    Arc::into_inner(vm).expect("no other user of the VM")
}

#[tokio::test]
async fn recovery_undoes_a_live_switch_qemu_never_made() {
    let Some((store, vm, mut a)) = crash_live_snapshot_at("snapshot.intent-committed").await else { return };
    let before = store.info("a").await;
    let report = store.driver.recover(Some(vm.as_ref())).await.unwrap();
    assert_eq!((report.intents_undone, report.intents_completed, report.removed_files), (1, 0, 1));
    assert_eq!(store.info("a").await, before);
    assert_eq!(vm.active_file(&vid("a")).await.unwrap(), Some(before.path));
    assert_eq!(store.driver.snapshot(&sid("a-1")).await.unwrap(), None);
    store.assert_no_leaks().await;
    guest_write(&vm, "a", &mut a, MIB, MIB, 0x02).await;
    into_vm(vm).quit().await;
    store.assert_volume("a", &a).await;
}

#[tokio::test]
async fn recovery_completes_a_live_switch_qemu_made() {
    let Some((store, vm, mut a)) = crash_live_snapshot_at("snapshot.switched").await else { return };
    let report = store.driver.recover(Some(vm.as_ref())).await.unwrap();
    assert_eq!((report.intents_completed, report.intents_undone, report.removed_files), (1, 0, 0));
    let info = store.info("a").await;
    assert_eq!(info.chain_depth, 2);
    assert_eq!(vm.active_file(&vid("a")).await.unwrap(), Some(info.path));
    // The snapshot was never acknowledged, so it is not recorded; the sealed layer just joins the chain.
    assert_eq!(store.driver.snapshot(&sid("a-1")).await.unwrap(), None);
    store.assert_no_leaks().await;
    guest_write(&vm, "a", &mut a, MIB, MIB, 0x03).await;
    into_vm(vm).quit().await;
    store.assert_volume("a", &a).await;
}

#[tokio::test]
async fn recovery_adopts_a_pending_overlay_once_the_vm_has_stopped() {
    let Some((store, vm, a)) = crash_live_snapshot_at("snapshot.intent-committed").await else { return };
    into_vm(vm).quit().await;
    let report = store.driver.recover(None).await.unwrap();
    assert_eq!((report.intents_completed, report.intents_undone), (1, 0));
    assert_eq!(store.info("a").await.chain_depth, 2);
    store.assert_volume("a", &a).await;
    store.assert_no_leaks().await;
}

#[tokio::test]
async fn a_running_qemu_blocks_detached_operations_and_the_copy_driver() {
    let Some((store, vm, _, _)) = two_attached_volumes().await else { return };
    let error = store.driver.snapshot_volumes(&[(vid("a"), sid("s"))], None).await.unwrap_err();
    assert!(matches!(error, StorageError::InUse { .. }), "QEMU's real lock is seen: {error}");
    vm.quit().await;

    let Some(copies) = Store::new(Kind::Copy).await else { return };
    let Some(vm) = LiveVm::start().await else { return };
    let (info, _) = copies.create("raw", 16 * MIB).await;
    vm.attach(&vid("raw"), &info.path, info.format).await;
    let error = copies.driver.snapshot_volumes(&[(vid("raw"), sid("s"))], Some(&vm)).await.unwrap_err();
    assert!(matches!(error, StorageError::LiveUnsupported { .. }), "{error}");
    let error = copies.driver.snapshot_volumes(&[(vid("raw"), sid("s"))], None).await.unwrap_err();
    assert!(matches!(error, StorageError::InUse { .. }), "{error}");
    let error = copies.driver.clone_volume(&vid("raw"), &vid("c"), 0, Some(&vm)).await.unwrap_err();
    assert!(matches!(error, StorageError::LiveUnsupported { .. }), "{error}");
    vm.quit().await;
    copies.assert_no_leaks().await;
}

#[tokio::test]
async fn recovery_without_live_ops_refuses_to_guess_while_qemu_still_writes() {
    let Some((store, vm, _)) = crash_live_snapshot_at("snapshot.intent-committed").await else { return };
    let error = store.driver.recover(None).await.unwrap_err();
    assert!(matches!(error, StorageError::InUse { .. }), "{error}");
    let report = store.driver.recover(Some(vm.as_ref())).await.unwrap();
    assert_eq!((report.intents_undone, report.intents_completed), (1, 0));
    store.assert_no_leaks().await;
    into_vm(vm).quit().await;
}

#[tokio::test]
async fn snapshots_of_an_attached_volume_read_and_diff_while_qemu_holds_their_layers() {
    let Some((store, vm, mut a, _)) = two_attached_volumes().await else { return };
    guest_write(&vm, "a", &mut a, 0, MIB, 0xa1).await;
    store.driver.snapshot_volumes(&[(vid("a"), sid("a-1"))], Some(&vm)).await.unwrap();
    let first = a.clone();
    guest_write(&vm, "a", &mut a, 5 * MIB + 512, 4096, 0xa2).await;
    guest_write(&vm, "a", &mut a, 9 * MIB, 128 << 10, 0xa3).await;
    store.driver.snapshot_volumes(&[(vid("a"), sid("a-2"))], Some(&vm)).await.unwrap();
    let second = a.clone();
    guest_write(&vm, "a", &mut a, 0, 64 << 10, 0xa4).await;

    // QEMU holds both sealed layers as the backing chain of the disk it writes.
    for (name, model) in [("a-1", &first), ("a-2", &second)] {
        let image = store.driver.snapshot_image(&sid(name)).await.unwrap().unwrap();
        image.allocated().await.unwrap();
        let mut bytes = vec![0xee; image.size_bytes() as usize];
        image.read_at(0, &mut bytes).unwrap();
        vmsnap_testing::images::assert_bytes(name, &bytes, &model.bytes());
    }
    let image = store.driver.snapshot_image(&sid("a-2")).await.unwrap().unwrap();
    let changed = image.changed_since(&sid("a-1")).await.unwrap();
    // The 64 KiB clusters the two writes touched, whatever runs `qemu-img map` merged them into.
    let clusters: Vec<u64> = changed
        .extents()
        .unwrap()
        .iter()
        .flat_map(|extent| extent.offset / (64 << 10)..extent.end().div_ceil(64 << 10))
        .collect();
    assert_eq!(clusters, vec![80, 144, 145]);
    vm.quit().await;
}
