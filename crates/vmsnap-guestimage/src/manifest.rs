//! The manifest stored beside a cached image: what it was built from and how to boot it.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::BuildError;
use crate::recipe::{FORMAT_VERSION, Package};

/// File name of the manifest inside an image directory. It is written last,
/// so a directory without it was never completed.
pub(crate) const MANIFEST_FILE: &str = "manifest.json";

/// Contents of `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Manifest {
    /// The builder's format version; images of another version are ignored.
    pub(crate) format_version: u32,
    /// The image name VMs use for this image.
    pub(crate) image_name: String,
    /// The recipe hash (hex SHA-256) the directory is named after.
    pub(crate) recipe_hash: String,
    /// Hash of the files embedded in the builder alone, to find images made by this builder.
    pub(crate) embedded_hash: String,
    /// The kernel release, such as `6.1.0-56-cloud-amd64`.
    pub(crate) kernel_release: String,
    /// Kernel file name inside the image directory.
    pub(crate) kernel: String,
    /// Initramfs file name inside the image directory.
    pub(crate) initrd: String,
    /// Kernel command line.
    pub(crate) cmdline: String,
    /// The kernel package, fetched with `apt-get download`.
    pub(crate) kernel_package: Package,
    /// Host packages whose files or toolchain went into the image.
    pub(crate) host_packages: Vec<Package>,
    /// Kernel modules in the order `/init` loads them.
    pub(crate) modules: Vec<String>,
    /// When the build finished, in seconds since the Unix epoch.
    pub(crate) built_at_unix_secs: u64,
}

impl Manifest {
    /// Reads the manifest of the image directory `dir`.
    pub(crate) fn read(dir: &Path) -> Result<Self, BuildError> {
        let path = dir.join(MANIFEST_FILE);
        let text = fs::read(&path).map_err(BuildError::io("read", &path))?;
        serde_json::from_slice(&text).map_err(|source| BuildError::Manifest { path, source })
    }

    /// Writes the manifest into `dir` and flushes it to disk.
    pub(crate) fn write(&self, dir: &Path) -> Result<(), BuildError> {
        let path = dir.join(MANIFEST_FILE);
        let mut text = serde_json::to_vec_pretty(self)
            .map_err(|source| BuildError::Manifest { path: path.clone(), source })?;
        text.push(b'\n');
        let mut file = File::create(&path).map_err(BuildError::io("create", &path))?;
        file.write_all(&text).map_err(BuildError::io("write", &path))?;
        file.sync_all().map_err(BuildError::io("flush", &path))
    }

    /// Whether this builder can use the image: same format, and its files are there.
    pub(crate) fn is_usable_in(&self, dir: &Path) -> bool {
        self.format_version == FORMAT_VERSION
            && dir.join(&self.kernel).is_file()
            && dir.join(&self.initrd).is_file()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            format_version: FORMAT_VERSION,
            image_name: crate::TEST_GUEST_IMAGE.into(),
            recipe_hash: "ab".repeat(32),
            embedded_hash: "cd".repeat(32),
            kernel_release: "6.1.0-56-cloud-amd64".into(),
            kernel: "vmlinuz".into(),
            initrd: "initrd.cpio".into(),
            cmdline: "console=ttyS0".into(),
            kernel_package: Package {
                name: "linux-image-6.1.0-56-cloud-amd64".into(),
                version: "6.1.192-2".into(),
            },
            host_packages: vec![Package {
                name: "busybox-static".into(),
                version: "1:1.35.0-4+deb12u1+b1".into(),
            }],
            modules: vec!["kernel/drivers/virtio/virtio_ring.ko".into()],
            built_at_unix_secs: 1_760_000_000,
        }
    }

    #[test]
    fn manifest_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        sample().write(dir.path()).unwrap();
        assert_eq!(Manifest::read(dir.path()).unwrap(), sample());
    }

    #[test]
    fn manifest_file_carries_its_format_version() {
        let dir = tempfile::tempdir().unwrap();
        sample().write(dir.path()).unwrap();
        let value: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.path().join(MANIFEST_FILE)).unwrap()).unwrap();
        assert_eq!(value["format_version"], FORMAT_VERSION);
    }

    #[test]
    fn manifest_of_another_format_or_without_files_is_not_usable() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = sample();
        assert!(!manifest.is_usable_in(dir.path()));
        fs::write(dir.path().join("vmlinuz"), "k").unwrap();
        fs::write(dir.path().join("initrd.cpio"), "i").unwrap();
        assert!(manifest.is_usable_in(dir.path()));
        let older = Manifest { format_version: FORMAT_VERSION + 1, ..manifest };
        assert!(!older.is_usable_in(dir.path()));
    }

    #[test]
    fn truncated_manifest_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(MANIFEST_FILE), "{\"format_version\": 1,").unwrap();
        let error = Manifest::read(dir.path()).unwrap_err();
        assert!(error.to_string().contains(MANIFEST_FILE), "{error}");
    }
}
