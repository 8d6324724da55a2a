//! Caller-chosen identifiers of volumes and snapshots, and the engine's own layer ids.
//!
//! Ids are opaque to the engine but end up in file names and in the manifest,
//! so they are validated once, at construction: 1 to 128 characters of
//! `[A-Za-z0-9._-]`, not starting with `.` or `-`. A Kubernetes object is
//! usually named by its UID (`pvc-3f2c...`), which always fits.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The longest id accepted, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// An id that is not a safe file-name component.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{kind} id {value:?} is invalid: {reason}; use 1 to 128 characters of A-Z, a-z, 0-9, '.', '_' and '-', not starting with '.' or '-'"
)]
pub struct InvalidIdError {
    /// Which kind of id it was meant to be (`volume`, `snapshot`, `layer`).
    pub kind: &'static str,
    /// The rejected value.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

fn validate(kind: &'static str, value: &str) -> Result<(), InvalidIdError> {
    let fail = |reason| Err(InvalidIdError { kind, value: value.to_owned(), reason });
    if value.is_empty() {
        return fail("it is empty");
    }
    if value.len() > MAX_ID_LEN {
        return fail("it is longer than 128 bytes");
    }
    if value.starts_with('.') || value.starts_with('-') {
        return fail("it starts with '.' or '-'");
    }
    if !value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        return fail("it contains a character outside A-Z, a-z, 0-9, '.', '_' and '-'");
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates `value` as an id.
            pub fn new(value: impl Into<String>) -> Result<Self, InvalidIdError> {
                let value = value.into();
                validate($kind, &value)?;
                Ok(Self(value))
            }

            /// The id as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = InvalidIdError;

            fn from_str(value: &str) -> Result<Self, Self::Err> {
                Self::new(value)
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidIdError;

            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

id_type!(
    /// The id of a volume (a PVC's disk), chosen by the caller.
    VolumeId,
    "volume"
);
id_type!(
    /// The id of a volume snapshot, chosen by the caller.
    SnapshotId,
    "snapshot"
);
id_type!(
    /// The id of one file of a driver (a qcow2 layer, or a copy driver's
    /// file), chosen by the engine: 32 lowercase hex digits.
    LayerId,
    "layer"
);

impl LayerId {
    /// A fresh random id.
    pub(crate) fn generate() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_style_names_and_uids_are_accepted() {
        for value in ["pvc-3f2c1e0a-9d4b-4c1e-8f00-1234567890ab", "disk0", "a", "ns.name_1", &"x".repeat(128)]
        {
            assert_eq!(VolumeId::new(value).unwrap().as_str(), value);
        }
    }

    #[test]
    fn path_like_or_empty_ids_are_rejected_with_the_value_and_the_reason() {
        let cases = [
            ("", "it is empty"),
            ("..", "it starts with '.' or '-'"),
            (".hidden", "it starts with '.' or '-'"),
            ("-rf", "it starts with '.' or '-'"),
            ("a/b", "it contains a character outside A-Z, a-z, 0-9, '.', '_' and '-'"),
            ("a b", "it contains a character outside A-Z, a-z, 0-9, '.', '_' and '-'"),
            ("é", "it contains a character outside A-Z, a-z, 0-9, '.', '_' and '-'"),
        ];
        for (value, reason) in cases {
            let error = SnapshotId::new(value).unwrap_err();
            assert_eq!((error.kind, error.value.as_str(), error.reason), ("snapshot", value, reason));
        }
        let error = VolumeId::new("x".repeat(129)).unwrap_err();
        assert_eq!(error.reason, "it is longer than 128 bytes");
    }

    #[test]
    fn ids_are_validated_when_deserialised() {
        assert_eq!(serde_json::from_str::<VolumeId>("\"disk0\"").unwrap().as_str(), "disk0");
        let error = serde_json::from_str::<VolumeId>("\"../etc\"").unwrap_err();
        assert!(error.to_string().contains("volume id \"../etc\" is invalid"), "{error}");
    }

    #[test]
    fn generated_layer_ids_are_distinct_and_valid() {
        let (a, b) = (LayerId::generate(), LayerId::generate());
        assert_ne!(a, b);
        assert_eq!(LayerId::new(a.as_str()).unwrap(), a);
        assert_eq!(a.as_str().len(), 32);
    }
}
