//! `kubevirt.io/v1`: VirtualMachine and VirtualMachineInstance, and the `subresources.kubevirt.io/v1` bodies.
//!
//! Field names follow KubeVirt's API exactly. The common fields are typed; rarely used blocks (affinity,
//! probes, hyperv features...) are kept as free-form objects so that KubeVirt manifests round-trip.

mod domain;
mod subresources;
mod vm;
mod vmi;
mod volume;

pub use domain::*;
pub use subresources::*;
pub use vm::*;
pub use vmi::*;
pub use volume::*;

/// The API group of VirtualMachine and VirtualMachineInstance.
pub const GROUP: &str = "kubevirt.io";
/// The API group of the VM and VMI subresources (`freeze`, `start`, ...).
pub const SUBRESOURCES_GROUP: &str = "subresources.kubevirt.io";
