//! Our own writes that the watch caches have not shown yet ("expectations" in Go controllers).
//!
//! A reconcile gets its object from the controller's cache. Right after the controller wrote the
//! object, the cache can still hold the version before that write; a reconcile of that copy would
//! redo work and write its stale view again. The controllers record the `resourceVersion` each of
//! their status writes produced, and skip a reconcile whose copy is older: the watch event of the
//! write is on its way and triggers the reconcile that matters.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use kube::{Resource, ResourceExt};

/// When a reconcile skipped for a stale copy runs anyway, should the watch event of our write
/// never come (normally it comes first).
pub const AWAITING_OWN_WRITE: Duration = Duration::from_secs(5);

/// The `resourceVersion`s of our last writes, by object.
#[derive(Debug, Default)]
pub struct Expectations {
    written: Mutex<HashMap<String, u64>>,
}

impl Expectations {
    /// Records that a write of ours produced `written` (the object the API answered with).
    pub fn wrote<K: Resource<DynamicType = ()>>(&self, written: &K) {
        if let Some(rv) = revision(written) {
            let mut map = self.written.lock().expect("expectations lock");
            let entry = map.entry(key(written)).or_insert(rv);
            *entry = (*entry).max(rv);
        }
    }

    /// Records the object a status write of ours answered with, if it wrote one (see
    /// [`crate::kube_util::patch_status`]), and passes it on.
    pub fn record<K: Resource<DynamicType = ()>>(&self, written: Option<K>) -> Option<K> {
        if let Some(written) = &written {
            self.wrote(written);
        }
        written
    }

    /// Whether `cached` is at least as new as our last write of it. A fresh copy clears the
    /// record. Versions that are not numbers (opaque to clients by contract) are always fresh.
    pub fn fresh<K: Resource<DynamicType = ()>>(&self, cached: &K) -> bool {
        let Some(seen) = revision(cached) else { return true };
        let mut map = self.written.lock().expect("expectations lock");
        let key = key(cached);
        match map.get(&key) {
            Some(&written) if seen < written => false,
            Some(_) => {
                map.remove(&key);
                true
            }
            None => true,
        }
    }

    /// Forgets an object (it is gone).
    pub fn forget<K: Resource<DynamicType = ()>>(&self, object: &K) {
        self.written.lock().expect("expectations lock").remove(&key(object));
    }
}

fn key<K: Resource<DynamicType = ()>>(object: &K) -> String {
    format!("{}/{}/{}", K::kind(&()), object.namespace().unwrap_or_default(), object.name_any())
}

fn revision<K: Resource>(object: &K) -> Option<u64> {
    object.resource_version()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use vmsnap_api::snapshot::VirtualMachineSnapshot;

    use super::*;

    fn snapshot(name: &str, rv: &str) -> VirtualMachineSnapshot {
        let mut s: VirtualMachineSnapshot = serde_json::from_value(serde_json::json!({
            "apiVersion": "snapshot.kubevirt.io/v1beta1",
            "kind": "VirtualMachineSnapshot",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "vm"}}
        }))
        .unwrap();
        s.metadata.resource_version = Some(rv.into());
        s
    }

    #[test]
    fn a_copy_older_than_our_write_is_stale_until_the_write_is_seen() {
        let e = Expectations::default();
        assert!(e.fresh(&snapshot("a", "5")), "nothing written yet");
        e.wrote(&snapshot("a", "9"));
        assert!(!e.fresh(&snapshot("a", "5")));
        assert!(!e.fresh(&snapshot("a", "8")));
        assert!(e.fresh(&snapshot("b", "5")), "another object");
        assert!(e.fresh(&snapshot("a", "9")));
        assert!(e.fresh(&snapshot("a", "5")), "the record went with the fresh copy");
    }

    #[test]
    fn the_newest_write_counts_and_opaque_versions_are_fresh() {
        let e = Expectations::default();
        e.wrote(&snapshot("a", "12"));
        e.wrote(&snapshot("a", "10"));
        assert!(!e.fresh(&snapshot("a", "11")));
        assert!(e.fresh(&snapshot("a", "opaque")));
        e.forget(&snapshot("a", "12"));
        assert!(e.fresh(&snapshot("a", "11")));
    }
}
