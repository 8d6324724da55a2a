//! Block operations on a running VM, for the storage driver: the active layer
//! of a disk, atomic overlay snapshots across disks, and streaming a chain
//! into its top (hotplug is in `hotplug.rs`).
//!
//! Node names are never remembered: after a snapshot the top node of a disk
//! changes, so every operation asks QEMU (`query-block` maps each device to
//! its top node; `query-named-block-nodes` lists the nodes). The nodes this
//! module creates are named by [`layer_nodes`], which lets it find every node
//! that belongs to a disk, and delete the ones a stream or an unplug leaves
//! unused (a node added with `blockdev-add` lives until `blockdev-del`, holding
//! its file open).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vmsnap_qemu::CommandError;
use vmsnap_qemu::qmp::Event;
use vmsnap_qemu::qmp::args::{
    BlockJobOptions, BlockStreamArgs, BlockdevDelArgs, JobIdArgs, NamedBlockNodesArgs, TransactionAction,
    TransactionArgs,
};
use vmsnap_qemu::qmp::commands::{
    BlockStream, BlockdevAdd, BlockdevDel, JobDismiss, QueryBlock, QueryJobs, QueryNamedBlockNodes,
    Transaction,
};
use vmsnap_qemu::qmp::types::{BlockDeviceInfo, ImageInfo, JobStatus};

use super::error::{BlockError, SpecError};
use super::handle::VmHandle;
use super::names::{disk_of_qdev, layer_nodes, parse_node, short_name};

/// One layer of a disk's backing chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskLayer {
    /// The image file.
    pub path: PathBuf,
    /// The image format, e.g. `qcow2`.
    pub format: String,
    /// The QEMU node name of the layer's format node, when it has one.
    pub node: Option<String>,
}

/// How a [`VmHandle::stream_disk`] went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamReport {
    /// The job id used.
    pub job: String,
    /// How many bytes the job covered.
    pub bytes: i64,
    /// How long it took.
    pub took: Duration,
}

/// A disk as `query-block` shows it.
#[derive(Debug)]
pub(super) struct AttachedDisk {
    pub(super) name: String,
    top: BlockDeviceInfo,
    /// Whether the top node bypasses the host cache (`cache.direct`), for overlays to match.
    direct: bool,
}

impl AttachedDisk {
    fn top_node(&self) -> Result<&str, BlockError> {
        self.top.node_name.as_deref().ok_or_else(|| BlockError::NoSuchDisk { disk: self.name.clone() })
    }
}

impl VmHandle {
    /// The disks attached to the VM, by name.
    pub async fn disk_names(&self) -> Result<Vec<String>, BlockError> {
        Ok(self.attached_disks().await?.into_iter().map(|d| d.name).collect())
    }

    /// The file of the disk's current top layer: what the guest writes to.
    pub async fn active_file(&self, disk: &str) -> Result<PathBuf, BlockError> {
        let attached = self.attached_disk(disk).await?;
        let filename = &attached.top.image.filename;
        if let Some(plain) = plain_filename(filename) {
            return Ok(PathBuf::from(plain));
        }
        Ok(resolve_file(&self.named_nodes().await?, filename))
    }

    /// The disk's backing chain as QEMU has it open, top (active) layer first.
    pub async fn disk_chain(&self, disk: &str) -> Result<Vec<DiskLayer>, BlockError> {
        let attached = self.attached_disk(disk).await?;
        let named = self.named_nodes().await?;
        let mut layers = Vec::new();
        let mut image: Option<&ImageInfo> = Some(&attached.top.image);
        while let Some(info) = image {
            let path = resolve_file(&named, &info.filename);
            let node = if layers.is_empty() {
                attached.top.node_name.clone()
            } else {
                named
                    .iter()
                    .find(|n| n.drv != "file" && same_file(&resolve_file(&named, &n.file), &path))
                    .and_then(|n| n.node_name.clone())
            };
            layers.push(DiskLayer { path, format: info.format.clone(), node });
            image = info.backing_image.as_deref();
        }
        Ok(layers)
    }

