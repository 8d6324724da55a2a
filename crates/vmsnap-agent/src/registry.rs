//! The VMIs this agent runs, by uid: one writer at a time, never locked across an await.
//!
//! A VMI is `Launching` from the moment its volumes are resolved until QEMU
//! answers, so that the storage driver is told "busy" rather than "not
//! attached" about its volumes while QEMU opens them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use vmsnap_storage::VolumeId;

use crate::running::RunningVmi;

enum Slot {
    Launching { namespace: String, name: String, volumes: Vec<VolumeId> },
    Running(Arc<RunningVmi>),
}

/// Where a storage volume is in use.
pub enum VolumeUse {
    /// No VMI of this agent uses it.
    Detached,
    /// A VMI is being launched with it.
    Launching {
        /// `namespace/name` of the VMI.
        vmi: String,
    },
    /// A running VMI has it attached as this disk.
    Attached {
        /// The VMI.
        vmi: Arc<RunningVmi>,
        /// The QEMU disk name (the volume name).
        disk: String,
    },
}

/// The agent's VMIs.
#[derive(Default)]
pub struct Registry {
    slots: Mutex<HashMap<String, Slot>>,
}

/// Removes a `Launching` slot that was not turned into a running one.
pub struct LaunchGuard {
    registry: Weak<Registry>,
    uid: String,
    done: bool,
}

impl LaunchGuard {
    /// Replaces the launching slot with the running VMI.
    pub fn finish(mut self, vmi: Arc<RunningVmi>) {
        self.done = true;
        if let Some(registry) = self.registry.upgrade() {
            registry.lock().insert(self.uid.clone(), Slot::Running(vmi));
        }
    }
}

impl Drop for LaunchGuard {
    fn drop(&mut self) {
        if !self.done
            && let Some(registry) = self.registry.upgrade()
        {
            let mut slots = registry.lock();
            if matches!(slots.get(&self.uid), Some(Slot::Launching { .. })) {
                slots.remove(&self.uid);
            }
        }
    }
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        // A panic while holding this lock cannot leave the map half-updated
        // (every update is one insert or remove), so a poisoned lock is still usable.
        self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Marks `uid` as launching with `volumes`; `None` if the VMI is already launching or running.
    pub fn begin_launch(
        self: &Arc<Self>,
        uid: &str,
        namespace: &str,
        name: &str,
        volumes: Vec<VolumeId>,
    ) -> Option<LaunchGuard> {
        let mut slots = self.lock();
        if slots.contains_key(uid) {
            return None;
        }
        let slot = Slot::Launching { namespace: namespace.into(), name: name.into(), volumes };
        slots.insert(uid.into(), slot);
        Some(LaunchGuard { registry: Arc::downgrade(self), uid: uid.into(), done: false })
    }

    /// Adds a VMI found running (after an agent restart).
    pub fn insert_running(&self, vmi: Arc<RunningVmi>) {
        self.lock().insert(vmi.uid.clone(), Slot::Running(vmi));
    }

    /// The running VMI with this uid.
    pub fn get(&self, uid: &str) -> Option<Arc<RunningVmi>> {
        match self.lock().get(uid) {
            Some(Slot::Running(vmi)) => Some(vmi.clone()),
            _ => None,
        }
    }

    /// The running VMI `namespace/name`.
    pub fn get_by_name(&self, namespace: &str, name: &str) -> Option<Arc<RunningVmi>> {
        self.lock().values().find_map(|slot| match slot {
            Slot::Running(vmi) if vmi.namespace == namespace && vmi.name == name => Some(vmi.clone()),
            _ => None,
        })
    }

    /// Removes the VMI if it is `vmi` (not a newer one with the same uid).
    pub fn remove(&self, vmi: &Arc<RunningVmi>) {
        let mut slots = self.lock();
        if matches!(slots.get(&vmi.uid), Some(Slot::Running(current)) if Arc::ptr_eq(current, vmi)) {
            slots.remove(&vmi.uid);
        }
    }

    /// Empties the registry, returning the running VMIs (for shutdown).
    pub fn drain(&self) -> Vec<Arc<RunningVmi>> {
        self.lock()
            .drain()
            .filter_map(|(_, slot)| match slot {
                Slot::Running(vmi) => Some(vmi),
                Slot::Launching { .. } => None,
            })
            .collect()
    }

    /// Where `volume` is in use.
    pub fn volume_use(&self, volume: &VolumeId) -> VolumeUse {
        for slot in self.lock().values() {
            match slot {
                Slot::Launching { namespace, name, volumes } if volumes.contains(volume) => {
                    return VolumeUse::Launching { vmi: format!("{namespace}/{name}") };
                }
                Slot::Running(vmi) => {
                    if let Some(disk) = vmi.disk_of_volume(volume) {
                        return VolumeUse::Attached { vmi: vmi.clone(), disk };
                    }
                }
                Slot::Launching { .. } => {}
            }
        }
        VolumeUse::Detached
    }
}
