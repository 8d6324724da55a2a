//! A real `qemu-system-x86_64` without a guest (`-machine none`, TCG) that
//! holds volumes as block nodes, and its [`LiveBlockOps`] over QMP: what the
//! node agent will do, in miniature. Guest writes are `qemu-io` commands sent
//! through HMP (`human-monitor-command`), which QEMU runs on the node itself.
//!
//! With no guest there is no disk device, so each disk is exported writable
//! over NBD instead: like a device, the export holds the write permission (and
//! so QEMU's write lock on the file) and follows the top of the chain across
//! `blockdev-snapshot`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use vmsnap_qemu::ConnectError;
use vmsnap_qemu::client::QmpClient;
use vmsnap_qemu::qmp::Event;
use vmsnap_storage::{LiveBlockOps, LiveError, LiveSwitch, StreamRequest, VolumeFormat, VolumeId};

const TIMEOUT: Duration = Duration::from_secs(20);

/// The block nodes this helper added for one volume, bottom first; the last is the top.
#[derive(Debug, Clone)]
struct Disk {
    nodes: Vec<(String, PathBuf)>,
}

impl Disk {
    fn top(&self) -> &(String, PathBuf) {
        self.nodes.last().expect("a disk has a node")
    }
}

/// A running QEMU holding some volumes.
pub struct LiveVm {
    process: tokio::process::Child,
    qmp: QmpClient,
    dir: tempfile::TempDir,
    disks: Mutex<HashMap<VolumeId, Disk>>,
    next_id: AtomicUsize,
    abort_next_transaction: AtomicBool,
    nbd_started: AtomicBool,
}

impl LiveVm {
    /// Starts QEMU with two QMP sockets (one for a concurrent writer), or `None` (skip) without it.
    pub async fn start() -> Option<Self> {
        let qemu = super::require_binary("qemu-system-x86_64")?;
        let dir = tempfile::tempdir().unwrap();
        let (control, writer) = (dir.path().join("qmp.sock"), dir.path().join("writer.sock"));
        let process = tokio::process::Command::new(qemu)
            .args(["-machine", "none", "-accel", "tcg", "-nodefaults", "-display", "none", "-qmp"])
            .arg(format!("unix:{},server=on,wait=off", control.display()))
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", writer.display()))
            // qemu-io prints its results on QEMU's stdout.
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let qmp = connect(&control).await;
        Some(Self {
            process,
            qmp,
            dir,
            disks: Mutex::default(),
            next_id: AtomicUsize::new(0),
            abort_next_transaction: AtomicBool::new(false),
            nbd_started: AtomicBool::new(false),
        })
    }

    fn fresh_name(&self, prefix: &str) -> String {
        format!("{prefix}{}", self.next_id.fetch_add(1, Ordering::SeqCst))
    }

    /// Opens `file` (and, through its header, its backing chain) as the volume's disk.
    pub async fn attach(&self, volume: &VolumeId, file: &Path, format: VolumeFormat) {
        let node = self.fresh_name("n");
        let options = json!({
            "driver": format.as_str(),
            "node-name": node,
            "file": {"driver": "file", "filename": file},
        });
        self.qmp.execute_raw("blockdev-add", options).await.unwrap();
        if !self.nbd_started.swap(true, Ordering::SeqCst) {
            let socket = self.dir.path().join("nbd.sock");
            let addr = json!({"addr": {"type": "unix", "data": {"path": socket}}});
            self.qmp.execute_raw("nbd-server-start", addr).await.unwrap();
        }
        let export =
            json!({"type": "nbd", "id": format!("export-{volume}"), "node-name": node, "writable": true});
        self.qmp.execute_raw("block-export-add", export).await.unwrap();
        self.disks.lock().unwrap().insert(volume.clone(), Disk { nodes: vec![(node, file.to_owned())] });
    }

