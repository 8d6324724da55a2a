//! Opening a snapshot for reading outside QEMU: its chain from the manifest,
//! and what the manifest says of every other snapshot, for diffs.

use std::collections::BTreeMap;

use super::LayeredDriver;
use super::manifest::Manifest;
use crate::driver::VolumeFormat;
use crate::error::StorageError;
use crate::id::{LayerId, SnapshotId};
use crate::image::{BaseRecord, Lineage, SnapshotImage};
use crate::locks;
use crate::store::DriverManifest;

impl LayeredDriver {
    /// Opens snapshot `id` under its lock: while it is held, `delete_snapshot`
    /// waits, so every layer of the chain stays reachable (and on disk) until
    /// it is open; the image maps the open files, not their paths. Compaction
    /// never touches sealed layers.
    pub(super) async fn open_snapshot_image(
        &self,
        id: &SnapshotId,
    ) -> Result<Option<SnapshotImage>, StorageError> {
        let _locks = self.store.locks.lock(locks::snapshots([id])).await;
        let (info, chain, lineage) = {
            let state = self.store.state.lock().await;
            let Some((info, layer)) = state.snapshot(id) else { return Ok(None) };
            let chain = state.chain(layer);
            let lineage = lineage(&state, &chain);
            (info, chain, lineage)
        };
        // Every layer is qcow2: imports are converted, never adopted as raw files.
        let files = chain.iter().map(|layer| (self.layer_path(layer), VolumeFormat::Qcow2)).collect();
        SnapshotImage::open(&self.store.qemu_img, &self.store.chain_maps, info, files, lineage)
            .await
            .map(Some)
    }
}

/// The image's chain and every snapshot of the store as a possible base.
fn lineage(manifest: &Manifest, chain: &[LayerId]) -> Lineage {
    let top = &chain[0];
    let snapshots: BTreeMap<SnapshotId, BaseRecord> = manifest
        .snapshots
        .iter()
        .map(|(id, snapshot)| {
            let is_newer = snapshot.layer != *top && manifest.chain(&snapshot.layer).contains(top);
            let record = BaseRecord {
                layer: snapshot.layer.clone(),
                source_volume: snapshot.source_volume.clone(),
                is_newer,
            };
            (id.clone(), record)
        })
        .collect();
    Lineage::Layers { chain: chain.to_vec(), snapshots }
}