    /// Puts a new empty top layer on each listed disk, atomically across them:
    /// every overlay is added (`blockdev-add`, qcow2, `"backing": null`), then
    /// one `transaction` of `blockdev-snapshot` actions makes each the top of
    /// its disk's chain, above the layer that was active. From then on the
    /// guest writes into the overlays and the old layers no longer change.
    /// The overlay files must exist (e.g. `qemu-img create -f qcow2 -F qcow2
    /// -b <active file> -u <overlay> <size>`). On failure nothing changes.
    /// Returns how long the call took.
    pub async fn snapshot_disks<N: AsRef<str>, P: AsRef<Path>>(
        &self,
        overlays: &[(N, P)],
    ) -> Result<Duration, BlockError> {
        let items = overlays.iter().map(|(disk, overlay)| (disk.as_ref(), None, overlay.as_ref())).collect();
        self.switch_overlays(items).await
    }

    /// [`VmHandle::snapshot_disks`] for `(disk, expected active file, overlay)`
    /// triples: fails with [`BlockError::ActiveFileChanged`], changing
    /// nothing, unless each disk's active file is the one expected (the
    /// storage driver's `switch_to_overlays`).
    pub async fn snapshot_disks_checked<N: AsRef<str>, C: AsRef<Path>, P: AsRef<Path>>(
        &self,
        overlays: &[(N, C, P)],
    ) -> Result<Duration, BlockError> {
        let items = overlays
            .iter()
            .map(|(disk, current, overlay)| (disk.as_ref(), Some(current.as_ref()), overlay.as_ref()))
            .collect();
        self.switch_overlays(items).await
    }

    async fn switch_overlays(
        &self,
        overlays: Vec<(&str, Option<&Path>, &Path)>,
    ) -> Result<Duration, BlockError> {
        let started = Instant::now();
        let attached = self.attached_disks().await?;
        let named = self.named_nodes().await?;
        let mut plan = Vec::new();
        for (index, &(disk, expected, overlay)) in overlays.iter().enumerate() {
            if overlays[..index].iter().any(|(other, _, _)| *other == disk) {
                let error = SpecError::DuplicateName { what: "disk", name: disk.to_owned() };
                return Err(BlockError::InvalidDisk(error));
            }
            let current = attached
                .iter()
                .find(|d| d.name == disk)
                .ok_or_else(|| BlockError::NoSuchDisk { disk: disk.to_owned() })?;
            if let Some(expected) = expected {
                let actual = resolve_file(&named, &current.top.image.filename);
                if !same_file(&actual, expected) {
                    let expected = expected.to_path_buf();
                    return Err(BlockError::ActiveFileChanged { disk: disk.to_owned(), expected, actual });
                }
            }
            let filename = overlay
                .to_str()
                .filter(|_| overlay.is_absolute())
                .ok_or_else(|| BlockError::BadPath { path: overlay.to_path_buf() })?;
            let nodes = layer_nodes(disk, next_generation(&named, disk));
            plan.push((current.top_node()?.to_owned(), nodes, filename.to_owned(), current.direct));
        }
        let operation = || {
            let disks: Vec<&str> = overlays.iter().map(|(disk, _, _)| *disk).collect();
            format!("snapshotting disks {}", disks.join(", "))
        };
        let mut added = Vec::new();
        for (_, nodes, filename, direct) in &plan {
            let cache = json!({ "direct": direct, "no-flush": false });
            let file = json!({
                "driver": "file", "node-name": nodes.file, "filename": filename, "cache": cache, "discard": "unmap",
            });
            let format = json!({
                "driver": "qcow2", "node-name": nodes.format, "file": nodes.file, "backing": null,
                "cache": cache, "discard": "unmap",
            });
            for (node, options) in [(&nodes.file, file), (&nodes.format, format)] {
                if let Err(source) = self.qmp().execute::<BlockdevAdd>(options).await {
                    self.delete_nodes(&added).await;
                    return Err(BlockError::Qmp { operation: operation(), source });
                }
                added.push(node.clone());
            }
        }
        let actions = plan
            .iter()
            .map(|(top, nodes, _, _)| TransactionAction::BlockdevSnapshot {
                node: top.clone(),
                overlay: nodes.format.clone(),
            })
            .collect();
        if let Err(source) =
            self.qmp().execute::<Transaction>(TransactionArgs { actions, properties: None }).await
        {
            self.delete_nodes(&added).await;
            return Err(BlockError::Qmp { operation: operation(), source });
        }
        let took = started.elapsed();
        tracing::info!(
            disks = overlays.len(),
            took_ms = took.as_secs_f64() * 1e3,
            "switched disks to new overlays"
        );
        Ok(took)
    }

