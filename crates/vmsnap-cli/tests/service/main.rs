//! vmsnap as a service: `vmsnap serve` run as its own unprivileged user (its data private to it),
//! exposed on every address of the host, on a full disk, and `vmsnap webhook` as `deploy/` runs it.
//!
//! These tests create a system user, change owners and mount a tmpfs: they must run as root and
//! fail (they do not skip) otherwise.

mod full_disk;
mod listen_all;
mod privacy;
mod support;
mod webhook;
