//! A restore that meets a bad chunk stops, waits for the chunks already being written, and only
//! then empties its target: no write lands after the discard (a worker's late write would leave
//! a non-empty file holding part of a disk).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vmsnap_backup::*;

const CHUNK: usize = 64 << 10;

#[derive(Default)]
struct State {
    discarded: AtomicBool,
    writes: Mutex<Vec<u64>>,
    late_writes: Mutex<Vec<u64>>,
}

/// A target whose writes are slow, so that several are in flight when a chunk fails.
struct SlowTarget(Arc<State>);

impl RestoreTarget for SlowTarget {
    fn prepare(&self, _: u64) -> std::io::Result<()> {
        Ok(())
    }
    fn write_at(&self, _: &[u8], offset: u64) -> std::io::Result<()> {
        std::thread::sleep(Duration::from_millis(20));
        if self.0.discarded.load(Ordering::SeqCst) {
            self.0.late_writes.lock().unwrap().push(offset);
        }
        self.0.writes.lock().unwrap().push(offset);
        Ok(())
    }
    fn sync(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn discard(&self) -> std::io::Result<()> {
        self.0.discarded.store(true, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test]
async fn a_failed_restore_discards_its_target_after_the_writes_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    std::fs::create_dir(&root).unwrap();
    let init = InitOptions { chunk_size: CHUNK as u32, kdf: KdfParams::with_cost(8 * 1024, 1, 1) };
    let repo = Repository::init_with(Backend::local(&root).unwrap(), "pass", init).await.unwrap();
    // 32 chunks, each of its own byte (none deduplicated, none a hole).
    let disk = dir.path().join("disk.raw");
    let content: Vec<u8> = (0..32u8).flat_map(|i| vec![i + 1; CHUNK]).collect();
    std::fs::write(&disk, &content).unwrap();
    let mut session = repo.begin_backup().await.unwrap();
    let source = Arc::new(std::fs::File::open(&disk).unwrap());
    let backup =
        DiskBackup { name: "root".into(), source, size: content.len() as u64, extents: None, previous: None };
    let manifest = session.backup_disk(backup, &mut |_| {}).await.unwrap();
    let metadata = BackupMetadata {
        vm: VmRef { namespace: "default".into(), name: "vm".into() },
        vm_spec: serde_json::json!({}),
        base: None,
        labels: Default::default(),
    };
    let backup = session.commit_backup(metadata, vec![manifest]).await.unwrap();

    // Corrupt the third chunk: the two before it are written, and the ones after are in flight.
    let bad = backup.disks[0].chunks[2].clone().expect("chunk 2 holds data");
    let object = root.join(bad.id.object_path());
    let mut sealed = std::fs::read(&object).unwrap();
    let middle = sealed.len() / 2;
    sealed[middle] ^= 0x40;
    std::fs::write(&object, sealed).unwrap();

    let state = Arc::new(State::default());
    match repo.restore_disk(&backup, "root", SlowTarget(state.clone())).await {
        Err(Error::BadChunk { offset, chunk, .. }) => assert_eq!((offset, chunk), (2 * CHUNK as u64, bad.id)),
        other => panic!("a restore over a corrupt chunk did not fail naming it: {other:?}"),
    }
    // A write still running on a worker would land after `restore_disk` returned: give it time
    // to (it takes 20 ms).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(state.discarded.load(Ordering::SeqCst), "the target is discarded");
    assert!(
        state.late_writes.lock().unwrap().is_empty(),
        "writes after the discard: {:?}",
        state.late_writes
    );
    assert!(state.writes.lock().unwrap().len() > 2, "chunks after the bad one were in flight and awaited");
}
