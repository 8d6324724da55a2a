//! Shared helpers of the storage engine's tests: the drivers under test over a
//! temporary root, checked with real `qemu-io` writes and `qemu-img` reads
//! against a [`DiskModel`] of the expected content.
#![allow(dead_code, reason = "each test binary uses a different part of the shared helpers")]

pub mod live_vm;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use vmsnap_storage::{
    CopyDriver, LayeredDriver, SnapshotId, StepHook, StorageError, StorageOptions, VolumeDriver,
    VolumeFormat, VolumeId, VolumeInfo,
};
use vmsnap_testing::images::{self, assert_bytes};
pub use vmsnap_testing::images::{DiskModel, qemu_tools, require_binary};

pub const MIB: u64 = 1 << 20;

/// Which driver a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// [`LayeredDriver`].
    Layered,
    /// [`CopyDriver`].
    Copy,
}

impl Kind {
    pub fn parse(name: &str) -> Self {
        match name {
            "layered" => Kind::Layered,
            "copy" => Kind::Copy,
            other => panic!("unknown driver {other}"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Layered => "layered",
            Kind::Copy => "copy",
        }
    }

    /// Opens this kind of driver over `root`, with a step hook if given.
    pub async fn open(
        self,
        root: &Path,
        options: StorageOptions,
        hook: Option<StepHook>,
    ) -> Result<Arc<dyn VolumeDriver>, StorageError> {
        let options = StorageOptions { step_hook: hook, ..options };
        Ok(match self {
            Kind::Layered => Arc::new(LayeredDriver::open(root, options).await?),
            Kind::Copy => Arc::new(CopyDriver::open(root, options).await?),
        })
    }
}

/// A driver under test over a temporary root, with the QEMU tools.
pub struct Store {
    pub kind: Kind,
    pub dir: tempfile::TempDir,
    pub driver: Arc<dyn VolumeDriver>,
    pub options: StorageOptions,
    pub qemu_io: PathBuf,
}

impl Store {
    /// A fresh store, or `None` (skip) without the QEMU tools.
    pub async fn new(kind: Kind) -> Option<Self> {
        Self::with_options(kind, StorageOptions::default()).await
    }

    pub async fn with_options(kind: Kind, options: StorageOptions) -> Option<Self> {
        let (qemu_img, qemu_io) = qemu_tools()?;
        let options = StorageOptions { qemu_img, ..options };
        let dir = tempfile::tempdir().unwrap();
        let driver = kind.open(dir.path(), options.clone(), None).await.unwrap();
        Some(Self { kind, dir, driver, options, qemu_io })
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Replaces the driver by a fresh instance over the same root, as after a restart.
    pub async fn reopen(&mut self) {
        self.driver = self.kind.open(self.dir.path(), self.options.clone(), None).await.unwrap();
    }

    pub async fn create(&self, name: &str, size: u64) -> (VolumeInfo, DiskModel) {
        let info = self.driver.create_volume(&vid(name), size).await.unwrap();
        (info, DiskModel::blank(size))
    }

    pub async fn info(&self, name: &str) -> VolumeInfo {
        self.driver.volume(&vid(name)).await.unwrap().unwrap_or_else(|| panic!("volume {name} is missing"))
    }

    /// Writes `pattern` into the volume's active file with `qemu-io`, and into the model.
    pub async fn write(&self, name: &str, model: &mut DiskModel, offset: u64, len: u64, pattern: u8) {
        let info = self.info(name).await;
        qemu_io_write(&self.qemu_io, &info.path, info.format, offset, len, pattern);
        model.push_write(offset, len, pattern);
    }

    /// The volume reads exactly as the model says, size included.
    pub async fn assert_volume(&self, name: &str, model: &DiskModel) {
        let info = self.info(name).await;
        assert_eq!(info.size_bytes, model.size, "size of volume {name}");
        assert_bytes(&format!("volume {name}"), &self.read(&info), &model.bytes());
    }

    /// The snapshot restores to exactly the model's content (through a
    /// temporary restored volume, deleted afterwards).
    pub async fn assert_snapshot(&self, name: &str, model: &DiskModel) {
        let probe = vid(&format!("probe-{name}"));
        let info = self.driver.restore_volume(&sid(name), &probe, 0).await.unwrap();
        assert_eq!(info.size_bytes, model.size, "size of snapshot {name}");
        assert_bytes(&format!("snapshot {name}"), &self.read(&info), &model.bytes());
        self.driver.delete_volume(&probe).await.unwrap();
    }

    /// The whole volume as raw bytes, through `qemu-img convert`.
    pub fn read(&self, info: &VolumeInfo) -> Vec<u8> {
        images::read_image(&self.options.qemu_img, &info.path, info.format.as_str())
    }

    /// Every file on disk is referenced and every referenced file is on disk.
    pub async fn assert_no_leaks(&self) {
        let audit = self.driver.audit().await.unwrap();
        assert!(audit.unreferenced().is_empty(), "leaked files: {:?}", audit.unreferenced());
        assert!(audit.missing().is_empty(), "lost files: {:?}", audit.missing());
    }
}

pub fn vid(name: &str) -> VolumeId {
    VolumeId::new(name).unwrap()
}

pub fn sid(name: &str) -> SnapshotId {
    SnapshotId::new(name).unwrap()
}

/// Writes `len` bytes of `pattern` at `offset` into a volume file with `qemu-io`.
pub fn qemu_io_write(qemu_io: &Path, path: &Path, format: VolumeFormat, offset: u64, len: u64, pattern: u8) {
    images::qemu_io_write(qemu_io, path, format.as_str(), offset, len, pattern);
}
