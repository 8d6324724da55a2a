//! The tokio layer: drives the sans-IO sessions over unix sockets, with deadlines.
//!
//! * [`QmpClient`] is cheap to clone and safe to use from many tasks at once: a
//!   background reader task routes each reply to its caller by id and fans
//!   events out to every [`QmpEvents`] receiver.
//! * [`QgaClient`] runs one command at a time (the agent protocol cannot match
//!   replies to requests), resynchronising after any timeout.
//!
//! Every command runs under a deadline; when it passes the caller gets
//! [`crate::CommandError::Timeout`] and the late reply, if any, is dropped.

mod events;
mod qga;
mod qga_conn;
mod qmp;
mod qmp_conn;

pub use events::QmpEvents;
pub use qga::{ExecOutput, QgaClient, QgaOptions};
pub use qmp::{QmpClient, QmpOptions};

/// How much a client reads from its socket at once.
const READ_CHUNK: usize = 64 * 1024;
