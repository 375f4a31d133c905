//! What goes into the member core: [`Input`] (a peer's message, a node event, a tick), the
//! handle's [`Request`]s and a hosted child's [`ChildReport`]s (with the [`Frozen`] state a
//! move takes).

use super::*;

/// One input of the core.
#[derive(Debug)]
pub enum Input<T> {
    /// The connector reports a node up (a new link; its actors are not reachable yet).
    NodeUp(NodeId),
    /// The shell found the node's member actor: messages to it can be sent.
    PeerReady(NodeId),
    /// The shell gave up looking for the node's member actor (it runs no horde).
    PeerUnreachable(NodeId),
    /// The connector reports a node down.
    NodeDown {
        /// Which run.
        id: NodeId,
        /// Why.
        reason: DownReason,
    },
    /// A decoded message from another member.
    Peer(Wire),
    /// A hello that did not decode whole, but whose first fields did: a member of another
    /// protocol (refused when it speaks no version in common).
    ForeignHello(crate::protocol::HelloHead),
    /// A message from another member that did not decode at all.
    Undecodable,
    /// A local request.
    Request(Request<T>),
    /// The outcome of an [`Effect::Spawn`].
    Spawned {
        /// The child.
        name: Arc<str>,
        /// Started, or why not.
        result: Result<(), SpawnError>,
    },
    /// A hosted child's report.
    Child {
        /// The child.
        name: Arc<str>,
        /// What it says.
        report: ChildReport,
    },
    /// Periodic work (every [`TICK`]).
    Tick,
}

/// A request from this node's handle (or a remote handle's call).
#[derive(Debug)]
pub enum Request<T> {
    /// Start a child here (placement chose this node); answered with [`Reply::Started`] once
    /// every member acknowledged the name.
    Start {
        /// The name.
        name: String,
        /// Spec bytes.
        spec: Vec<u8>,
        /// Where the answer goes.
        reply: T,
    },
    /// Stop a child hosted here and remove its name; answered with [`Reply::Stopped`] once
    /// every member acknowledged the tombstone, `false` at once when it is not hosted here
    /// (or this member holds no quorum lease).
    Stop {
        /// The name.
        name: String,
        /// Where the answer goes.
        reply: T,
    },
    /// Hand every child to other members within `deadline`; answered with [`Reply::Drained`].
    Drain {
        /// How long the drain may take.
        deadline: Duration,
        /// The node exits after it (SIGTERM): once nothing is left here, it leaves the quorum
        /// set at once, so the others need not wait to see it dead. Otherwise (the console's
        /// `drain`) it stays a member, with no children.
        leave: bool,
        /// Where the answer goes.
        reply: T,
    },
    /// Discovery found no peers: become alive without waiting for any.
    NoPeersExpected,
}

/// What a hosted child tells the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildReport {
    /// The answer to [`ChildCmd::Freeze`]; `None` when the child was not live.
    Frozen {
        /// The request's ticket.
        ticket: u64,
        /// What it hands over.
        frozen: Option<Frozen>,
    },
    /// Its backup holds its first state (a child arriving in a move may now be accepted).
    Durable,
    /// A backup refused its replica: a newer copy exists; it answers nothing more.
    Superseded,
    /// A backup refused its replica because it suspects this node: another is needed.
    BackupRefused {
        /// The backup.
        backup: NodeId,
    },
    /// The child asked to stop (its name is removed).
    StopRequested,
    /// A callback panicked; the child is gone.
    Crashed {
        /// The panic.
        error: String,
    },
    /// The answer to `Stop { report: true }`.
    Stopped {
        /// Its last schema and state.
        state: Option<(u16, Vec<u8>)>,
    },
}

/// What a frozen child hands over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frozen {
    /// Schema of `state`.
    pub schema: u16,
    /// The state.
    pub state: Vec<u8>,
    /// Its subscribers.
    pub subscribers: Vec<Subscriber>,
    /// Sequence number of its last event.
    pub event_seq: u64,
    /// Changes applied by the frozen copy.
    pub seq: u64,
}
