//! Web console assets (built into the binary) and the HTTP routes that serve them.
