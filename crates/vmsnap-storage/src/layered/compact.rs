//! Compaction: keep the chain of every volume at most `max_chain_depth` deep.
//!
//! A volume whose chain is too deep has its active layer rebased onto the
//! bottom layer of its chain: the data of the layers in between is copied into
//! the active layer (detached: `qemu-img rebase` in safe mode, which copies only
//! clusters whose content would change; attached: `block-stream` through
//! [`LiveBlockOps::stream_into_active`]), and the active layer's header then
//! names the bottom layer. The chain becomes 2 deep. Sealed layers are never
//! rewritten: snapshots keep their own chains, and intermediate layers nothing
//! else needs become unreachable and are freed.
//!
//! The active layer changes in place, so the change is bracketed by a `Rebase`
//! intent; a crash in between is resolved from the header (see `rebase_done`).
//! Keeping the bottom layer bounds the copy by the data written since that
//! layer, usually far less than the disk (the bottom layer is the imported image).

use std::path::Path;

use super::LayeredDriver;
use super::manifest::{Intent, layer_file_name};
use crate::driver::CompactionReport;
use crate::error::{ManifestError, StorageError};
use crate::id::{LayerId, VolumeId};
use crate::live::{LiveBlockOps, StreamRequest};
use crate::locks;

/// What compaction did to one volume.
enum Outcome {
    /// The chain was already short enough (it may have changed since planning).
    NotNeeded,
    /// The chain was shortened; this many layers were freed.
    Compacted(usize),
    /// Left alone, for this reason.
    Skipped(String),
}

/// A rebase to do: the active `layer` of a volume, from backing `from` onto `to`.
struct Plan {
    layer: LayerId,
    from: LayerId,
    to: LayerId,
}

impl LayeredDriver {
    pub(super) async fn compact_inner(
        &self,
        live: Option<&dyn LiveBlockOps>,
    ) -> Result<CompactionReport, StorageError> {
        let max = self.options.max_chain_depth;
        let candidates: Vec<VolumeId> = {
            let state = self.store.state.lock().await;
            let deep = |volume: &super::manifest::Volume| state.chain(&volume.active_layer).len() > max;
            state.volumes.iter().filter(|(_, volume)| deep(volume)).map(|(id, _)| id.clone()).collect()
        };
        let mut report = CompactionReport::default();
        for volume in candidates {
            match self.compact_volume(&volume, live).await {
                Ok(Outcome::NotNeeded) => {}
                Ok(Outcome::Compacted(freed)) => {
                    report.compacted.push(volume);
                    report.freed_layers += freed;
                }
                Ok(Outcome::Skipped(reason)) => report.skipped.push((volume, reason)),
                Err(error) => {
                    tracing::warn!(%volume, %error, "could not compact a volume");
                    report.skipped.push((volume, error.to_string()));
                }
            }
        }
        Ok(report)
    }

