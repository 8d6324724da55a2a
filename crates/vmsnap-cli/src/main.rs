//! The `vmsnap` binary.
fn main() {}
