//! Opening a [`SnapshotImage`] (the chain's files), and mapping the chain, or
//! its top files alone, with `qemu-img map`, turned into sorted data and zero
//! extents; the top files alone over the kept map of the chain below them
//! when there is one (see `reuse.rs`).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};

use super::reuse::{ChainMaps, FileKey};
use super::{ChainFile, ExtentSource, Lineage, MappedExtent, SnapshotImage, WholeMap};
use crate::direct_io;
use crate::driver::{SnapshotInfo, VolumeFormat};
use crate::error::StorageError;
use crate::fsutil;
use crate::qemu_img::{MapEntry, QemuImg};

impl SnapshotImage {
    /// Opens every file of `chain` (top first: the order `qemu-img map`
    /// numbers depths in). The caller holds the snapshot's lock, so no file
    /// can be removed before it is open; the map, later, reads the open files.
    /// `maps` are the store's kept maps of chains, which this image uses and adds to.
    pub(crate) async fn open(
        qemu_img: &QemuImg,
        maps: &Arc<ChainMaps>,
        snapshot: SnapshotInfo,
        chain: Vec<(PathBuf, VolumeFormat)>,
        lineage: Lineage,
    ) -> Result<Self, StorageError> {
        assert!(!chain.is_empty(), "a snapshot has at least one file");
        let (chain, keys) = fsutil::blocking(move || {
            chain
                .into_iter()
                .map(|(path, format)| {
                    let opened = File::open(&path).and_then(|file| Ok((FileKey::of(&path, &file)?, file)));
                    match opened {
                        Ok((key, file)) => {
                            let direct = direct_io::reopen_for_reads(&file);
                            Ok((ChainFile { path, format, file, direct }, key))
                        }
                        Err(source) => Err(StorageError::Io { action: "open", path, source }),
                    }
                })
                .collect::<Result<(Vec<_>, Vec<_>), _>>()
        })
        .await?;
        Ok(Self {
            size_bytes: snapshot.size_bytes,
            snapshot,
            chain,
            keys,
            maps: maps.clone(),
            qemu_img: qemu_img.clone(),
            mapped: tokio::sync::OnceCell::new(),
            map_begun: AtomicBool::new(false),
            lineage,
        })
    }

    /// The whole chain's map, made on the first call; concurrent callers wait
    /// for that one map, and a caller that gives up (drops the future) stops
    /// its `qemu-img`, leaving the map to the next call.
    pub(super) async fn mapped(&self) -> Result<&Mapped, StorageError> {
        self.map_begun.store(true, Ordering::Release);
        Ok(&self.mapped.get_or_try_init(|| self.map_whole()).await?.mapped)
    }

    /// Whether the store keeps the map of some tail of this chain, so that the
    /// whole map needs `qemu-img` for the files above that tail only.
    pub(super) fn has_kept_tail(&self) -> bool {
        self.maps.tail(&self.keys).is_some()
    }

    /// Maps the whole chain: the files above the longest tail whose map the
    /// store keeps, laid over that map; or every file. The map is kept for
    /// later images whose chains end in this one.
    async fn map_whole(&self) -> Result<WholeMap, StorageError> {
        let (mapped, files_mapped) = match self.maps.tail(&self.keys) {
            Some((0, kept)) => (kept, 0),
            Some((above, kept)) => {
                (Arc::new(self.map_top(above).await?.over(&kept, above, self.size_bytes)), above)
            }
            None => (Arc::new(self.map_top(self.chain.len()).await?), self.chain.len()),
        };
        self.maps.keep(self.keys.clone(), mapped.clone());
        Ok(WholeMap { mapped, files_mapped })
    }

    /// The map of the top `files` files of the chain alone: what the files
    /// below them hold reads as unallocated. Every file is given to `qemu-img`
    /// by its open descriptor.
    pub(super) async fn map_top(&self, files: usize) -> Result<Mapped, StorageError> {
        let entries = self.qemu_img.map_spec(&chain_spec(&self.chain[..files])).await?;
        let mapped = classify(&self.snapshot, &entries, files)?;
        if mapped.end != self.size_bytes {
            return Err(unmappable(
                &self.snapshot,
                mapped.end.min(self.size_bytes),
                mapped.end.abs_diff(self.size_bytes),
                format!("mapped up to byte {}, but the snapshot has {} bytes", mapped.end, self.size_bytes),
            ));
        }
        Ok(mapped)
    }
}

/// The `json:` block graph of `files` (top first), each opened through this
/// process's descriptor (`/proc/<pid>/fd/<n>`: the file even if it has been
/// unlinked since), each qcow2 file backed by the next, the last by nothing.
fn chain_spec(files: &[ChainFile]) -> Value {
    let pid = std::process::id();
    let mut below = Value::Null;
    for file in files.iter().rev() {
        let mut node = json!({
            "driver": file.format.as_str(),
            "file": {"driver": "file", "filename": format!("/proc/{pid}/fd/{}", file.file.as_raw_fd())},
        });
        if file.format == VolumeFormat::Qcow2 {
            node["backing"] = below;
        }
        below = node;
    }
    below
}

