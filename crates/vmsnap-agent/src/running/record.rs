//! `agent.json` in a VMI's runtime directory: which VMI a QEMU belongs to and
//! which storage volume each of its disks is, so that an agent that restarts
//! finds its VMIs' volumes again without asking the API (the PVCs may be gone).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::volumes::ResolvedVolume;

/// The version of the record format.
const FORMAT_VERSION: u32 = 1;

/// The file name, next to the runtime's `spec.json`.
pub const FILE_NAME: &str = "agent.json";

/// A volume attached to the VMI, and its guest device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachedVolume {
    /// The volume as resolved when it was attached.
    pub volume: ResolvedVolume,
    /// Its guest device, e.g. `vdb`.
    pub target: String,
}

impl AttachedVolume {
    /// The volume (and QEMU disk) name.
    pub fn name(&self) -> &str {
        &self.volume.disk.name
    }
}

/// The record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentRecord {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// The VMI's namespace.
    pub namespace: String,
    /// The VMI's name.
    pub name: String,
    /// The VMI's uid (also the runtime directory's name).
    pub uid: String,
    /// The attached volumes, in attachment order.
    pub volumes: Vec<AttachedVolume>,
}

impl AgentRecord {
    /// A record of the current format.
    pub fn new(namespace: &str, name: &str, uid: &str, volumes: Vec<AttachedVolume>) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            namespace: namespace.into(),
            name: name.into(),
            uid: uid.into(),
            volumes,
        }
    }

    /// Writes the record into `dir`, atomically.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let path = dir.join(FILE_NAME);
        let temp = dir.join(format!("{FILE_NAME}.tmp"));
        std::fs::write(&temp, serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
        std::fs::rename(&temp, path)
    }

    /// Reads the record from `dir`; `None` when there is none or it is not of this format.
    pub fn read(dir: &Path) -> Option<Self> {
        let bytes = std::fs::read(dir.join(FILE_NAME)).ok()?;
        let record: Self = serde_json::from_slice(&bytes).ok()?;
        (record.format_version == FORMAT_VERSION).then_some(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmsnap_vmm::{DiskFormat, DiskSpec};

    #[test]
    fn the_record_reads_back_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let volume = ResolvedVolume {
            disk: DiskSpec::new("data", "/v/data.qcow2", DiskFormat::Qcow2),
            claim: None,
            hotplugged: true,
        };
        let record =
            AgentRecord::new("ns", "vm", "uid-1", vec![AttachedVolume { volume, target: "vdb".into() }]);

        record.write(dir.path()).unwrap();

        assert_eq!(AgentRecord::read(dir.path()), Some(record));
        std::fs::write(dir.path().join(FILE_NAME), r#"{"formatVersion": 99}"#).unwrap();
        assert_eq!(AgentRecord::read(dir.path()), None);
    }
}