    /// Copies the data of the layers below the disk's top into the top
    /// (`block-stream`), down to `base` (exclusive; the whole chain when
    /// `None`), then drops the layers that are no longer used, so QEMU holds
    /// none of their files. Waits for the job to conclude however long it
    /// takes; QEMU keeps it running if this future is dropped, and a later
    /// call on the same disk clears a concluded job first.
    pub async fn stream_disk(&self, disk: &str, base: Option<&Path>) -> Result<StreamReport, BlockError> {
        self.stream_disk_recording(disk, base, None).await
    }

    /// [`VmHandle::stream_disk`] that also writes `backing_file` into the top
    /// layer's header as the name of its new backing file (e.g. the base's
    /// name relative to the top's directory, to keep a store movable). QEMU
    /// refuses a `backing_file` without a `base`.
    pub async fn stream_disk_recording(
        &self,
        disk: &str,
        base: Option<&Path>,
        backing_file: Option<&str>,
    ) -> Result<StreamReport, BlockError> {
        let started = Instant::now();
        let attached = self.attached_disk(disk).await?;
        let top = attached.top_node()?.to_owned();
        let base_node = match base {
            None => None,
            Some(base) => {
                let chain = self.disk_chain(disk).await?;
                let layer = chain.iter().skip(1).find(|layer| same_file(&layer.path, base));
                let node = layer.and_then(|layer| layer.node.clone());
                Some(node.ok_or_else(|| BlockError::BaseNotInChain {
                    disk: disk.to_owned(),
                    base: base.to_path_buf(),
                })?)
            }
        };
        let job = format!("stream-{}", short_name(disk));
        let qmp_error = |operation: &str| {
            let operation = format!("{operation} disk {disk:?}");
            move |source| BlockError::Qmp { operation, source }
        };
        if let Some(stale) = self.job(&job).await? {
            if stale.status != JobStatus::Concluded {
                return Err(BlockError::JobRunning { disk: disk.to_owned(), job });
            }
            self.qmp()
                .execute::<JobDismiss>(JobIdArgs { id: job.clone() })
                .await
                .map_err(qmp_error("dismissing an old stream job on"))?;
        }
        let mut events = self.qmp().events();
        let args = BlockStreamArgs {
            device: top,
            base_node,
            backing_file: backing_file.map(str::to_owned),
            job: BlockJobOptions {
                job_id: Some(job.clone()),
                auto_dismiss: Some(false),
                ..BlockJobOptions::default()
            },
            ..BlockStreamArgs::default()
        };
        self.qmp().execute::<BlockStream>(args).await.map_err(qmp_error("starting to stream"))?;
        let mut bytes = 0;
        loop {
            match events.next().await {
                Ok(event) => match event.event {
                    Event::BlockJobCompleted(done) if done.device == job => bytes = done.len,
                    Event::JobStatusChange(change)
                        if change.id == job && change.status == JobStatus::Concluded =>
                    {
                        break;
                    }
                    _ => {}
                },
                Err(vmsnap_qemu::EventError::Lagged { .. }) => {
                    if self.job(&job).await?.is_some_and(|j| j.status == JobStatus::Concluded) {
                        break;
                    }
                }
                Err(source) => return Err(BlockError::Event { waiting: format!("job {job}"), source }),
            }
        }
        let error = self.job(&job).await?.and_then(|j| j.error);
        self.qmp()
            .execute::<JobDismiss>(JobIdArgs { id: job.clone() })
            .await
            .map_err(qmp_error("dismissing the stream job on"))?;
        if let Some(message) = error {
            return Err(BlockError::JobFailed { disk: disk.to_owned(), job, message });
        }
        let in_use = self.prune_nodes(disk).await?;
        tracing::debug!(disk, ?in_use, "nodes kept after streaming");
        let took = started.elapsed();
        tracing::info!(
            disk,
            bytes,
            took_ms = took.as_secs_f64() * 1e3,
            "streamed the backing chain into the top layer"
        );
        Ok(StreamReport { job, bytes, took })
    }

