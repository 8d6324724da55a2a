//! The staging files of a restore: `<staging dir>/<namespace>/<restore uid>/<disk>.img`, images in the storage
//! driver's own format (`VolumeDriver::create_import_image`) readable by this user only, which the
//! DataVolumes import with `file://` URLs. The staging directory is one of the importer's
//! handed-over roots, so the import takes each file without a copy: a disk is written once; the
//! importer lets only DataVolumes of the restore's namespace take them.

use std::fs::DirBuilder;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

/// The staging directory of one restore.
#[derive(Debug, Clone)]
pub struct Staging {
    dir: PathBuf,
}

impl Staging {
    /// The directory of the restore with `uid` in `namespace` under `root` (made absolute: a
    /// `file://` URL needs an absolute path).
    pub fn new(root: &Path, namespace: &str, uid: &str) -> Self {
        let root = std::path::absolute(root).unwrap_or_else(|_| root.to_owned());
        Staging { dir: root.join(namespace).join(uid) }
    }

    /// The staging file of `disk`.
    pub fn file(&self, disk: &str) -> PathBuf {
        self.dir.join(format!("{disk}.img"))
    }

    /// The `file://` URL of the staging file of `disk`.
    pub fn url(&self, disk: &str) -> String {
        format!("file://{}", percent_encode_path(&self.file(disk).to_string_lossy()))
    }

    /// Makes the directory and its namespace's (mode 0700: its files hold decrypted disks) and
    /// returns the path of the staging file of `disk`, for the storage driver to create (mode 0600).
    pub fn prepare(&self, disk: &str) -> std::io::Result<PathBuf> {
        DirBuilder::new().recursive(true).mode(0o700).create(&self.dir)?;
        Ok(self.file(disk))
    }

    /// Bytes allocated on disk by the files so far (a restore's progress while it writes).
    pub fn allocated_bytes(&self) -> u64 {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return 0 };
        entries.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.blocks() * 512).sum()
    }

    /// Removes the directory and its files; a directory already gone is fine.
    pub fn remove(&self) -> std::io::Result<()> {
        match std::fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// `%`-escapes the bytes of a path that may not appear literally in a URL path.
fn percent_encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || b"/-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn the_staging_directory_is_private_and_removed_with_its_files() {
        let root = tempfile::tempdir().unwrap();
        let staging = Staging::new(root.path(), "ns", "uid-1");
        let path = staging.prepare("root").unwrap();
        std::fs::File::create(&path).unwrap().set_len(1 << 30).unwrap();
        for dir in ["ns", "ns/uid-1"] {
            let mode = std::fs::metadata(root.path().join(dir)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{dir}");
        }
        assert!(staging.allocated_bytes() < 1 << 20, "a sized file stays sparse");
        assert!(staging.url("root").ends_with("/ns/uid-1/root.img"));
        let relative = Staging::new(Path::new("staging"), "ns", "uid-2");
        assert!(relative.url("root").starts_with("file:///"), "{}", relative.url("root"));
        staging.remove().unwrap();
        assert!(!root.path().join("ns/uid-1").exists());
        staging.remove().unwrap();
    }

    #[test]
    fn urls_escape_what_a_url_path_cannot_hold() {
        assert_eq!(percent_encode_path("/a b/c%d.raw"), "/a%20b/c%25d.raw");
    }
}
