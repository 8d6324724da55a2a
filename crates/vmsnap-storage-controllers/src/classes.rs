//! StorageClasses and VolumeSnapshotClasses: cached by reflectors (they change
//! rarely and are read on every PVC and VolumeSnapshot), with a direct read on
//! a cache miss so that a class created a moment ago is not reported missing.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use vmsnap_api::volumesnapshot::{IS_DEFAULT_CLASS_ANNOTATION, VolumeSnapshotClass};

use super::PROVISIONER;
use super::error::ReconcileError;
use super::names::annotation;

/// The class caches.
#[derive(Clone)]
pub struct Classes {
    client: Client,
    storage: Store<StorageClass>,
    snapshot: Store<VolumeSnapshotClass>,
}

/// Which StorageClass a PVC uses, as far as this driver is concerned.
#[derive(Debug, Clone)]
pub enum ClaimClass {
    /// A class of this driver (named by the PVC, or the default class for a PVC that names none).
    Ours {
        /// The class.
        class: Arc<StorageClass>,
    },
    /// Another provisioner's class, `""` (static binding) or no class and no default.
    NotOurs,
    /// The PVC names a class that does not exist.
    Missing(String),
}

impl Classes {
    /// Starts the reflectors; returns with the caches filled, or the first API error.
    pub async fn start(client: Client) -> Result<(Self, Vec<tokio::task::JoinHandle<()>>), kube::Error> {
        // Fail fast (with the API's own error) if the kinds are not served.
        Api::<StorageClass>::all(client.clone()).list(&Default::default()).await?;
        Api::<VolumeSnapshotClass>::all(client.clone()).list(&Default::default()).await?;
        let (storage, storage_task) = reflect::<StorageClass>(client.clone());
        let (snapshot, snapshot_task) = reflect::<VolumeSnapshotClass>(client.clone());
        let _ = storage.wait_until_ready().await;
        let _ = snapshot.wait_until_ready().await;
        Ok((Self { client, storage, snapshot }, vec![storage_task, snapshot_task]))
    }

    /// The StorageClass `name`.
    pub async fn storage_class(&self, name: &str) -> Result<Option<Arc<StorageClass>>, ReconcileError> {
        if let Some(class) = self.storage.get(&ObjectRef::new(name)) {
            return Ok(Some(class));
        }
        Ok(Api::<StorageClass>::all(self.client.clone()).get_opt(name).await?.map(Arc::new))
    }

    /// The default StorageClass: the newest one annotated as default, as the API server picks it.
    pub fn default_storage_class(&self) -> Option<Arc<StorageClass>> {
        self.storage
            .state()
            .into_iter()
            .filter(|class| annotated_true(&class.metadata, annotation::DEFAULT_STORAGE_CLASS))
            .max_by(|a, b| {
                let created = |c: &StorageClass| c.metadata.creation_timestamp.clone();
                created(a).cmp(&created(b)).then_with(|| b.metadata.name.cmp(&a.metadata.name))
            })
    }

    /// The class of a PVC, resolving an unnamed class to the default one.
    pub async fn claim_class(&self, claim: &PersistentVolumeClaim) -> Result<ClaimClass, ReconcileError> {
        let named = claim.spec.as_ref().and_then(|spec| spec.storage_class_name.as_deref());
        let class = match named {
            Some("") => return Ok(ClaimClass::NotOurs),
            Some(name) => match self.storage_class(name).await? {
                Some(class) => class,
                None => return Ok(ClaimClass::Missing(name.to_owned())),
            },
            None => match self.default_storage_class() {
                Some(class) => class,
                None => return Ok(ClaimClass::NotOurs),
            },
        };
        Ok(if class.provisioner == PROVISIONER { ClaimClass::Ours { class } } else { ClaimClass::NotOurs })
    }

    /// The VolumeSnapshotClass `name`.
    pub async fn snapshot_class(
        &self,
        name: &str,
    ) -> Result<Option<Arc<VolumeSnapshotClass>>, ReconcileError> {
        if let Some(class) = self.snapshot.get(&ObjectRef::new(name)) {
            return Ok(Some(class));
        }
        Ok(Api::<VolumeSnapshotClass>::all(self.client.clone()).get_opt(name).await?.map(Arc::new))
    }

    /// The default VolumeSnapshotClass of a CSI driver: the one annotated as
    /// default, or the only class of that driver.
    pub fn default_snapshot_class(&self, driver: &str) -> Option<Arc<VolumeSnapshotClass>> {
        let mut of_driver: Vec<_> =
            self.snapshot.state().into_iter().filter(|class| class.spec.driver == driver).collect();
        of_driver.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        if of_driver.len() == 1 {
            return of_driver.pop();
        }
        of_driver.into_iter().find(|class| annotated_true(&class.metadata, IS_DEFAULT_CLASS_ANNOTATION))
    }
}

fn annotated_true(meta: &kube::api::ObjectMeta, key: &str) -> bool {
    meta.annotations.as_ref().and_then(|a| a.get(key)).is_some_and(|value| value == "true")
}

fn reflect<K>(client: Client) -> (Store<K>, tokio::task::JoinHandle<()>)
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::ClusterResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(Api::<K>::all(client), watcher::Config::default()).default_backoff().reflect(writer);
    let task = tokio::spawn(async move {
        stream
            .for_each(|event| async move {
                if let Err(error) = event {
                    tracing::debug!(%error, kind = K::kind(&()).as_ref(), "class watch interrupted; retrying");
                }
            })
            .await;
    });
    (reader, task)
}
