//! The horde protocol: every message that crosses the cluster between horde members, their
//! codecs, and the typed requests with the reply each names. The bottom layer: this module
//! imports nothing else of the crate, so the pure core, the read side and the actors all build
//! on it without cycles.
//!
//! Every member exposes two remotable actors (a member for control, a router for data) whose
//! message type has exactly two wire variants, `Cast` and `Call`, carrying a
//! [`discovery::Envelope`]; they never change, so nodes of two releases always reach each
//! other's decoder. Requests between members are casts carrying a correlation id and answered
//! by a cast (`Offer` → `OfferReply`, `FetchReplicas` → `ReplicasFound`), so the pure core
//! needs no reply channels. Requests from an application's handle to a member or router are
//! ractor calls: their payload types implement [`Request`], which names the reply type, and
//! refusals travel as enums ([`StartRefusal`], [`OfferRefusal`], [`Unavailable`]), never as
//! text to parse back.
//!
//! # Versions, and how the protocol changes between releases
//! A build speaks a range of protocol versions, [`MIN_PROTOCOL`]..=[`PROTOCOL`]
//! ([`Protocols::THIS`]): the newest, and that of the previous release, so a cluster of the
//! previous release rolls forward to this build node by node and back. Every member says
//! which it speaks in its [`Hello`]; the cluster uses the highest version every member speaks
//! (`CoreView::protocol_in_use`), worked out again at every membership change, so it falls
//! again when a node of the previous release joins in a rollback. A message kind or field a
//! version added ([`Feature`]) is sent only while the version in use has it: the sender
//! decides, and a receiver handles whatever it can decode.
//!
//! postcard is not self-describing, so the rules for changing what is on the wire are strict
//! (they are checked by the wire corpus of every release under `tests/corpus`):
//! - a variant of [`Wire`] or of any enum inside it is only ever added at the end (postcard
//!   numbers variants by position), never removed or reordered;
//! - a struct already on the wire never gains, loses or reorders a field; a field a new
//!   version adds to a message travels *appended* after the whole message
//!   ([`encode_wire`]: the fields marked `#[serde(skip)]` below), where an older reader never
//!   looks (postcard's `from_bytes` ignores what follows a value), and reads as its default
//!   from an older sender;
//! - what a node cannot decode is counted per kind ([`Undecodable`], the
//!   `minotaur_undecodable_messages_total` metric), logged once per kind and dropped; it
//!   never closes a link. A hello whose first fields ([`HelloHead`], the same in every
//!   release) decode is enough to tell a member of another protocol, which is refused.

use std::fmt;
use std::time::Duration;

use discovery::{Envelope, NodeId, WireError};
use ractor::RpcReplyPort;
use ractor::message::{BoxedDowncastErr, SerializedMessage};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// The newest protocol version this build speaks. 1: the builds before release 0.1.0; 2:
/// release 0.1.0 (requests between members carry correlation ids, refusals are enums,
/// answers wait for replicas and quorum leases); 3: release 0.2.0 (hellos say the range of
/// versions their sender speaks, and the [`Feature`]s of version 3).
pub const PROTOCOL: u16 = 3;
/// The oldest protocol version this build speaks: the previous release's.
pub const MIN_PROTOCOL: u16 = 2;

/// A range of protocol versions, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Protocols {
    /// The oldest.
    pub min: u16,
    /// The newest.
    pub max: u16,
}

impl Protocols {
    /// What this build speaks.
    pub const THIS: Protocols = Protocols {
        min: MIN_PROTOCOL,
        max: PROTOCOL,
    };

    /// The range `min..=max`.
    pub const fn new(min: u16, max: u16) -> Self {
        Protocols { min, max }
    }

    /// True when the two ranges have a version in common.
    pub fn overlaps(&self, other: &Protocols) -> bool {
        self.min <= other.max && other.min <= self.max
    }

    /// True when `version` is in the range.
    pub fn speaks(&self, version: u16) -> bool {
        (self.min..=self.max).contains(&version)
    }
}

impl fmt::Display for Protocols {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}-{}", self.min, self.max)
        }
    }
}

/// What each protocol version added to the wire, for the code that sends it: a feature is
/// used only while the protocol version in use has it ([`Feature::since`]), so a member of
/// the previous release never receives what it cannot read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Feature {
    /// An `Offer` carries how long each child has been frozen (appended), so the member
    /// where the child resumes records its whole pause (the giving member may exit before
    /// its metrics are read).
    PauseAtTarget,
    /// A member that hears another's `Left` hello answers `FarewellAck` with its number: the
    /// leaving member exits only once every member acknowledged that very hello (any hello
    /// counted before, so one sent for another reason could stand for a farewell that was
    /// lost with the leaving process's send queue).
    FarewellReceipt,
    /// A member answers every lease request with `LeaseAnswer`: whether it grants it, and the
    /// members it votes dead as it answers. The asker counts a vote only until a while after
    /// it *sent* the request the vote answers (its own clock), never after the vote arrived:
    /// a vote held up in the network cannot outlive the voter's promise not to grant the
    /// member again meanwhile.
    VotesByRound,
    /// A registry sync's member list also names the runs that left and that the sender
    /// already forgot (as `Left`): a member that was cut off when they left learns it from
    /// any peer, later than the farewell relay of a peer that still lists them.
    DepartedInSync,
    /// A `ReplicasFound` also names the members its sender knows (appended): a failover
    /// waits for the replicas of those it did not ask too (a member whose link to it stalled
    /// during a join may be the child's newest backup). Harmless to a protocol-2 reader,
    /// which never looks at what follows a message: sent to every member.
    FetchNamesMembers,
}

