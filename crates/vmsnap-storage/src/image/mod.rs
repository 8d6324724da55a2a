//! [`SnapshotImage`]: an opened, immutable view of a snapshot's content, for
//! readers outside QEMU (backups), without a process per read.
//!
//! Opening a snapshot opens every file of its chain at once. The first question
//! that needs it asks `qemu-img map` once where each extent of the virtual
//! disk lives (which file, at which host offset); reads are then `pread`s on
//! the open files, found by binary search. Because the files are held open, a
//! later `delete_snapshot` or compaction that removes them cannot take the
//! data away from a reader: an unlinked file stays readable through an open
//! descriptor (its space is freed when the image is dropped), `qemu-img` is
//! given the files as `/proc/<pid>/fd/<n>` (never their paths, which may be
//! gone by then), and the engine never writes a sealed layer or a snapshot's
//! file.
//!
//! Mapping the whole chain costs time in proportion to the data it holds (its
//! qcow2 tables, read from disk when cold). A question about what changed
//! since a base maps only the files above the base, which hold just the
//! changes, and needs the whole map only when there are some. And the map of
//! a snapshot's chain is kept by the store: a later snapshot's chain is new
//! layers over it, so its whole map needs `qemu-img` for the new layers only.

mod build;
mod changes;
mod reuse;

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use self::build::Mapped;
pub(crate) use self::changes::{BaseRecord, Lineage};
pub use self::changes::{ChangePoint, ChangedExtents, IncrementalImpossible};
pub(crate) use self::reuse::ChainMaps;
use self::reuse::FileKey;
use crate::direct_io;
use crate::driver::{SnapshotInfo, VolumeFormat};
use crate::error::StorageError;
use crate::qemu_img::QemuImg;

/// One file of a snapshot's chain, held open.
#[derive(Debug)]
pub struct ChainFile {
    path: PathBuf,
    format: VolumeFormat,
    file: File,
    /// The same file opened for reads around the page cache, unless its file system refuses them.
    direct: Option<File>,
}

impl ChainFile {
    /// The path the file had when the image was opened (it may since have been removed).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its format: how its host offsets were computed.
    pub fn format(&self) -> VolumeFormat {
        self.format
    }

    /// Fills `buf` from `at`: around the page cache when it may ([`crate::direct_io`]: a backup
    /// reads each byte once, and through the page cache the kernel's copy took more CPU than
    /// hashing the bytes), else buffered.
    fn read_at(&self, buf: &mut [u8], at: u64) -> io::Result<()> {
        if let Some(direct) = &self.direct
            && direct_io::read_at(direct, buf, at)?
        {
            return Ok(());
        }
        self.file.read_exact_at(buf, at)
    }
}

/// Where the bytes of a [`MappedExtent`] come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExtentSource {
    /// The bytes at `host_offset` of file `depth` of the chain (0: the snapshot's top file).
    Data {
        /// The index of the file in [`SnapshotImage::chain`].
        depth: usize,
        /// The offset of the extent's first byte in that file.
        host_offset: u64,
    },
    /// Zeros, recorded by file `depth` (a zero cluster: written zeros or a
    /// discard). Listed only among changes, where it hides older data.
    Zero {
        /// The index of the file in [`SnapshotImage::chain`].
        depth: usize,
    },
}

impl ExtentSource {
    /// The index of the file that answers for the extent.
    pub fn depth(&self) -> usize {
        match *self {
            Self::Data { depth, .. } | Self::Zero { depth } => depth,
        }
    }
}

/// A run of the virtual disk that one file of the chain answers for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MappedExtent {
    /// The first virtual byte.
    pub offset: u64,
    /// The length in bytes (positive).
    pub length: u64,
    /// Where its bytes come from.
    pub source: ExtentSource,
}

impl MappedExtent {
    /// One past the last virtual byte.
    pub fn end(&self) -> u64 {
        self.offset + self.length
    }
}

