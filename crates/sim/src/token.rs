//! Where an answer goes (a client's call, an operation, a subscription): the token every
//! core in the simulation carries back to the world.

/// Where an answer goes: a client's call, or an operation of the schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// A client's call.
    Call {
        /// The client.
        client: usize,
        /// Its call number.
        call: u64,
    },
    /// An operation (a start, a drain).
    Op(u64),
    /// A subscription's confirmation (its sink).
    Sub(u64),
}
