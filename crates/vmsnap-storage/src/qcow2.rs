//! Empty qcow2 images written directly, without starting a `qemu-img` process.
//!
//! A snapshot puts a new empty overlay over the sealed layer of every volume, and for a running VM
//! that happens while the guest is frozen: spawning `qemu-img create` there costs about ten
//! milliseconds of freeze window per snapshot, and thousands of process starts when many stopped
//! VMs are snapshotted at once. An empty image is a few fixed structures, laid out exactly as
//! `qemu-img create -f qcow2` (QEMU 7.2) lays them out, version 3, 16-bit refcounts:
//!
//! | cluster | content |
//! |---|---|
//! | 0 | header, the backing-format extension, the end of extensions, the backing file name |
//! | 1 | the refcount table: one entry, pointing at cluster 2 |
//! | 2 | the refcount block: a refcount of 1 for each cluster in use |
//! | 3.. | the L1 table, all zeros (no L2 table: every cluster reads from the backing file) |
//!
//! Images whose clusters in use do not fit one refcount block (tiny clusters with huge disks) are
//! left to `qemu-img` ([`fits`]). The unit tests hold every image written here against
//! `qemu-img check` and `qemu-img info`.

use std::io::Write;
use std::path::Path;

const MAGIC: u32 = 0x5146_49fb;
const VERSION: u32 = 3;
/// The header with the compression type field (zlib), as QEMU 7.2 writes it.
const HEADER_LENGTH: u32 = 112;
const REFCOUNT_ORDER: u32 = 4;
const EXTENSION_BACKING_FORMAT: u32 = 0xe279_2aca;

/// The clusters an empty image of `size` bytes uses: header, refcount table, refcount block, L1.
fn clusters_in_use(size: u64, cluster_size: u64) -> u64 {
    3 + (l1_entries(size, cluster_size) * 8).div_ceil(cluster_size).max(1)
}

/// L1 entries: each points at an L2 table of `cluster_size / 8` entries of one cluster each.
fn l1_entries(size: u64, cluster_size: u64) -> u64 {
    size.div_ceil(cluster_size * (cluster_size / 8))
}

/// Whether an empty image of `size` bytes with `cluster_size` clusters can be written here: a
/// power-of-two cluster size from 512 bytes to 2 MiB, a size in whole 512-byte sectors, and clusters
/// in use that one refcount block counts.
pub fn fits(size: u64, cluster_size: u64, backing: Option<&str>) -> bool {
    let header_room = backing.map_or(0, str::len) as u64 + u64::from(HEADER_LENGTH) + 32;
    cluster_size.is_power_of_two()
        && (512..=2 << 20).contains(&cluster_size)
        && size.is_multiple_of(512)
        && size > 0
        && header_room <= cluster_size
        && backing.is_none_or(|name| !name.is_empty() && name.len() <= 1023)
        && clusters_in_use(size, cluster_size) <= cluster_size / 2
}

/// The bytes of an empty image, up to the end of its L1 table (a sparse file beyond the header).
fn image(size: u64, cluster_size: u64, backing: Option<&str>) -> Vec<u8> {
    let c = cluster_size as usize;
    let l1_entries = l1_entries(size, cluster_size);
    let mut header = Vec::with_capacity(c);
    let put32 = |buf: &mut Vec<u8>, v: u32| buf.extend_from_slice(&v.to_be_bytes());
    let put64 = |buf: &mut Vec<u8>, v: u64| buf.extend_from_slice(&v.to_be_bytes());
    // The backing file name follows the extensions: backing format (8 + 8 bytes) and the end (8).
    let backing_offset = u64::from(HEADER_LENGTH) + if backing.is_some() { 16 } else { 0 } + 8;
    put32(&mut header, MAGIC);
    put32(&mut header, VERSION);
    put64(&mut header, if backing.is_some() { backing_offset } else { 0 });
    put32(&mut header, backing.map_or(0, |b| b.len() as u32));
    put32(&mut header, cluster_size.trailing_zeros());
    put64(&mut header, size);
    put32(&mut header, 0); // no encryption
    put32(&mut header, l1_entries as u32);
    put64(&mut header, 3 * cluster_size); // L1 table
    put64(&mut header, cluster_size); // refcount table
    put32(&mut header, 1); // refcount table clusters
    put32(&mut header, 0); // snapshots
    put64(&mut header, 0); // snapshots offset
    put64(&mut header, 0); // incompatible features
    put64(&mut header, 0); // compatible features
    put64(&mut header, 0); // autoclear features
    put32(&mut header, REFCOUNT_ORDER);
    put32(&mut header, HEADER_LENGTH);
    header.resize(HEADER_LENGTH as usize, 0); // compression type zlib, padding
    if backing.is_some() {
        put32(&mut header, EXTENSION_BACKING_FORMAT);
        put32(&mut header, 5);
        header.extend_from_slice(b"qcow2\0\0\0");
    }
    put64(&mut header, 0); // end of extensions
    header.extend_from_slice(backing.unwrap_or_default().as_bytes());

    let mut image = vec![0u8; 3 * c + l1_entries as usize * 8];
    image[..header.len()].copy_from_slice(&header);
    image[c..c + 8].copy_from_slice(&(2 * cluster_size).to_be_bytes());
    for cluster in 0..clusters_in_use(size, cluster_size) as usize {
        image[2 * c + 2 * cluster..2 * c + 2 * cluster + 2].copy_from_slice(&1u16.to_be_bytes());
    }
    image
}

