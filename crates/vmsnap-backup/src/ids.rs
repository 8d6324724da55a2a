//! The names of chunks and backups.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Display, Debug, FromStr and serde as 64 lowercase hex digits, for a newtype over `[u8; 32]`
/// (`what` names it in a parse error).
macro_rules! hex_digest {
    ($name:ident, $what:literal) => {
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({self})", stringify!($name))
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let mut bytes = [0u8; 32];
                if s.len() != 64 || s.bytes().any(|b| b.is_ascii_uppercase()) {
                    return Err(format!("{} {s:?} is not 64 lowercase hex digits", $what));
                }
                hex::decode_to_slice(s, &mut bytes).map_err(|e| format!("{} {s:?}: {e}", $what))?;
                Ok($name(bytes))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// A chunk's name: the keyed BLAKE3 hash of its plaintext, 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId([u8; 32]);

impl ChunkId {
    /// Wraps the 32 hash bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        ChunkId(bytes)
    }

    /// The object path of the chunk: `chunks/<first two hex digits>/<64 hex digits>` (the fan-out
    /// keeps local directories small; S3 does not care).
    pub fn object_path(&self) -> String {
        let hex = self.to_string();
        format!("{}{}/{hex}", crate::layout::CHUNKS, &hex[..2])
    }
}

hex_digest!(ChunkId, "chunk name");

/// The plain SHA-256 of a chunk's plaintext, as a manifest records it (64 lowercase hex digits):
/// the tree digest of a disk is made of these, and needs no key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkSha256([u8; 32]);

impl ChunkSha256 {
    /// Wraps the 32 digest bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        ChunkSha256(bytes)
    }

    /// The SHA-256 of `plaintext`.
    pub fn of(plaintext: &[u8]) -> Self {
        use sha2::Digest as _;
        ChunkSha256(sha2::Sha256::digest(plaintext).into())
    }

    /// The 32 digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

hex_digest!(ChunkSha256, "chunk SHA-256");

/// A backup's id: 32 lowercase hex digits, random (the object name says nothing of the VM or the
/// time; both are inside the encrypted manifest).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct BackupId(String);

impl BackupId {
    /// A fresh random id.
    pub fn generate() -> Self {
        BackupId(hex::encode(crate::crypto::random_bytes::<16>()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for BackupId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() == 32 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            Ok(BackupId(s.to_string()))
        } else {
            Err(format!("backup id {s:?} is not 32 lowercase hex digits"))
        }
    }
}

impl Serialize for BackupId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for BackupId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_refuse_other_text() {
        let id = ChunkId::from_bytes([0xab; 32]);
        assert_eq!(id.to_string().parse::<ChunkId>().unwrap(), id);
        assert!(id.object_path().starts_with("chunks/ab/abab"));
        assert!("AB".repeat(32).parse::<ChunkId>().is_err());
        assert!("ab".parse::<ChunkId>().is_err());
        let b = BackupId::generate();
        assert_eq!(b.as_str().parse::<BackupId>().unwrap(), b);
        assert!("../x".parse::<BackupId>().is_err());
    }
}
