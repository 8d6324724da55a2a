//! Keys and change events.

use std::sync::Arc;

use serde_json::Value;

/// Where an object lives: its resource (e.g. `snapshot.kubevirt.io/virtualmachinesnapshots`), its
/// namespace (empty for cluster-scoped objects) and its name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// Resource identifier, `group/plural` (`/plural` for the core group).
    pub resource: String,
    /// Namespace, or empty.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjectKey {
    /// A key.
    pub fn new(resource: impl Into<String>, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectKey { resource: resource.into(), namespace: namespace.into(), name: name.into() }
    }
}

/// The kind of change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Removed; the event carries the last value.
    Deleted,
}

impl EventType {
    pub(crate) fn code(self) -> i64 {
        match self {
            EventType::Added => 0,
            EventType::Modified => 1,
            EventType::Deleted => 2,
        }
    }

    pub(crate) fn from_code(code: i64) -> EventType {
        match code {
            0 => EventType::Added,
            1 => EventType::Modified,
            _ => EventType::Deleted,
        }
    }
}

/// One committed change.
#[derive(Clone, Debug)]
pub struct StoreEvent {
    /// Revision of the change.
    pub revision: u64,
    /// Which object.
    pub key: ObjectKey,
    /// What happened.
    pub event_type: EventType,
    /// The new value (for `Deleted`, the last value, with the deletion revision as resourceVersion).
    pub object: Arc<Value>,
    /// The value before the change (`None` for `Added`).
    pub previous: Option<Arc<Value>>,
}
