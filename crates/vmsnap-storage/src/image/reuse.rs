//! Maps of snapshot chains kept for later images of the same store.
//!
//! Every file of a snapshot's chain is sealed: nothing writes it again. So the
//! map of a chain, once made, holds for as long as its files exist, and a later
//! snapshot of the volume, whose chain is its new layers over that very chain,
//! needs `qemu-img` only for the new layers: their map laid over the kept one
//! is the whole map. An incremental backup then maps what changed, not the
//! disk. A chain is known by its files' paths and identities (device, inode,
//! size, modification and change times), so a file replaced or touched behind
//! the engine's back is a miss, never a stale map.

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::build::Mapped;
use super::{ExtentSource, MappedExtent};

/// How many chains' maps a store keeps, and how many extents in all: a chain
/// of a fragmented 16 GiB disk maps to some 10^4 extents of 40 bytes.
const MAX_CHAINS: usize = 32;
const MAX_EXTENTS: usize = 1 << 20;

/// One file of a chain, as it is on disk: any write to it, or a new file in
/// its place, changes this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileKey {
    path: PathBuf,
    device: u64,
    inode: u64,
    size: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

impl FileKey {
    /// The key of `file`, open at `path`.
    pub(crate) fn of(path: &Path, file: &File) -> std::io::Result<Self> {
        let meta = file.metadata()?;
        Ok(Self {
            path: path.to_path_buf(),
            device: meta.dev(),
            inode: meta.ino(),
            size: meta.size(),
            modified: (meta.mtime(), meta.mtime_nsec()),
            changed: (meta.ctime(), meta.ctime_nsec()),
        })
    }
}

/// The maps of the chains a store's images mapped last, most recent last.
#[derive(Debug, Default)]
pub(crate) struct ChainMaps {
    kept: Mutex<VecDeque<(Vec<FileKey>, Arc<Mapped>)>>,
}

impl ChainMaps {
    /// The kept map of the longest tail of `chain` (top first): how many
    /// files lie above that tail (0: the whole chain was mapped before), and
    /// its map, whose depths count from the tail's top file.
    pub(super) fn tail(&self, chain: &[FileKey]) -> Option<(usize, Arc<Mapped>)> {
        let kept = self.kept.lock().expect("not poisoned");
        (0..chain.len()).find_map(|above| {
            let tail = &chain[above..];
            kept.iter().rev().find(|(files, _)| files == tail).map(|(_, mapped)| (above, mapped.clone()))
        })
    }

    /// Keeps the map of `chain`, forgetting the oldest maps beyond the bounds.
    pub(super) fn keep(&self, chain: Vec<FileKey>, mapped: Arc<Mapped>) {
        let mut kept = self.kept.lock().expect("not poisoned");
        kept.retain(|(files, _)| *files != chain);
        kept.push_back((chain, mapped));
        let extents = |kept: &VecDeque<(Vec<FileKey>, Arc<Mapped>)>| {
            kept.iter().map(|(_, mapped)| mapped.data.len() + mapped.zeros.len()).sum::<usize>()
        };
        while kept.len() > MAX_CHAINS || (kept.len() > 1 && extents(&kept) > MAX_EXTENTS) {
            kept.pop_front();
        }
    }
}

impl Mapped {
    /// This map, of the top `files` files of a chain alone, laid over
    /// `below`, the map of the rest of the chain: where none of the top files
    /// allocates a byte, the files below answer for it, as `qemu-img map` of
    /// the whole chain would say. `end` is the disk's size.
    pub(super) fn over(self, below: &Mapped, files: usize, end: u64) -> Mapped {
        let mut covered: Vec<(u64, u64)> =
            self.data.iter().chain(&self.zeros).map(|extent| (extent.offset, extent.end())).collect();
        covered.sort_unstable();
        let (mut data, mut zeros) = (self.data, self.zeros);
        for extent in below.data.iter().chain(&below.zeros) {
            for (from, to) in uncovered(extent.offset, extent.end().min(end), &covered) {
                let source = match extent.source {
                    ExtentSource::Data { depth, host_offset } => ExtentSource::Data {
                        depth: depth + files,
                        host_offset: host_offset + (from - extent.offset),
                    },
                    ExtentSource::Zero { depth } => ExtentSource::Zero { depth: depth + files },
                };
                let piece = MappedExtent { offset: from, length: to - from, source };
                match source {
                    ExtentSource::Data { .. } => data.push(piece),
                    ExtentSource::Zero { .. } => zeros.push(piece),
                }
            }
        }
        data.sort_unstable_by_key(|extent| extent.offset);
        zeros.sort_unstable_by_key(|extent| extent.offset);
        Mapped { data, zeros, end }
    }
}

