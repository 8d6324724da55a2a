//! The QEMU Machine Protocol, without I/O: messages, events, typed commands
//! and the session state machine. [`crate::client::QmpClient`] drives it over a socket.

pub mod args;
pub mod commands;
pub mod events;
pub mod message;
pub mod session;
pub mod types;

#[cfg(test)]
mod session_tests;

pub use events::{Event, QmpEvent, Timestamp};
pub use message::QmpMessage;
pub use session::{OutgoingCommand, QmpOutput, QmpSession, QmpState};
pub use types::Greeting;
