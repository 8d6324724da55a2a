//! The storage controllers (the local driver's CSI, provisioner, resizer,
//! snapshotter and CDI parts) against an in-process API server, a real
//! `LayeredDriver` in a temporary directory, `kubectl`, and `qemu-io` /
//! `qemu-img` to write and read the volumes' data.

mod datavolume;
mod harness;
mod http_server;
mod pvc;
mod restart;
mod snapshot;
