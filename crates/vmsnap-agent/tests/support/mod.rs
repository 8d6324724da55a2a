//! Shared by the node agent's tests: a cluster (API server, storage driver, node agent) and the
//! test guest's manifests, over the guest helpers of the VM runtime's tests.

#![allow(dead_code)] // Each test binary uses its own subset of these helpers.

pub mod cluster;
pub mod manifests;

// The helpers that need only QEMU and the test guest live with the VM runtime's tests.
#[path = "../../../vmsnap-vmm/tests/support/mod.rs"]
mod guest;
pub use guest::*;
