//! Opening and making a repository, and the object operations the rest of the engine uses.

use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;
use futures::{StreamExt as _, TryStreamExt as _};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStoreExt as _, PutPayload};

use crate::backend::Backend;
use crate::chunk_list::ListsRead;
use crate::committed_index::CommittedIndex;
use crate::crypto::{KdfParams, KeyFile, Keys, MasterKey, ObjectKind};
use crate::error::{Error, Result};
use crate::format::{
    BackupManifest, DEFAULT_CHUNK_SIZE, FORMAT_NAME, FORMAT_VERSION, RepositoryConfig, validate_chunk_size,
};
use crate::manifest_cache::ManifestCache;
use crate::{BackendKind, BackupId, layout};

/// The largest manifest accepted when opening one (a bound on what a corrupt object can make us
/// allocate; a manifest names its disks' chunk lists, ~70 bytes per 512 MiB of disk in the
/// default chunks, so it is far from any real manifest).
const MAX_MANIFEST_LEN: usize = 1 << 31;
/// Manifests read at once by a listing.
const MANIFEST_READS: usize = 8;

/// How a new repository is made.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The chunk size (default [`DEFAULT_CHUNK_SIZE`], 512 KiB).
    pub chunk_size: u32,
    /// The passphrase's key derivation (default [`KdfParams::recommended`]).
    pub kdf: KdfParams,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions { chunk_size: DEFAULT_CHUNK_SIZE, kdf: KdfParams::recommended() }
    }
}

/// An open repository: its configuration and keys. Cheap to clone.
#[derive(Clone)]
pub struct Repository {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) backend: Backend,
    pub(crate) config: RepositoryConfig,
    pub(crate) keys: Keys,
    /// The committed manifests read so far.
    pub(crate) manifests: ManifestCache,
    /// The chunks of the committed backups the last session listed.
    pub(crate) committed_index: CommittedIndex,
}

