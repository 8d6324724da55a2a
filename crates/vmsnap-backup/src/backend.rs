//! Where a repository's objects live: a local directory or an S3 bucket, through `object_store`.

use std::path::Path;
use std::sync::Arc;

use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

use crate::error::{Error, Result};

/// An object store and a description of it for messages.
#[derive(Clone)]
pub struct Backend {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) location: String,
    pub(crate) kind: BackendKind,
}

/// Where a repository lives: what an error about it asks the user to check differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// A directory on this machine (or an NFS mount).
    Directory,
    /// An S3 bucket: its server may be down or unreachable.
    S3,
    /// Another `object_store` implementation ([`Backend::from_object_store`]).
    Other,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend").field("location", &self.location).finish()
    }
}

/// How long one request to an S3 server is retried before its error is returned: an endpoint
/// that is down or unreachable fails an operation within about this long (plus [`S3_TIMEOUT`] for
/// a request in flight), rather than after `object_store`'s default of ten retries over up to
/// three minutes per request, which made a backup whose server stopped hang for many minutes.
pub const S3_RETRY_TIMEOUT: Duration = Duration::from_secs(20);
/// Retries of one request at most (transient errors: connection refused or reset, 5xx, 429):
/// enough to ride out a server that is starting (SeaweedFS answers 500 until its volumes are
/// loaded); [`S3_RETRY_TIMEOUT`] bounds their time.
const S3_MAX_RETRIES: usize = 10;
/// The time limit of one request (a 4 MiB chunk at a few hundred kB/s).
pub const S3_TIMEOUT: Duration = Duration::from_secs(30);
/// The time limit to open a connection.
const S3_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// An S3-compatible bucket.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Config {
    /// The endpoint URL (`http://127.0.0.1:8333`); `None` for AWS itself.
    pub endpoint: Option<String>,
    /// The region (any name for most S3-compatible servers; `us-east-1` if unsure).
    pub region: String,
    /// The bucket, which must exist.
    pub bucket: String,
    /// A prefix under which the repository lives (`team-a/vms`), or empty.
    pub prefix: String,
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
    /// Allows `http://` endpoints (a server on the loopback interface).
    pub allow_http: bool,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

impl Backend {
    /// A local directory (an NFS mount works the same); made if missing.
    pub fn local(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            context: format!("creating the repository directory {}", dir.display()),
            source,
        })?;
        let store = LocalFileSystem::new_with_prefix(dir).map_err(|source| Error::Backend {
            location: dir.display().to_string(),
            kind: BackendKind::Directory,
            operation: "open",
            path: String::new(),
            source,
        })?;
        Ok(Backend {
            store: Arc::new(store),
            location: dir.display().to_string(),
            kind: BackendKind::Directory,
        })
    }

    /// An S3 bucket (any S3-compatible server).
    ///
    /// TLS is rustls with ring: if the process has no default rustls crypto provider yet, ring's
    /// is installed as the default (the workspace builds rustls with ring only).
    pub fn s3(config: &S3Config) -> Result<Self> {
        // Err only when a provider is already installed, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let location = match &config.endpoint {
            Some(endpoint) => format!("s3 {endpoint} bucket {} prefix {:?}", config.bucket, config.prefix),
            None => format!("s3 bucket {} prefix {:?}", config.bucket, config.prefix),
        };
        let mut builder = AmazonS3Builder::new()
            .with_region(&config.region)
            .with_bucket_name(&config.bucket)
            .with_access_key_id(&config.access_key_id)
            .with_secret_access_key(&config.secret_access_key)
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(200),
                    max_backoff: Duration::from_secs(5),
                    base: 2.0,
                },
                max_retries: S3_MAX_RETRIES,
                retry_timeout: S3_RETRY_TIMEOUT,
            })
            // Requests are signed, but not their bodies (`UNSIGNED-PAYLOAD`, as AWS's SDKs do over
            // HTTPS): hashing every uploaded byte once more with SHA-256 costs CPU next to the
            // guests, and every object but the unsealed config is authenticated end to end by
            // its envelope, which a read checks.
            .with_unsigned_payload(true)
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(config.allow_http)
                    .with_timeout(S3_TIMEOUT)
                    .with_connect_timeout(S3_CONNECT_TIMEOUT),
            );
        if let Some(endpoint) = &config.endpoint {
            // Path-style addressing: S3-compatible servers on an address rarely serve bucket subdomains.
            builder = builder.with_endpoint(endpoint).with_virtual_hosted_style_request(false);
        }
        let store = builder.build().map_err(|source| Error::Backend {
            location: location.clone(),
            kind: BackendKind::S3,
            operation: "configure",
            path: String::new(),
            source,
        })?;
        let prefix = config.prefix.trim_matches('/');
        let store: Arc<dyn ObjectStore> =
            if prefix.is_empty() { Arc::new(store) } else { Arc::new(PrefixStore::new(store, prefix)) };
        Ok(Backend { store, location, kind: BackendKind::S3 })
    }

    /// Any other `object_store` implementation (tests, other clouds).
    pub fn from_object_store(store: Arc<dyn ObjectStore>, location: impl Into<String>) -> Self {
        Backend { store, location: location.into(), kind: BackendKind::Other }
    }

    /// The underlying object store (for tools that inspect or repair objects).
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    /// The description used in messages.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// A directory or an S3 bucket.
    pub fn kind(&self) -> BackendKind {
        self.kind
    }
}
