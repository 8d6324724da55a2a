//! Opening a repository from its object: the Secrets it names, the backend, the passphrase; a
//! location without a repository gets one. Opened repositories are cached until the object or a
//! Secret it reads changes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::{Client, ResourceExt};
use vmsnap_api::backup::{
    self, PASSPHRASE_KEY, S3Repository, VirtualMachineBackupRepository, reason, s3_secret_key,
};
use vmsnap_backup::{Backend, InitOptions, Repository, S3Config};

/// Why a repository could not be opened; each names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The spec is wrong (the message names the field).
    #[error("{0}")]
    InvalidSpec(String),
    /// A Secret, or a key in it, is missing.
    #[error("Secret {namespace}/{name} {problem}")]
    SecretMissing {
        /// The Secret's namespace.
        namespace: String,
        /// The Secret's name.
        name: String,
        /// `does not exist`, `has no key "passphrase"`, ...
        problem: String,
    },
    /// The passphrase does not open the repository.
    #[error("{0}")]
    WrongPassphrase(vmsnap_backup::Error),
    /// The repository is of a format (version) this build does not read.
    #[error("{0}")]
    UnsupportedFormat(vmsnap_backup::Error),
    /// The backend failed (unreachable, credentials refused, bucket missing, corrupt config).
    #[error("{0}")]
    Unreachable(vmsnap_backup::Error),
    /// Reading a Secret failed.
    #[error("reading Secret {name}: {source}")]
    Api {
        /// The Secret's name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

impl OpenError {
    /// The condition reason (`backup::reason`) for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            OpenError::InvalidSpec(_) => reason::INVALID_SPEC,
            OpenError::SecretMissing { .. } => reason::SECRET_MISSING,
            OpenError::WrongPassphrase(_) => reason::WRONG_PASSPHRASE,
            OpenError::UnsupportedFormat(_) => reason::UNSUPPORTED_FORMAT,
            OpenError::Unreachable(_) | OpenError::Api { .. } => reason::REPOSITORY_UNREACHABLE,
        }
    }
}

/// Opened repositories by `namespace/name`, each with the versions it was opened at.
#[derive(Default)]
pub struct RepositoryCache {
    open: Mutex<HashMap<String, (String, Repository, Backend)>>,
}

impl RepositoryCache {
    /// The repository of `object`: cached when neither it nor its Secrets changed since it was
    /// opened, else opened (or created, when its location holds none) again. `local_root` is the
    /// directory of `local` repositories without a path.
    pub async fn open(
        &self,
        client: &Client,
        object: &VirtualMachineBackupRepository,
        local_root: &Path,
    ) -> Result<Repository, OpenError> {
        self.open_with_backend(client, object, local_root).await.map(|(repository, _)| repository)
    }

    /// [`RepositoryCache::open`], with the backend it was opened on (to list what is stored).
    pub async fn open_with_backend(
        &self,
        client: &Client,
        object: &VirtualMachineBackupRepository,
        local_root: &Path,
    ) -> Result<(Repository, Backend), OpenError> {
        let namespace = object.namespace().unwrap_or_default();
        let key = format!("{namespace}/{}", object.name_any());
        let secrets =
            Secrets { api: Api::namespaced(client.clone(), &namespace), namespace: namespace.clone() };
        let passphrase_ref = &object.spec.passphrase_secret_ref;
        let (passphrase, passphrase_version) =
            secrets.value(&passphrase_ref.name, passphrase_ref.key_or(PASSPHRASE_KEY)).await?;
        let (location, credentials_version) = location(object, &secrets, local_root).await?;
        let version = format!(
            "{}/{}/{passphrase_version}/{credentials_version}",
            object.metadata.uid.clone().unwrap_or_default(),
            object.metadata.generation.unwrap_or_default()
        );
        if let Some((cached_version, repository, backend)) = self.open.lock().expect("not poisoned").get(&key)
            && *cached_version == version
        {
            return Ok((repository.clone(), backend.clone()));
        }
        // Built only on a miss: a client is some milliseconds to make, and every reconcile of a
        // backup opens its repository.
        let backend = location.backend()?;
        let chunk_size = chunk_size(object)?;
        let repository = match Repository::open(backend.clone(), &passphrase).await {
            Ok(repository) => repository,
            Err(vmsnap_backup::Error::NotARepository { .. }) => {
                let options = InitOptions { chunk_size, ..InitOptions::default() };
                Repository::init_with(backend.clone(), &passphrase, options).await.map_err(classify)?
            }
            Err(error) => return Err(classify(error)),
        };
        self.open.lock().expect("not poisoned").insert(key, (version, repository.clone(), backend.clone()));
        Ok((repository, backend))
    }

