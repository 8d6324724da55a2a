//! The QEMU guest agent protocol, without I/O: typed commands and the
//! one-command-at-a-time session with `guest-sync-delimited` resynchronisation.
//! [`crate::client::QgaClient`] drives it over a socket.

pub mod commands;
pub mod session;
pub mod types;

#[cfg(test)]
mod session_tests;

pub use session::{QgaOutput, QgaSession, QgaState};
