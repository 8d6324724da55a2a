//! Sealing: snapshot and clone. The active layer of each volume becomes
//! immutable and a new empty overlay over it becomes the volume's active layer.
//!
//! Order of a seal (a crash between any two steps leaves the old state or the new one):
//!
//! 1. create the overlay files (and a clone's file) and fsync them: unreferenced, so garbage if we stop here;
//! 2. attached volumes only: commit a `LiveSwitch` intent per volume, then ask
//!    QEMU to switch all of them in one transaction. Recovery asks QEMU which
//!    file it writes and completes or undoes each switch;
//! 3. one manifest commit seals the old layers, makes the overlays active and
//!    records the snapshots (and the clone), for the whole group at once.

use std::collections::BTreeSet;
use std::path::PathBuf;

use chrono::{DateTime, Utc};

use super::LayeredDriver;
use super::manifest::{Intent, Layer, Manifest, Snapshot, Volume, layer_file_name};
use super::volumes::usable_volume;
use crate::error::StorageError;
use crate::fsutil::same_file;
use crate::id::{LayerId, SnapshotId, VolumeId};
use crate::inuse::ensure_not_written_by_qemu;
use crate::live::{LiveBlockOps, LiveSwitch, reported_active_file};
use crate::locks::{self, LockKey};
use crate::round_to_sector;

/// The step names of one kind of seal.
struct SealSteps {
    created: &'static str,
    intent: &'static str,
    switched: &'static str,
    committed: &'static str,
}

const SNAPSHOT_STEPS: SealSteps = SealSteps {
    created: "snapshot.overlays-created",
    intent: "snapshot.intent-committed",
    switched: "snapshot.switched",
    committed: "snapshot.committed",
};

const CLONE_STEPS: SealSteps = SealSteps {
    created: "clone.overlays-created",
    intent: "clone.intent-committed",
    switched: "clone.switched",
    committed: "clone.committed",
};

/// One volume to seal, and what to hang on the sealed layer.
pub(super) struct SealRequest {
    volume: VolumeId,
    snapshot: Option<SnapshotId>,
    clone_to: Option<(VolumeId, u64)>,
}

impl SealRequest {
    /// Snapshot `snapshot` of `volume`.
    pub(super) fn snapshot((volume, snapshot): &(VolumeId, SnapshotId)) -> Self {
        Self { volume: volume.clone(), snapshot: Some(snapshot.clone()), clone_to: None }
    }

    /// Volume `to`, of at least `size_bytes`, with the content of `from`.
    pub(super) fn clone_of(from: &VolumeId, to: &VolumeId, size_bytes: u64) -> Self {
        Self { volume: from.clone(), snapshot: None, clone_to: Some((to.clone(), size_bytes)) }
    }
}

/// A seal after its files were created.
struct Prepared {
    request: SealRequest,
    sealed: LayerId,
    size: u64,
    overlay: LayerId,
    clone_layer: Option<LayerId>,
    /// The file QEMU writes, if the volume is attached to a running VM.
    live_file: Option<PathBuf>,
}

/// What happened to a pending live switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SwitchOutcome {
    /// The volume now writes the overlay (or is not running, so it may).
    Adopt,
    /// QEMU still writes the old layer; the overlay is discarded.
    Undo,
}

impl LayeredDriver {
    /// Seals the volumes of `requests` at one point in time (see the module's documentation).
    pub(super) async fn seal(
        &self,
        requests: Vec<SealRequest>,
        live: Option<&dyn LiveBlockOps>,
    ) -> Result<(), StorageError> {
        let clone = requests.iter().any(|request| request.clone_to.is_some());
        let steps = if clone { &CLONE_STEPS } else { &SNAPSHOT_STEPS };
        let keys = lock_keys(&requests)?;
        let _locks = self.store.locks.lock(keys).await;
        let mut prepared = self.plan_seal(requests).await?;
        for seal in &mut prepared {
            seal.live_file =
                self.attached_file(&seal.request.volume, &self.layer_path(&seal.sealed), live).await?;
        }
        let created: Vec<LayerId> = prepared
            .iter()
            .flat_map(|seal| [Some(seal.overlay.clone()), seal.clone_layer.clone()])
            .flatten()
            .collect();
        if let Err(error) = self.create_seal_files(&prepared).await {
            self.store.discard_created(&created).await;
            return Err(error);
        }
        self.store.steps.reach(steps.created);

        let switches: Vec<LiveSwitch> = prepared
            .iter()
            .filter_map(|seal| {
                let current = seal.live_file.clone()?;
                Some(LiveSwitch {
                    volume: seal.request.volume.clone(),
                    current,
                    overlay: self.layer_path(&seal.overlay),
                })
            })
            .collect();
        if let Some(live) = live.filter(|_| !switches.is_empty()) {
            if let Err(error) = self.record_live_intents(&prepared).await {
                self.store.discard_created(&created).await;
                return Err(error);
            }
            self.store.steps.reach(steps.intent);
            if let Err(source) = live.switch_to_overlays(&switches).await {
                // Some VMs may have switched: ask, and complete or undo each.
                let volumes: BTreeSet<VolumeId> = switches.iter().map(|s| s.volume.clone()).collect();
                if let Err(error) = self.resolve_live_switches(Some(live), Some(&volumes)).await {
                    tracing::warn!(%error, "a failed live switch is left for recovery");
                }
                self.store.discard_created(&created).await;
                let volume = switches[0].volume.clone();
                return Err(StorageError::Live { action: "switch to the new overlays", volume, source });
            }
            self.store.steps.reach(steps.switched);
        }

        let created_at = Utc::now();
        let mut state = self.store.state.lock().await;
        let mut next = state.clone();
        apply_seal(&mut next, &prepared, created_at);
        if let Err(error) = self.store.commit(&mut state, next).await {
            drop(state);
            if switches.is_empty() {
                self.store.discard_created(&created).await;
            }
            // Otherwise QEMU writes the overlays: the intents stay for recovery.
            return Err(error);
        }
        self.store.steps.reach(steps.committed);
        let volumes: Vec<&str> = prepared.iter().map(|seal| seal.request.volume.as_str()).collect();
        tracing::debug!(?volumes, live = switches.len(), step = steps.committed, "sealed");
        Ok(())
    }