    async fn compact_volume(
        &self,
        volume: &VolumeId,
        live: Option<&dyn LiveBlockOps>,
    ) -> Result<Outcome, StorageError> {
        let _locks = self.store.locks.lock(locks::volumes([volume])).await;
        let plan = {
            let state = self.store.state.lock().await;
            let Some(entry) = state.volumes.get(volume) else { return Ok(Outcome::NotNeeded) };
            if state.has_intent(volume) {
                return Ok(Outcome::Skipped("it has an unfinished operation; run recover() first".into()));
            }
            let chain = state.chain(&entry.active_layer);
            if chain.len() <= self.options.max_chain_depth || chain.len() < 3 {
                return Ok(Outcome::NotNeeded);
            }
            let to = chain.last().expect("at least 3 layers").clone();
            Plan { layer: chain[0].clone(), from: chain[1].clone(), to }
        };
        let active = self.layer_path(&plan.layer);
        let attached = match self.attached_file(volume, &active, live).await {
            Err(StorageError::InUse { .. }) => {
                return Ok(Outcome::Skipped(
                    "a running QEMU writes it; pass the node agent's LiveBlockOps to compact it live".into(),
                ));
            }
            attached => attached?,
        };

        self.record_rebase_intent(volume, &plan).await?;
        self.store.steps.reach("compact.intent-committed");
        let backing = layer_file_name(&plan.to);
        let rebased = match (live, attached) {
            (Some(live), Some(active)) => {
                let request = StreamRequest {
                    volume: volume.clone(),
                    active,
                    base: Some(self.layer_path(&plan.to)),
                    backing_file: Some(backing),
                };
                live.stream_into_active(&request).await.map_err(|source| StorageError::Live {
                    action: "stream the chain into the active layer",
                    volume: volume.clone(),
                    source,
                })
            }
            _ => match self.store.qemu_img.rebase(&active, Some(&backing)).await {
                Ok(()) => self.sync_new_files(vec![active.clone()]).await,
                Err(error) => Err(error.into()),
            },
        };
        let done = match rebased {
            Ok(()) => true,
            // The header tells whether it finished after all.
            Err(error) => match self.rebase_done(&plan.layer, Some(&plan.from), Some(&plan.to)).await {
                Ok(true) => true,
                Ok(false) => {
                    self.finish_rebase(volume, &plan, false).await?;
                    return Err(error);
                }
                Err(resolve_error) => {
                    tracing::warn!(%volume, error = %resolve_error, "a failed rebase is left for recovery");
                    return Err(error);
                }
            },
        };
        self.store.steps.reach("compact.rebased");
        let freed = self.finish_rebase(volume, &plan, done).await?;
        tracing::info!(%volume, live = live.is_some(), freed, "compacted the layer chain");
        Ok(Outcome::Compacted(freed))
    }

    async fn record_rebase_intent(&self, volume: &VolumeId, plan: &Plan) -> Result<(), StorageError> {
        let mut state = self.store.state.lock().await;
        let mut next = state.clone();
        next.intents.push(Intent::Rebase {
            volume: volume.clone(),
            layer: plan.layer.clone(),
            from: Some(plan.from.clone()),
            to: Some(plan.to.clone()),
        });
        self.store.commit(&mut state, next).await
    }

    /// Commits the outcome of a rebase (the new backing if `done`), drops the
    /// intent, and frees the layers nothing reaches any more. Returns how many.
    async fn finish_rebase(&self, volume: &VolumeId, plan: &Plan, done: bool) -> Result<usize, StorageError> {
        let state = self.store.state.lock().await;
        let mut next = state.clone();
        if done {
            next.layers.get_mut(&plan.layer).expect("locked volume's layer").backing = Some(plan.to.clone());
        }
        next.intents.retain(|intent| intent.volume() != volume);
        let freed = self.files_of(&next.remove_unreachable());
        let count = freed.len();
        let steps = ("compact.committed", "compact.file-removed");
        self.store.commit_then_remove(state, next, freed, steps).await?;
        Ok(count)
    }

    /// Whether the rebase of `layer` from `from` onto `to` happened, from the
    /// backing file its header names (read with `-U`: QEMU may hold the file).
    /// qemu-img and QEMU write the header last, after the data is copied.
    pub(super) async fn rebase_done(
        &self,
        layer: &LayerId,
        from: Option<&LayerId>,
        to: Option<&LayerId>,
    ) -> Result<bool, StorageError> {
        let path = self.layer_path(layer);
        let info = self.store.qemu_img.info(&path, Some("qcow2"), true).await?;
        let named = info
            .backing_filename
            .as_deref()
            .and_then(|name| Path::new(name).file_name())
            .map(|name| name.to_string_lossy().into_owned());
        if named == to.map(layer_file_name) {
            Ok(true)
        } else if named == from.map(layer_file_name) {
            Ok(false)
        } else {
            let reason = format!(
                "layer {layer} names backing file {named:?}, but an unfinished rebase expects {:?} or {:?}",
                from.map(layer_file_name),
                to.map(layer_file_name)
            );
            Err(ManifestError::Inconsistent { path, reason }.into())
        }
    }
}