/// Writes a new empty qcow2 image of `size` bytes at `path` (replacing any file there, as
/// `qemu-img create` does), over
/// `backing` (a file name relative to `path`'s directory, in qcow2 format) if given. Check [`fits`]
/// first. The file is not fsynced: the caller syncs what it creates.
pub fn create(path: &Path, size: u64, cluster_size: u64, backing: Option<&str>) -> std::io::Result<()> {
    debug_assert!(fits(size, cluster_size, backing));
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(path)?;
    file.write_all(&image(size, cluster_size, backing))
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    fn qemu_img(args: &[&str]) -> Option<String> {
        let out = Command::new("qemu-img").args(args).output().ok()?;
        assert!(out.status.success(), "qemu-img {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        Some(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    #[test]
    fn an_overlay_is_the_image_qemu_img_would_create() {
        let dir = tempfile::tempdir().unwrap();
        let Some(_) = qemu_img(&["--version"]) else {
            assert!(
                std::env::var("VMSNAP_ALLOW_SKIP").as_deref() == Ok("1"),
                "qemu-img is missing: run ./x test, or set VMSNAP_ALLOW_SKIP=1 to skip"
            );
            return;
        };
        let base = dir.path().join("base.qcow2");
        qemu_img(&["create", "-q", "-f", "qcow2", base.to_str().unwrap(), "1G"]);
        for (size, cluster) in [(16u64 << 30, 65536u64), (1 << 30, 65536), (3 << 20, 512), (512, 2 << 20)] {
            let ours = dir.path().join(format!("ours-{size}-{cluster}.qcow2"));
            let theirs = dir.path().join(format!("theirs-{size}-{cluster}.qcow2"));
            assert!(fits(size, cluster, Some("base.qcow2")));
            create(&ours, size, cluster, Some("base.qcow2")).unwrap();
            let option = format!("cluster_size={cluster}");
            let (ours, theirs) = (ours.to_str().unwrap(), theirs.to_str().unwrap());
            qemu_img(&[
                "create",
                "-q",
                "-f",
                "qcow2",
                "-o",
                &option,
                "-F",
                "qcow2",
                "-u",
                "-b",
                "base.qcow2",
                theirs,
                &size.to_string(),
            ]);
            qemu_img(&["check", ours]);
            let info = |path: &str| {
                let json: serde_json::Value =
                    serde_json::from_str(&qemu_img(&["info", "--output=json", path]).unwrap()).unwrap();
                let keep =
                    ["virtual-size", "cluster-size", "backing-filename", "backing-filename-format", "format"];
                keep.iter().map(|k| json[*k].clone()).collect::<Vec<_>>()
            };
            assert_eq!(info(ours), info(theirs), "size {size}, cluster {cluster}");
            // The same structures at the same places: only QEMU's feature name table differs.
            let (a, b) = (std::fs::read(ours).unwrap(), std::fs::read(theirs).unwrap());
            assert_eq!(a.len(), b.len());
            assert_eq!((&a[..8], &a[16..104]), (&b[..8], &b[16..104]), "header, but the backing file offset");
            assert_eq!(a[cluster as usize..], b[cluster as usize..], "refcounts and L1 table");
        }
    }

    #[test]
    fn an_image_without_backing_file_reads_as_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let Some(_) = qemu_img(&["--version"]) else { return };
        let path = dir.path().join("blank.qcow2");
        create(&path, 64 << 20, 65536, None).unwrap();
        let path = path.to_str().unwrap();
        qemu_img(&["check", path]);
        let map = qemu_img(&["map", "--output=json", path]).unwrap();
        assert!(map.contains("\"zero\": true") && !map.contains("\"data\": true"), "{map}");
    }

    #[test]
    fn what_one_refcount_block_cannot_count_is_left_to_qemu_img() {
        assert!(fits(16 << 30, 65536, Some("b")));
        assert!(!fits(1 << 40, 512, Some("b")), "tiny clusters, huge disk");
        assert!(!fits(1000, 65536, None), "not whole sectors");
        assert!(!fits(1 << 20, 3000, None), "not a power of two");
        assert!(!fits(1 << 20, 512, Some(&"x".repeat(600))), "the name does not fit the header cluster");
    }
}