    /// Checks the preconditions under the locks and picks the new layer ids.
    async fn plan_seal(&self, requests: Vec<SealRequest>) -> Result<Vec<Prepared>, StorageError> {
        let state = self.store.state.lock().await;
        let mut prepared = Vec::with_capacity(requests.len());
        for request in requests {
            let volume = usable_volume(&state, &request.volume)?;
            if let Some(snapshot) = request.snapshot.as_ref().filter(|id| state.snapshots.contains_key(*id)) {
                return Err(StorageError::SnapshotExists { snapshot: snapshot.clone() });
            }
            if let Some((to, _)) = request.clone_to.as_ref().filter(|(to, _)| state.volumes.contains_key(to))
            {
                return Err(StorageError::VolumeExists { volume: to.clone() });
            }
            prepared.push(Prepared {
                sealed: volume.active_layer.clone(),
                size: volume.size_bytes,
                overlay: LayerId::generate(),
                clone_layer: request.clone_to.as_ref().map(|_| LayerId::generate()),
                live_file: None,
                request,
            });
        }
        Ok(prepared)
    }

    /// The file QEMU writes for an attached volume (checked against the
    /// manifest), or `None` for a detached one (checked not to be written by anyone).
    pub(super) async fn attached_file(
        &self,
        volume: &VolumeId,
        expected: &std::path::Path,
        live: Option<&dyn LiveBlockOps>,
    ) -> Result<Option<PathBuf>, StorageError> {
        match reported_active_file(live, volume).await? {
            Some(reported) if same_file(&reported, expected) => Ok(Some(reported)),
            Some(reported) => Err(StorageError::LiveMismatch {
                volume: volume.clone(),
                reported,
                expected: expected.to_owned(),
            }),
            None => {
                ensure_not_written_by_qemu(volume, expected)?;
                Ok(None)
            }
        }
    }

    async fn create_seal_files(&self, prepared: &[Prepared]) -> Result<(), StorageError> {
        let cluster_size = self.options.cluster_size;
        let mut files = Vec::new();
        for seal in prepared {
            let backing = layer_file_name(&seal.sealed);
            let overlay = self.layer_path(&seal.overlay);
            self.store.qemu_img.create_qcow2(&overlay, seal.size, cluster_size, Some(&backing)).await?;
            files.push(overlay);
            if let (Some(layer), Some((_, size))) = (&seal.clone_layer, &seal.request.clone_to) {
                let path = self.layer_path(layer);
                let size = round_to_sector(*size).max(seal.size);
                self.store.qemu_img.create_qcow2(&path, size, cluster_size, Some(&backing)).await?;
                files.push(path);
            }
        }
        self.sync_new_files(files).await
    }

    async fn record_live_intents(&self, prepared: &[Prepared]) -> Result<(), StorageError> {
        let mut state = self.store.state.lock().await;
        let mut next = state.clone();
        for seal in prepared.iter().filter(|seal| seal.live_file.is_some()) {
            next.layers.insert(seal.overlay.clone(), overlay_layer(seal));
            next.intents.push(Intent::LiveSwitch {
                volume: seal.request.volume.clone(),
                overlay: seal.overlay.clone(),
            });
        }
        self.store.commit(&mut state, next).await
    }

    /// Resolves the pending live switches of `volumes` (all, if `None`) and
    /// commits the outcome; returns how many were completed and undone.
    pub(super) async fn resolve_live_switches(
        &self,
        live: Option<&dyn LiveBlockOps>,
        volumes: Option<&BTreeSet<VolumeId>>,
    ) -> Result<(usize, usize), StorageError> {
        let state = self.store.state.lock().await;
        let mut next = state.clone();
        let (completed, undone) = self.apply_live_switch_outcomes(&mut next, live, volumes).await?;
        let freed = self.files_of(&next.remove_unreachable());
        let steps = ("resolve.committed", "resolve.file-removed");
        self.store.commit_then_remove(state, next, freed, steps).await?;
        Ok((completed, undone))
    }

