//! Files made to be imported whole: a writer fills one by guest offset, then hands it over to
//! [`crate::VolumeDriver::import_volume`] ([`crate::Import::handed_over`]), which takes the file
//! itself instead of copying it when it is in the driver's own format. A restore from a backup
//! writes each disk once this way, instead of once into a staging file and again on import.
//!
//! - raw (the copy driver): a sparse file of the disk's size; guest offset = file offset.
//! - qcow2 (the layered driver): `qemu-img create -o preallocation=metadata` with the driver's
//!   cluster size, so every cluster is allocated in guest order over a sparse file, and
//!   `qemu-img map` says where each run of the disk lives in the file. Plain writes at those
//!   offsets fill it; what is never written stays a hole and reads as zeros (`qemu-img map`
//!   reports it `zero`, so a backup of the imported volume skips it).
//!
//! Writes go around the page cache (`O_DIRECT`) when the file system allows it and the write is
//! aligned: a restore writes many GiB once and reads none of it back, so copying it into the page
//! cache would cost CPU and evict what the running VMs read. Other writes are buffered.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::direct_io;
use crate::error::StorageError;
use crate::qemu_img::QemuImg;

/// Where a run of the disk lives in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Placement {
    /// First guest byte.
    start: u64,
    /// Length in bytes.
    length: u64,
    /// The file offset of `start`.
    file_offset: u64,
}

/// A new file in a driver's own format, written by guest offset, then imported with
/// [`crate::Import::handed_over`]. Readable and writable by this user only.
#[derive(Debug)]
pub struct ImportImage {
    path: PathBuf,
    file: File,
    size: u64,
    /// Sorted by `start`, covering `0..size` without gaps.
    placements: Vec<Placement>,
    /// The same file opened with `O_DIRECT`, unless its file system refuses that.
    direct: Option<File>,
}

impl ImportImage {
    /// A sparse raw file of `size` bytes at `path` (replacing any file there).
    pub(crate) fn raw(path: &Path, size: u64) -> Result<Self, StorageError> {
        let file = create_private(path)?;
        file.set_len(size).map_err(StorageError::io("size", path))?;
        let placements = vec![Placement { start: 0, length: size, file_offset: 0 }];
        Ok(Self { path: path.to_owned(), file, size, placements, direct: direct_io::open_for_writes(path) })
    }

    /// A qcow2 file of `size` bytes at `path` with every cluster mapped (see the module's comment).
    pub(crate) async fn qcow2(
        qemu_img: &QemuImg,
        path: &Path,
        size: u64,
        cluster_size: u64,
    ) -> Result<Self, StorageError> {
        // Made private before qemu-img writes anything into it.
        drop(create_private(path)?);
        qemu_img.create_qcow2_mapped(path, size, cluster_size).await?;
        let mut placements = Vec::new();
        for entry in qemu_img.map(path, "qcow2").await? {
            let Some(file_offset) = entry.offset.filter(|_| entry.data && entry.depth == 0) else {
                return Err(StorageError::UnsupportedImage {
                    path: path.to_owned(),
                    reason: format!(
                        "qemu-img left {} bytes at guest offset {} unmapped in a preallocated image",
                        entry.length, entry.start
                    ),
                });
            };
            placements.push(Placement { start: entry.start, length: entry.length, file_offset });
        }
        let covered = placements.iter().map(|p| p.length).sum::<u64>();
        if covered < size {
            return Err(StorageError::UnsupportedImage {
                path: path.to_owned(),
                reason: format!("qemu-img mapped {covered} of its {size} bytes"),
            });
        }
        let file =
            OpenOptions::new().read(true).write(true).open(path).map_err(StorageError::io("open", path))?;
        Ok(Self { path: path.to_owned(), file, size, placements, direct: direct_io::open_for_writes(path) })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The disk's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Writes `data` at guest offset `offset`.
    pub fn write_at(&self, data: &[u8], offset: u64) -> std::io::Result<()> {
        let end = offset.checked_add(data.len() as u64).filter(|end| *end <= self.size).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{} bytes at {offset} are beyond the disk's {} bytes", data.len(), self.size),
            )
        })?;
        let mut at = offset;
        let mut index = self.placements.partition_point(|p| p.start + p.length <= at);
        while at < end {
            let placement = self.placements[index];
            let n = (placement.start + placement.length).min(end) - at;
            let from = (at - offset) as usize;
            self.write_file_at(&data[from..from + n as usize], placement.file_offset + at - placement.start)?;
            at += n;
            index += 1;
        }
        Ok(())
    }

    /// Writes `data` at file offset `at`: around the page cache when it may (see
    /// [`crate::direct_io`]), else buffered.
    fn write_file_at(&self, data: &[u8], at: u64) -> std::io::Result<()> {
        if let Some(direct) = &self.direct
            && direct_io::write_at(direct, data, at)?
        {
            return Ok(());
        }
        self.file.write_all_at(data, at)
    }

    /// Makes what was written durable.
    pub fn sync(&self) -> std::io::Result<()> {
        self.file.sync_all()
    }

    /// Empties the file, so that nothing can import what a failed writer left: an empty file is
    /// neither a disk of the right size nor a valid qcow2 image.
    pub fn discard(&self) -> std::io::Result<()> {
        self.file.set_len(0)
    }
}

