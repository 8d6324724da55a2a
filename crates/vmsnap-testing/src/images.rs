//! Disk images in tests: finding the QEMU tools, writing byte patterns into an
//! image with the real `qemu-io`, reading a whole image back with `qemu-img`,
//! and [`DiskModel`], the content an image should have.
//!
//! Data is written and read by QEMU's own tools, not by the code under test,
//! so a test that compares the two checks the image as QEMU sees it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The path of `name`, looked up in `PATH` and the sbin directories (where
/// Debian puts `qemu-ga`). A missing binary panics unless [`crate::skips_allowed`].
pub fn require_binary(name: &str) -> Option<PathBuf> {
    let path_dirs =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).unwrap_or_default();
    let found = path_dirs
        .into_iter()
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file());
    if found.is_none() {
        crate::missing_prerequisite(name);
    }
    found
}

/// `qemu-img` and `qemu-io`, or `None` (skip) when either is missing.
pub fn qemu_tools() -> Option<(PathBuf, PathBuf)> {
    Some((require_binary("qemu-img")?, require_binary("qemu-io")?))
}

/// Writes `len` bytes of `pattern` at `offset` into the image at `path`
/// (`format`: `raw` or `qcow2`) with `qemu-io`; panics if it fails.
pub fn qemu_io_write(qemu_io: &Path, path: &Path, format: &str, offset: u64, len: u64, pattern: u8) {
    let output = Command::new(qemu_io)
        .args(["-f", format, "-c"])
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

/// A whole image as raw bytes, through `qemu-img convert` (`-U`: the image may be open in a QEMU).
pub fn read_image(qemu_img: &Path, path: &Path, format: &str) -> Vec<u8> {
    let out = tempfile::NamedTempFile::new().unwrap();
    let output = Command::new(qemu_img)
        .args(["convert", "-U", "-f", format, "-O", "raw"])
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

/// The tree digest of the raw image at `path` in chunks of `chunk_size` bytes
/// (`docs/backup-repository.md`), computed with coreutils rather than by the
/// backup engine: `split` cuts the image into chunks and runs `sha256sum` on
/// each, and `sha256sum` digests those digests' bytes, in order.
pub fn tree_digest_with_coreutils(path: &Path, chunk_size: u64) -> String {
    let script = format!(
        "set -e -o pipefail; split -b {chunk_size} --filter=sha256sum \"$1\" | cut -c1-64 \
         | perl -ne 'chomp; print pack(\"H*\", $_)' | sha256sum | cut -c1-64"
    );
    let out = Command::new("bash").args(["-c", &script, "bash"]).arg(path).output().expect("run bash");
    assert!(
        out.status.success(),
        "the tree digest of {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let digest = String::from_utf8(out.stdout).expect("hex").trim().to_owned();
    assert_eq!(digest.len(), 64, "sha256sum printed {digest:?}");
    digest
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

/// The content a disk should have: its size and the writes made to it, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskModel {
    /// The size in bytes.
    pub size: u64,
    writes: Vec<(u64, u64, u8)>,
}

impl DiskModel {
    /// A disk of `size` bytes that reads as zeros.
    pub fn blank(size: u64) -> Self {
        Self { size, writes: Vec::new() }
    }

    /// The same data in a larger disk (the new space reads as zeros).
    pub fn resized(&self, size: u64) -> Self {
        Self { size, writes: self.writes.clone() }
    }

    /// Records `len` bytes of `pattern` written at `offset`.
    pub fn push_write(&mut self, offset: u64, len: u64, pattern: u8) {
        self.writes.push((offset, len, pattern));
    }

    /// The whole disk as bytes.
    pub fn bytes(&self) -> Vec<u8> {
        let mut bytes = vec![0u8; self.size as usize];
        for &(offset, len, pattern) in &self.writes {
            bytes[offset as usize..(offset + len) as usize].fill(pattern);
        }
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_writes_cover_earlier_ones_and_resizing_keeps_them() {
        let mut model = DiskModel::blank(8);
        model.push_write(0, 4, 0xaa);
        model.push_write(2, 4, 0xbb);
        assert_eq!(model.bytes(), [0xaa, 0xaa, 0xbb, 0xbb, 0xbb, 0xbb, 0, 0]);
        assert_eq!(model.resized(10).bytes(), [0xaa, 0xaa, 0xbb, 0xbb, 0xbb, 0xbb, 0, 0, 0, 0]);
    }

    #[test]
    #[should_panic(expected = "disk differs at offset 1: read 0x02, expected 0x09")]
    fn a_difference_is_reported_by_its_first_offset() {
        assert_bytes("disk", &[1, 2, 3], &[1, 9, 3]);
    }
}