impl Feature {
    /// Every feature, oldest first.
    pub const ALL: [Feature; 5] = [
        Feature::PauseAtTarget,
        Feature::FarewellReceipt,
        Feature::VotesByRound,
        Feature::DepartedInSync,
        Feature::FetchNamesMembers,
    ];

    /// The protocol version that added it.
    pub const fn since(self) -> u16 {
        match self {
            Feature::PauseAtTarget
            | Feature::FarewellReceipt
            | Feature::VotesByRound
            | Feature::DepartedInSync
            | Feature::FetchNamesMembers => 3,
        }
    }
}
/// Routed messages are forwarded at most this many times (stale registries during churn).
pub const MAX_HOPS: u8 = 4;

/// The most bytes one message between members takes by default (its postcard encoding):
/// every batch (offers, replicas, handovers, registry syncs, deltas, repairs) is cut so no
/// message exceeds it. ractor_cluster closes a link on any inbound frame over its limit
/// (16 MiB by default, `discovery`'s connector sets 32 MiB), and a closed link reads as a
/// dead node; 4 MiB leaves room for the envelope and the frame's own fields and keeps one
/// message's copy short. A single item larger than the budget (a child's state, a spec) is
/// refused where it would be sent, with an error naming its size: see
/// `HordeConfig::max_message_bytes`.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Room kept in a message for what is not counted item by item: the length prefixes of its
/// lists (varints of at most 10 bytes each) and rounding.
const SLACK: usize = 64;

/// The size of `value` in postcard (what a message or an item takes on the wire).
pub fn encoded_len<T: Serialize + ?Sized>(value: &T) -> usize {
    postcard::experimental::serialized_size(value).unwrap_or(usize::MAX)
}

/// `Err` with what to tell the sender when a single message of `bytes` exceeds `budget`
/// (an application message, reply or event too large to cross between nodes).
pub fn check_size(what: &str, bytes: usize, budget: usize) -> Result<(), String> {
    if bytes > budget {
        Err(format!(
            "{what} of {bytes} bytes exceeds the {budget}-byte limit of a message between nodes"
        ))
    } else {
        Ok(())
    }
}

/// Items cut into batches that fit one message each, and the items too large for any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batches<I> {
    /// Each batch fits the budget with the message's fixed part.
    pub batches: Vec<Vec<I>>,
    /// Items that alone exceed the budget, with their encoded size: never sent.
    pub too_large: Vec<(I, usize)>,
}

/// Cuts `items` (in order) into batches whose encoded sizes, plus `fixed` (the message
/// without its items: [`encoded_len`] of it with empty lists), stay within `budget` bytes.
pub fn batch_by_size<I: Serialize>(
    items: impl IntoIterator<Item = I>,
    fixed: usize,
    budget: usize,
) -> Batches<I> {
    let room = budget.saturating_sub(fixed.saturating_add(SLACK));
    let mut batches = Vec::new();
    let mut too_large = Vec::new();
    let mut current = Vec::new();
    let mut used = 0usize;
    for item in items {
        let size = encoded_len(&item);
        if size > room {
            too_large.push((item, size));
            continue;
        }
        if used + size > room && !current.is_empty() {
            batches.push(std::mem::take(&mut current));
            used = 0;
        }
        used += size;
        current.push(item);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    Batches { batches, too_large }
}

/// A member's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MemberStatus {
    /// Connected, registry not yet synced: gets no children.
    Joining,
    /// Takes children.
    Alive,
    /// Handing its children off: gets no new ones.
    Draining,
    /// Gone.
    Dead,
    /// Drained and left the quorum set (it may still be running, with no children).
    Left,
}

impl fmt::Display for MemberStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MemberStatus::Joining => "joining",
            MemberStatus::Alive => "alive",
            MemberStatus::Draining => "draining",
            MemberStatus::Dead => "dead",
            MemberStatus::Left => "left",
        })
    }
}

/// A subscriber of a child's events: a sink on some node.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Subscriber {
    /// The node holding the sink.
    pub node: NodeId,
    /// The sink's id on that node.
    pub sink: u64,
}

/// What a routed message asks of a child.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RouteBody {
    /// An application message (postcard of `C::Msg`).
    User(Vec<u8>),
    /// Add a subscriber.
    Subscribe(Subscriber),
    /// Remove a subscriber.
    Unsubscribe(Subscriber),
}

