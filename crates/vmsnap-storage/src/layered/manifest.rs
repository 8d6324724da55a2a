//! The persisted state of the qcow2 driver, and the pure rules over it:
//! chains, reachability and the invariants checked before every commit.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::driver::VolumeFormat;
use crate::id::{LayerId, SnapshotId, VolumeId};
use crate::manifest_file::FORMAT_VERSION;
use crate::store::{DriverManifest, SnapshotRecord, VolumeRecord};

/// The `driver` member of this driver's manifest.
pub(crate) const DRIVER: &str = "qcow2-layers";

/// `manifest.json` of the qcow2 driver. Maps are ordered so the file is stable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Manifest {
    /// Always [`FORMAT_VERSION`].
    pub format_version: u64,
    /// Always [`DRIVER`].
    pub driver: String,
    /// Every layer file the store owns.
    pub layers: BTreeMap<LayerId, Layer>,
    /// Volumes, by id.
    pub volumes: BTreeMap<VolumeId, Volume>,
    /// Snapshots, by id.
    pub snapshots: BTreeMap<SnapshotId, Snapshot>,
    /// Operations begun but not finished; empty except around in-place changes
    /// and live switches, or after a crash until `recover`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub intents: Vec<Intent>,
}

/// One qcow2 file under `layers/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Layer {
    /// The file name inside `layers/`.
    pub file: String,
    /// The layer below, named in this file's qcow2 header; `null` for a standalone file.
    pub backing: Option<LayerId>,
    /// The virtual size of this file, in bytes.
    pub size_bytes: u64,
    /// Sealed layers are never written again (snapshot layers, backing layers).
    pub sealed: bool,
}

/// A volume: its writable top layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Volume {
    /// The unsealed layer written through; its chain is the volume.
    pub active_layer: LayerId,
    /// The virtual size in bytes (the active layer's).
    pub size_bytes: u64,
}

impl VolumeRecord for Volume {
    fn active(&self) -> (&LayerId, u64) {
        (&self.active_layer, self.size_bytes)
    }
}

/// A snapshot: a sealed layer, whose chain is the content at the point in time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Snapshot {
    /// The sealed layer (the volume's active layer at the point in time).
    pub layer: LayerId,
    /// The volume it was taken of.
    pub source_volume: VolumeId,
    /// The size of a restored volume, in bytes.
    pub size_bytes: u64,
    /// When the point in time was fixed.
    pub created_at: DateTime<Utc>,
}

/// An operation in flight whose outcome recovery must establish from the files or from QEMU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", rename_all_fields = "camelCase", deny_unknown_fields)]
pub(crate) enum Intent {
    /// QEMU was asked to move `volume` from its active layer onto `overlay`
    /// (already in `layers`, backed by the active layer).
    LiveSwitch {
        /// The attached volume.
        volume: VolumeId,
        /// The new, empty overlay.
        overlay: LayerId,
    },
    /// The active `layer` of `volume` is being rebased from backing `from` onto its ancestor `to`.
    Rebase {
        /// The volume.
        volume: VolumeId,
        /// Its active layer.
        layer: LayerId,
        /// The backing layer before.
        from: Option<LayerId>,
        /// The backing layer after.
        to: Option<LayerId>,
    },
    /// The active layer of `volume` is being grown to `size_bytes`.
    Resize {
        /// The volume.
        volume: VolumeId,
        /// The new size.
        size_bytes: u64,
    },
}

impl Intent {
    pub fn volume(&self) -> &VolumeId {
        match self {
            Self::LiveSwitch { volume, .. } | Self::Rebase { volume, .. } | Self::Resize { volume, .. } => {
                volume
            }
        }
    }
}

/// The file name of a layer inside `layers/`.
pub(crate) fn layer_file_name(id: &LayerId) -> String {
    format!("{id}.qcow2")
}

impl DriverManifest for Manifest {
    const DRIVER: &'static str = DRIVER;
    type Volume = Volume;
    type Snapshot = Snapshot;
    const DATA_DIR: &'static str = "layers";
    const FORMAT: VolumeFormat = VolumeFormat::Qcow2;

    fn empty() -> Self {
        Self {
            format_version: FORMAT_VERSION,
            driver: DRIVER.to_owned(),
            layers: BTreeMap::new(),
            volumes: BTreeMap::new(),
            snapshots: BTreeMap::new(),
            intents: Vec::new(),
        }
    }

    fn validate(&self) -> Result<(), String> {
        self.check_invariants()
    }

    fn file_name(id: &LayerId) -> String {
        layer_file_name(id)
    }

    fn chain_depth(&self, top: &LayerId) -> usize {
        self.chain(top).len()
    }

    /// Every layer: `validate` checks that each layer's file is named after its id.
    fn data_files(&self) -> Vec<&LayerId> {
        self.layers.keys().collect()
    }

    fn volume_map(&self) -> &BTreeMap<VolumeId, Volume> {
        &self.volumes
    }

    fn snapshot_map(&self) -> &BTreeMap<SnapshotId, Snapshot> {
        &self.snapshots
    }
}

impl SnapshotRecord for Snapshot {
    fn parts(&self) -> (&LayerId, &VolumeId, u64, DateTime<Utc>) {
        (&self.layer, &self.source_volume, self.size_bytes, self.created_at)
    }
}

impl Manifest {
    /// The layers a reader of `top` opens, `top` first. Stops at a missing
    /// layer and never loops (the length is bounded by the number of layers).
    pub fn chain(&self, top: &LayerId) -> Vec<LayerId> {
        let mut chain = Vec::new();
        let mut next = Some(top);
        while let Some(id) = next {
            let Some(layer) = self.layers.get(id) else { break };
            if chain.len() > self.layers.len() {
                break;
            }
            chain.push(id.clone());
            next = layer.backing.as_ref();
        }
        chain
    }

