//! How every custom resource in this crate is declared, in one place.
//!
//! Each kind is a spec struct with kube's `CustomResource` derive. What they all share is written
//! here once: the serde and schema derives, kube's crate path (this crate depends on `kube-core`,
//! not on `kube`), and `PartialEq` and `Default` on the generated object. Each declaration then
//! says only what is its own, grouped by concern, one `#[kube(...)]` attribute per line:
//!
//! ```text
//! custom_resource! {
//!     /// The desired snapshot.
//!     #[kube(group = "snapshot.kubevirt.io", version = "v1beta1", kind = "VirtualMachineSnapshot")]
//!     #[kube(namespaced, status = "VirtualMachineSnapshotStatus")]
//!     #[kube(shortname = "vmsnapshot", shortname = "vmsnapshots", category = "all")]
//!     #[kube(doc = "the description kubectl explain shows")]
//!     #[kube(printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"))]
//!     #[serde(rename_all = "camelCase")]
//!     pub struct VirtualMachineSnapshotSpec { ... }
//! }
//! ```
//!
//! rustfmt leaves the inside of a macro call as written, so keep these declarations formatted by
//! hand the way rustfmt formats the rest: an attribute longer than the line width goes one argument
//! per line, except a lone `doc` string.

/// Declares a custom resource's spec struct (see the module documentation).
macro_rules! custom_resource {
    ($(#[$attribute:meta])* pub struct $spec:ident $fields:tt) => {
        #[derive(
            kube_derive::CustomResource,
            serde::Serialize,
            serde::Deserialize,
            Clone,
            Debug,
            Default,
            PartialEq,
            schemars::JsonSchema
        )]
        #[kube(crates(kube_core = "::kube_core"), derive = "PartialEq", derive = "Default")]
        $(#[$attribute])*
        pub struct $spec $fields
    };
}

pub(crate) use custom_resource;