    pub(super) async fn attached_disks(&self) -> Result<Vec<AttachedDisk>, BlockError> {
        let backends = self
            .qmp()
            .execute::<QueryBlock>(())
            .await
            .map_err(|source| BlockError::Qmp { operation: "querying the disks".into(), source })?;
        let disks = backends.into_iter().filter_map(|backend| {
            let name = backend.qdev.as_deref().and_then(disk_of_qdev)?.to_owned();
            let top = backend.inserted?;
            let direct = top.cache.is_some_and(|cache| cache.direct);
            Some(AttachedDisk { name, top, direct })
        });
        Ok(disks.collect())
    }

    pub(super) async fn attached_disk(&self, name: &str) -> Result<AttachedDisk, BlockError> {
        let disks = self.attached_disks().await?;
        disks
            .into_iter()
            .find(|d| d.name == name)
            .ok_or_else(|| BlockError::NoSuchDisk { disk: name.to_owned() })
    }

    pub(super) async fn named_nodes(&self) -> Result<Vec<BlockDeviceInfo>, BlockError> {
        self.qmp()
            .execute::<QueryNamedBlockNodes>(NamedBlockNodesArgs { flat: Some(true) })
            .await
            .map_err(|source| BlockError::Qmp { operation: "listing the block nodes".into(), source })
    }

    async fn job(&self, id: &str) -> Result<Option<vmsnap_qemu::qmp::types::JobInfo>, BlockError> {
        let jobs = self
            .qmp()
            .execute::<QueryJobs>(())
            .await
            .map_err(|source| BlockError::Qmp { operation: "listing the block jobs".into(), source })?;
        Ok(jobs.into_iter().find(|j| j.id == id))
    }

    /// Deletes every node of `disk` that nothing uses any more (QEMU refuses
    /// to delete a node in use, so the attempt is the test); returns the nodes left.
    pub(super) async fn prune_nodes(&self, disk: &str) -> Result<Vec<String>, BlockError> {
        let key = short_name(disk);
        loop {
            let mut nodes: Vec<(bool, u32, String)> = self
                .named_nodes()
                .await?
                .into_iter()
                .filter_map(|n| n.node_name)
                .filter_map(|name| {
                    let parsed = parse_node(&name)?;
                    (parsed.key == key).then_some((
                        !parsed.is_format,
                        u32::MAX - parsed.generation,
                        name.clone(),
                    ))
                })
                .collect();
            // Format nodes before their file nodes, newest layers first.
            nodes.sort();
            let mut deleted = false;
            for (_, _, node) in &nodes {
                let result =
                    self.qmp().execute::<BlockdevDel>(BlockdevDelArgs { node_name: node.clone() }).await;
                match result {
                    Ok(_) => deleted = true,
                    Err(CommandError::Qemu { desc, .. }) => tracing::trace!(node, desc, "node kept"),
                    Err(source) => {
                        return Err(BlockError::Qmp { operation: format!("deleting node {node}"), source });
                    }
                }
            }
            if !deleted {
                return Ok(nodes.into_iter().map(|(_, _, node)| node).collect());
            }
        }
    }

    /// Best-effort rollback of nodes just added, newest first.
    pub(super) async fn delete_nodes(&self, nodes: &[String]) {
        for node in nodes.iter().rev() {
            if let Err(error) =
                self.qmp().execute::<BlockdevDel>(BlockdevDelArgs { node_name: node.clone() }).await
            {
                tracing::warn!(node, %error, "could not roll back a node");
            }
        }
    }
}

/// The next free layer generation of `disk` among `named` nodes.
fn next_generation(named: &[BlockDeviceInfo], disk: &str) -> u32 {
    let key = short_name(disk);
    named
        .iter()
        .filter_map(|n| parse_node(n.node_name.as_deref()?).filter(|p| p.key == key).map(|p| p.generation))
        .max()
        .map_or(1, |g| g + 1)
}

/// The plain file behind a QEMU filename, which may be a `json:{...}`
/// description when a node's options cannot be written as a path (a layer
/// put on top with `blockdev-snapshot` describes its whole backing chain).
/// `None` for a description that does not parse: QEMU cuts filenames at
/// 4,095 bytes, which a chain of a few dozen layers exceeds, and the cut
/// falls on the top layer's own file, which comes last.
fn plain_filename(filename: &str) -> Option<String> {
    fn find(value: &Value) -> Option<&str> {
        match value.get("filename").and_then(Value::as_str) {
            Some(name) => Some(name),
            None => find(value.get("file")?),
        }
    }
    let Some(json) = filename.strip_prefix("json:") else { return Some(filename.to_owned()) };
    let parsed = serde_json::from_str::<Value>(json).ok()?;
    find(&parsed).map(str::to_owned)
}

