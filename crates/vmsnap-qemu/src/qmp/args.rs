//! Argument types of QMP commands (QEMU 7.2 schema). Optional members are
//! omitted from the request when `None`, so `..Default::default()` gives QEMU's defaults.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::types::BlockdevOnError;

/// Arguments of `qmp_capabilities`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CapabilitiesArgs {
    /// Optional capabilities to enable (e.g. `oob`); none by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable: Option<Vec<String>>,
}

/// Arguments of `query-named-block-nodes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NamedBlockNodesArgs {
    /// Omit the nested backing-image information (QEMU's default is `false`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flat: Option<bool>,
}

/// Arguments of `blockdev-del`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct BlockdevDelArgs {
    /// The node to remove; it must not be in use.
    pub node_name: String,
}

/// Arguments of `device_del`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceDelArgs {
    /// The device id or QOM path. Removal completes with a `DEVICE_DELETED` event.
    pub id: String,
}

/// Arguments of `job-dismiss` and `job-finalize`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobIdArgs {
    /// The job id.
    pub id: String,
}

/// Arguments of `block_resize`: name either the backend `device` or the `node_name`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct BlockResizeArgs {
    /// The block backend name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The node name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// The new size in bytes.
    pub size: i64,
}

/// The options every block job (`block-stream`, `block-commit`) takes beside its own: its id
/// and how it runs.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct BlockJobOptions {
    /// The job id; defaults to the device name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// Rate limit in bytes per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speed: Option<i64>,
    /// What to do on an I/O error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_error: Option<BlockdevOnError>,
    /// Name of the implicit filter node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter_node_name: Option<String>,
    /// Finalise automatically (QEMU default `true`); `false` needs `job-finalize`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_finalize: Option<bool>,
    /// Dismiss automatically (QEMU default `true`); `false` needs `job-dismiss`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_dismiss: Option<bool>,
}

/// Arguments of `block-stream`: copy data from the backing chain into `device`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct BlockStreamArgs {
    /// The node (or backend) to stream into.
    pub device: String,
    /// The node to stop at (exclusive); streams the whole chain when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_node: Option<String>,
    /// The backing file string to write into the image header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backing_file: Option<String>,
    /// The last node to copy from (inclusive); exclusive with `base_node`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bottom: Option<String>,
    /// How the job runs (QEMU's options common to block jobs).
    #[serde(flatten)]
    pub job: BlockJobOptions,
}

/// Arguments of `block-commit`: merge `top_node` down into `base_node`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct BlockCommitArgs {
    /// The node (or backend) whose chain is committed.
    pub device: String,
    /// The node to commit into; defaults to the bottom of the chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_node: Option<String>,
    /// The topmost node to commit; committing the active layer needs `job-complete`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_node: Option<String>,
    /// The backing file string to write into the overlay above `top_node`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backing_file: Option<String>,
    /// How the job runs (QEMU's options common to block jobs).
    #[serde(flatten)]
    pub job: BlockJobOptions,
}

/// Arguments of `transaction`: actions applied atomically.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TransactionArgs {
    /// The actions, in order.
    pub actions: Vec<TransactionAction>,
    /// How job-starting actions complete together.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub properties: Option<TransactionProperties>,
}

/// One action of a `transaction` (`{"type": ..., "data": {...}}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "kebab-case")]
pub enum TransactionAction {
    /// Make the existing node `overlay` (added with `"backing": null`) the new top of `node`'s chain.
    BlockdevSnapshot {
        /// The current top node.
        node: String,
        /// The new overlay node.
        overlay: String,
    },
    /// Add a dirty bitmap to a node.
    BlockDirtyBitmapAdd {
        /// The node.
        node: String,
        /// The bitmap name.
        name: String,
        /// Whether the bitmap is stored in the image (qcow2 only).
        #[serde(skip_serializing_if = "Option::is_none")]
        persistent: Option<bool>,
    },
    /// Fail the transaction on purpose (useful to test rollback).
    Abort {},
    /// Any other action, given as the whole `{"type": ..., "data": ...}` object.
    #[serde(untagged)]
    Other(Value),
}

/// The `properties` of a `transaction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TransactionProperties {
    /// `individual` (default) or `grouped`: whether one failing job cancels the others.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_mode: Option<CompletionMode>,
}

/// How the jobs of a transaction complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CompletionMode {
    /// Each job completes on its own.
    Individual,
    /// A failing job cancels the others.
    Grouped,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_job_options_are_members_of_the_jobs_arguments_as_qemu_reads_them() {
        let stream = BlockStreamArgs {
            device: "top".into(),
            base_node: Some("base".into()),
            job: BlockJobOptions {
                job_id: Some("stream-top".into()),
                auto_dismiss: Some(false),
                speed: Some(1024),
                ..BlockJobOptions::default()
            },
            ..BlockStreamArgs::default()
        };
        let json = serde_json::to_value(&stream).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"job-id": "stream-top", "device": "top", "base-node": "base", "speed": 1024, "auto-dismiss": false})
        );
        assert_eq!(serde_json::from_value::<BlockStreamArgs>(json).unwrap(), stream);
        let commit = BlockCommitArgs {
            device: "top".into(),
            job: BlockJobOptions { auto_finalize: Some(false), ..BlockJobOptions::default() },
            ..BlockCommitArgs::default()
        };
        assert_eq!(
            serde_json::to_value(&commit).unwrap(),
            serde_json::json!({"device": "top", "auto-finalize": false})
        );
    }
}