/// Why a routed message got no answer from its child.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Unavailable {
    /// The child is restarting or arriving on the node that answered; retry.
    Restarting,
    /// The message was forwarded [`MAX_HOPS`] times without reaching the child.
    TooManyHops,
    /// The owner the registry names is not reachable from the node that answered.
    OwnerUnreachable {
        /// The owner's node name.
        owner: String,
    },
    /// The message or its answer does not decode.
    Malformed(String),
    /// The child stopped while the message waited for it.
    Stopped,
    /// A control message reached a router.
    NotRouted,
    /// The node holding the child is cut off from the majority of the cluster (it holds no
    /// quorum lease), so it answers nothing.
    NoLease,
    /// A newer copy of the child exists elsewhere (this one was superseded).
    Superseded,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::Restarting => f.write_str("restarting here; retry"),
            Unavailable::TooManyHops => f.write_str("too many forwarding hops"),
            Unavailable::OwnerUnreachable { owner } => write!(f, "owner {owner} is not reachable"),
            Unavailable::Malformed(e) => write!(f, "malformed message: {e}"),
            Unavailable::Stopped => f.write_str("the child stopped"),
            Unavailable::NotRouted => f.write_str("not a routed message"),
            Unavailable::NoLease => f.write_str(
                "its node is cut off from the majority of the cluster (no quorum lease); retry through another node",
            ),
            Unavailable::Superseded => {
                f.write_str("a newer copy runs on another node; retry")
            }
        }
    }
}

/// The answer to a routed call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RouteReply {
    /// The child's reply (postcard of `C::Reply`).
    Ok(Vec<u8>),
    /// No child of that name in the cluster.
    NotFound,
    /// The name exists but could not be reached.
    Unavailable(Unavailable),
}

/// A registry entry on the wire; `owner` indexes the message's node table (node ids repeat a
/// lot: a sync of 100,000 names would otherwise carry 100,000 copies of three names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireEntry {
    /// The name.
    pub name: String,
    /// Index into the node table.
    pub owner: u32,
    /// Epoch.
    pub epoch: u64,
    /// Spec bytes.
    pub spec: Vec<u8>,
    /// Tombstone.
    pub removed: bool,
}

/// One child moving to the receiver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferItem {
    /// The name.
    pub name: String,
    /// The epoch it will have at the receiver (the sender's plus one).
    pub epoch: u64,
    /// Spec bytes (for the registry).
    pub spec: Vec<u8>,
    /// Schema of `state`.
    pub schema: u16,
    /// The dehydrated state.
    pub state: Vec<u8>,
    /// Subscribers, who keep getting events after the move.
    pub subscribers: Vec<Subscriber>,
    /// Sequence number of the last event emitted, so events stay numbered without a gap.
    pub event_seq: u64,
}

/// A child's state kept by its backup: sent by the owner before it answers, so everything it
/// answered survives its crash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replica {
    /// The name.
    pub name: String,
    /// The owner that sent it (acknowledgements go to it; a fenced owner is refused).
    pub owner: NodeId,
    /// The owner's epoch of the name (a backup refuses an epoch older than one it knows).
    pub epoch: u64,
    /// Changes applied by that copy so far (orders replicas of one epoch).
    pub seq: u64,
    /// Schema of `state`.
    pub schema: u16,
    /// The state.
    pub state: Vec<u8>,
    /// Subscribers, who keep getting events after a restart from this replica.
    pub subscribers: Vec<Subscriber>,
    /// Sequence number of the last event emitted.
    pub event_seq: u64,
}

/// Why a backup refused a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicaRefusal {
    /// The backup knows a newer epoch of the name: the sender's copy was superseded.
    Stale,
    /// The backup considers the sender dead (it voted so): it takes nothing from it.
    Fenced,
    /// The backup is leaving: it handed what it held to other members and takes no more
    /// (the sender picks another backup).
    Leaving,
}

/// Why a member refused to start a child.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StartRefusal {
    /// The name runs already, on `owner`.
    AlreadyStarted {
        /// Its node's name.
        owner: String,
    },
    /// The member is draining (or gone) and takes no new children.
    Draining,
    /// The spec does not decode.
    MalformedSpec(String),
    /// The child's start failed.
    Failed(String),
    /// The member hosts its limit of children already (added at the end: older members
    /// never send it).
    Full {
        /// The limit.
        limit: usize,
    },
}

impl fmt::Display for StartRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartRefusal::AlreadyStarted { owner } => write!(f, "already started on {owner}"),
            StartRefusal::Draining => f.write_str("this node is draining; try again"),
            StartRefusal::MalformedSpec(e) => write!(f, "malformed spec: {e}"),
            StartRefusal::Failed(e) => write!(f, "child failed to start: {e}"),
            StartRefusal::Full { limit } => {
                write!(f, "this member hosts its limit of {limit} children")
            }
        }
    }
}

/// Why a move target refused a child.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OfferRefusal {
    /// The target is not alive (joining, draining).
    NotAlive(MemberStatus),
    /// The child already runs or is arriving there.
    AlreadyHere,
    /// The target knows a newer epoch of the name.
    Stale,
    /// The state could not be rehydrated (e.g. a schema the target does not read).
    Rehydrate(String),
}

impl fmt::Display for OfferRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OfferRefusal::NotAlive(s) => write!(f, "this node is {s}"),
            OfferRefusal::AlreadyHere => f.write_str("already here"),
            OfferRefusal::Stale => f.write_str("stale offer"),
            OfferRefusal::Rehydrate(e) => f.write_str(e),
        }
    }
}

/// What a member knows of another, for a newcomer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberWire {
    /// Which run.
    pub node: NodeId,
    /// Its status as the sender sees it.
    pub status: MemberStatus,
    /// Its app version.
    pub version: String,
    /// The schemas it reads.
    pub reads: Vec<u16>,
}

