//! The `vmsnap` user commands against an in-process API server with the real snapshot and restore
//! controllers and fakes for the node agent and the storage: each command's success path, its main
//! failures and their exit codes, the progress of `snapshot create` and `restore`.

mod backup;
mod console_exec;
mod pipe;
mod restore;
mod schedule;
mod snapshot;
mod support;
mod surface;
mod vm;
