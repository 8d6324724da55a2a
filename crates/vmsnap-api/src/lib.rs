//! Typed Kubernetes API objects served and used by vmsnap: KubeVirt (`kubevirt.io/v1`), CDI
//! (`cdi.kubevirt.io/v1beta1`), the CSI snapshot API (`snapshot.storage.k8s.io/v1`), KubeVirt's
//! snapshot API (`snapshot.kubevirt.io`), vmsnap's schedules (`schedule.vmsnap.io`) and backups
//! (`backup.vmsnap.io`), plus the
//! registry describing every kind the embedded API server serves.
//!
//! This crate is pure data: no HTTP, no storage, no QEMU. Field names and JSON shapes copy the
//! upstream APIs exactly so that manifests written for KubeVirt work unchanged.

// kube's `printcolumn(name = .., type_ = ..)` attributes repeat the same keys by design.
#![allow(clippy::duplicated_attributes)]

pub mod backup;
mod builtin_columns;
pub mod cdi;
mod custom_resource;
pub mod duration;
pub mod kubevirt;
pub mod label_selector;
pub mod quantity;
pub mod refusal;
pub mod registry;
pub mod schedule;
pub mod schema;
pub mod snapshot;
pub mod volumesnapshot;
mod wire_enum;

pub use builtin_columns::access_modes;
pub use k8s_openapi;