/// A member's hello: who it is, what it speaks, its status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The sender.
    pub node: NodeId,
    /// The oldest protocol version it speaks (release 0.1.0 read it as the one version its
    /// sender speaks, and talks to a sender of 2 only: a build that still speaks 2 says 2).
    pub protocol: u16,
    /// Its app version.
    pub version: String,
    /// Its status.
    pub status: MemberStatus,
    /// Grows with every hello the sender sends: hellos travel on whichever link is up, so an
    /// older one may arrive after a newer one and must not undo it.
    pub seq: u64,
    /// The state schemas its build reads (a move or a backup only goes where the state can be
    /// read; a newer build writes an older schema for an older reader).
    pub reads: Vec<u16>,
    /// The newest protocol version it speaks (protocol 3: appended, see [`HelloAppended`];
    /// `None` from a sender of protocol 2, which speaks `protocol` only).
    #[serde(skip)]
    pub max_protocol: Option<u16>,
}

impl Hello {
    /// The protocol versions its sender speaks.
    pub fn protocols(&self) -> Protocols {
        let max = self
            .max_protocol
            .unwrap_or(self.protocol)
            .max(self.protocol);
        Protocols::new(self.protocol, max)
    }
}

/// The first fields of every hello any release has sent (protocol 1's `Hello` variant and
/// every later one start with them, as variant 0 of the message): enough to tell who a peer
/// is, what it runs and which protocol it speaks when the rest of its hello does not decode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloHead {
    /// The sender.
    pub node: NodeId,
    /// The oldest protocol version it speaks.
    pub protocol: u16,
    /// Its app version.
    pub version: String,
    /// Its status.
    pub status: MemberStatus,
}

/// What protocol 3 appends to a hello (and a `Reintroduce`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloAppended {
    /// The newest protocol version the sender speaks.
    pub max_protocol: u16,
}

/// What [`Feature::PauseAtTarget`] appends to an `Offer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferAppended {
    /// For each item, in order: how long it had been frozen when the offer left, in µs.
    pub frozen_us: Vec<u64>,
}

/// What [`Feature::FetchNamesMembers`] appends to a `ReplicasFound`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicasFoundAppended {
    /// The members the sender knows that may hold replicas.
    pub members: Vec<NodeId>,
}

/// Start a child on the receiving member (a call from a handle; answered with [`Started`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartChild {
    /// The name.
    pub name: String,
    /// Spec bytes.
    pub spec: Vec<u8>,
}

/// The answer to [`StartChild`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Started {
    /// The node running the child, or why not.
    pub result: Result<NodeId, StartRefusal>,
}

/// Stop a child hosted on the receiving member and remove its name (a call from a handle on
/// any node; answered with [`Stopped`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopChild {
    /// The name.
    pub name: String,
}

/// The answer to [`StopChild`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stopped {
    /// The child was hosted there and is removed.
    pub found: bool,
}

/// A message for a child (a call from a handle or a forwarder expects a [`RouteReply`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// The child.
    pub name: String,
    /// Forwarding hops so far.
    pub hops: u8,
    /// What to do.
    pub body: RouteBody,
}

/// A request sent as a ractor call: names its reply type, so a call is checked by the compiler.
pub trait Request: Serialize {
    /// What the receiver answers.
    type Reply: Serialize + DeserializeOwned;
    /// The message that carries the request.
    fn into_wire(self) -> Wire;
}

impl Request for StartChild {
    type Reply = Started;
    fn into_wire(self) -> Wire {
        Wire::StartChild(self)
    }
}

impl Request for StopChild {
    type Reply = Stopped;
    fn into_wire(self) -> Wire {
        Wire::StopChild(self)
    }
}

impl Request for Route {
    type Reply = RouteReply;
    fn into_wire(self) -> Wire {
        Wire::Route(self)
    }
}