    /// Forgets a repository (deleted, or its spec changed).
    pub fn forget(&self, namespace: &str, name: &str) {
        self.open.lock().expect("not poisoned").remove(&format!("{namespace}/{name}"));
    }
}

// The API's chunk size bounds (what admission and the CLI accept) are the engine's.
const _: () = assert!(
    backup::MIN_CHUNK_SIZE == vmsnap_backup::CLUSTER_SIZE
        && backup::MAX_CHUNK_SIZE == vmsnap_backup::MAX_CHUNK_SIZE
        && backup::DEFAULT_CHUNK_SIZE == vmsnap_backup::DEFAULT_CHUNK_SIZE
);

/// The chunk size a new repository for `object` is made with: `spec.chunkSize`, else the default.
/// Admission refuses a bad one; an object written around it is an invalid spec, not a default.
pub fn chunk_size(object: &VirtualMachineBackupRepository) -> Result<u32, OpenError> {
    match object.spec.chunk_size.as_deref() {
        None => Ok(backup::DEFAULT_CHUNK_SIZE),
        Some(text) => backup::parse_chunk_size(text)
            .map_err(|error| OpenError::InvalidSpec(format!("spec.chunkSize: {error}"))),
    }
}

fn classify(error: vmsnap_backup::Error) -> OpenError {
    match error {
        vmsnap_backup::Error::WrongPassphrase { .. } => OpenError::WrongPassphrase(error),
        vmsnap_backup::Error::UnsupportedFormat { .. } => OpenError::UnsupportedFormat(error),
        vmsnap_backup::Error::InvalidInput { .. } => OpenError::InvalidSpec(error.to_string()),
        other => OpenError::Unreachable(other),
    }
}

/// The default directory of a `local` repository without a path.
pub fn default_local_path(local_root: &Path, namespace: &str, name: &str) -> PathBuf {
    local_root.join(namespace).join(name)
}

/// Where a repository's objects are, with what a client there needs.
enum Location {
    Local(PathBuf),
    S3(Box<S3Config>),
}

impl Location {
    /// A client of the location.
    fn backend(&self) -> Result<Backend, OpenError> {
        match self {
            Location::Local(path) => Backend::local(path),
            Location::S3(config) => Backend::s3(config),
        }
        .map_err(OpenError::Unreachable)
    }
}

/// The location of `object`, and the resourceVersion of the credentials Secret read (if any).
async fn location(
    object: &VirtualMachineBackupRepository,
    secrets: &Secrets,
    local_root: &Path,
) -> Result<(Location, String), OpenError> {
    match (&object.spec.local, &object.spec.s3) {
        (Some(local), None) => {
            let path = match local.path.as_deref().filter(|p| !p.is_empty()) {
                Some(path) if Path::new(path).is_absolute() => PathBuf::from(path),
                Some(path) => {
                    return Err(OpenError::InvalidSpec(format!(
                        "spec.local.path must be an absolute path, not {path:?}"
                    )));
                }
                None => default_local_path(
                    local_root,
                    &object.namespace().unwrap_or_default(),
                    &object.name_any(),
                ),
            };
            Ok((Location::Local(path), String::new()))
        }
        (None, Some(s3)) => {
            let (config, version) = s3_config(s3, secrets).await?;
            Ok((Location::S3(Box::new(config)), version))
        }
        _ => Err(OpenError::InvalidSpec("exactly one of spec.local and spec.s3 must be set".into())),
    }
}

