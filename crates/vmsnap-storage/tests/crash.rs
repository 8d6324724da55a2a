//! Crash safety, step by step: every mutating operation of every driver is
//! interrupted at each of its named steps, then a fresh driver instance
//! recovers the same root, and the store must hold the old state or the new
//! one: nothing acknowledged lost, nothing leaked.
//!
//! Two ways to crash:
//! - in process: the step hook panics, unwinding out of the operation without
//!   running its error paths (every operation, both drivers);
//! - for real: the test binary re-executes itself as a child that runs the
//!   operation and sends itself SIGKILL at the step (no destructors, no
//!   flush), for snapshot, restore, clone, delete and compaction.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::{DiskModel, Kind, MIB, Store, sid, vid};
use vmsnap_storage::{StepHook, StorageError, StorageOptions, VolumeDriver};

const CHUNK: u64 = 64 << 10;

/// The operations under test, each on the arranged store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Create,
    Import,
    Snapshot,
    Restore,
    Clone,
    Resize,
    DeleteVolume,
    DeleteSnapshot,
    Compact,
}

const ALL_OPS: [Op; 9] = [
    Op::Create,
    Op::Import,
    Op::Snapshot,
    Op::Restore,
    Op::Clone,
    Op::Resize,
    Op::DeleteVolume,
    Op::DeleteSnapshot,
    Op::Compact,
];
const KILLED_OPS: [Op; 6] =
    [Op::Snapshot, Op::Restore, Op::Clone, Op::DeleteVolume, Op::DeleteSnapshot, Op::Compact];

impl Op {
    fn parse(name: &str) -> Self {
        *ALL_OPS.iter().find(|op| format!("{op:?}") == name).unwrap_or_else(|| panic!("unknown op {name}"))
    }
}

fn options(qemu_img: &Path) -> StorageOptions {
    // Shallow enough that the arranged volume needs compaction.
    StorageOptions { qemu_img: qemu_img.to_owned(), max_chain_depth: 3, ..StorageOptions::default() }
}

/// What the arranged store holds, and the file to import.
struct World {
    template: tempfile::TempDir,
    source: (tempfile::TempDir, PathBuf, DiskModel),
    volume: DiskModel,
    snapshots: Vec<(&'static str, DiskModel)>,
}

/// Volume `v` with snapshots s0, s1, s2 and a deleted snapshot `gone` in its
/// chain (5 deep: compaction has work and frees `gone`'s layer), and snapshot
/// `t` of a deleted volume `w` (deleting `t` frees a file).
async fn arrange(kind: Kind) -> Option<World> {
    let store = Store::with_options(kind, options(&common::require_binary("qemu-img")?)).await?;
    let (_, mut v) = store.create("v", MIB).await;
    let mut snapshots = Vec::new();
    for (i, name) in ["s0", "s1", "s2", "gone"].into_iter().enumerate() {
        store.write("v", &mut v, (i as u64 * 3 % 8) * 2 * CHUNK, 3 * CHUNK, 0x10 + i as u8).await;
        store.driver.snapshot_volumes(&[(vid("v"), sid(name))], None).await.unwrap();
        snapshots.push((name, v.clone()));
    }
    snapshots.pop();
    store.driver.delete_snapshot(&sid("gone")).await.unwrap();
    store.write("v", &mut v, 12 * CHUNK, CHUNK, 0x20).await;
    let (_, mut w) = store.create("w", MIB / 2).await;
    store.write("w", &mut w, 0, CHUNK, 0x30).await;
    store.driver.snapshot_volumes(&[(vid("w"), sid("t"))], None).await.unwrap();
    store.driver.delete_volume(&vid("w")).await.unwrap();
    snapshots.push(("t", w));
    store.assert_no_leaks().await;

    let source_dir = tempfile::tempdir().unwrap();
    let source = source_dir.path().join("image.raw");
    std::fs::File::create(&source).unwrap().set_len(MIB / 2).unwrap();
    common::qemu_io_write(&store.qemu_io, &source, vmsnap_storage::VolumeFormat::Raw, CHUNK, CHUNK, 0x40);
    let mut imported = DiskModel::blank(MIB / 2);
    imported.push_write(CHUNK, CHUNK, 0x40);
    Some(World { template: store.dir, source: (source_dir, source, imported), volume: v, snapshots })
}

async fn run_op(driver: &dyn VolumeDriver, op: Op, source: &Path) -> Result<(), StorageError> {
    match op {
        Op::Create => driver.create_volume(&vid("n"), MIB).await.map(drop),
        Op::Import => driver
            .import_volume(
                &vid("i"),
                vmsnap_storage::Import { source, size_bytes: None, progress: &|_| {}, handed_over: false },
            )
            .await
            .map(drop),
        Op::Snapshot => driver.snapshot_volumes(&[(vid("v"), sid("s-new"))], None).await.map(drop),
        Op::Restore => driver.restore_volume(&sid("s1"), &vid("r"), 0).await.map(drop),
        Op::Clone => driver.clone_volume(&vid("v"), &vid("c"), 0, None).await.map(drop),
        Op::Resize => driver.resize_volume(&vid("v"), 2 * MIB).await.map(drop),
        Op::DeleteVolume => driver.delete_volume(&vid("v")).await,
        Op::DeleteSnapshot => driver.delete_snapshot(&sid("t")).await,
        Op::Compact => driver.compact(None).await.map(drop),
    }
}

/// A fresh copy of the arranged store, opened as `Store` with a fresh driver.
async fn copy_of(kind: Kind, world: &World, hook: Option<StepHook>) -> (Store, Arc<dyn VolumeDriver>) {
    let (qemu_img, qemu_io) = common::qemu_tools().expect("checked by arrange");
    let dir = tempfile::tempdir().unwrap();
    vmsnap_testing::copy_dir(world.template.path(), dir.path());
    let options = options(&qemu_img);
    let driver = kind.open(dir.path(), options.clone(), hook).await.unwrap();
    (Store { kind, dir, driver: driver.clone(), options, qemu_io }, driver)
}

/// The steps `op` goes through, from an uninterrupted run (which must also end in the new state).
async fn record_steps(kind: Kind, world: &World, op: Op) -> Vec<&'static str> {
    let steps = Arc::new(Mutex::new(Vec::new()));
    let recorder = steps.clone();
    let hook: StepHook = Arc::new(move |step| recorder.lock().unwrap().push(step));
    let (mut store, driver) = copy_of(kind, world, Some(hook)).await;
    run_op(driver.as_ref(), op, &world.source.1).await.unwrap();
    drop(driver);
    verify(&mut store, world, op, Some(true)).await;
    steps.lock().unwrap().clone()
}

