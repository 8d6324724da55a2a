//! The garbage collector and namespace finalizer, the parts of kube-controller-manager the embedded
//! server needs: owner-reference collection (background, foreground, orphan) and namespace termination.
//!
//! It keeps an index of every object's uid and of each owner's dependents, fed by the store's event
//! broadcast (one writer: this task), and works through a queue of objects to check. Every decision
//! is re-read from the store before acting, so a stale index can delay work but never cause a wrong delete.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use vmsnap_api::registry::{ResourceType, registry};
use vmsnap_store::{EventType, ObjectKey, StoreEvent};

use crate::core::objects::{finalizers, is_deleting, storage_resource};
use crate::core::{Core, DeleteOptions, ListOptions, Propagation, WriteOptions};
use crate::error::ApiError;
use crate::pure::patch::PatchType;

const FOREGROUND: &str = "foregroundDeletion";
const ORPHAN: &str = "orphan";

/// Starts the collector.
pub fn spawn(core: Arc<Core>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut gc = Gc::new(core);
        gc.run().await;
    })
}

struct Gc {
    core: Arc<Core>,
    kinds: HashMap<String, &'static ResourceType>,
    uids: HashMap<String, ObjectKey>,
    dependents: HashMap<String, HashSet<ObjectKey>>,
    owners_of: HashMap<ObjectKey, Vec<String>>,
    queue: BTreeSet<ObjectKey>,
}