fn create_private(path: &Path) -> Result<File, StorageError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(StorageError::io("create", path))?;
    // `mode` applies only to a new file.
    file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(StorageError::io("chmod", path))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(placements: &[(u64, u64, u64)], file: File) -> ImportImage {
        let placements = placements
            .iter()
            .map(|&(start, length, file_offset)| Placement { start, length, file_offset })
            .collect();
        ImportImage { path: PathBuf::new(), file, size: 300, placements, direct: None }
    }

    #[test]
    fn a_write_across_placements_lands_at_each_ones_file_offset() {
        let dir = tempfile::tempdir().unwrap();
        let file = create_private(&dir.path().join("f")).unwrap();
        let target = image(&[(0, 100, 1000), (100, 200, 500)], file.try_clone().unwrap());
        target.write_at(&[7; 20], 90).unwrap();
        let mut read = [0u8; 10];
        file.read_exact_at(&mut read, 1090).unwrap();
        assert_eq!(read, [7; 10]);
        file.read_exact_at(&mut read, 500).unwrap();
        assert_eq!(read, [7; 10]);
        assert_eq!(file.metadata().unwrap().len(), 1100, "nothing written elsewhere");
        let error = target.write_at(&[1; 2], 299).unwrap_err();
        assert!(error.to_string().contains("beyond the disk's 300 bytes"), "{error}");
        let mode = std::fs::metadata(dir.path().join("f")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn aligned_writes_go_around_the_page_cache_from_any_memory_and_others_are_buffered_alike() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raw");
        let size = 1 << 20;
        let image = ImportImage::raw(&path, size).unwrap();
        assert!(image.direct.is_some(), "the test directory's file system takes O_DIRECT writes");
        let mut expected = vec![0u8; size as usize];
        // Aligned (around the page cache), then unaligned in offset and in length (buffered),
        // then aligned again over bytes written buffered.
        for (offset, len, byte) in [(65536, 131072, 1u8), (4097, 5000, 2), (8192, 4095, 3), (0, 16384, 4)] {
            let data = vec![byte; len];
            image.write_at(&data, offset).unwrap();
            expected[offset as usize..offset as usize + len].copy_from_slice(&data);
        }
        // From memory that is aligned itself (the path that writes it without the bounce buffer).
        let mut memory = Vec::new();
        let aligned = direct_io::aligned_slice(&mut memory, 8192);
        aligned.fill(5);
        image.write_at(aligned, 262144).unwrap();
        expected[262144..262144 + 8192].fill(5);
        image.sync().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), expected);
    }
}
