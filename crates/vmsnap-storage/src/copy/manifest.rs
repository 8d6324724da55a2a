//! The persisted state of the copy driver: every volume and snapshot is one raw file.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::driver::VolumeFormat;
use crate::id::{LayerId, SnapshotId, VolumeId};
use crate::manifest_file::FORMAT_VERSION;
use crate::store::{DriverManifest, SnapshotRecord, VolumeRecord};

/// The `driver` member of this driver's manifest.
pub(crate) const DRIVER: &str = "copy";

/// `manifest.json` of the copy driver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Manifest {
    /// Always [`FORMAT_VERSION`].
    pub format_version: u64,
    /// Always [`DRIVER`].
    pub driver: String,
    /// Volumes, by id.
    pub volumes: BTreeMap<VolumeId, Entry>,
    /// Snapshots, by id.
    pub snapshots: BTreeMap<SnapshotId, SnapshotEntry>,
}

/// A volume: one raw file under `files/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Entry {
    /// The file's id; the file is `files/<id>.raw`.
    pub file: LayerId,
    /// The virtual size (the file's length), in bytes.
    pub size_bytes: u64,
}

impl VolumeRecord for Entry {
    fn active(&self) -> (&LayerId, u64) {
        (&self.file, self.size_bytes)
    }
}

/// A snapshot: a full copy of its volume's file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct SnapshotEntry {
    /// The copy's id; the file is `files/<id>.raw`.
    pub file: LayerId,
    /// The volume it was taken of.
    pub source_volume: VolumeId,
    /// The size of a restored volume, in bytes.
    pub size_bytes: u64,
    /// When the copy was taken.
    pub created_at: DateTime<Utc>,
}

/// The file name of a copy-driver file inside `files/`.
pub(crate) fn file_name(id: &LayerId) -> String {
    format!("{id}.raw")
}

impl Manifest {
    /// Every file the manifest refers to.
    pub fn files(&self) -> impl Iterator<Item = &LayerId> {
        self.volumes.values().map(|v| &v.file).chain(self.snapshots.values().map(|s| &s.file))
    }
}

impl DriverManifest for Manifest {
    const DRIVER: &'static str = DRIVER;
    type Volume = Entry;
    type Snapshot = SnapshotEntry;
    const DATA_DIR: &'static str = "files";
    const FORMAT: VolumeFormat = VolumeFormat::Raw;

    fn empty() -> Self {
        Self {
            format_version: FORMAT_VERSION,
            driver: DRIVER.to_owned(),
            volumes: BTreeMap::new(),
            snapshots: BTreeMap::new(),
        }
    }

    /// Each file belongs to exactly one volume or snapshot.
    fn validate(&self) -> Result<(), String> {
        if self.format_version != FORMAT_VERSION || self.driver != DRIVER {
            return Err(format!(
                "unexpected formatVersion {} or driver {:?}",
                self.format_version, self.driver
            ));
        }
        let mut seen = BTreeSet::new();
        for file in self.files() {
            if !seen.insert(file) {
                return Err(format!("file {file} belongs to more than one volume or snapshot"));
            }
        }
        Ok(())
    }

    fn file_name(id: &LayerId) -> String {
        file_name(id)
    }

    fn data_files(&self) -> Vec<&LayerId> {
        self.files().collect()
    }

    fn volume_map(&self) -> &BTreeMap<VolumeId, Entry> {
        &self.volumes
    }

    fn snapshot_map(&self) -> &BTreeMap<SnapshotId, SnapshotEntry> {
        &self.snapshots
    }
}

impl SnapshotRecord for SnapshotEntry {
    fn parts(&self) -> (&LayerId, &VolumeId, u64, DateTime<Utc>) {
        (&self.file, &self.source_volume, self.size_bytes, self.created_at)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn the_manifest_format_matches_its_golden_file() {
        let golden = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/copy-manifest-v1.json");
        let mut manifest = Manifest::empty();
        let (volume_file, snapshot_file) = (
            "0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a".parse().unwrap(),
            "1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b".parse().unwrap(),
        );
        manifest.volumes.insert("disk0".parse().unwrap(), Entry { file: volume_file, size_bytes: 16 << 20 });
        manifest.snapshots.insert(
            "snap-1".parse().unwrap(),
            SnapshotEntry {
                file: snapshot_file,
                source_volume: "disk0".parse().unwrap(),
                size_bytes: 16 << 20,
                created_at: "2025-01-02T03:04:05.678Z".parse().unwrap(),
            },
        );
        manifest.validate().unwrap();
        let rendered = serde_json::to_string_pretty(&manifest).unwrap() + "\n";
        if std::env::var("VMSNAP_BLESS").as_deref() == Ok("1") {
            std::fs::write(&golden, &rendered).unwrap();
        }
        let expected =
            std::fs::read_to_string(&golden).expect("golden file (regenerate with VMSNAP_BLESS=1)");
        assert_eq!(
            rendered, expected,
            "the persisted format changed: review, then bless with VMSNAP_BLESS=1"
        );
        assert_eq!(serde_json::from_str::<Manifest>(&expected).unwrap(), manifest);
    }

    #[test]
    fn a_file_shared_by_two_objects_is_rejected() {
        let mut manifest = Manifest::empty();
        let file: LayerId = "0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a".parse().unwrap();
        for name in ["a", "b"] {
            manifest.volumes.insert(name.parse().unwrap(), Entry { file: file.clone(), size_bytes: 512 });
        }
        assert!(manifest.validate().unwrap_err().contains("more than one"));
    }
}
