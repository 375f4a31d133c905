//! Virtual time: microseconds since the start of a run, and its units.

/// Virtual time in microseconds since the start of the run.
pub type Time = u64;

/// Microseconds in a millisecond.
pub const MS: Time = 1_000;
/// Microseconds in a second.
pub const SEC: Time = 1_000_000;