/// Messages between members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Wire {
    /// First message to a newly connected member, and the answer to one; sent again when the
    /// sender's status changes.
    Hello(Hello),
    /// Part of the sender's full registry (sent after `Hello`); `done` on the last part.
    Sync {
        /// The sender.
        from: NodeId,
        /// The members the sender knows (on the last part): a newcomer learns of members it
        /// is not connected to yet, and waits for their replicas before restarting anything.
        members: Vec<MemberWire>,
        /// Node table.
        nodes: Vec<NodeId>,
        /// Entries.
        entries: Vec<WireEntry>,
        /// Last part.
        done: bool,
    },
    /// Registry changes made by the sender; acknowledged with `DeltaAck`.
    Deltas {
        /// The sender (acknowledgements go to it).
        from: NodeId,
        /// Sender's batch number.
        batch: u64,
        /// Node table.
        nodes: Vec<NodeId>,
        /// Entries.
        entries: Vec<WireEntry>,
    },
    /// The receiver applied a `Deltas` batch.
    DeltaAck {
        /// Who applied it.
        node: NodeId,
        /// The batch.
        batch: u64,
    },
    /// A message for a child.
    Route(Route),
    /// An event for a subscriber's sink on the receiver.
    Event {
        /// The sink.
        sink: u64,
        /// The child that emitted it.
        name: String,
        /// Its sequence number.
        seq: u64,
        /// Postcard of `C::Event`.
        event: Vec<u8>,
    },
    /// Children moving to the receiver, answered with `OfferReply` carrying the same `id`.
    Offer {
        /// The sender.
        from: NodeId,
        /// Correlation id, unique per sender run.
        id: u64,
        /// The children.
        items: Vec<OfferItem>,
        /// For each item, how long it had been frozen when the offer left, in µs
        /// ([`Feature::PauseAtTarget`], appended: see [`OfferAppended`]); empty from a sender
        /// that records pauses itself.
        #[serde(skip)]
        frozen_us: Vec<u64>,
    },
    /// The answer to an `Offer`.
    OfferReply {
        /// The answering member.
        from: NodeId,
        /// The offer's id.
        id: u64,
        /// Names taken over (pending until the sender's registry change arrives).
        accepted: Vec<String>,
        /// Names refused, with the reason.
        refused: Vec<(String, OfferRefusal)>,
    },
    /// The sender gave up on these offers (name, offered epoch): drop the pending copies.
    Abort {
        /// The names and epochs.
        names: Vec<(String, u64)>,
    },
    /// Start a child here (a call from a handle).
    StartChild(StartChild),
    /// A child's replica for its backup (from the owner's hosting actor).
    Replicate(Replica),
    /// The backup stored a replica (to the owner's router, for the child).
    ReplicaAck {
        /// The backup.
        from: NodeId,
        /// The name.
        name: String,
        /// The replica's epoch.
        epoch: u64,
        /// The replica's sequence number.
        seq: u64,
    },
    /// The backup refused a replica (to the owner's router, for the child).
    ReplicaNack {
        /// The backup.
        from: NodeId,
        /// The name.
        name: String,
        /// The replica's epoch.
        epoch: u64,
        /// Why.
        why: ReplicaRefusal,
    },
    /// Ask for replicas of these names (a failover); answered with `ReplicasFound`.
    FetchReplicas {
        /// The asking member.
        from: NodeId,
        /// Correlation id.
        id: u64,
        /// The names.
        names: Vec<String>,
    },
    /// The replicas the receiver of `FetchReplicas` holds (and copies arriving in moves).
    ReplicasFound {
        /// The answering member.
        from: NodeId,
        /// The request's id.
        id: u64,
        /// The replicas.
        items: Vec<Replica>,
        /// The members the sender knows that may hold replicas (not surely gone), itself
        /// left out ([`Feature::FetchNamesMembers`], appended: see [`ReplicasFoundAppended`]);
        /// `None` from a sender of release 0.1.0.
        #[serde(skip)]
        members: Option<Vec<NodeId>>,
    },
    /// Replicas a leaving member held for other members' children, handed to the member that
    /// keeps them from now on (a failover after it left still finds them); answered with
    /// `HandoverAck`.
    Handover {
        /// The leaving member.
        from: NodeId,
        /// Correlation id.
        id: u64,
        /// The replicas.
        items: Vec<Replica>,
    },
    /// The replicas of a `Handover` are kept.
    HandoverAck {
        /// The member that keeps them.
        from: NodeId,
        /// The handover's id.
        id: u64,
    },
    /// A lease request: the sender answers for its children only while a majority of the
    /// quorum set granted one (measured from when it sent this). Carries the members the
    /// sender considers dead (its votes).
    Lease {
        /// The asking member.
        from: NodeId,
        /// Numbers the sender's requests.
        round: u64,
        /// Members the sender voted dead (it stopped granting them leases long enough ago).
        votes: Vec<NodeId>,
    },
    /// The answer to `Lease` from a member that grants it.
    LeaseGrant {
        /// The granting member.
        from: NodeId,
        /// The request's round.
        round: u64,
    },
    /// Anti-entropy: a hash of the sender's registry per bucket of names.
    Digest {
        /// The sender.
        from: NodeId,
        /// One hash per bucket.
        buckets: Vec<u64>,
    },
    /// Anti-entropy: send me your entries of these buckets (they differ from mine).
    Repair {
        /// The asking member.
        from: NodeId,
        /// The buckets.
        buckets: Vec<u16>,
    },
    /// Registry entries sent in answer to `Repair` (merged like deltas, not acknowledged).
    Entries {
        /// The sender.
        from: NodeId,
        /// Node table.
        nodes: Vec<NodeId>,
        /// Entries.
        entries: Vec<WireEntry>,
    },
    /// A hello that asks for the receiver's hello (and, from a joining member, its full
    /// registry) again: the sender lacks them, lost with a replaced link. Answered with a
    /// plain `Hello`, so two members never ask each other in a loop. (Added at the end: a
    /// protocol 2 node that predates it drops it as undecodable, as before.)
    Reintroduce(Hello),
    /// Stop a child here (a call from a handle on another node). Added at the end, like what
    /// follows: a protocol 2 node that predates them drops them as undecodable.
    StopChild(StopChild),
    /// Tombstones every member acknowledged (see `core`'s `tombstones`): drop each record
    /// that is still exactly this tombstone (name, epoch, owner).
    Collect {
        /// The member that collects them.
        from: NodeId,
        /// Node table.
        nodes: Vec<NodeId>,
        /// The tombstones.
        entries: Vec<WireEntry>,
    },
    /// The receiver's `Left` hello numbered `seq` was heard (protocol 3,
    /// [`Feature::FarewellReceipt`]): the leaving member no longer waits for the sender.
    FarewellAck {
        /// Who heard it.
        from: NodeId,
        /// The hello's number.
        seq: u64,
    },
    /// The answer to a `Lease` (protocol 3, [`Feature::VotesByRound`]; `LeaseGrant` before).
    LeaseAnswer {
        /// The answering member.
        from: NodeId,
        /// The request's round.
        round: u64,
        /// Whether it grants the lease.
        granted: bool,
        /// The members it votes dead as it answers (it will not grant them a lease for a
        /// while: see `core`'s `quorum`).
        votes: Vec<NodeId>,
    },
}

