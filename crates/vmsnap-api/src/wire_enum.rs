//! Lifecycles that KubeVirt declares as string types (`type VirtualMachineSnapshotPhase string`):
//! an enum with a variant per state KubeVirt names, and `Other` for any other string, since
//! KubeVirt's schema accepts any string there and a newer KubeVirt may write a state this version
//! does not know. It serializes as exactly the string it was read from.

/// Declares such an enum: `Name { Variant = "wire", ... }`, each with its doc comment.
macro_rules! wire_enum {
    (
        $(#[doc = $doc:expr])+
        $name:ident {
            $($(#[doc = $variant_doc:expr])+ $variant:ident = $wire:expr,)+
        }
    ) => {
        $(#[doc = $doc])+
        #[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(from = "String", into = "String")]
        pub enum $name {
            $($(#[doc = $variant_doc])+ $variant,)+
            /// A state this version does not know, kept as written.
            Other(String),
        }

        impl $name {
            /// The string KubeVirt writes for it.
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $wire,)+
                    $name::Other(other) => other,
                }
            }
        }

        /// Go's zero value, the empty string (the unset state).
        impl Default for $name {
            fn default() -> Self {
                $name::from("")
            }
        }

        impl From<&str> for $name {
            fn from(wire: &str) -> Self {
                match wire {
                    $(w if w == $wire => $name::$variant,)+
                    other => $name::Other(other.to_owned()),
                }
            }
        }

        impl From<String> for $name {
            fn from(wire: String) -> Self {
                match $name::from(wire.as_str()) {
                    $name::Other(_) => $name::Other(wire),
                    known => known,
                }
            }
        }

        impl From<$name> for String {
            fn from(state: $name) -> String {
                match state {
                    $name::Other(other) => other,
                    known => known.as_str().to_owned(),
                }
            }
        }

        /// Reads as its wire string, so that code comparing strings (`phase.as_deref()`) and
        /// printing it needs no conversion.
        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                self.as_str()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        /// The schema of a string, as KubeVirt's CRDs declare it (no enum: any string is valid).
        impl schemars::JsonSchema for $name {
            fn inline_schema() -> bool {
                true
            }
            fn schema_name() -> std::borrow::Cow<'static, str> {
                <String as schemars::JsonSchema>::schema_name()
            }
            fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
                <String as schemars::JsonSchema>::json_schema(generator)
            }
        }
    };
}

pub(crate) use wire_enum;

#[cfg(test)]
mod tests {
    use crate::kubevirt::VmiPhase;
    use crate::snapshot::SnapshotPhase;

    #[test]
    fn every_state_kubevirt_names_reads_and_writes_as_its_string() {
        for (wire, phase) in [
            ("", SnapshotPhase::Unset),
            ("InProgress", SnapshotPhase::InProgress),
            ("Succeeded", SnapshotPhase::Succeeded),
            ("Failed", SnapshotPhase::Failed),
            ("Deleting", SnapshotPhase::Deleting),
            ("Unknown", SnapshotPhase::Unknown),
        ] {
            let json = serde_json::to_string(wire).unwrap();
            assert_eq!(serde_json::from_str::<SnapshotPhase>(&json).unwrap(), phase);
            assert_eq!(serde_json::to_string(&phase).unwrap(), json);
        }
        let vmi: Vec<VmiPhase> = serde_json::from_str(
            r#"["", "Pending", "Scheduling", "Scheduled", "Running", "Succeeded", "Failed", "WaitingForSync", "Unknown"]"#,
        )
        .unwrap();
        assert!(!vmi.iter().any(|p| matches!(p, VmiPhase::Other(_))), "{vmi:?}");
        assert_eq!(vmi[4], VmiPhase::Running);
    }

    #[test]
    fn backup_and_restore_phases_read_and_write_as_their_strings() {
        use crate::backup::{BackupPhase, RestorePhase};
        let backups: Vec<BackupPhase> =
            serde_json::from_str(r#"["Pending", "InProgress", "Succeeded", "Failed", "Paused"]"#).unwrap();
        assert_eq!(
            backups,
            [
                BackupPhase::Pending,
                BackupPhase::InProgress,
                BackupPhase::Succeeded,
                BackupPhase::Failed,
                BackupPhase::Other("Paused".into())
            ]
        );
        assert_eq!(serde_json::to_string(&RestorePhase::InProgress).unwrap(), r#""InProgress""#);
        assert_eq!(RestorePhase::from("Failed"), RestorePhase::Failed);
    }

    #[test]
    fn a_state_this_version_does_not_know_is_kept_as_written() {
        let phase: SnapshotPhase = serde_json::from_str(r#""Paused ""#).unwrap();
        assert_eq!(phase, SnapshotPhase::Other("Paused ".into()));
        assert_eq!(serde_json::to_string(&phase).unwrap(), r#""Paused ""#);
        // Case matters, as in Go: "running" is not Running.
        assert_eq!(VmiPhase::from("running"), VmiPhase::Other("running".into()));
    }

    #[test]
    fn the_schema_is_a_plain_string_as_in_kubevirts_crds() {
        let schema = schemars::schema_for!(SnapshotPhase);
        assert_eq!(schema.get("type"), Some(&serde_json::json!("string")));
        assert!(schema.get("enum").is_none());
    }
}