/// Recovers `store` with a fresh driver and checks the old-or-new rule:
/// `completed` says which state is required (`None`: either).
async fn verify(store: &mut Store, world: &World, op: Op, completed: Option<bool>) {
    store.reopen().await;
    store.driver.recover(None).await.unwrap();
    store.assert_no_leaks().await;

    // Whether the store shows the operation's effect must match `completed`, when given.
    let effect = |shown: bool, what: &str| {
        if let Some(completed) = completed {
            assert_eq!(shown, completed, "{what} after {op:?} (completed: {completed})");
        }
    };
    // The volume, unless deleted; resized or not.
    match store.driver.volume(&vid("v")).await.unwrap() {
        None => {
            assert_eq!(op, Op::DeleteVolume, "volume v was lost");
            effect(true, "volume v deleted");
        }
        Some(info) => {
            if op == Op::DeleteVolume {
                effect(false, "volume v deleted");
            }
            if op == Op::Resize {
                effect(info.size_bytes == 2 * MIB, "the new size of v");
            }
            store.assert_volume("v", &world.volume.resized(info.size_bytes)).await;
        }
    }
    for (name, model) in &world.snapshots {
        match store.driver.snapshot(&sid(name)).await.unwrap() {
            Some(_) => store.assert_snapshot(name, model).await,
            None => assert!(op == Op::DeleteSnapshot && *name == "t", "snapshot {name} was lost"),
        }
    }
    if op == Op::DeleteSnapshot {
        effect(store.driver.snapshot(&sid("t")).await.unwrap().is_none(), "snapshot t deleted");
    }
    // The new object, if the operation makes one: absent, or exactly right.
    let new_volume = match op {
        Op::Create => Some(("n", DiskModel::blank(MIB))),
        Op::Import => Some(("i", world.source.2.clone())),
        Op::Restore => Some(("r", world.snapshots[1].1.clone())),
        Op::Clone => Some(("c", world.volume.clone())),
        _ => None,
    };
    if let Some((name, model)) = new_volume {
        let present = store.driver.volume(&vid(name)).await.unwrap().is_some();
        effect(present, name);
        if present {
            store.assert_volume(name, &model).await;
        }
    }
    if op == Op::Snapshot {
        let present = store.driver.snapshot(&sid("s-new")).await.unwrap().is_some();
        effect(present, "snapshot s-new");
        if present {
            store.assert_snapshot("s-new", &world.volume).await;
        }
    }
    if op == Op::Compact && store.kind == Kind::Layered {
        let depth = store.info("v").await.chain_depth;
        assert!(depth == 5 || depth == 2, "chain depth {depth} is neither before nor after compaction");
        effect(depth == 2, "the compacted chain");
    }
    // The recovered store keeps working.
    if store.driver.volume(&vid("v")).await.unwrap().is_some() {
        store.driver.snapshot_volumes(&[(vid("v"), sid("after"))], None).await.unwrap();
        let model = world.volume.resized(store.info("v").await.size_bytes);
        store.assert_snapshot("after", &model).await;
    }
    store.assert_no_leaks().await;
}