async fn s3_config(s3: &S3Repository, secrets: &Secrets) -> Result<(S3Config, String), OpenError> {
    let allow_http = match s3.endpoint.strip_prefix("http://") {
        Some(rest) => {
            if !is_loopback_authority(rest) {
                return Err(OpenError::InvalidSpec(format!(
                    "spec.s3.endpoint {:?} uses plain http, which is accepted on loopback addresses \
                     only (credentials and data would cross the network in clear); use https",
                    s3.endpoint
                )));
            }
            true
        }
        None if s3.endpoint.starts_with("https://") => false,
        None => {
            return Err(OpenError::InvalidSpec(format!(
                "spec.s3.endpoint {:?} must be an http:// or https:// URL",
                s3.endpoint
            )));
        }
    };
    if s3.bucket.is_empty() {
        return Err(OpenError::InvalidSpec("spec.s3.bucket must not be empty".into()));
    }
    let secret = &s3.credentials_secret_ref.name;
    let (access_key_id, version) = secrets.value(secret, s3_secret_key::ACCESS_KEY_ID).await?;
    let (secret_access_key, _) = secrets.value(secret, s3_secret_key::SECRET_ACCESS_KEY).await?;
    let config = S3Config {
        endpoint: Some(s3.endpoint.clone()),
        region: s3.region.clone().filter(|r| !r.is_empty()).unwrap_or_else(|| "us-east-1".into()),
        bucket: s3.bucket.clone(),
        prefix: s3.prefix.clone().unwrap_or_default(),
        access_key_id,
        secret_access_key,
        allow_http,
    };
    Ok((config, version))
}

/// Whether `authority...` (after `http://`) names a loopback host.
fn is_loopback_authority(rest: &str) -> bool {
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(host, _)| host),
    };
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

struct Secrets {
    api: Api<Secret>,
    namespace: String,
}

impl Secrets {
    /// The value of `key` in Secret `name`, trimmed of one trailing newline (files written by
    /// `echo` end with one), and the Secret's resourceVersion.
    async fn value(&self, name: &str, key: &str) -> Result<(String, String), OpenError> {
        let missing = |problem: String| OpenError::SecretMissing {
            namespace: self.namespace.clone(),
            name: name.to_owned(),
            problem,
        };
        let secret = match self.api.get_opt(name).await {
            Ok(Some(secret)) => secret,
            Ok(None) => return Err(missing("does not exist".into())),
            Err(source) => return Err(OpenError::Api { name: name.to_owned(), source }),
        };
        let version = secret.metadata.resource_version.clone().unwrap_or_default();
        let bytes = secret
            .data
            .as_ref()
            .and_then(|data| data.get(key))
            .map(|b| b.0.clone())
            .or_else(|| secret.string_data.as_ref().and_then(|d| d.get(key)).map(|s| s.clone().into_bytes()))
            .ok_or_else(|| missing(format!("has no key {key:?}")))?;
        let text = String::from_utf8(bytes).map_err(|_| missing(format!("key {key:?} is not UTF-8 text")))?;
        let text = text.strip_suffix('\n').unwrap_or(&text).to_owned();
        if text.is_empty() {
            return Err(missing(format!("key {key:?} is empty")));
        }
        Ok((text, version))
    }
}

#[cfg(test)]
mod tests {
    use super::is_loopback_authority;

    #[test]
    fn plain_http_is_for_loopback_hosts_only() {
        assert!(is_loopback_authority("127.0.0.1:8333"));
        assert!(is_loopback_authority("127.0.0.2:8333/"));
        assert!(is_loopback_authority("localhost:9000"));
        assert!(is_loopback_authority("[::1]:9000"));
        assert!(!is_loopback_authority("10.0.0.1:8333"));
        assert!(!is_loopback_authority("s3.example.com"));
        assert!(!is_loopback_authority("127.0.0.1.example.com:80"));
    }
}