/// The kinds of [`Wire`] by variant index (postcard's numbering): the names logs, traces and
/// the undecodable-message metric use.
pub const WIRE_KINDS: [&str; 27] = [
    "Hello",
    "Sync",
    "Deltas",
    "DeltaAck",
    "Route",
    "Event",
    "Offer",
    "OfferReply",
    "Abort",
    "StartChild",
    "Replicate",
    "ReplicaAck",
    "ReplicaNack",
    "FetchReplicas",
    "ReplicasFound",
    "Handover",
    "HandoverAck",
    "Lease",
    "LeaseGrant",
    "Digest",
    "Repair",
    "Entries",
    "Reintroduce",
    "StopChild",
    "Collect",
    "FarewellAck",
    "LeaseAnswer",
];

/// The label of a message kind this build does not know (a variant a newer release added).
pub const UNKNOWN_KIND: &str = "unknown";

impl Wire {
    /// Its variant index on the wire.
    pub fn index(&self) -> usize {
        match self {
            Wire::Hello(_) => 0,
            Wire::Sync { .. } => 1,
            Wire::Deltas { .. } => 2,
            Wire::DeltaAck { .. } => 3,
            Wire::Route(_) => 4,
            Wire::Event { .. } => 5,
            Wire::Offer { .. } => 6,
            Wire::OfferReply { .. } => 7,
            Wire::Abort { .. } => 8,
            Wire::StartChild(_) => 9,
            Wire::Replicate(_) => 10,
            Wire::ReplicaAck { .. } => 11,
            Wire::ReplicaNack { .. } => 12,
            Wire::FetchReplicas { .. } => 13,
            Wire::ReplicasFound { .. } => 14,
            Wire::Handover { .. } => 15,
            Wire::HandoverAck { .. } => 16,
            Wire::Lease { .. } => 17,
            Wire::LeaseGrant { .. } => 18,
            Wire::Digest { .. } => 19,
            Wire::Repair { .. } => 20,
            Wire::Entries { .. } => 21,
            Wire::Reintroduce(_) => 22,
            Wire::StopChild(_) => 23,
            Wire::Collect { .. } => 24,
            Wire::FarewellAck { .. } => 25,
            Wire::LeaseAnswer { .. } => 26,
        }
    }

    /// A short name for logs and traces.
    pub fn kind(&self) -> &'static str {
        WIRE_KINDS[self.index()]
    }

    /// The oldest protocol version that can read this message whole: what it uses of the
    /// [`Feature`]s (every kind here is of protocol 2 or older; a hello's appended range is
    /// read by version 3 and ignored, harmlessly, by 2).
    pub fn needs(&self) -> u16 {
        match self {
            Wire::Offer { frozen_us, .. } if !frozen_us.is_empty() => {
                Feature::PauseAtTarget.since()
            }
            Wire::FarewellAck { .. } => Feature::FarewellReceipt.since(),
            Wire::LeaseAnswer { .. } => Feature::VotesByRound.since(),
            _ => MIN_PROTOCOL,
        }
    }

    /// The fields appended after this message (see [`encode_wire`]), when it has any.
    fn appended(&self) -> Option<Appended<'_>> {
        match self {
            Wire::Hello(h) | Wire::Reintroduce(h) => Some(Appended::Hello(HelloAppended {
                max_protocol: h.max_protocol?,
            })),
            Wire::Offer { frozen_us, .. } if !frozen_us.is_empty() => {
                Some(Appended::Offer(frozen_us))
            }
            Wire::ReplicasFound {
                members: Some(m), ..
            } => Some(Appended::Members(m)),
            _ => None,
        }
    }

    /// Reads the fields appended after this message from `rest` (what followed it); an older
    /// sender appended none (`rest` empty), a newer one may have appended more than this build
    /// knows (ignored).
    fn read_appended(&mut self, rest: &[u8]) -> Result<(), WireError> {
        if rest.is_empty() {
            return Ok(());
        }
        match self {
            Wire::Hello(h) | Wire::Reintroduce(h) => {
                let (a, _): (HelloAppended, _) = postcard::take_from_bytes(rest)?;
                h.max_protocol = Some(a.max_protocol);
            }
            Wire::Offer {
                frozen_us, items, ..
            } => {
                let (a, _): (OfferAppended, _) = postcard::take_from_bytes(rest)?;
                // One per item, or none: anything else is not what this build sent.
                if a.frozen_us.len() == items.len() {
                    *frozen_us = a.frozen_us;
                }
            }
            Wire::ReplicasFound { members, .. } => {
                let (a, _): (ReplicasFoundAppended, _) = postcard::take_from_bytes(rest)?;
                *members = Some(a.members);
            }
            _ => {}
        }
        Ok(())
    }
}

