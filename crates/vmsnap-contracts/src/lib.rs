//! The contracts that several hosts of vmsnap share, each with one home:
//!
//! - [`subresources`]: the KubeVirt subresources (`subresources.kubevirt.io/v1`) as the API server
//!   routes them to whoever plays virt-handler (the node agent in embedded mode): typed actions,
//!   a typed error with its `Status` code and reason, and the handler trait;
//! - [`controller`]: how every controller of vmsnap runs (kube-runtime's configuration);
//! - [`owner`]: the owner references controllers put on what they make;
//! - [`names`]: well-known names (the local storage driver's).
//!
//! No host depends on another through this crate: the API server does not know the agent, and the
//! agent does not know the API server.

pub mod controller;
pub mod names;
pub mod owner;
pub mod subresources;
