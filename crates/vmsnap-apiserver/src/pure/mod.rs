//! Pure request logic: no I/O, exhaustively unit-tested, fuzzed. The HTTP layer and the object
//! service call into these.

pub mod accept;
pub mod continue_token;
pub mod duplicates;
pub mod fieldset;
pub mod jsonpath;
pub mod metadata;
pub mod names;
pub mod patch;
pub mod path;
pub mod protobuf;
pub mod selector;
pub mod table;
pub mod time;
pub mod validation;
pub mod webhook_rules;
