//! `VirtualMachineBackupRepository`: where backups go (a local directory or an S3 bucket) and the
//! Secrets that open it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::custom_resource::custom_resource;

use super::SecretKeySelector;
use crate::snapshot::Condition;

custom_resource! {
    /// A backup repository. Exactly one of `local` and `s3` is set (checked at admission). A
    /// location that holds no repository yet gets one, sealed with the passphrase; one that does is
    /// opened, and the backups already in it appear as `VirtualMachineRepositoryBackup` objects.
    #[kube(group = "backup.vmsnap.io", version = "v1alpha1", kind = "VirtualMachineBackupRepository")]
    #[kube(namespaced, status = "VirtualMachineBackupRepositoryStatus")]
    #[kube(shortname = "vmrepo", shortname = "vmrepos", category = "all")]
    #[kube(doc = "VirtualMachineBackupRepository is a place (a directory or an S3 bucket) holding encrypted, deduplicated VM backups")]
    #[kube(printcolumn(name = "Location", type_ = "string", json_path = ".status.location"))]
    #[kube(printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type=='Ready')].status"
    ))]
    #[kube(printcolumn(name = "Backups", type_ = "integer", json_path = ".status.backups"))]
    #[kube(printcolumn(name = "Stored", type_ = "string", json_path = ".status.storedSize"))]
    #[kube(printcolumn(name = "Dedup", type_ = "string", json_path = ".status.deduplicationRatio"))]
    #[serde(rename_all = "camelCase")]
    pub struct VirtualMachineBackupRepositorySpec {
        /// A directory on this machine (an NFS mount works the same).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub local: Option<LocalRepository>,
        /// A bucket of an S3-compatible object store.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub s3: Option<S3Repository>,
        /// The passphrase that unlocks the repository's key (key `passphrase` by default). Losing it
        /// loses every backup in the repository: nobody can decrypt them.
        pub passphrase_secret_ref: SecretKeySelector,
        /// The size of the chunks disks are cut into, as a quantity: a power of two from `64Ki` to
        /// `64Mi` (default `512Ki`). Read only when the repository is created (an existing repository
        /// keeps the chunk size it was made with: see `status.chunkSize`), and it cannot change.
        /// Larger chunks mean fewer objects and smaller manifests (a fully allocated disk may be up to
        /// about 7 TiB with `512Ki`, 55 TiB with `4Mi`); smaller ones upload less after small
        /// scattered writes (a write uploads every chunk it touches, whole).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub chunk_size: Option<String>,
        /// How fast a backup to this repository reads a VM's disks, sustained, in bytes per
        /// second as a quantity: at least `1Mi`, default `256Mi`. The first 64 MiB of each disk
        /// are read at full speed. Reading less per second leaves the guests more of the CPUs,
        /// memory bandwidth and disk they share with the backup; in practice it slows the reading
        /// of data the repository already has (new data waits for its uploads). Restores and
        /// verifies are not limited. May change at any time; a backup reads the value when it
        /// starts.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub read_limit: Option<String>,
    }
}

/// A repository in a local directory.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalRepository {
    /// An absolute path; unset means `<data dir>/backups/<namespace>/<name>` of `vmsnap serve`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// A repository in an S3 bucket.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Repository {
    /// The endpoint URL (`https://s3.example.com`, or `http://127.0.0.1:8333` for a server on
    /// this machine: plain `http` is accepted on loopback addresses only).
    pub endpoint: String,
    /// The bucket, which must exist.
    pub bucket: String,
    /// A prefix under which the repository lives (`team-a/vms`); empty means the bucket's root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The region (`us-east-1` when unset; most S3-compatible servers accept any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The Secret with the keys `accessKeyId` and `secretAccessKey`.
    pub credentials_secret_ref: SecretName,
}

/// A Secret in the object's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretName {
    /// The Secret's name.
    pub name: String,
}

/// Keys of the S3 credentials Secret.
pub mod s3_secret_key {
    /// The access key id.
    pub const ACCESS_KEY_ID: &str = "accessKeyId";
    /// The secret access key.
    pub const SECRET_ACCESS_KEY: &str = "secretAccessKey";
}

/// The default key of the passphrase Secret.
pub const PASSPHRASE_KEY: &str = "passphrase";

/// The observed repository.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineBackupRepositoryStatus {
    /// Where it is, without credentials (`/var/lib/vmsnap/backups/default/main`,
    /// `s3://bucket/prefix at http://127.0.0.1:8333`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The repository's id (from its `config`): two objects with one id are one repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_id: Option<String>,
    /// The repository format version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format_version: Option<i64>,
    /// The repository's chunk size, as a quantity (`512Ki`, `4Mi`): the one it was created with,
    /// which may differ from `spec.chunkSize` when the repository existed before the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_size: Option<String>,
    /// Backups committed in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backups: Option<i64>,
    /// Distinct chunks stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunks: Option<i64>,
    /// Bytes the chunks take in the repository (compressed and encrypted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_bytes: Option<i64>,
    /// `stored_bytes` for people (`1.2Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_size: Option<String>,
    /// Bytes of the backed-up disks' data (allocated, before deduplication and compression)
    /// over `stored_bytes`, with one decimal (`7.0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deduplication_ratio: Option<String>,
    /// The result of the last verify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verify: Option<VerifyResult>,
    /// The result of the last prune.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_prune: Option<PruneResult>,
    /// `Ready` (opened with the passphrase, or why not), `Progressing` (a verify or prune runs),
    /// `Failure`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation of the spec this status is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// What a verify found.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifyResult {
    /// The request token (the `verify-request` annotation) this answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::timestamp")]
    pub time: Option<Time>,
    /// Every chunk list and chunk read back, decrypted and matched its name.
    pub ok: bool,
    /// Chunks checked.
    #[serde(default)]
    pub chunks_checked: i64,
    /// Chunk lists checked (each names up to 1,024 chunks of a disk).
    #[serde(default)]
    pub chunk_lists_checked: i64,
    /// Backups checked.
    #[serde(default)]
    pub backups_checked: i64,
    /// The chunk lists that failed and what they break (at most 100 listed): each use is the
    /// stretch of 1,024 chunks from that offset, whose chunks are then unknown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bad_chunk_lists: Vec<BadChunkStatus>,
    /// The chunks that failed and what they break (at most 100 listed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bad_chunks: Vec<BadChunkStatus>,
    /// A verify that could not run says why here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One bad chunk, or chunk list.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BadChunkStatus {
    /// The chunk's (or chunk list's) name in the repository.
    pub chunk: String,
    /// `Missing`, `Unreadable` (the storage did not return it) or `Corrupt` (it fails
    /// authentication, or does not match its name or the manifest).
    pub problem: String,
    /// What it breaks: `backup-id disk @ offset` for each use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub breaks: Vec<String>,
}

/// What a prune did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PruneResult {
    /// The request token (the `prune-request` annotation) this answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::timestamp")]
    pub time: Option<Time>,
    /// Chunks deleted.
    #[serde(default)]
    pub chunks_deleted: i64,
    /// Chunk lists deleted.
    #[serde(default)]
    pub chunk_lists_deleted: i64,
    /// Bytes freed in the repository (chunks and chunk lists).
    #[serde(default)]
    pub bytes_freed: i64,
    /// A prune that could not run says why here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
