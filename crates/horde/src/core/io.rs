//! The core's interface: what goes in ([`Input`], [`Request`], [`ChildReport`]), what comes
//! out ([`Effect`], [`Reply`], [`ChildCmd`]), and the read side it publishes ([`CoreView`]).

use super::*;

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

/// What the read side sees of the core (published by the shell after every change).
#[derive(Debug, Clone)]
pub struct CoreView {
    /// This node.
    pub me: NodeId,
    /// This node's app version.
    pub version: Version,
    /// This member's own status.
    pub status: MemberStatus,
    /// The registry replica.
    pub registry: Registry,
    /// Other members (dead ones until forgotten).
    pub members: Members,
    /// Members that said hello, by node name: the ones messages may be routed to.
    pub peers: BTreeMap<String, NodeId>,
    /// This member's quorum lease runs until then (its children answer only before it).
    pub lease_until: Option<Instant>,
    /// The state schemas this build reads.
    pub reads: Vec<u16>,
    /// The protocol versions this member speaks.
    pub protocols: Protocols,
    /// The highest protocol version every member speaks: the one in use.
    pub protocol_in_use: u16,
    /// Set when this node cannot join the cluster it found (see [`Incompatible`]).
    pub refusal: Option<Incompatible>,
}

impl CoreView {
    /// True while this member holds its quorum lease.
    pub fn lease_valid(&self, now: Instant) -> bool {
        self.lease_until.is_some_and(|u| now < u)
    }

    /// The live registry entry of `name`.
    pub fn entry(&self, name: &str) -> Option<&Entry> {
        self.registry.get(name)
    }

    /// The member list with this node first.
    pub fn member_list(&self) -> Vec<MemberInfo> {
        let mut out = vec![MemberInfo {
            node: self.me.clone(),
            status: self.status,
            version: self.version.clone(),
            reads: self.reads.clone(),
            protocols: Some(self.protocols),
        }];
        out.extend(self.members.iter().cloned());
        out
    }

    /// Every member including this node, as placement sees them.
    pub fn candidates(&self, wants_load: bool) -> Vec<Candidate> {
        candidates(
            &self.me,
            &self.version,
            &self.reads,
            self.status,
            &self.members,
            &self.registry,
            wants_load,
        )
    }

    /// True when `node` (that incarnation) is a member that said hello and is not dead.
    pub fn is_peer(&self, node: &NodeId) -> bool {
        self.peers.get(&node.name) == Some(node)
    }

    /// Where a routed message for `name` that is not hosted here goes next: the owner the
    /// registry names, or the answer to give instead.
    pub fn forward_to(&self, name: &str, hops: u8) -> Result<NodeId, RouteReply> {
        let Some(entry) = self.registry.get(name) else {
            return Err(RouteReply::NotFound);
        };
        if *entry.owner == self.me {
            return Err(RouteReply::Unavailable(Unavailable::Restarting));
        }
        if hops >= MAX_HOPS {
            return Err(RouteReply::Unavailable(Unavailable::TooManyHops));
        }
        if !self.is_peer(&entry.owner) {
            return Err(RouteReply::Unavailable(Unavailable::OwnerUnreachable {
                owner: entry.owner.name.clone(),
            }));
        }
        Ok((*entry.owner).clone())
    }
}
