//! What comes out of a child's core: the [`ChildEffect`]s its shell carries out, and the
//! [`Answer`] to a message.

use std::time::Duration;

use discovery::NodeId;

use super::Envelope;
use crate::child::Handoff;
use crate::core::ChildReport;
use crate::protocol::{Replica, Subscriber, Unavailable};

/// The answer to a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer<R> {
    /// The child's reply.
    Reply(R),
    /// A subscription change was applied.
    Done,
    /// No answer from the child.
    Failed(Unavailable),
}

/// One thing for the hosting shell to do.
#[derive(Debug)]
pub enum ChildEffect<C: Handoff, T> {
    /// Answer a message.
    Reply {
        /// Where.
        to: T,
        /// What.
        answer: Answer<C::Reply>,
    },
    /// Send a message on to the child's new owner, keeping its reply path.
    Forward {
        /// The new owner.
        to: NodeId,
        /// The message (hops already counted).
        msg: Envelope<C::Msg, T>,
    },
    /// Fire [`ChildInput::Timer`] after `after`.
    SetTimer {
        /// When.
        after: Duration,
        /// Its generation.
        generation: u64,
    },
    /// Send an event to these subscribers.
    Deliver {
        /// Its sequence number.
        seq: u64,
        /// The event.
        event: C::Event,
        /// Who gets it.
        to: Vec<Subscriber>,
    },
    /// Send a replica to the backup member (its answer comes back as [`ChildInput::Replica`]).
    Replicate {
        /// The backup.
        to: NodeId,
        /// The replica.
        replica: Replica,
    },
    /// Tell the member's core.
    Report(ChildReport),
    /// A move's pause ended (for the pause statistics).
    Paused(Duration),
    /// Messages were forwarded (for the counters).
    Forwarded(u64),
    /// The child moved to `to` after a pause.
    HandedOff {
        /// The new owner.
        to: NodeId,
        /// How long it could not process messages.
        pause: Duration,
    },
    /// Stop the hosting actor now.
    Stop,
    /// Stop the hosting actor after this long (a forwarding pointer's grace).
    StopAfter(Duration),
}