impl Inner {
    fn new(backend: Backend, config: RepositoryConfig, keys: Keys) -> Arc<Self> {
        Arc::new(Inner {
            backend,
            config,
            keys,
            manifests: ManifestCache::default(),
            committed_index: CommittedIndex::default(),
        })
    }
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("location", &self.inner.backend.location)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Repository {
    /// Makes a new repository with the default options: a random master key sealed under the
    /// passphrase. Refuses a location that already holds one.
    pub async fn init(backend: Backend, passphrase: &str) -> Result<Self> {
        Self::init_with(backend, passphrase, InitOptions::default()).await
    }

    /// Makes a new repository with the given chunk size and key derivation costs.
    pub async fn init_with(backend: Backend, passphrase: &str, options: InitOptions) -> Result<Self> {
        validate_chunk_size(options.chunk_size)
            .map_err(|reason| Error::InvalidInput { what: "chunk size", reason })?;
        if passphrase.is_empty() {
            return Err(Error::InvalidInput { what: "passphrase", reason: "it is empty".to_string() });
        }
        let probe = Repository::unkeyed(backend.clone());
        if probe.head(layout::CONFIG).await?.is_some() {
            return Err(Error::AlreadyInitialized { location: backend.location });
        }
        probe.check_exists().await?;
        let config = RepositoryConfig {
            format: FORMAT_NAME.to_string(),
            version: FORMAT_VERSION,
            id: hex::encode(crate::crypto::random_bytes::<16>()),
            chunk_size: options.chunk_size,
            created: Utc::now(),
        };
        let master = MasterKey::generate();
        let kdf = options.kdf;
        let key_file = {
            let passphrase = passphrase.as_bytes().to_vec();
            let id = config.id.clone();
            tokio::task::spawn_blocking(move || master.wrap(&passphrase, kdf, &id).map(|file| (file, master)))
                .await
                .expect("key derivation does not panic")
                .map_err(|reason| Error::InvalidInput { what: "key derivation parameters", reason })?
        };
        let (key_file, master) = key_file;
        let key_path = format!("{}{}", layout::KEYS, hex::encode(crate::crypto::random_bytes::<8>()));
        probe.put(&key_path, to_json(&key_file)).await?;
        // The config is written last: its presence is what makes the location a repository.
        probe.put(layout::CONFIG, to_json(&config)).await?;
        Ok(Repository { inner: Inner::new(backend, config, master.keys()) })
    }

    /// Opens the repository at `backend` with the passphrase. A fresh machine needs nothing else:
    /// the repository describes itself.
    pub async fn open(backend: Backend, passphrase: &str) -> Result<Self> {
        let probe = Repository::unkeyed(backend.clone());
        let location = backend.location.clone();
        let Some(config_bytes) = probe.get(layout::CONFIG).await? else {
            return Err(Error::NotARepository { location });
        };
        let config: RepositoryConfig = from_json(layout::CONFIG, &config_bytes)?;
        if config.format != FORMAT_NAME || config.version != FORMAT_VERSION {
            return Err(Error::UnsupportedFormat {
                location,
                format: config.format,
                version: config.version,
                expected: FORMAT_NAME,
                supported: FORMAT_VERSION,
            });
        }
        validate_chunk_size(config.chunk_size)
            .map_err(|reason| Error::CorruptObject { path: layout::CONFIG.to_string(), reason })?;
        let key_objects = probe.list(layout::KEYS).await?;
        for meta in &key_objects {
            let path = meta.location.to_string();
            let Some(bytes) = probe.get(&path).await? else { continue };
            let key_file: KeyFile = from_json(&path, &bytes)?;
            let passphrase = passphrase.as_bytes().to_vec();
            let id = config.id.clone();
            let opened = tokio::task::spawn_blocking(move || MasterKey::unwrap(&key_file, &passphrase, &id))
                .await
                .expect("key derivation does not panic")
                .map_err(|reason| Error::CorruptObject { path: path.clone(), reason })?;
            if let Some(master) = opened {
                return Ok(Repository { inner: Inner::new(backend, config, master.keys()) });
            }
        }
        Err(Error::WrongPassphrase { location, keys: key_objects.len() })
    }

    /// A handle for the plain objects read before the key is known.
    fn unkeyed(backend: Backend) -> UnkeyedStore {
        UnkeyedStore { backend }
    }

    /// The repository's configuration.
    pub fn config(&self) -> &RepositoryConfig {
        &self.inner.config
    }

    /// The backend's description.
    pub fn location(&self) -> &str {
        &self.inner.backend.location
    }

    /// Whether it lives in a directory or an S3 bucket.
    pub fn backend_kind(&self) -> BackendKind {
        self.inner.backend.kind
    }

    /// Every committed backup, oldest first (by start time, then id). A fresh machine finds them
    /// all: this lists `manifests/` and opens each, or takes it from the manifests this handle
    /// read before (a committed manifest never changes: see `manifest_cache.rs`).
    /// Shared, not copied: a manifest holds an entry per chunk (32,768 for a 16 GiB disk).
    pub async fn list_backups(&self) -> Result<Vec<Arc<BackupManifest>>> {
        self.committed_manifests().await
    }

    /// Every committed manifest as stored (not from the cache), with its path, oldest first, its
    /// disks' chunk entries not read: a verify reads the lists itself, to report a bad one with
    /// what it breaks rather than stop on it.
    pub(crate) async fn stored_manifests(&self) -> Result<Vec<(String, BackupManifest)>> {
        let mut listed = Vec::new();
        for meta in self.list(layout::MANIFESTS).await? {
            let path = meta.location.to_string();
            listed.push((backup_id_of(&path, layout::MANIFESTS)?, path));
        }
        let read: Vec<Option<(String, BackupManifest)>> = futures::stream::iter(listed)
            .map(|(id, path)| async move {
                let manifest = self.read_manifest_unexpanded(&path, &id).await?;
                Ok::<_, Error>(manifest.map(|m| (path, m)))
            })
            .buffer_unordered(MANIFEST_READS)
            .try_collect()
            .await?;
        let mut manifests: Vec<(String, BackupManifest)> = read.into_iter().flatten().collect();
        manifests.sort_by(|(_, a), (_, b)| a.started.cmp(&b.started).then_with(|| a.id.cmp(&b.id)));
        Ok(manifests)
    }

    async fn committed_manifests(&self) -> Result<Vec<Arc<BackupManifest>>> {
        let mut listed = Vec::new();
        for meta in self.list(layout::MANIFESTS).await? {
            let path = meta.location.to_string();
            listed.push((backup_id_of(&path, layout::MANIFESTS)?, path));
        }
        let ids: Vec<BackupId> = listed.iter().map(|(id, _)| id.clone()).collect();
        let known = self.inner.manifests.retain_listed(&ids);
        let mut backups: Vec<Arc<BackupManifest>> = Vec::with_capacity(listed.len());
        let to_read = listed.into_iter().filter(|(id, _)| match known.get(id) {
            Some(manifest) => {
                backups.push(manifest.clone());
                false
            }
            None => true,
        });
        let to_read: Vec<(BackupId, String)> = to_read.collect();
        let lists = ListsRead::default();
        let lists = &lists;
        let read: Vec<Option<BackupManifest>> = futures::stream::iter(to_read)
            .map(|(id, path)| async move { self.read_manifest_at(&path, &id, lists).await })
            .buffer_unordered(MANIFEST_READS)
            .try_collect()
            .await?;
        // A manifest deleted between the listing and the read is simply gone.
        for manifest in read.into_iter().flatten() {
            let manifest = Arc::new(manifest);
            self.inner.manifests.insert(manifest.clone());
            backups.push(manifest);
        }
        backups.sort_by(|a, b| a.started.cmp(&b.started).then_with(|| a.id.cmp(&b.id)));
        Ok(backups)
    }

    /// The manifest of one committed backup.
    pub async fn backup(&self, id: &BackupId) -> Result<BackupManifest> {
        self.read_manifest_at(&layout::manifest(id), id, &ListsRead::default())
            .await?
            .ok_or_else(|| Error::BackupNotFound(id.clone()))
    }

    /// Deletes a backup. Its manifest moves to `deleted/` (rewritten, so its store time is the
    /// deletion's) and stays there while a backup in flight may rely on its chunks; a later
    /// [`Repository::prune`] frees the chunks no other backup uses.
    pub async fn delete_backup(&self, id: &BackupId) -> Result<()> {
        let path = layout::manifest(id);
        let Some(sealed) = self.get(&path).await? else {
            return Err(Error::BackupNotFound(id.clone()));
        };
        // Authenticate before moving, so that deleting never makes a bad object look deleted.
        self.open_manifest(&path, id, &sealed)?;
        self.put(&layout::deleted(id), sealed.to_vec()).await?;
        self.delete(&path).await?;
        self.inner.manifests.remove(id);
        Ok(())
    }

    /// The manifest at `path` with its disks' chunk entries (read from their lists, or taken from
    /// `lists` when this pass read them for another manifest).
    pub(crate) async fn read_manifest_at(
        &self,
        path: &str,
        id: &BackupId,
        lists: &ListsRead,
    ) -> Result<Option<BackupManifest>> {
        let Some(mut manifest) = self.read_manifest_unexpanded(path, id).await? else { return Ok(None) };
        self.read_chunk_lists(path, &mut manifest, lists).await?;
        Ok(Some(manifest))
    }

    /// The manifest at `path`, its disks' `chunks` left empty (their lists not read).
    pub(crate) async fn read_manifest_unexpanded(
        &self,
        path: &str,
        id: &BackupId,
    ) -> Result<Option<BackupManifest>> {
        let Some(sealed) = self.get(path).await? else { return Ok(None) };
        self.open_manifest(path, id, &sealed).map(Some)
    }

    /// Authenticates and parses a manifest object; its disks' `chunks` are left empty (see
    /// [`Repository::read_manifest_at`]).
    pub(crate) fn open_manifest(&self, path: &str, id: &BackupId, sealed: &[u8]) -> Result<BackupManifest> {
        let plain = self
            .inner
            .keys
            .open(ObjectKind::Manifest, id.as_str(), sealed, MAX_MANIFEST_LEN)
            .map_err(|e| Error::CorruptObject { path: path.to_string(), reason: e.to_string() })?;
        let manifest: BackupManifest = from_json(path, &plain)?;
        if &manifest.id != id {
            return Err(Error::CorruptObject {
                path: path.to_string(),
                reason: format!("it holds backup {} instead of {id}", manifest.id),
            });
        }
        Ok(manifest)
    }

    pub(crate) fn seal_manifest(&self, manifest: &BackupManifest) -> Vec<u8> {
        self.inner.keys.seal(ObjectKind::Manifest, manifest.id.as_str(), &to_json(manifest))
    }

    pub(crate) fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    pub(crate) fn chunk_size(&self) -> u32 {
        self.inner.config.chunk_size
    }

    pub(crate) async fn get(&self, path: &str) -> Result<Option<Bytes>> {
        Repository::unkeyed(self.inner.backend.clone()).get(path).await
    }

    pub(crate) async fn put(&self, path: &str, bytes: Vec<u8>) -> Result<()> {
        Repository::unkeyed(self.inner.backend.clone()).put(path, bytes).await
    }

    pub(crate) async fn head(&self, path: &str) -> Result<Option<ObjectMeta>> {
        Repository::unkeyed(self.inner.backend.clone()).head(path).await
    }

    pub(crate) async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        Repository::unkeyed(self.inner.backend.clone()).list(prefix).await
    }

