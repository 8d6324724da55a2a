//! `snapshot.kubevirt.io`: VirtualMachineSnapshot, VirtualMachineSnapshotContent and VirtualMachineRestore.
//!
//! Served as `v1beta1` (stored) and `v1alpha1`, with the same schema, as KubeVirt does.

mod condition;
mod constants;
mod content;
mod restore;
mod vmsnapshot;

pub use condition::*;
pub use constants::*;
pub use content::*;
pub use restore::*;
pub use vmsnapshot::*;

/// The API group.
pub const GROUP: &str = "snapshot.kubevirt.io";
/// The stored version.
pub const STORAGE_VERSION: &str = "v1beta1";
/// Every served version, stored version first.
pub const VERSIONS: &[&str] = &["v1beta1", "v1alpha1"];
