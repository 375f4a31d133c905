//! What comes out of the member core: the [`Effect`]s its shell carries out, the [`Reply`]
//! to a request, the [`ChildCmd`]s to a hosted child, how a child begins ([`Init`]) or why it
//! could not ([`SpawnError`]), and a lost conflict ([`ConflictReport`]).

use super::*;

/// One thing for the shell to do, in order.
#[derive(Debug)]
pub enum Effect<T> {
    /// Send a message to one member (dropped if its link is gone).
    Send {
        /// The member.
        to: NodeId,
        /// The message.
        wire: Wire,
    },
    /// Send the same message to several members.
    Broadcast {
        /// The members.
        to: Vec<NodeId>,
        /// The message.
        wire: Wire,
    },
    /// Start hosting a child; answer with [`Input::Spawned`].
    Spawn {
        /// The name.
        name: Arc<str>,
        /// How it begins.
        init: Init,
        /// Its registry epoch.
        epoch: u64,
        /// Arriving in a move: only its previous owner's forwards reach it until it serves.
        pending: bool,
    },
    /// A pending child now serves (its move committed).
    Serve {
        /// The child.
        name: Arc<str>,
    },
    /// The child no longer runs here (moved, stopped, lost a conflict): stop routing to it.
    Forget {
        /// The child.
        name: Arc<str>,
    },
    /// A command to a hosted child.
    ToChild {
        /// The child.
        name: Arc<str>,
        /// The command.
        cmd: ChildCmd,
    },
    /// Answer a request.
    Reply {
        /// Where.
        to: T,
        /// What.
        reply: Reply,
    },
    /// This node's copy of a name lost a conflict; its last state is attached.
    Conflict(ConflictReport),
    /// Something happened (for event subscribers).
    Event(HordeEvent),
    /// A drain has nobody to move to: look for peers again now.
    NeedPeers,
}

/// An answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The outcome of `Start`.
    Started(Result<NodeId, StartRefusal>),
    /// The outcome of `Stop`: whether the child was here.
    Stopped(bool),
    /// The outcome of `Drain`.
    Drained(DrainReport),
}

/// A command from the core to one of its hosted children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildCmd {
    /// Start a move: capture the state (behind every message already queued), buffer what
    /// follows; answer [`ChildReport::Frozen`] with the same ticket.
    Freeze {
        /// Matches the answer to the request.
        ticket: u64,
        /// The schema to hand the state over in (one the target reads).
        schema: u16,
    },
    /// The move succeeded: forward the buffer to `to`, then forward everything.
    Release {
        /// The new owner.
        to: NodeId,
        /// Record the pause here (false: the new owner records it, where the child resumes).
        record_pause: bool,
    },
    /// The move failed: apply the buffer here and carry on, at `epoch` (raised when the
    /// target may hold a pending copy, so that copy can never be served).
    Thaw {
        /// The epoch to serve at.
        epoch: u64,
    },
    /// Replicas go to this member from now on, in this schema (`None`: no other member).
    Backup {
        /// The backup and the schema it reads.
        node: Option<(NodeId, u16)>,
        /// The previous backup keeps what it acknowledged and hands it over before it leaves
        /// (it drains): changes it acknowledged need not be sent again at once; the next change
        /// sends the whole state to the new one. Otherwise the state goes to the new backup
        /// now.
        lazy: bool,
    },
    /// Stop now; with `report`, answer [`ChildReport::Stopped`] with the last state first.
    Stop {
        /// Report the last state.
        report: bool,
    },
}

/// How a child begins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Init {
    /// From its spec (postcard of `C::Spec`).
    Fresh {
        /// Spec bytes.
        spec: Arc<[u8]>,
    },
    /// From moved or snapshotted state.
    Restore {
        /// Schema of `state`.
        schema: u16,
        /// The state.
        state: Vec<u8>,
        /// Who gets its events.
        subscribers: Vec<Subscriber>,
        /// Sequence number of its last event.
        event_seq: u64,
    },
}

/// Why a child could not be spawned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpawnError {
    /// Its spec does not decode.
    #[error("malformed spec: {0}")]
    MalformedSpec(String),
    /// Its state could not be restored.
    #[error("{0}")]
    Rehydrate(String),
    /// The actor did not start.
    #[error("{0}")]
    Actor(String),
}

/// What a conflict callback receives: the losing copy's state before it stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConflictReport {
    /// The name.
    pub name: String,
    /// The surviving owner.
    pub winner: NodeId,
    /// The loser's schema and state, when the child could be dehydrated.
    pub loser_state: Option<(u16, Vec<u8>)>,
}