    pub(crate) async fn delete(&self, path: &str) -> Result<()> {
        Repository::unkeyed(self.inner.backend.clone()).delete(path).await
    }
}

/// The id in a `manifests/<id>` or `deleted/<id>` path.
pub(crate) fn backup_id_of(path: &str, prefix: &str) -> Result<BackupId> {
    path.strip_prefix(prefix)
        .unwrap_or(path)
        .parse()
        .map_err(|reason| Error::CorruptObject { path: path.to_string(), reason })
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(value).expect("the format's documents serialize");
    bytes.push(b'\n');
    bytes
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(path: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::CorruptObject { path: path.to_string(), reason: e.to_string() })
}

/// Object operations with the backend's errors mapped to [`Error::Backend`]; a missing object is
/// `None`, not an error.
struct UnkeyedStore {
    backend: Backend,
}

impl UnkeyedStore {
    fn error(&self, operation: &'static str, path: &str, source: object_store::Error) -> Error {
        Error::Backend {
            location: self.backend.location.clone(),
            kind: self.backend.kind,
            operation,
            path: path.to_string(),
            source,
        }
    }

    async fn get(&self, path: &str) -> Result<Option<Bytes>> {
        Ok(self.get_with_meta(path).await?.map(|(bytes, _)| bytes))
    }

