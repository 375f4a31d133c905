//! What goes into a child's core: its [`ChildInput`]s (messages with where their answers go,
//! timers, the member's commands, the backup's answers) and the [`ChildEnv`] its shell gives
//! with each.

use discovery::NodeId;

use crate::core::ChildCmd;
use crate::protocol::{ReplicaRefusal, RouteBody};

/// What a message asks of the child.
#[derive(Debug)]
pub enum Body<M> {
    /// An application message from this node (no encoding).
    Typed(M),
    /// A routed message (from another node, or forwarded).
    Routed(RouteBody),
}

/// A message with where its answer goes.
#[derive(Debug)]
pub struct Envelope<M, T> {
    /// What it asks.
    pub body: Body<M>,
    /// Forwarding hops so far.
    pub hops: u8,
    /// Where the answer goes (`None` for a cast).
    pub reply: Option<T>,
}

/// What the backup said of a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaAnswer {
    /// Stored.
    Ack {
        /// The backup.
        from: NodeId,
        /// The replica's epoch.
        epoch: u64,
        /// The replica's sequence number.
        seq: u64,
    },
    /// Refused.
    Nack {
        /// The backup.
        from: NodeId,
        /// The replica's epoch.
        epoch: u64,
        /// Why.
        why: ReplicaRefusal,
    },
}

/// One input of a child's core.
#[derive(Debug)]
pub enum ChildInput<M, T> {
    /// A message.
    Message(Envelope<M, T>),
    /// A timer set by the child fired.
    Timer {
        /// Only the latest timer counts.
        generation: u64,
    },
    /// A command from the member's core.
    Cmd(ChildCmd),
    /// The backup's answer to a replica.
    Replica(ReplicaAnswer),
}

/// What the hosting shell tells the core of its node with every input.
pub struct ChildEnv<'a> {
    /// The node holds its quorum lease: it may apply messages and answer.
    pub lease: bool,
    /// True when a subscriber's node is still a live member.
    pub is_live: &'a dyn Fn(&NodeId) -> bool,
    /// The most bytes a message to another member may take: a replica larger than this is
    /// not sent (it would close the link); the answers it holds wait, with an error logged.
    pub max_message_bytes: usize,
}

impl std::fmt::Debug for ChildEnv<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildEnv")
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl ChildEnv<'static> {
    /// A node with its lease whose members are all live (tests, single nodes).
    pub fn open() -> Self {
        ChildEnv {
            lease: true,
            is_live: &|_| true,
            max_message_bytes: crate::protocol::DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}
