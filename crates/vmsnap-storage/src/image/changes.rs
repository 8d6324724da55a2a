//! What changed between two snapshots of one lineage: the extents of the
//! layers above the base's sealed layer, or a typed reason why that cannot be
//! known.
//!
//! A snapshot seals its volume's active layer, and sealed layers are never
//! written or rebased again, so the layers of a chain above a snapshot's
//! sealed layer hold exactly the clusters written after that snapshot (data,
//! and zero clusters that hide older data). `qemu-img map` reports, for each
//! extent, the topmost file that allocates it: the extents whose depth is
//! above the base layer's depth are the changes. Those files are mapped alone
//! first (with no backing below them), which is quick whatever the disk's
//! size; only when they hold changes is the whole chain mapped, for the reads.
//!
//! Compaction rebases a volume's active layer onto the bottom of its chain,
//! copying in the layers between; a snapshot taken after that has a chain
//! without the earlier snapshots' layers, so it cannot be diffed against them
//! ([`IncrementalImpossible::BaseNotInChain`]): the caller reads it whole and
//! deduplicates. See `docs/storage-layers.md`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use super::build::Mapped;
use super::{MappedExtent, SnapshotImage};
use crate::error::StorageError;
use crate::id::{InvalidIdError, LayerId, SnapshotId, VolumeId};

/// A snapshot's point in its volume's history: its sealed top layer. Record
/// it with a backup ([`SnapshotImage::change_point`]) to diff a later snapshot
/// against it with [`SnapshotImage::changed_since_point`], even after the
/// snapshot itself was deleted (its layer lives on in the volume's chain until
/// compaction). Opaque: 32 lowercase hex digits, unique across stores.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChangePoint(LayerId);

impl fmt::Display for ChangePoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for ChangePoint {
    type Err = InvalidIdError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        LayerId::new(value).map(Self)
    }
}

/// The answer of [`SnapshotImage::changed_since`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangedExtents {
    /// Every byte outside `extents` reads as in the base (beyond the base's
    /// size, which is never larger: zeros). Sorted by offset, disjoint; data
    /// extents and [`ExtentSource::Zero`](super::ExtentSource::Zero) extents
    /// (zeros written over older data), both read with
    /// [`SnapshotImage::read_at`]. Empty when the base is this very snapshot.
    Since {
        /// The extents that changed.
        extents: Vec<MappedExtent>,
    },
    /// No incremental is possible: read the whole snapshot
    /// ([`SnapshotImage::allocated`]) and deduplicate.
    Impossible(IncrementalImpossible),
}

impl ChangedExtents {
    /// The changed extents, or `None` when an incremental is impossible.
    pub fn extents(&self) -> Option<&[MappedExtent]> {
        match self {
            Self::Since { extents } => Some(extents),
            Self::Impossible(_) => None,
        }
    }
}

/// Why the changes since a base cannot be known. `Display` is a sentence for
/// a condition's message, [`IncrementalImpossible::reason`] its reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IncrementalImpossible {
    /// The driver keeps every snapshot as a standalone file, with no layers to diff.
    #[error("the {driver} driver keeps every snapshot as a whole file, so it cannot tell what changed")]
    StandaloneSnapshots {
        /// The driver's name.
        driver: &'static str,
    },
    /// The base snapshot did not exist when the image was opened.
    #[error("base snapshot {base} does not exist")]
    BaseMissing {
        /// The base asked for.
        base: SnapshotId,
    },
    /// The base was taken after this snapshot, in its lineage.
    #[error("base snapshot {base} is newer than snapshot {snapshot}")]
    BaseIsNewer {
        /// The base asked for.
        base: SnapshotId,
        /// This image's snapshot.
        snapshot: SnapshotId,
    },
    /// The base is of another volume and shares no layer with this snapshot's
    /// point in time. (A volume restored from the base does share it: that is
    /// an incremental, not this.)
    #[error("base snapshot {base} is of volume {base_volume}, unrelated to volume {volume}")]
    DifferentVolume {
        /// The base asked for.
        base: SnapshotId,
        /// The volume the base was taken of.
        base_volume: VolumeId,
        /// The volume this snapshot was taken of.
        volume: VolumeId,
    },
    /// The base is of the same volume, but its sealed layer is not in this
    /// snapshot's chain: compaction merged the layers between them, or the
    /// volume was deleted and made again under the same id.
    #[error(
        "the layer of base snapshot {base} is not in the chain of snapshot {snapshot} (compacted since, or the volume was recreated)"
    )]
    BaseNotInChain {
        /// The base asked for.
        base: SnapshotId,
        /// This image's snapshot.
        snapshot: SnapshotId,
    },
    /// The change point's layer is not in this snapshot's chain: compacted
    /// away, of another volume, or of another store.
    #[error(
        "change point {point} is not in the chain of snapshot {snapshot} (compacted since, or of another volume)"
    )]
    PointNotInChain {
        /// The point asked for.
        point: ChangePoint,
        /// This image's snapshot.
        snapshot: SnapshotId,
    },
}

impl IncrementalImpossible {
    /// The variant's name, for a Kubernetes condition's `reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::StandaloneSnapshots { .. } => "StandaloneSnapshots",
            Self::BaseMissing { .. } => "BaseMissing",
            Self::BaseIsNewer { .. } => "BaseIsNewer",
            Self::DifferentVolume { .. } => "DifferentVolume",
            Self::BaseNotInChain { .. } => "BaseNotInChain",
            Self::PointNotInChain { .. } => "PointNotInChain",
        }
    }
}