    async fn get_with_meta(&self, path: &str) -> Result<Option<(Bytes, ObjectMeta)>> {
        match self.backend.store.get(&Path::from(path)).await {
            Ok(result) => {
                let meta = result.meta.clone();
                let bytes = result.bytes().await.map_err(|e| self.error("get", path, e))?;
                Ok(Some((bytes, meta)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error("get", path, e)),
        }
    }

    /// Fails with [`Error::LocationMissing`] when the location (an S3 bucket) does not exist. Some
    /// S3 servers (SeaweedFS) make a missing bucket on the first write; a repository never makes
    /// one (its bucket is the user's to create, with its own policies), and a listing answers 404
    /// for a missing bucket on every S3 server.
    async fn check_exists(&self) -> Result<()> {
        match self
            .backend
            .store
            .list_with_delimiter(Some(&Path::from(layout::KEYS.trim_end_matches('/'))))
            .await
        {
            Ok(_) => Ok(()),
            Err(object_store::Error::NotFound { .. }) => {
                Err(Error::LocationMissing { location: self.backend.location.clone() })
            }
            // `object_store` reports a listing's 404 as a generic error: S3's error code says it.
            // No typed way (object_store 0.14): the `RetryError` in that error's source chain has
            // `status()`, but its module is `pub(crate)`, so it cannot be downcast to; its private
            // `aws::client::Error::ListRequest` neither. The code is S3's contract, not prose.
            Err(e) if e.to_string().contains("<Code>NoSuchBucket</Code>") => {
                Err(Error::LocationMissing { location: self.backend.location.clone() })
            }
            Err(e) => Err(self.error("list", layout::KEYS, e)),
        }
    }

    async fn head(&self, path: &str) -> Result<Option<ObjectMeta>> {
        match self.backend.store.head(&Path::from(path)).await {
            Ok(meta) => Ok(Some(meta)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error("head", path, e)),
        }
    }

    async fn put(&self, path: &str, bytes: Vec<u8>) -> Result<()> {
        self.backend
            .store
            .put(&Path::from(path), PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|e| self.error("put", path, e))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let dir = prefix.trim_end_matches('/');
        self.backend
            .store
            .list(Some(&Path::from(dir)))
            .try_collect()
            .await
            .map_err(|e| self.error("list", prefix, e))
    }

    async fn delete(&self, path: &str) -> Result<()> {
        match self.backend.store.delete(&Path::from(path)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error("delete", path, e)),
        }
    }
}