    /// Decides every pending live switch in `next` (of `volumes`, or all) and applies it.
    pub(super) async fn apply_live_switch_outcomes(
        &self,
        next: &mut Manifest,
        live: Option<&dyn LiveBlockOps>,
        volumes: Option<&BTreeSet<VolumeId>>,
    ) -> Result<(usize, usize), StorageError> {
        let pending: Vec<(VolumeId, LayerId)> = next
            .intents
            .iter()
            .filter_map(|intent| match intent {
                Intent::LiveSwitch { volume, overlay }
                    if volumes.is_none_or(|only| only.contains(volume)) =>
                {
                    Some((volume.clone(), overlay.clone()))
                }
                _ => None,
            })
            .collect();
        let (mut completed, mut undone) = (0, 0);
        for (volume, overlay) in pending {
            let old = next.volumes[&volume].active_layer.clone();
            let outcome = self.switch_outcome(&volume, &old, &overlay, live).await?;
            next.intents.retain(|intent| intent.volume() != &volume);
            match outcome {
                SwitchOutcome::Adopt => {
                    next.layers.get_mut(&old).expect("validated").sealed = true;
                    next.volumes.get_mut(&volume).expect("validated").active_layer = overlay;
                    completed += 1;
                }
                // Without its intent the overlay is unreachable, so it is freed.
                SwitchOutcome::Undo => undone += 1,
            }
        }
        Ok((completed, undone))
    }

    /// Which file QEMU writes decides a pending switch. When the volume is not
    /// attached to a running VM the overlay is adopted: it is empty and backed
    /// by the old layer, so the volume reads the same either way, and adopting
    /// is also right if QEMU did switch and wrote to it before stopping.
    async fn switch_outcome(
        &self,
        volume: &VolumeId,
        old: &LayerId,
        overlay: &LayerId,
        live: Option<&dyn LiveBlockOps>,
    ) -> Result<SwitchOutcome, StorageError> {
        let (old_path, overlay_path) = (self.layer_path(old), self.layer_path(overlay));
        match reported_active_file(live, volume).await? {
            // Unless a QEMU the caller did not tell us about still writes the old layer.
            None => ensure_not_written_by_qemu(volume, &old_path).map(|()| SwitchOutcome::Adopt),
            Some(file) if same_file(&file, &overlay_path) => Ok(SwitchOutcome::Adopt),
            Some(file) if same_file(&file, &old_path) => Ok(SwitchOutcome::Undo),
            Some(reported) => {
                Err(StorageError::LiveMismatch { volume: volume.clone(), reported, expected: old_path })
            }
        }
    }
}

/// The ids a seal locks; rejects duplicates within the request.
fn lock_keys(requests: &[SealRequest]) -> Result<Vec<LockKey>, StorageError> {
    let mut keys = BTreeSet::new();
    for request in requests {
        let volume = LockKey::Volume(request.volume.clone());
        if !keys.insert(volume) {
            return Err(StorageError::invalid(format!(
                "volume {} appears twice in the group",
                request.volume
            )));
        }
        if let Some(snapshot) = &request.snapshot
            && !keys.insert(LockKey::Snapshot(snapshot.clone()))
        {
            return Err(StorageError::invalid(format!("snapshot {snapshot} appears twice in the group")));
        }
        if let Some((to, _)) = &request.clone_to {
            keys.extend(locks::volumes([to]));
        }
    }
    Ok(keys.into_iter().collect())
}

fn overlay_layer(seal: &Prepared) -> Layer {
    Layer {
        file: layer_file_name(&seal.overlay),
        backing: Some(seal.sealed.clone()),
        size_bytes: seal.size,
        sealed: false,
    }
}

/// The final commit of a seal: old layers sealed, overlays active, snapshots and clones recorded.
fn apply_seal(next: &mut Manifest, prepared: &[Prepared], created_at: DateTime<Utc>) {
    for seal in prepared {
        let volume = &seal.request.volume;
        next.intents.retain(|intent| intent.volume() != volume);
        next.layers.insert(seal.overlay.clone(), overlay_layer(seal));
        next.layers.get_mut(&seal.sealed).expect("locked volume's layer").sealed = true;
        next.volumes.get_mut(volume).expect("locked volume").active_layer = seal.overlay.clone();
        if let Some(snapshot) = &seal.request.snapshot {
            let record = Snapshot {
                layer: seal.sealed.clone(),
                source_volume: volume.clone(),
                size_bytes: seal.size,
                created_at,
            };
            next.snapshots.insert(snapshot.clone(), record);
        }
        if let (Some(layer), Some((to, size))) = (&seal.clone_layer, &seal.request.clone_to) {
            let size = round_to_sector(*size).max(seal.size);
            let file = layer_file_name(layer);
            next.layers.insert(
                layer.clone(),
                Layer { file, backing: Some(seal.sealed.clone()), size_bytes: size, sealed: false },
            );
            next.volumes.insert(to.clone(), Volume { active_layer: layer.clone(), size_bytes: size });
        }
    }
}