/// What an image knows, from the manifest as it was when opened, about the
/// snapshots it could be diffed against.
#[derive(Debug, Clone)]
pub(crate) enum Lineage {
    /// Standalone files (the copy driver): nothing to diff.
    Standalone {
        /// The driver's name.
        driver: &'static str,
    },
    /// A layer chain.
    Layers {
        /// The layers of the image's chain, top first (as its files).
        chain: Vec<LayerId>,
        /// Every snapshot of the store.
        snapshots: BTreeMap<SnapshotId, BaseRecord>,
    },
}

/// A snapshot of the store, as a possible base.
#[derive(Debug, Clone)]
pub(crate) struct BaseRecord {
    /// Its sealed layer.
    pub layer: LayerId,
    /// The volume it was taken of.
    pub source_volume: VolumeId,
    /// Whether the image's top layer is in this snapshot's chain, below its own layer.
    pub is_newer: bool,
}

impl SnapshotImage {
    /// This snapshot's [`ChangePoint`], to record with a backup of it; `None`
    /// for a driver of standalone files.
    pub fn change_point(&self) -> Option<ChangePoint> {
        match &self.lineage {
            Lineage::Standalone { .. } => None,
            Lineage::Layers { chain, .. } => chain.first().cloned().map(ChangePoint),
        }
    }

    /// What changed since snapshot `base`, as the store was when this image was
    /// opened: the extents of the layers above `base`'s sealed layer when that
    /// layer is in this chain (same volume, or a volume restored from `base`,
    /// with no compaction in between), or why not. When there are changes,
    /// the whole chain is mapped too, so they can be read.
    pub async fn changed_since(&self, base: &SnapshotId) -> Result<ChangedExtents, StorageError> {
        let snapshot = &self.snapshot;
        let (chain, snapshots) = match &self.lineage {
            Lineage::Standalone { driver } => {
                return Ok(impossible(IncrementalImpossible::StandaloneSnapshots { driver }));
            }
            Lineage::Layers { chain, snapshots } => (chain, snapshots),
        };
        let Some(record) = snapshots.get(base) else {
            return Ok(impossible(IncrementalImpossible::BaseMissing { base: base.clone() }));
        };
        if let Some(depth) = chain.iter().position(|layer| *layer == record.layer) {
            return self.changes_above(depth).await;
        }
        Ok(impossible(if record.is_newer {
            IncrementalImpossible::BaseIsNewer { base: base.clone(), snapshot: snapshot.id.clone() }
        } else if record.source_volume != snapshot.source_volume {
            IncrementalImpossible::DifferentVolume {
                base: base.clone(),
                base_volume: record.source_volume.clone(),
                volume: snapshot.source_volume.clone(),
            }
        } else {
            IncrementalImpossible::BaseNotInChain { base: base.clone(), snapshot: snapshot.id.clone() }
        }))
    }

    /// What changed since the snapshot whose [`ChangePoint`] is `point`
    /// (which may since have been deleted), or why that cannot be known; as
    /// [`SnapshotImage::changed_since`].
    pub async fn changed_since_point(&self, point: &ChangePoint) -> Result<ChangedExtents, StorageError> {
        match &self.lineage {
            Lineage::Standalone { driver } => {
                Ok(impossible(IncrementalImpossible::StandaloneSnapshots { driver }))
            }
            Lineage::Layers { chain, .. } => match chain.iter().position(|layer| *layer == point.0) {
                Some(depth) => self.changes_above(depth).await,
                None => Ok(impossible(IncrementalImpossible::PointNotInChain {
                    point: point.clone(),
                    snapshot: self.snapshot.id.clone(),
                })),
            },
        }
    }

    /// The data and zero extents that files above `depth` answer for, by
    /// offset. Unless the whole chain is mapped already, or the store kept the
    /// map of a tail of it (then the whole map costs about as much as the top
    /// files' alone), the files above `depth` are mapped alone first: when
    /// they hold nothing, the whole map is not needed. A whole map that another
    /// caller began races that first map, and the first to finish answers.
    async fn changes_above(&self, depth: usize) -> Result<ChangedExtents, StorageError> {
        if depth == 0 {
            // The base is this very snapshot.
            return Ok(ChangedExtents::Since { extents: Vec::new() });
        }
        if !self.is_mapped() && !self.has_kept_tail() {
            let above = self.map_top(depth);
            let nothing_changed = if self.map_begun.load(Ordering::Acquire) {
                tokio::select! {
                    biased;
                    mapped = self.mapped() => return Ok(changes_in(mapped?, depth)),
                    above = above => above?.is_empty(),
                }
            } else {
                above.await?.is_empty()
            };
            if nothing_changed {
                return Ok(ChangedExtents::Since { extents: Vec::new() });
            }
        }
        Ok(changes_in(self.mapped().await?, depth))
    }
}

/// The extents of `mapped` that files above `depth` answer for, by offset.
fn changes_in(mapped: &Mapped, depth: usize) -> ChangedExtents {
    let mut extents: Vec<MappedExtent> = mapped
        .data
        .iter()
        .chain(&mapped.zeros)
        .filter(|extent| extent.source.depth() < depth)
        .copied()
        .collect();
    extents.sort_by_key(|extent| extent.offset);
    ChangedExtents::Since { extents }
}

fn impossible(reason: IncrementalImpossible) -> ChangedExtents {
    ChangedExtents::Impossible(reason)
}