/// A map sorted into data and zero extents, and where it ends.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Mapped {
    /// The extents that hold data, sorted by offset, disjoint.
    pub data: Vec<MappedExtent>,
    /// The zero clusters some file records, sorted, disjoint.
    pub zeros: Vec<MappedExtent>,
    /// One past the last byte mapped: the disk's size.
    pub end: u64,
}

impl Mapped {
    /// Whether no file allocates anything: no data and no zero clusters.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty() && self.zeros.is_empty()
    }
}

/// Sorts `qemu-img map` entries into data and zero extents. Entries no file
/// allocates (`present: false`) read as zeros and are not changes, so they
/// are dropped. The map must cover the disk from 0 without gaps, name only
/// files of the chain, and give every data extent a host offset (compressed
/// clusters have none).
fn classify(snapshot: &SnapshotInfo, entries: &[MapEntry], chain_len: usize) -> Result<Mapped, StorageError> {
    let mut mapped = Mapped { data: Vec::new(), zeros: Vec::new(), end: 0 };
    for entry in entries {
        let fail = |reason: String| Err(unmappable(snapshot, entry.start, entry.length, reason));
        if entry.start != mapped.end {
            return fail(format!(
                "mapped from byte {}, but the previous entry ended at {}",
                entry.start, mapped.end
            ));
        }
        mapped.end = entry.start + entry.length;
        if !entry.present || entry.length == 0 {
            continue;
        }
        if entry.depth >= chain_len {
            return fail(format!("in chain file {}, but the chain has {chain_len} files", entry.depth));
        }
        let depth = entry.depth;
        // A preallocated zero cluster has data and an offset, but reads as zeros.
        let source = match (entry.zero, entry.data, entry.offset) {
            (true, _, _) => ExtentSource::Zero { depth },
            (false, true, Some(host_offset)) => ExtentSource::Data { depth, host_offset },
            (false, true, None) => return fail("data with no host offset (compressed clusters)".into()),
            (false, false, _) => return fail("allocated but neither data nor zeros".into()),
        };
        let extent = MappedExtent { offset: entry.start, length: entry.length, source };
        match source {
            ExtentSource::Data { .. } => mapped.data.push(extent),
            ExtentSource::Zero { .. } => mapped.zeros.push(extent),
        }
    }
    Ok(mapped)
}

fn unmappable(snapshot: &SnapshotInfo, start: u64, length: u64, reason: String) -> StorageError {
    StorageError::UnmappableExtent { snapshot: snapshot.id.clone(), start, length, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> SnapshotInfo {
        SnapshotInfo {
            id: "snap".parse().unwrap(),
            source_volume: "disk".parse().unwrap(),
            size_bytes: 0,
            created_at: chrono::Utc::now(),
        }
    }

    fn entries(json: &str) -> Vec<MapEntry> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_qemu_7_2_map_of_a_three_file_chain_is_sorted_into_data_and_zeros() {
        // `qemu-img map --output=json` of a qcow2 over two backing files, grown
        // from 8 to 12 MiB, as QEMU 7.2 prints it.
        let map = entries(
            r#"[{ "start": 0, "length": 65536, "depth": 2, "present": true, "zero": false, "data": true, "offset": 327680},
            { "start": 65536, "length": 65536, "depth": 1, "present": true, "zero": false, "data": true, "offset": 327680},
            { "start": 131072, "length": 917504, "depth": 2, "present": false, "zero": true, "data": false},
            { "start": 1048576, "length": 65536, "depth": 1, "present": true, "zero": true, "data": false},
            { "start": 1114112, "length": 7274496, "depth": 2, "present": false, "zero": true, "data": false},
            { "start": 8388608, "length": 4194304, "depth": 0, "present": false, "zero": true, "data": false}]"#,
        );
        let mapped = classify(&snapshot(), &map, 3).unwrap();
        assert_eq!(mapped.end, 12 << 20);
        let data = |offset, depth, host_offset| MappedExtent {
            offset,
            length: 65536,
            source: ExtentSource::Data { depth, host_offset },
        };
        assert_eq!(mapped.data, vec![data(0, 2, 327680), data(65536, 1, 327680)]);
        let zero = MappedExtent { offset: 1 << 20, length: 65536, source: ExtentSource::Zero { depth: 1 } };
        assert_eq!(mapped.zeros, vec![zero]);
    }

    #[test]
    fn compressed_clusters_gaps_and_depths_outside_the_chain_are_refused_with_the_extent() {
        let cases = [
            (
                r#"[{"start": 0, "length": 512, "depth": 0, "present": true, "zero": false, "data": true}]"#,
                "virtual bytes 0..512 are data with no host offset (compressed clusters)",
            ),
            (
                r#"[{"start": 512, "length": 512, "depth": 0, "present": false, "zero": true, "data": false}]"#,
                "virtual bytes 512..1024 are mapped from byte 512, but the previous entry ended at 0",
            ),
            (
                r#"[{"start": 0, "length": 512, "depth": 1, "present": true, "zero": false, "data": true, "offset": 0}]"#,
                "virtual bytes 0..512 are in chain file 1, but the chain has 1 files",
            ),
        ];
        for (json, message) in cases {
            let error = classify(&snapshot(), &entries(json), 1).unwrap_err();
            assert!(matches!(error, StorageError::UnmappableExtent { .. }), "{error:?}");
            assert!(error.to_string().contains(message), "{error}");
        }
    }
}