/// Appended fields, borrowed for encoding.
enum Appended<'a> {
    Hello(HelloAppended),
    Offer(&'a [u64]),
    Members(&'a [NodeId]),
}

/// Encodes a message for another member: its layout as every supported protocol version
/// reads it, then the fields later versions appended (marked `#[serde(skip)]` in [`Wire`]),
/// which an older reader never looks at.
pub fn encode_wire(wire: &Wire) -> Result<Envelope, WireError> {
    match wire.appended() {
        None => Envelope::encode(wire),
        Some(Appended::Hello(a)) => Envelope::encode_appended(wire, &a),
        Some(Appended::Offer(frozen_us)) => Envelope::encode_appended(wire, &(frozen_us,)),
        Some(Appended::Members(members)) => Envelope::encode_appended(wire, &(members,)),
    }
}

/// The encoded size of `wire` with its appended fields (what [`encode_wire`] sends, without
/// the envelope's own version).
pub fn wire_len(wire: &Wire) -> usize {
    let appended = match wire.appended() {
        None => 0,
        Some(Appended::Hello(a)) => encoded_len(&a),
        Some(Appended::Offer(frozen_us)) => encoded_len(&(frozen_us,)),
        Some(Appended::Members(members)) => encoded_len(&(members,)),
    };
    encoded_len(wire).saturating_add(appended)
}

/// A message this build could not decode, and what could be read of it.
#[derive(Debug)]
pub struct Undecodable {
    /// Its kind as this build names the variant it starts with ([`WIRE_KINDS`]), or
    /// [`UNKNOWN_KIND`] (a kind a newer release added, or not a horde message at all).
    pub kind: &'static str,
    /// When it is a hello (of another protocol): who sent it, what it runs and speaks.
    pub hello: Option<HelloHead>,
    /// Why it did not decode.
    pub error: WireError,
}

/// Decodes a message from another member, with the fields its sender appended.
pub fn decode_wire(env: &Envelope) -> Result<Wire, Undecodable> {
    match env.decode_head::<Wire>() {
        Ok((mut wire, rest)) => match wire.read_appended(rest) {
            Ok(()) => Ok(wire),
            Err(error) => Err(Undecodable {
                kind: wire.kind(),
                hello: None,
                error,
            }),
        },
        Err(error) => {
            let index = env
                .payload()
                .ok()
                .and_then(|p| postcard::take_from_bytes::<u32>(p).ok());
            let kind = index
                .and_then(|(i, _)| WIRE_KINDS.get(i as usize).copied())
                .unwrap_or(UNKNOWN_KIND);
            // Variant 0 is a hello in every release; a `Reintroduce` carries one too.
            let hello = match index {
                Some((0 | 22, rest)) => postcard::take_from_bytes::<HelloHead>(rest)
                    .ok()
                    .map(|(h, _)| h),
                _ => None,
            };
            Err(Undecodable { kind, hello, error })
        }
    }
}

/// The remotable actors' messages: two wire variants, plus local ones that never leave the
/// node.
pub enum MemberMsg<L: Send + 'static> {
    /// A one-way [`Wire`] message.
    Cast(Envelope),
    /// A [`Wire`] request; the answer is the envelope of the request's reply type.
    Call(Envelope, RpcReplyPort<Vec<u8>>),
    /// From this node only.
    Local(L),
}

impl<L: Send + 'static> fmt::Debug for MemberMsg<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemberMsg::Cast(e) => write!(f, "Cast({} bytes)", e.len()),
            MemberMsg::Call(e, _) => write!(f, "Call({} bytes)", e.len()),
            MemberMsg::Local(_) => write!(f, "Local"),
        }
    }
}

const CAST: &str = "Cast";
const CALL: &str = "Call";

impl<L: Send + 'static> ractor::Message for MemberMsg<L> {
    fn serializable() -> bool {
        true
    }

    fn serialize(self) -> Result<SerializedMessage, BoxedDowncastErr> {
        use ractor::BytesConvertable;
        match self {
            MemberMsg::Cast(env) => Ok(SerializedMessage::Cast {
                variant: CAST.into(),
                args: env.into_bytes(),
                metadata: None,
            }),
            MemberMsg::Call(env, reply) => Ok(SerializedMessage::Call {
                variant: CALL.into(),
                args: env.into_bytes(),
                reply,
                metadata: None,
            }),
            // Local messages are only ever sent to the local actor.
            MemberMsg::Local(_) => Err(BoxedDowncastErr),
        }
    }

    fn deserialize(msg: SerializedMessage) -> Result<Self, BoxedDowncastErr> {
        use ractor::BytesConvertable;
        match msg {
            SerializedMessage::Cast { variant, args, .. } if variant == CAST => {
                Ok(MemberMsg::Cast(Envelope::from_bytes(args)))
            }
            SerializedMessage::Call {
                variant,
                args,
                reply,
                ..
            } if variant == CALL => Ok(MemberMsg::Call(Envelope::from_bytes(args), reply)),
            _ => Err(BoxedDowncastErr),
        }
    }
}

