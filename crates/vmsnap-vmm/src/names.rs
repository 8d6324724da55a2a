//! Names derived from disk names: guest serials, QEMU device ids and block node names.
//!
//! virtio-blk shows the guest at most 20 bytes of a serial, and QEMU node names
//! have at most 31 characters, while a KubeVirt volume name can have 63. Names
//! that do not fit are mapped, deterministically, to their first 11 bytes, a
//! dash and 8 hex digits of their SHA-256 ([`short_name`]). The mapping is a
//! persisted contract: the guest mounts a disk at `/mnt/<serial>`, so it must
//! never change for a given name.

use sha2::{Digest, Sha256};

/// The longest explicit serial, in characters: KubeVirt's VMI admission limit.
pub const MAX_SERIAL_LEN: usize = 256;

/// The length of a [`short_name`]: the serial bytes virtio-blk shows the guest.
pub const SHORT_NAME_LEN: usize = 20;

/// How many bytes of a long name [`short_name`] keeps before its hash.
const KEPT_PREFIX: usize = SHORT_NAME_LEN - 9;

/// `name` itself when it has at most [`SHORT_NAME_LEN`] bytes, else its first
/// 11 bytes, `-` and the first 8 hex digits of its SHA-256: always at most 20
/// bytes, and the same for the same name.
///
/// ```
/// use vmsnap_vmm::short_name;
/// assert_eq!(short_name("data"), "data");
/// assert_eq!(short_name("a-rather-long-volume-name"), "a-rather-lo-e728ab7d");
/// ```
pub fn short_name(name: &str) -> String {
    if name.len() <= SHORT_NAME_LEN {
        return name.to_owned();
    }
    let mut cut = KEPT_PREFIX;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    let digest = Sha256::digest(name.as_bytes());
    format!("{}-{}", &name[..cut], &hex::encode(digest)[..8])
}

/// Where the test guest mounts a disk with this serial.
pub fn guest_mount_point(serial: &str) -> String {
    format!("/mnt/{serial}")
}

/// The QEMU device id of the disk `name` (`disk-<name>`).
pub fn device_id(name: &str) -> String {
    format!("disk-{name}")
}

/// The disk name behind a device id or a `query-block` `qdev` path: a virtio-blk
/// disk shows `/machine/peripheral/disk-data/virtio-backend`, SCSI and SATA
/// disks their id, `disk-data`.
pub(crate) fn disk_of_qdev(qdev: &str) -> Option<&str> {
    let id = qdev.strip_prefix("/machine/peripheral/").unwrap_or(qdev);
    let id = id.strip_suffix("/virtio-backend").unwrap_or(id);
    id.strip_prefix("disk-")
}

/// The two nodes of one layer of a disk: the format node on top of the file node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LayerNodes {
    /// The qcow2 or raw node.
    pub(crate) format: String,
    /// The `file` protocol node below it.
    pub(crate) file: String,
}

/// The nodes of layer `generation` of the disk `name`: generation 0 is the
/// layer given at launch or hotplug (`fmt-<key>`, `file-<key>`), and each
/// overlay added by a snapshot takes the next one (`fmt3-<key>`, `file3-<key>`).
/// The key is [`short_name`] of the disk name, so names stay within QEMU's 31 characters.
pub(crate) fn layer_nodes(name: &str, generation: u32) -> LayerNodes {
    let key = short_name(name);
    let generation = if generation == 0 { String::new() } else { generation.to_string() };
    LayerNodes { format: format!("fmt{generation}-{key}"), file: format!("file{generation}-{key}") }
}

/// What a node name made by [`layer_nodes`] says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ParsedNode<'a> {
    /// Whether it is the format node (else the file node).
    pub(crate) is_format: bool,
    /// The layer generation.
    pub(crate) generation: u32,
    /// The disk key ([`short_name`] of the disk name).
    pub(crate) key: &'a str,
}

/// Parses a node name made by [`layer_nodes`]; `None` for any other node.
pub(crate) fn parse_node(node: &str) -> Option<ParsedNode<'_>> {
    let (is_format, rest) = if let Some(rest) = node.strip_prefix("fmt") {
        (true, rest)
    } else {
        (false, node.strip_prefix("file")?)
    };
    let (digits, key) = rest.split_once('-')?;
    let generation = match digits {
        "" => 0,
        digits if digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0') => {
            digits.parse().ok()?
        }
        _ => return None,
    };
    (!key.is_empty()).then_some(ParsedNode { is_format, generation, key })
}

/// Whether `name` can be a disk or NIC name: 1 to 63 bytes of ASCII letters,
/// digits, `-`, `.` and `_`, starting with a letter or digit (every DNS-1123
/// label, as KubeVirt volume names are, qualifies).
pub(crate) fn is_valid_device_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_kept_and_long_ones_are_mapped_to_20_bytes() {
        assert_eq!(short_name("data"), "data");
        assert_eq!(short_name("exactly-twenty-bytes"), "exactly-twenty-bytes");
        let long = short_name("exactly-twenty-one-by");
        assert_eq!(long.len(), 20);
        assert_eq!(long, short_name("exactly-twenty-one-by"));
        assert!(long.starts_with("exactly-twe-"), "{long}");
        assert_ne!(short_name("a-rather-long-volume-name-1"), short_name("a-rather-long-volume-name-2"));
    }

    #[test]
    fn short_name_never_splits_a_character() {
        let name = "ééééééééééééééééé"; // 34 bytes, every character two bytes long
        let short = short_name(name);
        assert!(short.len() <= SHORT_NAME_LEN);
        assert!(short.starts_with("ééééé-"), "{short}");
    }

    #[test]
    fn layer_nodes_fit_qemu_limits_and_parse_back() {
        let name = "a-volume-name-that-is-as-long-as-a-dns-label-may-be-0123456789";
        let nodes = layer_nodes(name, 999_999);
        assert!(nodes.format.len() <= 31 && nodes.file.len() <= 31, "{nodes:?}");
        let parsed = parse_node(&nodes.file).unwrap();
        assert_eq!(parsed, ParsedNode { is_format: false, generation: 999_999, key: &short_name(name) });
        assert_eq!(
            layer_nodes("data", 0),
            LayerNodes { format: "fmt-data".into(), file: "file-data".into() }
        );
        assert_eq!(parse_node("fmt-x-a").map(|p| p.key), Some("x-a"));
        assert_eq!(parse_node("fmt2-a"), Some(ParsedNode { is_format: true, generation: 2, key: "a" }));
        assert_eq!(parse_node("fmt02-a"), None);
        assert_eq!(parse_node("#block123"), None);
        assert_eq!(parse_node("fmtx-a"), None);
        assert_eq!(parse_node("fmt-"), None);
    }

    #[test]
    fn qdev_paths_name_their_disk() {
        assert_eq!(disk_of_qdev("/machine/peripheral/disk-data/virtio-backend"), Some("data"));
        assert_eq!(disk_of_qdev("disk-data"), Some("data"));
        assert_eq!(disk_of_qdev("/machine/peripheral-anon/device[3]/virtio-backend"), None);
    }

    #[test]
    fn device_names_follow_dns_labels() {
        assert!(is_valid_device_name("rootdisk"));
        assert!(is_valid_device_name("0data.v1_x"));
        assert!(!is_valid_device_name(""));
        assert!(!is_valid_device_name("-data"));
        assert!(!is_valid_device_name("data,id=x"));
        assert!(!is_valid_device_name(&"a".repeat(64)));
    }
}
