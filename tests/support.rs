//! What only the end-to-end tests have: the path of the binary under test, which Cargo gives
//! integration tests at compile time. Every helper they use is in the `harness` crate.

/// The binary under test.
pub const MINOTAUR: &str = env!("CARGO_BIN_EXE_minotaur");