/// Why a call to a remote actor got no typed answer.
#[derive(Debug, thiserror::Error)]
pub enum CallFailed {
    /// The request could not be encoded.
    #[error("cannot encode the request: {0}")]
    Encode(WireError),
    /// The actor is gone (its node's link closed).
    #[error("the receiving actor is gone")]
    Gone,
    /// No answer before the timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The answer does not decode as the request's reply type.
    #[error("malformed answer: {0}")]
    Malformed(WireError),
}

/// Sends `request` to a member or router and decodes its typed answer.
pub async fn call<L: Send + 'static, Q: Request>(
    actor: &ractor::ActorRef<MemberMsg<L>>,
    request: Q,
    timeout: Duration,
) -> Result<Q::Reply, CallFailed> {
    let env = encode_wire(&request.into_wire()).map_err(CallFailed::Encode)?;
    let (tx, rx) = oneshot::channel();
    let port: RpcReplyPort<Vec<u8>> = (tx, timeout).into();
    actor
        .cast(MemberMsg::Call(env, port))
        .map_err(|_| CallFailed::Gone)?;
    let bytes = match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => return Err(CallFailed::Gone),
        Err(_) => return Err(CallFailed::Timeout(timeout)),
    };
    decode_reply::<Q::Reply>(bytes).map_err(CallFailed::Malformed)
}

/// Encodes an answer for a ractor reply port.
pub fn encode_reply<R: Serialize>(reply: &R) -> Option<Vec<u8>> {
    Envelope::encode(reply)
        .ok()
        .map(ractor::BytesConvertable::into_bytes)
}

/// Decodes the bytes of an answer.
pub fn decode_reply<R: DeserializeOwned>(bytes: Vec<u8>) -> Result<R, WireError> {
    <Envelope as ractor::BytesConvertable>::from_bytes(bytes).decode()
}

/// Answers a ractor call with `reply` (dropped silently if the caller is gone).
pub fn reply_to<R: Serialize>(port: RpcReplyPort<Vec<u8>>, reply: &R) {
    if let Some(bytes) = encode_reply(reply) {
        let _ = port.send(bytes);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_request_round_trips_through_its_wire_variant() {
        let q = StartChild {
            name: "g".into(),
            spec: vec![1, 2],
        };
        let env = Envelope::encode(&q.clone().into_wire()).unwrap();
        assert_eq!(env.decode::<Wire>().unwrap(), Wire::StartChild(q));
        let a = Started {
            result: Err(StartRefusal::AlreadyStarted {
                owner: "n@10.0.0.1".into(),
            }),
        };
        let back: Started = decode_reply(encode_reply(&a).unwrap()).unwrap();
        assert_eq!(back, a);
    }

    fn replica(name: &str, bytes: usize) -> Replica {
        Replica {
            name: name.into(),
            owner: NodeId {
                name: "a@127.0.0.1".into(),
                incarnation: 1,
            },
            epoch: 1,
            seq: 1,
            schema: 1,
            state: vec![7; bytes],
            subscribers: Vec::new(),
            event_seq: 0,
        }
    }

    #[test]
    fn batches_of_large_items_each_fit_the_budget_and_keep_every_item_in_order() {
        let budget = 64 * 1024;
        let from = NodeId {
            name: "a@127.0.0.1".into(),
            incarnation: 1,
        };
        let fixed = encoded_len(&Wire::Handover {
            from: from.clone(),
            id: u64::MAX,
            items: Vec::new(),
        });
        let items: Vec<Replica> = (0..40).map(|i| replica(&format!("g{i}"), 20_000)).collect();
        let Batches { batches, too_large } = batch_by_size(items.clone(), fixed, budget);
        assert!(too_large.is_empty());
        assert!(batches.len() >= 14, "3 states of 20 kB per 64 KiB at most");
        for (i, items) in batches.iter().enumerate() {
            let wire = Wire::Handover {
                from: from.clone(),
                id: i as u64,
                items: items.clone(),
            };
            let bytes = Envelope::encode(&wire).unwrap().len();
            assert!(bytes <= budget, "batch {i}: {bytes} bytes");
        }
        assert_eq!(batches.concat(), items);
    }

    #[test]
    fn an_item_larger_than_the_budget_is_set_apart_never_batched() {
        let items = vec![
            replica("small", 100),
            replica("huge", 70_000),
            replica("b", 10),
        ];
        let Batches { batches, too_large } = batch_by_size(items, 50, 64 * 1024);
        let kept = batches.concat();
        let names: Vec<&str> = kept.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["small", "b"]);
        assert_eq!(too_large.len(), 1);
        assert_eq!(too_large[0].0.name, "huge");
        assert!(too_large[0].1 > 70_000);
        assert_eq!(
            check_size("the reply", 70_001, 65_536),
            Err(
                "the reply of 70001 bytes exceeds the 65536-byte limit of a message between nodes"
                    .into()
            )
        );
        assert_eq!(check_size("the reply", 10, 65_536), Ok(()));
    }

    proptest! {
        #[test]
        fn garbage_never_decodes_into_a_panic(bytes: Vec<u8>) {
            let _ = <Envelope as ractor::BytesConvertable>::from_bytes(bytes).decode::<Wire>();
        }
    }
}