fn owner_uids(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|refs| refs.iter().filter_map(|r| r["uid"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

fn uid_of(obj: &Value) -> Option<String> {
    obj.pointer("/metadata/uid").and_then(Value::as_str).map(str::to_owned)
}

impl Gc {
    fn new(core: Arc<Core>) -> Gc {
        let kinds = registry()
            .all()
            .iter()
            .filter(|t| t.group != "events.k8s.io")
            .map(|t| (storage_resource(t), t))
            .collect();
        Gc {
            core,
            kinds,
            uids: HashMap::new(),
            dependents: HashMap::new(),
            owners_of: HashMap::new(),
            queue: BTreeSet::new(),
        }
    }

    async fn run(&mut self) {
        let mut events = self.core.store().subscribe();
        self.full_scan().await;
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tokio::select! {
                ev = events.recv() => match ev {
                    Ok(e) => self.observe(&e),
                    Err(RecvError::Lagged(_)) => self.full_scan().await,
                    Err(RecvError::Closed) => return,
                },
                _ = tick.tick() => self.requeue_terminating(),
            }
            while let Some(key) = self.queue.pop_first() {
                if let Err(e) = self.check(&key).await {
                    tracing::warn!(object = ?key, error = %e, "garbage collection step failed; will retry");
                }
            }
        }
    }

    async fn full_scan(&mut self) {
        self.uids.clear();
        self.dependents.clear();
        self.owners_of.clear();
        let resources: Vec<String> = self.kinds.keys().cloned().collect();
        for resource in resources {
            let Ok((items, _)) = self.core.store().list(&resource, None).await else { continue };
            for item in items {
                let key = ObjectKey::new(
                    resource.clone(),
                    item.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or(""),
                    item.pointer("/metadata/name").and_then(Value::as_str).unwrap_or(""),
                );
                self.index(&key, &item);
                if !owner_uids(&item).is_empty() || is_deleting(&item) {
                    self.queue.insert(key);
                }
            }
        }
    }

    fn index(&mut self, key: &ObjectKey, obj: &Value) {
        if let Some(uid) = uid_of(obj) {
            self.uids.insert(uid, key.clone());
        }
        let owners = owner_uids(obj);
        if let Some(old) = self.owners_of.insert(key.clone(), owners.clone()) {
            for o in old {
                if let Some(set) = self.dependents.get_mut(&o) {
                    set.remove(key);
                }
            }
        }
        for o in owners {
            self.dependents.entry(o).or_default().insert(key.clone());
        }
    }

    fn unindex(&mut self, key: &ObjectKey, obj: &Value) {
        if let Some(uid) = uid_of(obj) {
            self.uids.remove(&uid);
        }
        for o in self.owners_of.remove(key).unwrap_or_default() {
            if let Some(set) = self.dependents.get_mut(&o) {
                set.remove(key);
            }
        }
    }

    fn observe(&mut self, e: &StoreEvent) {
        if !self.kinds.contains_key(&e.key.resource) {
            return;
        }
        match e.event_type {
            EventType::Added | EventType::Modified => {
                self.index(&e.key, &e.object);
                if !owner_uids(&e.object).is_empty() || is_deleting(&e.object) {
                    self.queue.insert(e.key.clone());
                }
            }
            EventType::Deleted => {
                self.unindex(&e.key, &e.object);
                if let Some(uid) = uid_of(&e.object) {
                    for dep in self.dependents.get(&uid).cloned().unwrap_or_default() {
                        self.queue.insert(dep);
                    }
                }
                for owner in owner_uids(&e.object) {
                    if let Some(k) = self.uids.get(&owner) {
                        self.queue.insert(k.clone());
                    }
                }
                if !e.key.namespace.is_empty() {
                    self.queue.insert(ObjectKey::new("/namespaces", "", e.key.namespace.clone()));
                }
            }
        }
    }

    fn requeue_terminating(&mut self) {
        // Namespaces and foreground deletions can wait on objects that emit no further events.
        let waiting: Vec<ObjectKey> =
            self.uids.values().filter(|k| k.resource == "/namespaces").cloned().collect();
        self.queue.extend(waiting);
    }

    async fn check(&mut self, key: &ObjectKey) -> Result<(), ApiError> {
        let Some(rt) = self.kinds.get(&key.resource).copied() else { return Ok(()) };
        let ns = (!key.namespace.is_empty()).then_some(key.namespace.as_str());
        let Some(obj) = self.core.get_stored(rt, ns, &key.name).await? else { return Ok(()) };
        let uid = uid_of(&obj).unwrap_or_default();
        if is_deleting(&obj) {
            let fs = finalizers(&obj);
            if fs.iter().any(|f| f == ORPHAN) {
                self.orphan_dependents(&uid).await?;
                self.remove_finalizer(rt, ns, &key.name, ORPHAN).await?;
            } else if fs.iter().any(|f| f == FOREGROUND) {
                let deps: Vec<ObjectKey> =
                    self.dependents.get(&uid).cloned().unwrap_or_default().into_iter().collect();
                if deps.is_empty() {
                    self.remove_finalizer(rt, ns, &key.name, FOREGROUND).await?;
                } else {
                    for dep in deps {
                        self.delete(&dep, Propagation::Foreground).await?;
                    }
                }
            }
            if rt.group.is_empty() && rt.plural == "namespaces" {
                self.terminate_namespace(&key.name).await?;
            }
        }
        let owners = owner_uids(&obj);
        if !owners.is_empty() && !is_deleting(&obj) {
            let mut alive = false;
            for owner in &owners {
                if self.owner_exists(&obj, owner).await? {
                    alive = true;
                    break;
                }
            }
            if !alive {
                tracing::debug!(object = ?key, "all owners are gone; collecting");
                self.delete(key, Propagation::Background).await?;
            }
        }
        Ok(())
    }

    /// Whether the owner with `uid` named in `obj`'s ownerReferences still exists (re-read from the store).
    async fn owner_exists(&self, obj: &Value, uid: &str) -> Result<bool, ApiError> {
        let Some(r) = obj
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .and_then(|refs| refs.iter().find(|r| r["uid"] == uid))
        else {
            return Ok(false);
        };
        let (Some(api_version), Some(kind), Some(name)) =
            (r["apiVersion"].as_str(), r["kind"].as_str(), r["name"].as_str())
        else {
            return Ok(false);
        };
        let Some(owner_rt) = registry().by_kind(api_version, kind) else {
            // An owner of a kind this server does not serve cannot be checked; keep the dependent.
            return Ok(true);
        };
        let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str).filter(|_| owner_rt.namespaced());
        let owner = self.core.get_stored(owner_rt, ns, name).await?;
        Ok(owner.is_some_and(|o| uid_of(&o).as_deref() == Some(uid)))
    }

    async fn delete(&self, key: &ObjectKey, propagation: Propagation) -> Result<(), ApiError> {
        let Some(rt) = self.kinds.get(&key.resource).copied() else { return Ok(()) };
        let ns = (!key.namespace.is_empty()).then_some(key.namespace.as_str());
        let opts = DeleteOptions { propagation: Some(propagation), ..Default::default() };
        match self.core.delete(rt, rt.storage_version(), ns, &key.name, &opts).await {
            Ok(_) => Ok(()),
            Err(e) if e.code == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn remove_finalizer(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        finalizer: &str,
    ) -> Result<(), ApiError> {
        let Some(obj) = self.core.get_stored(rt, ns, name).await? else { return Ok(()) };
        let rest: Vec<String> = finalizers(&obj).into_iter().filter(|f| f != finalizer).collect();
        let patch =
            json!({"metadata": {"finalizers": rest, "resourceVersion": obj["metadata"]["resourceVersion"]}});
        match self
            .core
            .patch(
                rt,
                rt.storage_version(),
                ns,
                name,
                PatchType::Merge,
                patch,
                None,
                &WriteOptions::default(),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code == 404 || e.code == 409 => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn orphan_dependents(&self, owner_uid: &str) -> Result<(), ApiError> {
        for dep in self.dependents.get(owner_uid).cloned().unwrap_or_default() {
            let Some(rt) = self.kinds.get(&dep.resource).copied() else { continue };
            let ns = (!dep.namespace.is_empty()).then_some(dep.namespace.as_str());
            let Some(obj) = self.core.get_stored(rt, ns, &dep.name).await? else { continue };
            let refs: Vec<Value> = obj
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|r| r["uid"] != owner_uid)
                .collect();
            let refs = if refs.is_empty() { Value::Null } else { json!(refs) };
            let patch = json!({"metadata": {"ownerReferences": refs}});
            self.core
                .patch(
                    rt,
                    rt.storage_version(),
                    ns,
                    &dep.name,
                    PatchType::Merge,
                    patch,
                    None,
                    &WriteOptions::default(),
                )
                .await?;
        }
        Ok(())
    }

    async fn terminate_namespace(&self, namespace: &str) -> Result<(), ApiError> {
        let mut remaining = 0usize;
        for rt in self.kinds.values().filter(|t| t.namespaced()) {
            let items = self
                .core
                .list(rt, rt.storage_version(), Some(namespace), &ListOptions::default())
                .await?
                .items;
            remaining += items.len();
            for item in items {
                if is_deleting(&item) {
                    continue;
                }
                let name =
                    item.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_owned();
                let key = ObjectKey::new(storage_resource(rt), namespace, name);
                self.delete(&key, Propagation::Background).await?;
            }
        }
        if remaining == 0 {
            let ns_rt = registry().by_kind("v1", "Namespace").expect("Namespace is registered");
            let patch = json!({"spec": {"finalizers": []}});
            match self
                .core
                .patch(ns_rt, "v1", None, namespace, PatchType::Merge, patch, None, &WriteOptions::default())
                .await
            {
                Ok(_) => {}
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