/// The parts of `[from, to)` outside the sorted, disjoint ranges `covered`.
fn uncovered(from: u64, to: u64, covered: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut pieces = Vec::new();
    let mut position = from;
    let first = covered.partition_point(|&(_, end)| end <= from);
    for &(start, end) in covered[first..].iter().take_while(|&&(start, _)| start < to) {
        if start > position {
            pieces.push((position, start));
        }
        position = position.max(end);
    }
    if position < to {
        pieces.push((position, to));
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(offset: u64, length: u64, depth: usize, host_offset: u64) -> MappedExtent {
        MappedExtent { offset, length, source: ExtentSource::Data { depth, host_offset } }
    }

    fn zero(offset: u64, length: u64, depth: usize) -> MappedExtent {
        MappedExtent { offset, length, source: ExtentSource::Zero { depth } }
    }

    #[test]
    fn the_top_files_hide_what_they_allocate_and_the_rest_shows_through_shifted_in_depth() {
        // Below (two files): data 0..300 of file 0 at host 1000, zeros 300..400 of file 1,
        // data 500..800 of file 1 at host 0.
        let below = Mapped {
            data: vec![data(0, 300, 0, 1000), data(500, 300, 1, 0)],
            zeros: vec![zero(300, 100, 1)],
            end: 800,
        };
        // On top (one file, the disk grown to 1000): data 100..200, zeros 350..600, data 900..1000.
        let top = Mapped {
            data: vec![data(100, 100, 0, 7), data(900, 100, 0, 9)],
            zeros: vec![zero(350, 250, 0)],
            end: 1000,
        };
        let whole = top.over(&below, 1, 1000);
        assert_eq!(
            whole.data,
            vec![
                data(0, 100, 1, 1000),
                data(100, 100, 0, 7),
                data(200, 100, 1, 1200),
                data(600, 200, 2, 100),
                data(900, 100, 0, 9)
            ]
        );
        assert_eq!(whole.zeros, vec![zero(300, 50, 2), zero(350, 250, 0)]);
        assert_eq!(whole.end, 1000);
    }

    #[test]
    fn uncovered_parts_of_a_range() {
        let covered = [(10, 20), (30, 40), (50, 60)];
        assert_eq!(uncovered(0, 70, &covered), vec![(0, 10), (20, 30), (40, 50), (60, 70)]);
        assert_eq!(uncovered(15, 35, &covered), vec![(20, 30)]);
        assert_eq!(uncovered(30, 40, &covered), vec![]);
        assert_eq!(uncovered(40, 50, &covered), vec![(40, 50)]);
        assert_eq!(uncovered(0, 5, &[]), vec![(0, 5)]);
    }

    fn key(name: &str) -> FileKey {
        FileKey { path: name.into(), device: 1, inode: 2, size: 3, modified: (4, 5), changed: (6, 7) }
    }

    fn map(extents: usize) -> Arc<Mapped> {
        Arc::new(Mapped { data: vec![data(0, 1, 0, 0); extents], zeros: Vec::new(), end: 1 })
    }

    #[test]
    fn the_longest_kept_tail_of_a_chain_is_found_and_the_oldest_maps_go_first() {
        let maps = ChainMaps::default();
        let (a, b, c) = (key("a"), key("b"), key("c"));
        assert!(maps.tail(std::slice::from_ref(&a)).is_none());
        maps.keep(vec![a.clone()], map(1));
        maps.keep(vec![b.clone(), a.clone()], map(2));
        let (above, mapped) = maps.tail(&[c.clone(), b.clone(), a.clone()]).unwrap();
        assert_eq!((above, mapped.data.len()), (1, 2));
        assert_eq!(maps.tail(&[b.clone(), a.clone()]).unwrap().0, 0);
        // A file touched since (another change time) is another file.
        let touched = FileKey { changed: (6, 8), ..b.clone() };
        assert_eq!(maps.tail(&[c.clone(), touched, a.clone()]).unwrap().0, 2);
        assert!(maps.tail(std::slice::from_ref(&c)).is_none());

        for index in 0..MAX_CHAINS {
            maps.keep(vec![key(&index.to_string())], map(1));
        }
        assert!(maps.tail(std::slice::from_ref(&a)).is_none(), "the oldest map outlived the bound on chains");
        maps.keep(vec![c.clone()], map(MAX_EXTENTS));
        assert_eq!(maps.kept.lock().unwrap().len(), 1, "the bound on extents keeps only the newest");
        assert!(maps.tail(&[c]).is_some());
    }
}
