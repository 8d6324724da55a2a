//! Sans-IO QMP and QEMU guest agent (QGA) protocols, with a thin tokio client
//! and a fake peer for fault tests. Only this crate speaks QMP and QGA.
//!
//! # Layers
//!
//! 1. **Codec** ([`codec`]): newline-delimited JSON over arbitrary byte chunks,
//!    with a line-size limit and QGA's `0xFF` resync sentinel. Pure; fuzzed.
//! 2. **Sessions** ([`qmp::QmpSession`], [`qga::QgaSession`]): explicit state
//!    machines over bytes and values. The QMP session answers the greeting with
//!    `qmp_capabilities`, allocates ids and matches replies to them, and
//!    surfaces events; the QGA session resynchronises with
//!    `guest-sync-delimited` and allows one command in flight. Pure; no I/O,
//!    no clock, no randomness.
//! 3. **Commands** ([`command`], [`qmp::commands`], [`qga::commands`]): each
//!    command is a marker type carrying its name, argument type, reply type and
//!    where it is legal, so `execute::<QueryStatus>(())` returns a `StatusInfo`.
//!    `execute_raw` takes any name and JSON arguments.
//! 4. **Tokio clients** ([`client::QmpClient`], [`client::QgaClient`]): unix
//!    socket I/O, deadlines, and fan-out. Every call takes a timeout, so a hung
//!    QEMU or guest agent becomes a [`CommandError`], never a hung caller.
//! 5. **Fake peers** (`fake`, behind the `fake` feature): scriptable QMP and QGA
//!    servers that can hang, disconnect or fail on a given command.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use vmsnap_qemu::client::QmpClient;
//! use vmsnap_qemu::qmp::commands::QueryStatus;
//!
//! let qmp = QmpClient::connect("/run/vm/qmp.sock", Duration::from_secs(5)).await?;
//! let status = qmp.execute::<QueryStatus>(()).await?;
//! println!("running: {}", status.running);
//! # Ok(()) }
//! ```

pub mod client;
pub mod codec;
pub mod command;
pub mod error;
pub mod message;
pub mod qga;
pub mod qmp;

#[cfg(any(test, feature = "fake"))]
pub mod fake;

pub use command::{Command, Empty, QgaCommand, QmpCommand};
pub use error::{CommandError, ConnectError, EventError, ProtocolError, QemuError, StartCommandError};