/// An opened, immutable view of one snapshot's content (see the module doc).
///
/// `Send + Sync`: reads take `&self` and may run from many threads at once.
#[derive(Debug)]
pub struct SnapshotImage {
    snapshot: SnapshotInfo,
    size_bytes: u64,
    chain: Vec<ChainFile>,
    /// What each file of `chain` was when opened: how kept maps are found.
    keys: Vec<FileKey>,
    /// The store's kept maps of chains.
    maps: Arc<ChainMaps>,
    qemu_img: QemuImg,
    /// The whole chain's map, made on first need.
    mapped: tokio::sync::OnceCell<WholeMap>,
    /// Whether a whole map was ever begun (it may be under way).
    map_begun: AtomicBool,
    lineage: Lineage,
}

/// The whole chain's map, and how it was made.
#[derive(Debug)]
struct WholeMap {
    mapped: Arc<Mapped>,
    /// How many files of the chain `qemu-img` mapped; the rest came from a kept map.
    files_mapped: usize,
}

// Backups read one image from many threads: keep it `Send + Sync`.
const _: () = {
    const fn send_and_sync<T: Send + Sync>() {}
    send_and_sync::<SnapshotImage>();
};

impl SnapshotImage {
    /// The snapshot this image shows, as it was when opened.
    pub fn snapshot(&self) -> &SnapshotInfo {
        &self.snapshot
    }

    /// The size of the virtual disk in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// The files of the chain, the snapshot's top file first; an
    /// [`ExtentSource`]'s `depth` indexes this.
    pub fn chain(&self) -> &[ChainFile] {
        &self.chain
    }

    /// The extents of the virtual disk that hold data, sorted by offset and
    /// disjoint, each [`ExtentSource::Data`]. Every byte outside them reads as
    /// zeros: unallocated ranges and zero clusters are not listed. (A raw
    /// file's data extents come from `SEEK_DATA`, so they may include zeros
    /// that were written out.) Maps the whole chain on the first call (once:
    /// concurrent callers wait for the same map).
    pub async fn allocated(&self) -> Result<&[MappedExtent], StorageError> {
        Ok(&self.mapped().await?.data)
    }

    /// Whether the whole chain is mapped: by [`SnapshotImage::allocated`], or
    /// by a `changed_since` that found changes. Reads need it.
    pub fn is_mapped(&self) -> bool {
        self.mapped.initialized()
    }

    /// How many files of the chain `qemu-img` read for the whole map: all of
    /// them, or only those above a tail of the chain whose map the store kept
    /// from an earlier image (0 when it kept this very chain's). `None` until
    /// the chain is mapped.
    pub fn files_mapped(&self) -> Option<usize> {
        self.mapped.get().map(|whole| whole.files_mapped)
    }

    /// Fills `buf` with the virtual disk's bytes at `offset`: data extents are
    /// read with `pread` from the open files, everything else is zeros. A
    /// range past the end of the disk is an `InvalidInput` error; a read
    /// before the chain is mapped ([`SnapshotImage::is_mapped`]) is an error
    /// too (reads are synchronous; the map is not).
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let Some(WholeMap { mapped, .. }) = self.mapped.get() else {
            return Err(io::Error::other(format!(
                "snapshot {} was read before its chain was mapped (ask for its allocated extents first)",
                self.snapshot.id
            )));
        };
        let end =
            offset.checked_add(buf.len() as u64).filter(|&end| end <= self.size_bytes).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "read of {} bytes at {offset} is past the end of snapshot {} ({} bytes)",
                        buf.len(),
                        self.snapshot.id,
                        self.size_bytes
                    ),
                )
            })?;
        let mut position = offset;
        let mut next = mapped.data.partition_point(|extent| extent.end() <= offset);
        while position < end {
            let slice = |from: u64, to: u64| (from - offset) as usize..(to - offset) as usize;
            let Some(extent) = mapped.data.get(next).filter(|extent| extent.offset < end) else {
                buf[slice(position, end)].fill(0);
                break;
            };
            if extent.offset > position {
                buf[slice(position, extent.offset)].fill(0);
                position = extent.offset;
            }
            let stop = extent.end().min(end);
            let target = &mut buf[slice(position, stop)];
            match extent.source {
                ExtentSource::Data { depth, host_offset } => {
                    let file = &self.chain[depth];
                    file.read_at(target, host_offset + (position - extent.offset)).map_err(|error| {
                        io::Error::new(error.kind(), format!("{}: {error}", file.path.display()))
                    })?;
                }
                ExtentSource::Zero { .. } => target.fill(0),
            }
            position = stop;
            next += 1;
        }
        Ok(())
    }
}
