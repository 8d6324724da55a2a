//! Which API server and namespace the user commands talk to: `--kubeconfig`, `$KUBECONFIG`, the
//! embedded server's kubeconfig in the data directory, `~/.kube/config`; `--namespace`, the
//! kubeconfig context's namespace, `default`.

use std::fmt::Debug;
use std::path::{Path, PathBuf};

use clap::Args;
use kube::Resource;
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::NamespaceResourceScope;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::errors::{CliError, CliResult, Exit, Kind, Target, api_error};

/// The connection flags, global to every command.
#[derive(Args, Debug, Clone, Default)]
pub struct ConnectionArgs {
    /// Kubeconfig to use [default: $KUBECONFIG, else the kubeconfig of `vmsnap serve` in its data directory, else ~/.kube/config]
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// Namespace of the VMs, snapshots and restores [default: the kubeconfig context's namespace, else "default"]
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
}

/// What the user commands get, list, create and watch: a namespaced API object of a kind known at
/// compile time (every kind of `vmsnap-api` and `k8s-openapi` the CLI uses).
pub trait ApiObject: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + ObjectData {}

impl<K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + ObjectData> ApiObject for K {}

/// What the client does with an object's data: decode, encode, print for debugging, hold across tasks.
pub trait ObjectData: Clone + DeserializeOwned + Serialize + Debug + Send + Sync + 'static {}

impl<K: Clone + DeserializeOwned + Serialize + Debug + Send + Sync + 'static> ObjectData for K {}

/// A connected API client and the namespace to work in.
#[derive(Clone)]
pub struct Session {
    /// The API client (bearer token and CA from the kubeconfig).
    pub client: kube::Client,
    /// The namespace.
    pub namespace: String,
    /// The API server's URL, for messages.
    pub server: String,
}

impl ConnectionArgs {
    /// Reads the kubeconfig and builds the client (no request is made yet).
    pub async fn connect(&self) -> CliResult<Session> {
        let paths = self.kubeconfig_paths()?;
        let mut merged: Option<Kubeconfig> = None;
        for path in &paths {
            let kc = Kubeconfig::read_from(path).map_err(|e| {
                CliError::new(
                    Exit::Connection,
                    format!(
                        "cannot read the kubeconfig {}: {}: pass another one with --kubeconfig PATH",
                        path.display(),
                        super::errors::root_cause(&e)
                    ),
                )
            })?;
            merged = Some(match merged {
                None => kc,
                Some(m) => m.merge(kc).map_err(|e| {
                    CliError::new(
                        Exit::Connection,
                        format!("cannot merge the kubeconfigs in $KUBECONFIG: {e}"),
                    )
                })?,
            });
        }
        let kubeconfig = merged.expect("at least one kubeconfig path");
        let shown = paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|e| {
                CliError::new(
                    Exit::Connection,
                    format!("invalid kubeconfig {shown}: {}", super::errors::root_cause(&e)),
                )
            })?;
        let namespace = self.namespace.clone().unwrap_or_else(|| config.default_namespace.clone());
        let server = config.cluster_url.to_string().trim_end_matches('/').to_owned();
        let client = kube::Client::try_from(config).map_err(|e| {
            CliError::new(
                Exit::Connection,
                format!("cannot build an API client from {shown}: {}", super::errors::root_cause(&e)),
            )
        })?;
        Ok(Session { client, namespace, server })
    }

    /// `--kubeconfig`, else `$KUBECONFIG` (colon-separated), else the data directory's, else `~/.kube/config`.
    fn kubeconfig_paths(&self) -> CliResult<Vec<PathBuf>> {
        if let Some(path) = &self.kubeconfig {
            return Ok(vec![path.clone()]);
        }
        if let Some(list) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
            let paths: Vec<PathBuf> =
                std::env::split_paths(&list).filter(|p| !p.as_os_str().is_empty()).collect();
            if !paths.is_empty() {
                return Ok(paths);
            }
        }
        let embedded = super::default_data_dir().join("kubeconfig");
        let home = std::env::var_os("HOME").map(|h| Path::new(&h).join(".kube/config"));
        let candidates: Vec<PathBuf> = std::iter::once(embedded).chain(home).collect();
        match candidates.iter().find(|p| p.exists()) {
            Some(found) => Ok(vec![found.clone()]),
            None => Err(CliError::new(
                Exit::Connection,
                format!(
                    "no kubeconfig found (looked at $KUBECONFIG, {}): start the embedded server with: vmsnap serve, or pass --kubeconfig PATH",
                    candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
                ),
            )),
        }
    }
}

impl Session {
    /// The namespaced API of `K`.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The object an error is about.
    pub fn target<'a>(&'a self, kind: Kind, name: &'a str) -> Target<'a> {
        Target { kind, name, namespace: &self.namespace }
    }

    /// The one-line error for a failed API call about `kind` `name`.
    pub fn error(&self, error: kube::Error, action: &str, kind: Kind, name: &str) -> CliError {
        api_error(error, action, &self.target(kind, name), &self.server)
    }

    /// Gets an object; a missing one is the "not found" error of its kind.
    pub async fn get<K>(&self, kind: Kind, name: &str) -> CliResult<K>
    where
        K: ApiObject,
    {
        self.api::<K>().get(name).await.map_err(|e| self.error(e, "get", kind, name))
    }

    /// Gets an object if it exists.
    pub async fn get_opt<K>(&self, kind: Kind, name: &str) -> CliResult<Option<K>>
    where
        K: ApiObject,
    {
        self.api::<K>().get_opt(name).await.map_err(|e| self.error(e, "get", kind, name))
    }

    /// Lists every object of `K` in the namespace.
    pub async fn list<K>(&self, kind: Kind, what: &str) -> CliResult<Vec<K>>
    where
        K: ApiObject,
    {
        let list =
            self.api::<K>().list(&Default::default()).await.map_err(|e| self.error(e, "list", kind, what))?;
        Ok(list.items)
    }

    /// Creates `object` (`kind` `name`); a refusal is the one-line error of its kind.
    pub async fn create<K>(&self, kind: Kind, name: &str, object: &K) -> CliResult<K>
    where
        K: ApiObject,
    {
        self.api::<K>()
            .create(&Default::default(), object)
            .await
            .map_err(|e| self.error(e, "create", kind, name))
    }

    /// Sends `PUT /apis/subresources.kubevirt.io/v1/namespaces/NS/{plural}/{name}/{action}` with a JSON body.
    pub async fn put_subresource(
        &self,
        plural: &str,
        name: &str,
        action: &str,
        body: &serde_json::Value,
    ) -> Result<String, kube::Error> {
        let url = format!(
            "/apis/subresources.kubevirt.io/v1/namespaces/{}/{plural}/{name}/{action}",
            self.namespace
        );
        let request = http::Request::put(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(body).expect("JSON serializes"))
            .map_err(kube::Error::HttpError)?;
        self.client.request_text(request).await
    }
}