async fn panic_matrix(kind: Kind) {
    let Some(world) = arrange(kind).await else { return };
    let mut cases = 0;
    for op in ALL_OPS {
        let steps = record_steps(kind, &world, op).await;
        assert!(!steps.is_empty() || (kind == Kind::Copy && op == Op::Compact), "{op:?} reached no step");
        for (at, step) in steps.iter().enumerate() {
            let reached = Arc::new(AtomicUsize::new(0));
            let counter = reached.clone();
            let hook: StepHook = Arc::new(move |step| {
                if counter.fetch_add(1, Ordering::SeqCst) == at {
                    panic!("injected crash at step {at} ({step})");
                }
            });
            let (mut store, driver) = copy_of(kind, &world, Some(hook)).await;
            let source = world.source.1.clone();
            let outcome = tokio::spawn(async move { run_op(driver.as_ref(), op, &source).await }).await;
            assert!(outcome.is_err_and(|e| e.is_panic()), "{op:?} did not crash at step {at} ({step})");
            verify(&mut store, &world, op, None).await;
            cases += 1;
        }
    }
    eprintln!("{} driver: {cases} in-process crashes recovered", kind.name());
}

async fn kill_matrix(kind: Kind) {
    let Some(world) = arrange(kind).await else { return };
    let mut cases = 0;
    for op in KILLED_OPS {
        let steps = record_steps(kind, &world, op).await;
        for (at, step) in steps.iter().enumerate() {
            let (mut store, driver) = copy_of(kind, &world, None).await;
            drop(driver);
            let status = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["crash_child", "--exact", "--include-ignored", "--nocapture", "--test-threads=1"])
                .env("VMSNAP_CRASH_ROOT", store.root())
                .env("VMSNAP_CRASH_DRIVER", kind.name())
                .env("VMSNAP_CRASH_OP", format!("{op:?}"))
                .env("VMSNAP_CRASH_AT", at.to_string())
                .env("VMSNAP_CRASH_SOURCE", &world.source.1)
                .stdout(std::process::Stdio::null())
                .status()
                .unwrap();
            assert_eq!(
                status.signal(),
                Some(9),
                "{op:?} child was not killed at step {at} ({step}): {status}"
            );
            verify(&mut store, &world, op, None).await;
            cases += 1;
        }
    }
    eprintln!("{} driver: {cases} SIGKILLed processes recovered", kind.name());
}

#[tokio::test]
async fn layered_driver_recovers_from_a_panic_at_every_step() {
    panic_matrix(Kind::Layered).await;
}

#[tokio::test]
async fn copy_driver_recovers_from_a_panic_at_every_step() {
    panic_matrix(Kind::Copy).await;
}

#[tokio::test]
async fn layered_driver_recovers_from_sigkill_at_every_step() {
    kill_matrix(Kind::Layered).await;
}

#[tokio::test]
async fn copy_driver_recovers_from_sigkill_at_every_step() {
    kill_matrix(Kind::Copy).await;
}

/// The child process of [`kill_matrix`]: runs one operation and kills itself
/// with SIGKILL at the chosen step.
#[tokio::test]
#[ignore = "run by the SIGKILL crash matrix as its child process"]
async fn crash_child() {
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is set by the parent"));
    let at: usize = var("VMSNAP_CRASH_AT").parse().unwrap();
    let reached = AtomicUsize::new(0);
    let hook: StepHook = Arc::new(move |_| {
        if reached.fetch_add(1, Ordering::SeqCst) == at {
            nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL).unwrap();
        }
    });
    let qemu_img = common::require_binary("qemu-img").unwrap();
    let root = PathBuf::from(var("VMSNAP_CRASH_ROOT"));
    let driver =
        Kind::parse(&var("VMSNAP_CRASH_DRIVER")).open(&root, options(&qemu_img), Some(hook)).await.unwrap();
    let source = PathBuf::from(var("VMSNAP_CRASH_SOURCE"));
    run_op(driver.as_ref(), Op::parse(&var("VMSNAP_CRASH_OP")), &source).await.unwrap();
}
