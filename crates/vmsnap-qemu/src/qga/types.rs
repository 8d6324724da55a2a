//! Data types of QEMU guest agent replies (QEMU 7.2 schema).
//!
//! Only the members vmsnap reads are typed; unknown members are ignored.

use serde::{Deserialize, Deserializer, Serialize};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// The reply to `guest-info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestAgentInfo {
    /// The agent version, e.g. `7.2.0`.
    pub version: String,
    /// The commands the agent knows, and whether each is enabled.
    pub supported_commands: Vec<GuestAgentCommandInfo>,
}

/// One entry of [`GuestAgentInfo::supported_commands`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct GuestAgentCommandInfo {
    /// The command name.
    pub name: String,
    /// Whether the guest admin left it enabled.
    pub enabled: bool,
    /// Whether it replies on success.
    pub success_response: bool,
}

/// The reply to `guest-get-osinfo` (fields from os-release and uname).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
#[allow(missing_docs)] // Each member is the os-release or uname field of the same name.
pub struct GuestOsInfo {
    pub kernel_release: Option<String>,
    pub kernel_version: Option<String>,
    pub machine: Option<String>,
    pub id: Option<String>,
    pub name: Option<String>,
    pub pretty_name: Option<String>,
    pub version: Option<String>,
    pub version_id: Option<String>,
    pub variant: Option<String>,
    pub variant_id: Option<String>,
}

/// The reply to `guest-get-host-name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct GuestHostName {
    /// The guest's host name.
    pub host_name: String,
}

/// The reply to `guest-fsfreeze-status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FsfreezeStatus {
    /// No filesystem is frozen.
    Thawed,
    /// The freezable guest filesystems are frozen.
    Frozen,
}

/// One entry of `guest-get-fsinfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct GuestFilesystemInfo {
    /// The block device name, e.g. `vda1`.
    pub name: String,
    /// Where it is mounted; pass it to `guest-fsfreeze-freeze-list`.
    pub mountpoint: String,
    /// The filesystem type, e.g. `ext4`.
    #[serde(rename = "type")]
    pub fs_type: String,
    /// Bytes in use.
    #[serde(default)]
    pub used_bytes: Option<u64>,
    /// Total bytes.
    #[serde(default)]
    pub total_bytes: Option<u64>,
    /// The disks the filesystem lives on (empty when the bus is not supported).
    #[serde(default)]
    pub disk: Vec<GuestDiskAddress>,
}

/// Where a disk is attached, as the guest sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct GuestDiskAddress {
    /// The bus, e.g. `virtio` or `scsi`.
    pub bus_type: String,
    /// Bus number.
    pub bus: i64,
    /// Target number.
    pub target: i64,
    /// Unit number.
    pub unit: i64,
    /// The disk serial, which matches the `serial` property given to the QEMU device.
    #[serde(default)]
    pub serial: Option<String>,
    /// The device node, e.g. `/dev/vda1`.
    #[serde(default)]
    pub dev: Option<String>,
}

/// The reply to `guest-exec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecStarted {
    /// The guest pid, for `guest-exec-status`.
    pub pid: i64,
}

/// The reply to `guest-exec-status`, with captured output already base64-decoded.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ExecStatus {
    /// Whether the process has terminated (the agent then forgets the pid).
    pub exited: bool,
    /// The exit code, if it exited normally.
    #[serde(default)]
    pub exitcode: Option<i64>,
    /// The signal that killed it, if it did not.
    #[serde(default)]
    pub signal: Option<i64>,
    /// Captured stdout (present only with `capture-output`).
    #[serde(default, deserialize_with = "base64_bytes", skip_serializing)]
    pub out_data: Option<Vec<u8>>,
    /// Captured stderr (present only with `capture-output`).
    #[serde(default, deserialize_with = "base64_bytes", skip_serializing)]
    pub err_data: Option<Vec<u8>>,
    /// Whether stdout was cut at the agent's limit.
    #[serde(default)]
    pub out_truncated: bool,
    /// Whether stderr was cut at the agent's limit.
    #[serde(default)]
    pub err_truncated: bool,
}

fn base64_bytes<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Vec<u8>>, D::Error> {
    let Some(text) = Option::<String>::deserialize(deserializer)? else {
        return Ok(None);
    };
    STANDARD.decode(text.as_bytes()).map(Some).map_err(serde::de::Error::custom)
}

/// One entry of `guest-network-get-interfaces`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct GuestNetworkInterface {
    /// The interface name, e.g. `eth0`.
    pub name: String,
    /// The MAC address.
    #[serde(default)]
    pub hardware_address: Option<String>,
    /// The addresses assigned to it.
    #[serde(default)]
    pub ip_addresses: Vec<GuestIpAddress>,
}

/// An address of a guest interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct GuestIpAddress {
    /// The address.
    pub ip_address: String,
    /// `ipv4` or `ipv6`.
    pub ip_address_type: String,
    /// The prefix length.
    pub prefix: i64,
}
