//! The conformance suite: the same behaviour, checked against every driver
//! with real `qemu-img`/`qemu-io` and bit-exact reads.

mod common;

use std::sync::Mutex;

use common::{DiskModel, Kind, MIB, Store, sid, vid};
use vmsnap_storage::{StorageError, VolumeFormat};

/// Runs every case against one driver, as one `#[tokio::test]` per case.
macro_rules! conformance_tests {
    ($driver:ident, $kind:expr) => {
        mod $driver {
            use super::*;

            conformance_tests!(@cases $kind;
                a_new_volume_is_blank_and_has_the_requested_size_rounded_to_sectors,
                a_restored_volume_reads_the_data_written_before_the_snapshot,
                a_clone_copies_the_current_data_then_diverges_from_its_source,
                a_snapshot_outlives_its_deleted_source_volume,
                deleting_a_snapshot_leaves_its_volume_and_restored_volumes_intact,
                a_hundred_snapshots_with_a_write_between_each_read_back_bit_exact,
                a_volume_grows_and_never_shrinks,
                restored_and_cloned_volumes_are_at_least_as_large_as_their_source,
                raw_and_qcow2_files_import_with_progress_and_unsafe_images_are_refused,
                a_handed_over_import_image_becomes_the_volume_without_a_copy,
                a_group_snapshot_records_every_volume_or_none,
                the_store_survives_a_restart,
                recovery_removes_stray_files_and_reports_missing_ones,
                a_volume_a_running_qemu_writes_is_refused_without_live_ops,
                errors_name_the_missing_or_conflicting_object,
            );
        }
    };
    (@cases $kind:expr; $($case:ident,)*) => {
        $(
            #[tokio::test]
            async fn $case() {
                let Some(store) = Store::new($kind).await else { return };
                super::cases::$case(store).await;
            }
        )*
    };
}

conformance_tests!(layered, Kind::Layered);
conformance_tests!(copy, Kind::Copy);

#[tokio::test]
async fn a_store_cannot_be_opened_by_the_other_driver() {
    let Some(store) = Store::new(Kind::Layered).await else { return };
    let error = Kind::Copy.open(store.root(), store.options.clone(), None).await.err().unwrap();
    assert!(error.to_string().contains("belongs to the \"qcow2-layers\" driver, not \"copy\""), "{error}");
}

#[tokio::test]
async fn a_manifest_of_a_newer_format_is_refused_with_its_version() {
    let Some(store) = Store::new(Kind::Layered).await else { return };
    let manifest = store.root().join("manifest.json");
    let text =
        std::fs::read_to_string(&manifest).unwrap().replace("\"formatVersion\": 1", "\"formatVersion\": 2");
    std::fs::write(&manifest, text).unwrap();
    let error = Kind::Layered.open(store.root(), store.options.clone(), None).await.err().unwrap();
    assert!(
        error.to_string().contains("has formatVersion Some(2), but this build reads only version 1"),
        "{error}"
    );
}

mod cases {
    use super::*;

    pub async fn a_new_volume_is_blank_and_has_the_requested_size_rounded_to_sectors(store: Store) {
        let info = store.driver.create_volume(&vid("disk"), 16 * MIB + 100).await.unwrap();
        assert_eq!(info.size_bytes, 16 * MIB + 512);
        assert_eq!(info.chain_depth, 1);
        assert_eq!(
            info.format,
            if store.kind == Kind::Layered { VolumeFormat::Qcow2 } else { VolumeFormat::Raw }
        );
        assert!(info.path.is_absolute() && info.path.starts_with(store.root().canonicalize().unwrap()));
        store.assert_volume("disk", &DiskModel::blank(16 * MIB + 512)).await;
        assert_eq!(store.driver.volumes().await.unwrap(), vec![info]);
        store.assert_no_leaks().await;
    }