    pub fn has_intent(&self, volume: &VolumeId) -> bool {
        self.intents.iter().any(|intent| intent.volume() == volume)
    }

    /// The layers something points at directly: active layers, snapshot layers, pending overlays.
    fn roots(&self) -> impl Iterator<Item = &LayerId> {
        let active = self.volumes.values().map(|volume| &volume.active_layer);
        let snapshots = self.snapshots.values().map(|snapshot| &snapshot.layer);
        let overlays = self.intents.iter().filter_map(|intent| match intent {
            Intent::LiveSwitch { overlay, .. } => Some(overlay),
            _ => None,
        });
        active.chain(snapshots).chain(overlays)
    }

    /// The layers still needed: the roots and all their backing ancestors.
    /// This is the reference count: a layer with no path from a root is garbage.
    pub fn reachable(&self) -> BTreeSet<LayerId> {
        let mut reachable = BTreeSet::new();
        for root in self.roots() {
            for id in self.chain(root) {
                if !reachable.insert(id) {
                    break; // The rest of this chain is already marked.
                }
            }
        }
        reachable
    }

    /// Removes the layers nothing reaches and returns them (their files are
    /// deleted after the manifest without them is committed).
    pub fn remove_unreachable(&mut self) -> Vec<(LayerId, Layer)> {
        let reachable = self.reachable();
        let garbage: Vec<LayerId> =
            self.layers.keys().filter(|id| !reachable.contains(*id)).cloned().collect();
        garbage.into_iter().map(|id| (id.clone(), self.layers.remove(&id).expect("listed above"))).collect()
    }

    /// Every invariant the engine relies on; checked on load and before every commit.
    fn check_invariants(&self) -> Result<(), String> {
        if self.format_version != FORMAT_VERSION || self.driver != DRIVER {
            return Err(format!(
                "unexpected formatVersion {} or driver {:?}",
                self.format_version, self.driver
            ));
        }
        let pending: BTreeMap<&LayerId, &VolumeId> = self
            .intents
            .iter()
            .filter_map(|intent| match intent {
                Intent::LiveSwitch { volume, overlay } => Some((overlay, volume)),
                _ => None,
            })
            .collect();
        for (id, layer) in &self.layers {
            if layer.file != layer_file_name(id) {
                return Err(format!(
                    "layer {id} has file {:?}, expected {:?}",
                    layer.file,
                    layer_file_name(id)
                ));
            }
            if let Some(backing) = &layer.backing {
                let Some(below) = self.layers.get(backing) else {
                    return Err(format!("layer {id} is backed by layer {backing}, which does not exist"));
                };
                // Only a pending overlay may sit on an unsealed layer: the active one it replaces.
                if !below.sealed && !pending.contains_key(id) {
                    return Err(format!("layer {id} is backed by layer {backing}, which is not sealed"));
                }
            }
            if self.chain(id).len() > self.layers.len() {
                return Err(format!("the backing chain of layer {id} has a cycle"));
            }
        }
        let mut writers: BTreeMap<&LayerId, usize> = BTreeMap::new();
        for (id, volume) in &self.volumes {
            let Some(layer) = self.layers.get(&volume.active_layer) else {
                return Err(format!(
                    "volume {id} has active layer {}, which does not exist",
                    volume.active_layer
                ));
            };
            if layer.sealed {
                return Err(format!("volume {id} writes layer {}, which is sealed", volume.active_layer));
            }
            if layer.size_bytes != volume.size_bytes && !self.has_intent(id) {
                return Err(format!(
                    "volume {id} has {} bytes but its active layer has {}",
                    volume.size_bytes, layer.size_bytes
                ));
            }
            *writers.entry(&volume.active_layer).or_default() += 1;
        }
        for (id, layer) in &self.layers {
            let users = writers.get(id).copied().unwrap_or_default() + usize::from(pending.contains_key(id));
            if !layer.sealed && users != 1 {
                return Err(format!("unsealed layer {id} must have exactly one writer, has {users}"));
            }
        }
        for (id, snapshot) in &self.snapshots {
            match self.layers.get(&snapshot.layer) {
                Some(layer) if layer.sealed => {}
                Some(_) => {
                    return Err(format!("snapshot {id} has layer {}, which is not sealed", snapshot.layer));
                }
                None => {
                    return Err(format!("snapshot {id} has layer {}, which does not exist", snapshot.layer));
                }
            }
        }
        let mut seen = BTreeSet::new();
        for intent in &self.intents {
            let volume = intent.volume();
            if !self.volumes.contains_key(volume) {
                return Err(format!("an intent names volume {volume}, which does not exist"));
            }
            if !seen.insert(volume) {
                return Err(format!("volume {volume} has more than one intent"));
            }
            let active = &self.volumes[volume].active_layer;
            match intent {
                Intent::LiveSwitch { overlay, .. } => {
                    if self.layers.get(overlay).and_then(|layer| layer.backing.as_ref()) != Some(active) {
                        return Err(format!(
                            "pending overlay {overlay} of volume {volume} is not backed by its active layer"
                        ));
                    }
                }
                Intent::Rebase { layer, to, .. } => {
                    let chain = self.chain(active);
                    if layer != active || to.as_ref().is_some_and(|to| !chain.contains(to)) {
                        return Err(format!(
                            "the rebase of volume {volume} is not of its active layer onto its chain"
                        ));
                    }
                }
                Intent::Resize { .. } => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
