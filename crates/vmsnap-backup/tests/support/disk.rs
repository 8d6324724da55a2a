//! Disk images for the scenarios: sparse raw files with data at known places, checked with the
//! system's own tools (`qemu-img`, `sha256sum`), not with the engine.

use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::process::Command;

use vmsnap_backup::Extent;

pub const MIB: u64 = 1024 * 1024;
pub const GIB: u64 = 1024 * MIB;

/// Deterministic incompressible bytes (xorshift64*).
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Compressible text, like a guest's logs.
pub fn text(seed: u64, len: usize) -> Vec<u8> {
    let line = format!("vmsnap backup test line {seed}: the quick brown fox jumps over the lazy dog\n");
    line.bytes().cycle().take(len).collect()
}

/// Writes `data` at `offset`.
pub fn write_at(path: &Path, offset: u64, data: &[u8]) {
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(data, offset).unwrap();
}

/// A sparse file of `size` bytes, no data.
pub fn sparse(path: &Path, size: u64) {
    std::fs::File::create(path).unwrap().set_len(size).unwrap();
}

/// The data extents of a raw image as `qemu-img map` reports them (SEEK_DATA/SEEK_HOLE): what a
/// caller knows is allocated.
pub fn allocated_extents(path: &Path) -> Vec<Extent> {
    let out = Command::new("qemu-img")
        .args(["map", "--output=json", "-f", "raw"])
        .arg(path)
        .output()
        .expect("qemu-img map");
    assert!(out.status.success(), "qemu-img map: {}", String::from_utf8_lossy(&out.stderr));
    let map: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    map.iter()
        .filter(|e| e["data"].as_bool() == Some(true))
        .map(|e| Extent::new(e["start"].as_u64().unwrap(), e["length"].as_u64().unwrap()))
        .collect()
}

/// `sha256sum FILE`.
pub fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().expect("sha256sum");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_string()
}

/// `qemu-img compare` of two raw images: true when their contents are identical.
pub fn qemu_img_identical(a: &Path, b: &Path) -> bool {
    let status = Command::new("qemu-img")
        .args(["compare", "-q", "-f", "raw", "-F", "raw"])
        .arg(a)
        .arg(b)
        .status()
        .unwrap();
    status.success()
}

/// Bytes of the file actually allocated on disk.
pub fn allocated_bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(path).unwrap().blocks() * 512
}