    pub async fn a_restored_volume_reads_the_data_written_before_the_snapshot(store: Store) {
        let (_, mut model) = store.create("disk", 16 * MIB).await;
        store.write("disk", &mut model, 0, 64 << 10, 0xa1).await;
        store.write("disk", &mut model, MIB, 128 << 10, 0xa2).await;
        let before = model.clone();
        let taken = store.driver.snapshot_volumes(&[(vid("disk"), sid("snap"))], None).await.unwrap();
        store.write("disk", &mut model, 0, 64 << 10, 0xb1).await;
        store.write("disk", &mut model, 8 * MIB, 64 << 10, 0xb2).await;

        assert_eq!(taken.len(), 1);
        assert_eq!((taken[0].source_volume.as_str(), taken[0].size_bytes), ("disk", 16 * MIB));
        assert_eq!(store.driver.snapshot(&sid("snap")).await.unwrap().as_ref(), Some(&taken[0]));
        let restored = store.driver.restore_volume(&sid("snap"), &vid("restored"), 16 * MIB).await.unwrap();
        assert_eq!(restored.size_bytes, 16 * MIB);
        store.assert_volume("restored", &before).await;
        store.assert_volume("disk", &model).await;

        // Writing into the restored volume changes neither the snapshot nor the source.
        let mut restored_model = before.clone();
        store.write("restored", &mut restored_model, 0, 64 << 10, 0xc1).await;
        store.assert_volume("restored", &restored_model).await;
        store.assert_snapshot("snap", &before).await;
        store.assert_volume("disk", &model).await;
        store.assert_no_leaks().await;
    }

    pub async fn a_clone_copies_the_current_data_then_diverges_from_its_source(store: Store) {
        let (_, mut model) = store.create("disk", 16 * MIB).await;
        store.write("disk", &mut model, 4 * MIB, 64 << 10, 0x11).await;
        let clone = store.driver.clone_volume(&vid("disk"), &vid("copy"), 32 * MIB, None).await.unwrap();
        assert_eq!(clone.size_bytes, 32 * MIB);
        let mut clone_model = model.resized(32 * MIB);
        store.write("copy", &mut clone_model, 20 * MIB, 64 << 10, 0x22).await;
        store.write("disk", &mut model, 4 * MIB, 64 << 10, 0x33).await;
        store.assert_volume("copy", &clone_model).await;
        store.assert_volume("disk", &model).await;
        assert!(store.driver.snapshots().await.unwrap().is_empty(), "a clone records no snapshot");
        store.assert_no_leaks().await;
    }

    pub async fn a_snapshot_outlives_its_deleted_source_volume(store: Store) {
        let (_, mut model) = store.create("disk", 16 * MIB).await;
        store.write("disk", &mut model, 0, MIB, 0x5a).await;
        store.driver.snapshot_volumes(&[(vid("disk"), sid("snap"))], None).await.unwrap();
        let at_snapshot = model.clone();
        store.write("disk", &mut model, 2 * MIB, MIB, 0x6b).await;

        store.driver.delete_volume(&vid("disk")).await.unwrap();
        assert_eq!(store.driver.volume(&vid("disk")).await.unwrap(), None);
        store.driver.delete_volume(&vid("disk")).await.unwrap(); // Idempotent.
        store.assert_snapshot("snap", &at_snapshot).await;
        assert_eq!(store.driver.snapshot(&sid("snap")).await.unwrap().unwrap().source_volume, vid("disk"));
        store.assert_no_leaks().await;
    }

    pub async fn deleting_a_snapshot_leaves_its_volume_and_restored_volumes_intact(store: Store) {
        let (_, mut model) = store.create("disk", 16 * MIB).await;
        store.write("disk", &mut model, 0, MIB, 0x01).await;
        store.driver.snapshot_volumes(&[(vid("disk"), sid("snap"))], None).await.unwrap();
        let at_snapshot = model.clone();
        store.write("disk", &mut model, MIB, MIB, 0x02).await;
        store.driver.restore_volume(&sid("snap"), &vid("restored"), 0).await.unwrap();

        store.driver.delete_snapshot(&sid("snap")).await.unwrap();
        store.driver.delete_snapshot(&sid("snap")).await.unwrap(); // Idempotent.
        assert_eq!(store.driver.snapshot(&sid("snap")).await.unwrap(), None);
        store.assert_volume("disk", &model).await;
        store.assert_volume("restored", &at_snapshot).await;
        store.assert_no_leaks().await;

        // Deleting everything leaves no data file behind.
        store.driver.delete_volume(&vid("disk")).await.unwrap();
        store.driver.delete_volume(&vid("restored")).await.unwrap();
        let audit = store.driver.audit().await.unwrap();
        assert!(audit.files_on_disk.is_empty() && audit.referenced_files.is_empty(), "{audit:?}");
    }