/// [`plain_filename`], and for a cut description the file of the format
/// node that shows it: the `file` node of the same layer (`fileN-key` below
/// `fmtN-key`), whose filename is always a plain path. The description
/// itself when neither works (a node this agent did not name).
fn resolve_file(named: &[BlockDeviceInfo], filename: &str) -> PathBuf {
    if let Some(plain) = plain_filename(filename) {
        return PathBuf::from(plain);
    }
    named
        .iter()
        .filter(|n| n.drv != "file" && n.file == filename)
        .filter_map(|n| parse_node(n.node_name.as_deref()?).filter(|p| p.is_format))
        .map(|p| layer_nodes(p.key, p.generation).file)
        .find_map(|file_node| named.iter().find(|n| n.node_name.as_deref() == Some(file_node.as_str())))
        .map_or_else(|| PathBuf::from(filename), |file| PathBuf::from(&file.file))
}

/// Whether two paths name the same file (by device and inode, else by text).
fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::LayerNodes;

    #[test]
    fn json_filenames_resolve_to_their_file() {
        assert_eq!(plain_filename("/v/data.qcow2").unwrap(), "/v/data.qcow2");
        let json = r#"json:{"backing": "fmt-data", "driver": "qcow2", "file": {"driver": "file", "filename": "/v/o.qcow2"}}"#;
        assert_eq!(plain_filename(json).unwrap(), "/v/o.qcow2");
    }

    #[test]
    fn a_description_qemu_cut_short_resolves_through_the_layers_file_node() {
        // What QEMU 7.2 shows for a disk dozens of snapshots deep: 4,095 bytes, cut before the top's file.
        let nested = (0..80).fold(r#"{"driver": "file", "filename": "/v/base.qcow2"}"#.to_owned(), |inner, i| {
            format!(r#"{{"backing": {inner}, "driver": "qcow2", "file": {{"driver": "file", "filename": "/v/l{i}.qcow2"}}}}"#)
        });
        let cut: String = format!("json:{nested}").chars().take(4095).collect();
        assert_eq!(plain_filename(&cut), None);
        let node = |name: &str, drv: &str, file: &str| BlockDeviceInfo {
            node_name: Some(name.into()),
            drv: drv.into(),
            file: file.into(),
            ro: false,
            backing_file: None,
            backing_file_depth: 0,
            image: ImageInfo {
                filename: file.into(),
                format: drv.into(),
                virtual_size: 0,
                actual_size: None,
                backing_filename: None,
                backing_image: None,
            },
            cache: None,
        };
        let named = [
            node("fmt-data", "qcow2", "/v/base.qcow2"),
            node("file-data", "file", "/v/base.qcow2"),
            node("fmt80-data", "qcow2", &cut),
            node("file80-data", "file", "/v/l79.qcow2"),
        ];
        assert_eq!(resolve_file(&named, &cut), PathBuf::from("/v/l79.qcow2"));
        assert_eq!(resolve_file(&named, "/v/base.qcow2"), PathBuf::from("/v/base.qcow2"));
        assert_eq!(resolve_file(&named[..2], &cut), PathBuf::from(&cut), "no node shows it: kept as is");
    }

    #[test]
    fn generations_continue_after_the_highest_node_of_the_disk() {
        let node = |name: &str| BlockDeviceInfo {
            node_name: Some(name.into()),
            drv: "qcow2".into(),
            file: String::new(),
            ro: false,
            backing_file: None,
            backing_file_depth: 0,
            image: ImageInfo {
                filename: String::new(),
                format: "qcow2".into(),
                virtual_size: 0,
                actual_size: None,
                backing_filename: None,
                backing_image: None,
            },
            cache: None,
        };
        let named =
            [node("fmt-data"), node("fmt3-data"), node("file3-data"), node("fmt9-data2"), node("#block1")];

        assert_eq!(next_generation(&named, "data"), 4);
        assert_eq!(next_generation(&named, "logs"), 1);
    }

    #[test]
    fn layer_nodes_are_what_snapshots_name_overlays() {
        assert_eq!(
            layer_nodes("data", 4),
            LayerNodes { format: "fmt4-data".into(), file: "file4-data".into() }
        );
    }
}