    /// A guest write: `pattern` over `len` bytes at `offset` of the volume, as QEMU writes it now.
    pub async fn write(&self, volume: &VolumeId, offset: u64, len: u64, pattern: u8) {
        self.write_on(&self.qmp, volume, offset, len, pattern).await;
    }

    /// [`LiveVm::write`] over another QMP connection. A write that races a
    /// switch and finds its node already read-only is retried on the new top.
    pub async fn write_on(&self, qmp: &QmpClient, volume: &VolumeId, offset: u64, len: u64, pattern: u8) {
        loop {
            let reply = write_through(qmp, &self.top_node(volume), offset, len, pattern).await;
            match reply.as_str() {
                "" => return,
                reply if reply.contains("read-only") => tokio::task::yield_now().await,
                reply => panic!("qemu-io write on volume {volume} failed: {reply}"),
            }
        }
    }

    /// A second QMP connection, for a writer running concurrently with the engine.
    pub async fn second_connection(&self) -> QmpClient {
        connect(&self.dir.path().join("writer.sock")).await
    }

    /// The node a writer on [`LiveVm::second_connection`] should write to.
    pub fn top_node(&self, volume: &VolumeId) -> String {
        self.disks.lock().unwrap()[volume].top().0.clone()
    }

    /// Makes the next `transaction` fail by appending an `abort` action.
    pub fn abort_next_transaction(&self) {
        self.abort_next_transaction.store(true, Ordering::SeqCst);
    }

    /// Stops QEMU (so its files are consistent and unlocked).
    pub async fn quit(mut self) {
        let quit = self.qmp.execute_raw("quit", Value::Null);
        let _ = tokio::time::timeout(Duration::from_secs(5), quit).await;
        if tokio::time::timeout(Duration::from_secs(5), self.process.wait()).await.is_err() {
            self.process.kill().await.unwrap();
        }
    }

    /// The image file of a qcow2/raw node, from `query-named-block-nodes`.
    async fn node_file(&self, node: &str) -> Option<PathBuf> {
        let nodes = self.named_nodes().await;
        nodes.iter().find(|n| n["node-name"] == node).map(|n| image_file(n["file"].as_str().unwrap()))
    }

    async fn named_nodes(&self) -> Vec<Value> {
        let nodes = self.qmp.execute_raw("query-named-block-nodes", json!({"flat": true})).await.unwrap();
        serde_json::from_value(nodes).unwrap()
    }
}

/// A `qemu-io` write on a node, through HMP; returns what HMP answered (empty on success).
async fn write_through(qmp: &QmpClient, node: &str, offset: u64, len: u64, pattern: u8) -> String {
    let line = format!("qemu-io {node} \"write -P {pattern:#04x} {offset} {len}\"");
    let reply = qmp.execute_raw("human-monitor-command", json!({"command-line": line})).await.unwrap();
    reply.as_str().unwrap().to_owned()
}

async fn connect(socket: &Path) -> QmpClient {
    // QEMU creates the socket file before it listens on it.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        match QmpClient::connect(socket, TIMEOUT).await {
            Ok(client) => return client,
            Err(ConnectError::Io { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => panic!("could not connect to {}: {error:?}", socket.display()),
        }
    }
}

/// The file of a format node: its `file` is a path, or a `json:{...}`
/// pseudo-name once it has an explicit backing node.
fn image_file(name: &str) -> PathBuf {
    match name.strip_prefix("json:") {
        Some(spec) => {
            let spec: Value = serde_json::from_str(spec).unwrap();
            PathBuf::from(spec["file"]["filename"].as_str().unwrap())
        }
        None => PathBuf::from(name),
    }
}

fn live_error(what: &str) -> impl FnOnce(vmsnap_qemu::CommandError) -> LiveError {
    let what = what.to_owned();
    move |error| LiveError::with_source(what, error)
}

#[async_trait]
impl LiveBlockOps for LiveVm {
    async fn active_file(&self, volume: &VolumeId) -> Result<Option<PathBuf>, LiveError> {
        let top = self.disks.lock().unwrap().get(volume).map(|disk| disk.top().0.clone());
        let Some(top) = top else { return Ok(None) };
        Ok(self.node_file(&top).await)
    }