    pub async fn a_hundred_snapshots_with_a_write_between_each_read_back_bit_exact(store: Store) {
        const SIZE: u64 = 4 * MIB;
        const CHUNK: u64 = 64 << 10;
        let (_, mut model) = store.create("disk", SIZE).await;
        let mut models = Vec::new();
        let mut deepest = 0;
        for i in 0..100u64 {
            // Overlapping writes, so every layer holds data that later layers hide in part.
            let offset = (i * 7 % 60) * CHUNK;
            store.write("disk", &mut model, offset, 2 * CHUNK, (i + 1) as u8).await;
            store.driver.snapshot_volumes(&[(vid("disk"), sid(&format!("s{i}")))], None).await.unwrap();
            models.push(model.clone());
            deepest = deepest.max(store.info("disk").await.chain_depth);
            // The background compaction job, interleaved with the snapshots.
            if i % 10 == 9 {
                store.driver.compact(None).await.unwrap();
            }
        }
        store.write("disk", &mut model, 0, CHUNK, 0xff).await;
        let report = store.driver.compact(None).await.unwrap();
        let depth = store.info("disk").await.chain_depth;
        assert!(depth <= store.options.max_chain_depth, "depth {depth} after compaction: {report:?}");
        assert!(
            deepest > store.options.max_chain_depth || store.kind == Kind::Copy,
            "compaction had work to do"
        );

        for (i, expected) in models.iter().enumerate() {
            store.assert_snapshot(&format!("s{i}"), expected).await;
        }
        store.assert_volume("disk", &model).await;
        assert_eq!(store.driver.snapshots().await.unwrap().len(), 100);
        store.assert_no_leaks().await;
    }

    pub async fn a_volume_grows_and_never_shrinks(store: Store) {
        let (_, mut model) = store.create("disk", 16 * MIB).await;
        store.write("disk", &mut model, 15 * MIB, MIB, 0x77).await;
        let grown = store.driver.resize_volume(&vid("disk"), 32 * MIB).await.unwrap();
        assert_eq!(grown.size_bytes, 32 * MIB);
        let mut model = model.resized(32 * MIB);
        store.write("disk", &mut model, 31 * MIB, MIB, 0x78).await;
        store.assert_volume("disk", &model).await;

        let same = store.driver.resize_volume(&vid("disk"), 32 * MIB).await.unwrap();
        assert_eq!(same.size_bytes, 32 * MIB);
        let error = store.driver.resize_volume(&vid("disk"), 8 * MIB).await.unwrap_err();
        assert!(
            matches!(error, StorageError::Shrink { current, requested, .. } if current == 32 * MIB && requested == 8 * MIB)
        );
        store.assert_volume("disk", &model).await;
        store.assert_no_leaks().await;
    }

    pub async fn restored_and_cloned_volumes_are_at_least_as_large_as_their_source(store: Store) {
        let (_, mut model) = store.create("disk", 16 * MIB).await;
        store.write("disk", &mut model, 0, MIB, 0x42).await;
        store.driver.snapshot_volumes(&[(vid("disk"), sid("snap"))], None).await.unwrap();
        let small = store.driver.restore_volume(&sid("snap"), &vid("small"), 1).await.unwrap();
        assert_eq!(small.size_bytes, 16 * MIB);
        let large = store.driver.restore_volume(&sid("snap"), &vid("large"), 24 * MIB).await.unwrap();
        assert_eq!(large.size_bytes, 24 * MIB);
        store.assert_volume("large", &model.resized(24 * MIB)).await;
        let clone = store.driver.clone_volume(&vid("disk"), &vid("clone"), 512, None).await.unwrap();
        assert_eq!(clone.size_bytes, 16 * MIB);
        store.assert_volume("clone", &model).await;
        store.assert_no_leaks().await;
    }

