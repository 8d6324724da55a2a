//! Shared helpers of the storage tests: the drivers under test, real
//! `qemu-io` writes and `qemu-img` reads, and a model of the expected content.
#![allow(dead_code, reason = "each test binary uses a different part of the shared helpers")]

pub mod live_vm;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use vmsnap_storage::{
    CopyDriver, LayeredDriver, SnapshotId, StepHook, StorageError, StorageOptions, VolumeDriver,
    VolumeFormat, VolumeId, VolumeInfo,
};

pub const MIB: u64 = 1 << 20;

/// The path of `name`, looked up in `PATH` and the sbin directories. When it
/// is missing the test is skipped with a message, unless
/// `VMSNAP_REQUIRE_QEMU=1`, which turns a missing binary into a failure.
pub fn require_binary(name: &str) -> Option<PathBuf> {
    let path_dirs =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).unwrap_or_default();
    let found = path_dirs
        .into_iter()
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file());
    if found.is_none() {
        assert!(
            std::env::var("VMSNAP_REQUIRE_QEMU").as_deref() != Ok("1"),
            "{name} is required because VMSNAP_REQUIRE_QEMU=1, but it is not installed"
        );
        eprintln!("skipping: {name} is not installed (set VMSNAP_REQUIRE_QEMU=1 to make this a failure)");
    }
    found
}

/// `qemu-img` and `qemu-io`, or `None` (skip) when either is missing.
pub fn qemu_tools() -> Option<(PathBuf, PathBuf)> {
    Some((require_binary("qemu-img")?, require_binary("qemu-io")?))
}

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
        Ok(match (self, hook) {
            (Kind::Layered, None) => Arc::new(LayeredDriver::open(root, options).await?),
            (Kind::Layered, Some(hook)) => {
                Arc::new(LayeredDriver::open_with_step_hook(root, options, hook).await?)
            }
            (Kind::Copy, None) => Arc::new(CopyDriver::open(root, options).await?),
            (Kind::Copy, Some(hook)) => Arc::new(CopyDriver::open_with_step_hook(root, options, hook).await?),
        })
    }
}

/// The content a volume should have: its size and the writes made to it, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Model {
    pub size: u64,
    writes: Vec<(u64, u64, u8)>,
}

impl Model {
    pub fn blank(size: u64) -> Self {
        Self { size, writes: Vec::new() }
    }

    /// The same data in a larger volume (the new space reads as zeros).
    pub fn resized(&self, size: u64) -> Self {
        Self { size, writes: self.writes.clone() }
    }

    /// Records a write made outside the store (e.g. into a file to import).
    pub fn push_write(&mut self, offset: u64, len: u64, pattern: u8) {
        self.writes.push((offset, len, pattern));
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut bytes = vec![0u8; self.size as usize];
        for &(offset, len, pattern) in &self.writes {
            bytes[offset as usize..(offset + len) as usize].fill(pattern);
        }
        bytes
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

    pub async fn create(&self, name: &str, size: u64) -> (VolumeInfo, Model) {
        let info = self.driver.create_volume(&vid(name), size).await.unwrap();
        (info, Model::blank(size))
    }

    pub async fn info(&self, name: &str) -> VolumeInfo {
        self.driver.volume(&vid(name)).await.unwrap().unwrap_or_else(|| panic!("volume {name} is missing"))
    }

    /// Writes `pattern` into the volume's active file with `qemu-io`, and into the model.
    pub async fn write(&self, name: &str, model: &mut Model, offset: u64, len: u64, pattern: u8) {
        let info = self.info(name).await;
        qemu_io_write(&self.qemu_io, &info.path, info.format, offset, len, pattern);
        model.push_write(offset, len, pattern);
    }

    /// The volume reads exactly as the model says, size included.
    pub async fn assert_volume(&self, name: &str, model: &Model) {
        let info = self.info(name).await;
        assert_eq!(info.size_bytes, model.size, "size of volume {name}");
        assert_bytes(&format!("volume {name}"), &self.read(&info), &model.bytes());
    }

    /// The snapshot restores to exactly the model's content (through a
    /// temporary restored volume, deleted afterwards).
    pub async fn assert_snapshot(&self, name: &str, model: &Model) {
        let probe = vid(&format!("probe-{name}"));
        let info = self.driver.restore_volume(&sid(name), &probe, 0).await.unwrap();
        assert_eq!(info.size_bytes, model.size, "size of snapshot {name}");
        assert_bytes(&format!("snapshot {name}"), &self.read(&info), &model.bytes());
        self.driver.delete_volume(&probe).await.unwrap();
    }

    /// The whole volume as raw bytes, through `qemu-img convert`.
    pub fn read(&self, info: &VolumeInfo) -> Vec<u8> {
        read_image(&self.options.qemu_img, &info.path, info.format)
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

pub fn qemu_io_write(qemu_io: &Path, path: &Path, format: VolumeFormat, offset: u64, len: u64, pattern: u8) {
    let output = Command::new(qemu_io)
        .args(["-f", format.as_str(), "-c"])
        .arg(format!("write -P {pattern:#04x} {offset} {len}"))
        .arg(path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "qemu-io write into {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A whole image as raw bytes, through `qemu-img convert`.
pub fn read_image(qemu_img: &Path, path: &Path, format: VolumeFormat) -> Vec<u8> {
    let out = tempfile::NamedTempFile::new().unwrap();
    let output = Command::new(qemu_img)
        .args(["convert", "-U", "-f", format.as_str(), "-O", "raw"])
        .arg(path)
        .arg(out.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "qemu-img convert of {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read(out.path()).unwrap()
}

/// Equal bytes, or a failure naming the first differing offset (not 16 MiB of hex).
pub fn assert_bytes(what: &str, actual: &[u8], expected: &[u8]) {
    assert_eq!(actual.len(), expected.len(), "length of {what}");
    if actual == expected {
        return;
    }
    if let Some(offset) = actual.iter().zip(expected).position(|(a, e)| a != e) {
        panic!(
            "{what} differs at offset {offset}: read {:#04x}, expected {:#04x}",
            actual[offset], expected[offset]
        );
    }
}
