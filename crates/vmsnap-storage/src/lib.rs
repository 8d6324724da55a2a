//! The local storage engine: volumes (PVC disks) and their snapshots as files
//! under one root directory, behind one async interface, [`VolumeDriver`].
//!
//! Two drivers implement it:
//!
//! - [`LayeredDriver`] (`qcow2-layers`) keeps each volume as a chain of qcow2
//!   layers: immutable sealed layers below, one writable active layer on top.
//!   Snapshot, restore and clone add one empty layer, so they take constant
//!   time whatever the disk size; layers are shared and reference-counted by
//!   reachability; a background [`VolumeDriver::compact`] keeps chains short.
//! - [`CopyDriver`] (`copy`) keeps every volume and snapshot as a whole raw
//!   file and copies it (reflink where the file system can): the O(size)
//!   baseline for benchmarks, and a driver for file systems where qcow2 chains
//!   are not wanted.
//!
//! [`VolumeDriver::snapshot_image`] opens a snapshot for readers outside QEMU
//! (backups): a [`SnapshotImage`] holds every file of the snapshot's chain
//! open, lists its allocated extents, reads it with `pread`, and tells which
//! extents changed since an older snapshot ([`SnapshotImage::changed_since`])
//! or why that cannot be known ([`IncrementalImpossible`]).
//!
//! Volumes attached to a running QEMU are switched through [`LiveBlockOps`],
//! which the node agent implements over QMP; only `vmsnap-qemu` speaks QMP.
//!
//! Both drivers record their state in a versioned manifest
//! (`manifest.json`, `formatVersion` 1) that is replaced atomically, and order
//! file operations around its commits so that a crash at any point leaves the
//! old state or the new one; [`VolumeDriver::recover`] reconciles the files at
//! startup. `docs/storage-layers.md` describes the format and the rules.
//!
//! The engine knows nothing of Kubernetes: `vmsnap-storage-controllers` maps
//! PVCs, DataVolumes and VolumeSnapshots onto it, and the node agent attaches
//! its volumes to QEMU.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), vmsnap_storage::StorageError> {
//! use vmsnap_storage::{LayeredDriver, SnapshotId, StorageOptions, VolumeDriver, VolumeId};
//!
//! let driver = LayeredDriver::open("/var/lib/vmsnap/volumes", StorageOptions::default()).await?;
//! driver.recover(None).await?;
//! let disk = VolumeId::new("pvc-1234").expect("a valid id");
//! driver.create_volume(&disk, 1 << 30).await?;
//! let snapshot = SnapshotId::new("snap-1").expect("a valid id");
//! driver.snapshot_volumes(&[(disk.clone(), snapshot.clone())], None).await?;
//! let restored = VolumeId::new("pvc-5678").expect("a valid id");
//! let info = driver.restore_volume(&snapshot, &restored, 1 << 30).await?;
//! println!("give QEMU {}", info.path.display());
//! # Ok(()) }
//! ```

mod copy;
mod direct_io;
mod driver;
mod error;
mod fsutil;
mod id;
mod image;
mod import;
mod import_image;
mod inuse;
mod layered;
mod live;
mod locks;
mod manifest_file;
mod options;
mod qcow2;
mod qemu_img;
mod steps;
mod store;

pub use copy::CopyDriver;
pub use driver::{
    CompactionReport, Import, Progress, RecoveryReport, SnapshotInfo, StorageAudit, VolumeDriver,
    VolumeFormat, VolumeInfo,
};
pub use error::{ManifestError, StorageError};
pub use id::{InvalidIdError, MAX_ID_LEN, SnapshotId, VolumeId};
pub use image::{
    ChainFile, ChangePoint, ChangedExtents, ExtentSource, IncrementalImpossible, MappedExtent, SnapshotImage,
};
pub use import_image::ImportImage;
pub use layered::LayeredDriver;
pub use live::{LiveBlockOps, LiveError, LiveSwitch, StreamRequest};
pub use manifest_file::FORMAT_VERSION;
pub use options::StorageOptions;
pub use qemu_img::QemuImgError;
#[cfg(feature = "fault-injection")]
pub use steps::StepHook;

/// Rounds a size up to a whole number of 512-byte sectors, as QEMU does.
pub(crate) fn round_to_sector(size: u64) -> u64 {
    size.div_ceil(512) * 512
}