    pub async fn raw_and_qcow2_files_import_with_progress_and_unsafe_images_are_refused(store: Store) {
        let sources = tempfile::tempdir().unwrap();
        let raw = sources.path().join("image.raw");
        std::fs::File::create(&raw).unwrap().set_len(8 * MIB).unwrap();
        let mut model = DiskModel::blank(8 * MIB);
        common::qemu_io_write(&store.qemu_io, &raw, VolumeFormat::Raw, MIB, 3 * MIB, 0x3c);
        model.push_write(MIB, 3 * MIB, 0x3c);
        let qcow2 = sources.path().join("image.qcow2");
        run(&store, &["convert", "-f", "raw", "-O", "qcow2"], &[&raw, &qcow2]);

        let seen = Mutex::new(Vec::new());
        let progress = |percent: u8| seen.lock().unwrap().push(percent);
        let info = store
            .driver
            .import_volume(
                &vid("from-raw"),
                vmsnap_storage::Import {
                    source: &raw,
                    size_bytes: None,
                    progress: &progress,
                    handed_over: false,
                },
            )
            .await
            .unwrap();
        assert_eq!(info.size_bytes, 8 * MIB);
        store.assert_volume("from-raw", &model).await;
        let percents = std::mem::take(&mut *seen.lock().unwrap());
        assert_eq!(percents.last(), Some(&100), "{percents:?}");
        assert!(percents.windows(2).all(|w| w[0] < w[1]), "{percents:?}");

        let info = store
            .driver
            .import_volume(
                &vid("from-qcow2"),
                vmsnap_storage::Import {
                    source: &qcow2,
                    size_bytes: Some(16 * MIB),
                    progress: &progress,
                    handed_over: false,
                },
            )
            .await
            .unwrap();
        assert_eq!(info.size_bytes, 16 * MIB);
        store.assert_volume("from-qcow2", &model.resized(16 * MIB)).await;
        assert_eq!(seen.lock().unwrap().last(), Some(&100));

        // An image that would make qemu-img read another file is refused.
        let overlay = sources.path().join("overlay.qcow2");
        run(&store, &["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"], &[&qcow2, &overlay]);
        let error = store
            .driver
            .import_volume(
                &vid("bad"),
                vmsnap_storage::Import {
                    source: &overlay,
                    size_bytes: None,
                    progress: &progress,
                    handed_over: true,
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(error, StorageError::UnsupportedImage { .. }), "{error}");
        assert!(error.to_string().contains("has the backing file"), "{error}");
        let missing = sources.path().join("missing.raw");
        let error = store
            .driver
            .import_volume(
                &vid("bad"),
                vmsnap_storage::Import {
                    source: &missing,
                    size_bytes: None,
                    progress: &progress,
                    handed_over: true,
                },
            )
            .await
            .unwrap_err();
        assert!(error.to_string().contains("is not a regular file"), "{error}");
        assert_eq!(store.driver.volume(&vid("bad")).await.unwrap(), None);
        store.assert_no_leaks().await;
    }

    pub async fn a_handed_over_import_image_becomes_the_volume_without_a_copy(store: Store) {
        use std::os::unix::fs::MetadataExt as _;
        let sources = tempfile::tempdir_in(store.root()).unwrap();
        let path = sources.path().join("disk.img");
        let image = store.driver.create_import_image(&path, 8 * MIB).await.unwrap();
        assert_eq!(image.size(), 8 * MIB);
        let mut model = DiskModel::blank(8 * MIB);
        // Unaligned, across the middle, and the very end; the rest is never written.
        for (offset, len, pattern) in
            [(MIB + 100, 2 * MIB, 0x5a), (4 * MIB - 7, 3000, 0x11), (8 * MIB - 512, 512, 0xe1)]
        {
            image.write_at(&vec![pattern; len as usize], offset).unwrap();
            model.push_write(offset, len, pattern);
        }
        image.sync().unwrap();
        let error = image.write_at(&[1; 2], 8 * MIB - 1).unwrap_err();
        assert!(error.to_string().contains("beyond the disk's"), "{error}");
        let mode = std::fs::metadata(&path).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600, "a disk's data is private to the service user");

        let handed_over = |source| vmsnap_storage::Import {
            source,
            size_bytes: Some(12 * MIB),
            progress: &|_| {},
            handed_over: true,
        };
        store.driver.import_volume(&vid("taken"), handed_over(&path)).await.unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().nlink(), 2, "taken as it is: a link, not a copy");
        std::fs::remove_file(&path).unwrap();
        store.assert_volume("taken", &model.resized(12 * MIB)).await;

        // Not handed over, the same kind of file is copied.
        let copied = sources.path().join("copied.img");
        let image = store.driver.create_import_image(&copied, 4 * MIB).await.unwrap();
        image.write_at(&[0x77; 4096], 0).unwrap();
        let import = vmsnap_storage::Import { handed_over: false, ..handed_over(&copied) };
        store.driver.import_volume(&vid("copied"), import).await.unwrap();
        assert_eq!(std::fs::metadata(&copied).unwrap().nlink(), 1);
        let mut copied_model = DiskModel::blank(12 * MIB);
        copied_model.push_write(0, 4096, 0x77);
        store.assert_volume("copied", &copied_model).await;

