//! The plan of a disk's backup: for each chunk, whether it is a hole, the previous backup's chunk
//! taken unread, or bytes to read.

use std::collections::HashSet;

use super::{DiskBackup, Extent};
use crate::chunk_list::{CHUNK_LIST_LEN, ChunkListId};
use crate::error::{Error, Result};
use crate::format::{ChunkRef, DiskManifest, chunk_range};

/// What to do with one chunk.
pub(super) enum Plan {
    /// Zeros: not stored.
    Hole,
    /// Unchanged since the previous backup: its chunk, unread.
    Reuse(ChunkRef),
    /// Read these absolute ranges (the rest of the chunk is zeros).
    Read(Vec<(u64, u64)>),
}

/// The plan of each chunk of `disk`. A chunk of the previous backup is reused only when a
/// backup committed before the session began names its list (`known_lists`): the previous
/// manifest's chunks are those of its lists, as the repository returned it.
pub(super) fn plan(
    disk: &DiskBackup<'_>,
    chunk_size: u32,
    known_lists: &HashSet<ChunkListId>,
) -> Result<Vec<Plan>> {
    let extents = disk.extents.map(|e| normalize(e, disk.size)).transpose()?;
    if let Some(previous) = disk.previous
        && previous.chunks.len() != DiskManifest::chunk_count(previous.size, previous.chunk_size)
    {
        return Err(Error::InvalidInput {
            what: "previous disk manifest",
            reason: format!("{} chunks for a size of {}", previous.chunks.len(), previous.size),
        });
    }
    let known_list_indexes: Vec<bool> = disk
        .previous
        .map(|p| p.chunk_lists.iter().map(|list| known_lists.contains(list)).collect())
        .unwrap_or_default();
    let list_known = |index: usize| known_list_indexes.get(index / CHUNK_LIST_LEN) == Some(&true);
    let count = DiskManifest::chunk_count(disk.size, chunk_size);
    let mut plans = Vec::with_capacity(count);
    let mut next_extent = 0;
    for index in 0..count {
        let (offset, len) = chunk_range(disk.size, chunk_size, index);
        let end = offset + len;
        let covered: Vec<(u64, u64)> = match &extents {
            None => vec![(offset, len)],
            Some(list) => {
                while next_extent < list.len() && list[next_extent].end() <= offset {
                    next_extent += 1;
                }
                list[next_extent..]
                    .iter()
                    .take_while(|e| e.offset < end)
                    .map(|e| {
                        let from = e.offset.max(offset);
                        (from, e.end().min(end) - from)
                    })
                    .collect()
            }
        };
        // A chunk of the previous backup stands for this one only if it covers the same bytes.
        let reusable = disk.previous.and_then(|p| {
            (p.chunk_size == chunk_size && index < p.chunks.len() && p.chunk_range(index) == (offset, len))
                .then(|| &p.chunks[index])
        });
        plans.push(match (disk.previous, reusable) {
            (Some(_), Some(entry)) if covered.is_empty() => match entry {
                None => Plan::Hole,
                // Only chunks of backups that were committed when the session began are safe to
                // reference (a deleted base's chunks may be pruned): others are read again.
                Some(chunk) if list_known(index) => Plan::Reuse(chunk.clone()),
                Some(_) => Plan::Read(vec![(offset, len)]),
            },
            // Changed, or not in the previous backup (a grown disk): read it whole, since the
            // part the extents miss is the previous content, not zeros.
            (Some(_), _) => Plan::Read(vec![(offset, len)]),
            (None, _) if covered.is_empty() => Plan::Hole,
            (None, _) => Plan::Read(covered),
        });
    }
    Ok(plans)
}

/// Sorts and merges extents, refusing any beyond the disk.
fn normalize(extents: &[Extent], size: u64) -> Result<Vec<Extent>> {
    let mut sorted: Vec<Extent> = extents.iter().copied().filter(|e| e.length > 0).collect();
    sorted.sort();
    let mut merged: Vec<Extent> = Vec::with_capacity(sorted.len());
    for extent in sorted {
        if extent.offset.checked_add(extent.length).is_none_or(|end| end > size) {
            return Err(Error::InvalidInput {
                what: "extent",
                reason: format!("{}+{} is beyond the disk's {} bytes", extent.offset, extent.length, size),
            });
        }
        match merged.last_mut() {
            Some(last) if extent.offset <= last.end() => {
                last.length = last.end().max(extent.end()) - last.offset
            }
            _ => merged.push(extent),
        }
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extents_are_merged_and_checked_against_the_size() {
        let merged = normalize(&[Extent::new(10, 5), Extent::new(0, 12), Extent::new(20, 0)], 100).unwrap();
        assert_eq!(merged, vec![Extent::new(0, 15)]);
        assert!(normalize(&[Extent::new(90, 11)], 100).is_err());
        assert!(normalize(&[Extent::new(u64::MAX, 2)], 100).is_err());
    }
}