    async fn switch_to_overlays(&self, switches: &[LiveSwitch]) -> Result<(), LiveError> {
        let mut actions = Vec::new();
        let mut added = Vec::new();
        for switch in switches {
            let node = self.fresh_name("n");
            let options = json!({
                "driver": "qcow2",
                "node-name": node,
                "file": {"driver": "file", "filename": switch.overlay},
                "backing": null,
            });
            self.qmp
                .execute_raw("blockdev-add", options)
                .await
                .map_err(live_error("blockdev-add overlay"))?;
            let top = self.top_node(&switch.volume);
            actions.push(json!({"type": "blockdev-snapshot", "data": {"node": top, "overlay": node}}));
            added.push((switch.volume.clone(), node, switch.overlay.clone()));
        }
        if self.abort_next_transaction.swap(false, Ordering::SeqCst) {
            actions.push(json!({"type": "abort", "data": {}}));
        }
        if let Err(error) = self.qmp.execute_raw("transaction", json!({"actions": actions})).await {
            for (_, node, _) in &added {
                let _ = self.qmp.execute_raw("blockdev-del", json!({"node-name": node})).await;
            }
            return Err(LiveError::with_source("transaction of blockdev-snapshot", error));
        }
        let mut disks = self.disks.lock().unwrap();
        for (volume, node, overlay) in added {
            disks.get_mut(&volume).unwrap().nodes.push((node, overlay));
        }
        Ok(())
    }

    async fn stream_into_active(&self, request: &StreamRequest) -> Result<(), LiveError> {
        let disk = self.disks.lock().unwrap()[&request.volume].clone();
        let top = disk.top().0.clone();
        let nodes = self.named_nodes().await;
        let base_node = match request.base() {
            None => None,
            Some(base) => Some(
                nodes
                    .iter()
                    .filter(|n| n["drv"] == "qcow2")
                    .find(|n| same_file(&image_file(n["file"].as_str().unwrap()), base))
                    .map(|n| n["node-name"].as_str().unwrap().to_owned())
                    .ok_or_else(|| LiveError::new(format!("no node for base {}", base.display())))?,
            ),
        };
        let job = self.fresh_name("stream");
        let mut events = self.qmp.events();
        let mut args = json!({"job-id": job, "device": top});
        if let Some(base_node) = &base_node {
            args["base-node"] = json!(base_node);
        }
        if let Some(backing_file) = &request.backing_file {
            args["backing-file"] = json!(backing_file);
        }
        self.qmp.execute_raw("block-stream", args).await.map_err(live_error("block-stream"))?;
        let completed = events
            .wait_for(TIMEOUT, |e| matches!(&e.event, Event::BlockJobCompleted(c) if c.device == job))
            .await
            .map_err(|error| LiveError::with_source("waiting for the stream job", error))?;
        if let Event::BlockJobCompleted(completed) = completed.event
            && let Some(error) = completed.error
        {
            return Err(LiveError::new(format!("block-stream failed: {error}")));
        }
        // Release the nodes this helper added that are no longer in the chain, top-down.
        let keep_below = base_node.as_ref().and_then(|base| disk.nodes.iter().position(|(n, _)| n == base));
        let first_dropped = keep_below.map_or(0, |i| i + 1);
        let dropped: Vec<String> =
            disk.nodes[first_dropped..disk.nodes.len() - 1].iter().map(|(n, _)| n.clone()).collect();
        for node in dropped.iter().rev() {
            self.qmp
                .execute_raw("blockdev-del", json!({"node-name": node}))
                .await
                .map_err(live_error("blockdev-del"))?;
        }
        self.disks
            .lock()
            .unwrap()
            .get_mut(&request.volume)
            .unwrap()
            .nodes
            .retain(|(n, _)| !dropped.contains(n));
        Ok(())
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}