        // A handed-over file in another format is copied (converted), not taken.
        let foreign = sources.path().join("foreign.qcow2");
        run(&store, &["create", "-q", "-f", "qcow2", "-o", "cluster_size=4096"], &[&foreign]);
        store.driver.import_volume(&vid("foreign"), handed_over(&foreign)).await.unwrap();
        assert_eq!(std::fs::metadata(&foreign).unwrap().nlink(), 1, "another format is converted");
        store.assert_volume("foreign", &DiskModel::blank(12 * MIB)).await;
        drop(sources);
        store.assert_no_leaks().await;
    }

    pub async fn a_group_snapshot_records_every_volume_or_none(store: Store) {
        let (_, mut a) = store.create("a", 16 * MIB).await;
        let (_, mut b) = store.create("b", 8 * MIB).await;
        store.write("a", &mut a, 0, MIB, 0xaa).await;
        store.write("b", &mut b, 0, MIB, 0xbb).await;
        let group = [(vid("a"), sid("a-1")), (vid("b"), sid("b-1"))];
        let taken = store.driver.snapshot_volumes(&group, None).await.unwrap();
        assert_eq!(taken.len(), 2);
        assert_eq!(taken[0].created_at, taken[1].created_at, "one point in time");
        let (a_at, b_at) = (a.clone(), b.clone());
        store.write("a", &mut a, 0, MIB, 0xa2).await;
        store.write("b", &mut b, 0, MIB, 0xb2).await;
        store.assert_snapshot("a-1", &a_at).await;
        store.assert_snapshot("b-1", &b_at).await;

        // One conflict fails the whole group, and nothing of it is recorded.
        let conflicting = [(vid("a"), sid("a-2")), (vid("b"), sid("b-1"))];
        let error = store.driver.snapshot_volumes(&conflicting, None).await.unwrap_err();
        assert!(
            matches!(&error, StorageError::SnapshotExists { snapshot } if snapshot.as_str() == "b-1"),
            "{error}"
        );
        assert_eq!(store.driver.snapshot(&sid("a-2")).await.unwrap(), None);
        let twice = [(vid("a"), sid("x")), (vid("a"), sid("y"))];
        let error = store.driver.snapshot_volumes(&twice, None).await.unwrap_err();
        assert!(matches!(error, StorageError::InvalidRequest { .. }), "{error}");
        let error = store.driver.snapshot_volumes(&[], None).await.unwrap_err();
        assert!(matches!(error, StorageError::InvalidRequest { .. }), "{error}");
        store.assert_volume("a", &a).await;
        store.assert_no_leaks().await;
    }

    pub async fn the_store_survives_a_restart(mut store: Store) {
        let (_, mut model) = store.create("disk", 16 * MIB).await;
        store.write("disk", &mut model, 0, MIB, 0x10).await;
        store.driver.snapshot_volumes(&[(vid("disk"), sid("snap"))], None).await.unwrap();
        let at_snapshot = model.clone();
        store.write("disk", &mut model, MIB, MIB, 0x20).await;
        let (volumes, snapshots) =
            (store.driver.volumes().await.unwrap(), store.driver.snapshots().await.unwrap());

        store.reopen().await;
        let report = store.driver.recover(None).await.unwrap();
        assert_eq!(
            (report.removed_files, report.removed_layers, report.volumes, report.snapshots),
            (0, 0, 1, 1)
        );
        assert_eq!(store.driver.volumes().await.unwrap(), volumes);
        assert_eq!(store.driver.snapshots().await.unwrap(), snapshots);
        store.assert_volume("disk", &model).await;
        store.assert_snapshot("snap", &at_snapshot).await;
        store.assert_no_leaks().await;
    }

    pub async fn recovery_removes_stray_files_and_reports_missing_ones(mut store: Store) {
        let (info, model) = store.create("disk", 16 * MIB).await;
        let data_dir = info.path.parent().unwrap().to_owned();
        std::fs::write(data_dir.join("half-made.qcow2"), b"interrupted").unwrap();
        std::fs::write(store.root().join("manifest.json.tmp"), b"{").unwrap();
        assert_eq!(store.driver.audit().await.unwrap().unreferenced().len(), 2);

        store.reopen().await;
        let report = store.driver.recover(None).await.unwrap();
        assert_eq!(report.removed_files, 2);
        store.assert_no_leaks().await;
        store.assert_volume("disk", &model).await;

        // A missing referenced file is an error naming it; nothing is dropped.
        std::fs::remove_file(&info.path).unwrap();
        store.reopen().await;
        let error = store.driver.recover(None).await.unwrap_err();
        assert!(matches!(&error, StorageError::MissingFile { path, .. } if *path == info.path), "{error}");
        assert!(error.to_string().contains("volume disk still refers to it"), "{error}");
        assert!(store.driver.volume(&vid("disk")).await.unwrap().is_some());
    }

    pub async fn a_volume_a_running_qemu_writes_is_refused_without_live_ops(store: Store) {
        let (info, _) = store.create("disk", 16 * MIB).await;
        // Hold QEMU's write-permission lock byte, as a running QEMU does.
        let _qemu = QemuWriteLock::take(&info.path);
        let error = store.driver.snapshot_volumes(&[(vid("disk"), sid("snap"))], None).await.unwrap_err();
        assert!(matches!(&error, StorageError::InUse { path, .. } if *path == info.path), "{error}");
        let error = store.driver.delete_volume(&vid("disk")).await.unwrap_err();
        assert!(matches!(error, StorageError::InUse { .. }), "{error}");
        let error = store.driver.clone_volume(&vid("disk"), &vid("c"), 0, None).await.unwrap_err();
        assert!(matches!(error, StorageError::InUse { .. }), "{error}");
        let error = store.driver.resize_volume(&vid("disk"), 32 * MIB).await.unwrap_err();
        assert!(matches!(error, StorageError::InUse { .. }), "{error}");
        assert_eq!(store.driver.snapshot(&sid("snap")).await.unwrap(), None);
        assert_eq!(store.info("disk").await, info);
        store.assert_no_leaks().await;
    }

    pub async fn errors_name_the_missing_or_conflicting_object(store: Store) {
        store.create("disk", 16 * MIB).await;
        let d = &store.driver;
        let error = d.snapshot_volumes(&[(vid("nope"), sid("s"))], None).await.unwrap_err();
        assert!(
            matches!(&error, StorageError::VolumeNotFound { volume } if volume.as_str() == "nope"),
            "{error}"
        );
        assert!(error.is_not_found());
        let error = d.restore_volume(&sid("nope"), &vid("r"), 0).await.unwrap_err();
        assert_eq!(error.to_string(), "snapshot nope does not exist");
        let error = d.create_volume(&vid("disk"), MIB).await.unwrap_err();
        assert_eq!(error.to_string(), "volume disk already exists; delete it first or choose another id");
        d.snapshot_volumes(&[(vid("disk"), sid("s"))], None).await.unwrap();
        let error = d.restore_volume(&sid("s"), &vid("disk"), 0).await.unwrap_err();
        assert!(matches!(error, StorageError::VolumeExists { .. }), "{error}");
        let error = d.clone_volume(&vid("disk"), &vid("disk"), 0, None).await.unwrap_err();
        assert!(matches!(error, StorageError::InvalidRequest { .. }), "{error}");
        let error = d.create_volume(&vid("zero"), 0).await.unwrap_err();
        assert!(matches!(error, StorageError::InvalidRequest { .. }), "{error}");
        let error = d.resize_volume(&vid("nope"), MIB).await.unwrap_err();
        assert!(error.is_not_found(), "{error}");
        store.assert_no_leaks().await;
    }

    fn run(store: &Store, args: &[&str], paths: &[&std::path::Path]) {
        let mut command = std::process::Command::new(&store.options.qemu_img);
        command.args(args).args(paths);
        if args[0] == "create" {
            command.arg("8M");
        }
        let output = command.output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }

    /// An open-file-description lock on QEMU's write-permission byte (101).
    struct QemuWriteLock(#[allow(dead_code, reason = "held only to keep the lock")] std::fs::File);

    impl QemuWriteLock {
        fn take(path: &std::path::Path) -> Self {
            use nix::fcntl::{FcntlArg, fcntl};
            use nix::libc;
            let file = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
            let lock = libc::flock {
                l_type: libc::F_RDLCK as libc::c_short,
                l_whence: libc::SEEK_SET as libc::c_short,
                l_start: 101,
                l_len: 1,
                l_pid: 0,
            };
            fcntl(&file, FcntlArg::F_OFD_SETLK(&lock)).unwrap();
            Self(file)
        }
    }
}
