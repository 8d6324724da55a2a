//! Per-object locks: operations on the same volume or snapshot id run one at a
//! time, while operations on different ones overlap (only their manifest
//! commits are serialised, by the manifest lock).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

use crate::id::{SnapshotId, VolumeId};

/// What an operation locks.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum LockKey {
    /// A volume id, existing or about to be created.
    Volume(VolumeId),
    /// A snapshot id, existing or about to be created.
    Snapshot(SnapshotId),
}

/// A lock per id, created on first use and dropped when unused.
#[derive(Debug, Default)]
pub(crate) struct Locks {
    table: Mutex<HashMap<LockKey, Arc<tokio::sync::Mutex<()>>>>,
}

/// Held locks; released on drop.
#[derive(Debug)]
pub(crate) struct Guards {
    _guards: Vec<OwnedMutexGuard<()>>,
}

impl Locks {
    /// Locks every listed id, in a fixed order so that two callers locking
    /// overlapping sets cannot deadlock.
    pub(crate) async fn lock(&self, keys: impl IntoIterator<Item = LockKey>) -> Guards {
        let mut keys: Vec<LockKey> = keys.into_iter().collect();
        keys.sort();
        keys.dedup();
        let mutexes: Vec<_> = {
            let mut table = self.table.lock().expect("the lock table is never poisoned");
            // Forget locks nobody holds or waits for, so the table does not grow forever.
            table.retain(|_, mutex| Arc::strong_count(mutex) > 1);
            keys.into_iter().map(|key| table.entry(key).or_default().clone()).collect()
        };
        let mut guards = Vec::with_capacity(mutexes.len());
        for mutex in mutexes {
            guards.push(mutex.lock_owned().await);
        }
        Guards { _guards: guards }
    }
}

/// The lock keys of some volumes.
pub(crate) fn volumes<'a>(ids: impl IntoIterator<Item = &'a VolumeId>) -> impl Iterator<Item = LockKey> {
    ids.into_iter().cloned().map(LockKey::Volume)
}

/// The lock keys of some snapshots.
pub(crate) fn snapshots<'a>(ids: impl IntoIterator<Item = &'a SnapshotId>) -> impl Iterator<Item = LockKey> {
    ids.into_iter().cloned().map(LockKey::Snapshot)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn an_id_is_locked_by_one_caller_at_a_time_and_others_are_independent() {
        let locks = Arc::new(Locks::default());
        let (a, b) = (VolumeId::new("a").unwrap(), VolumeId::new("b").unwrap());
        let held = locks.lock(volumes([&b, &a, &a])).await;
        let same_name_other_kind = locks.lock(snapshots([&SnapshotId::new("a").unwrap()])).await;
        drop(same_name_other_kind);
        let waiter = {
            let (locks, a) = (locks.clone(), a.clone());
            tokio::spawn(async move { drop(locks.lock(volumes([&a])).await) })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished());
        drop(held);
        tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap();
    }
}
