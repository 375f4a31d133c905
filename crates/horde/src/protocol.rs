//! The horde protocol: every message that crosses the cluster between horde members, their
//! codecs, and the typed requests with the reply each names. The bottom layer: this module
//! imports nothing else of the crate, so the pure core, the read side and the actors all build
//! on it without cycles.
//!
//! Every member exposes two remotable actors (a member for control, a router for data) whose
//! message type has exactly two wire variants, `Cast` and `Call`, carrying a
//! [`discovery::Envelope`]; they never change, so nodes of two releases always reach each
//! other's decoder. Inside, [`Wire`] is versioned by [`PROTOCOL`]: a peer outside
//! [`MIN_PROTOCOL`]..=[`PROTOCOL`] is refused with a log line at `Hello`. New variants go at
//! the end (postcard numbers them); a node that cannot decode one logs and drops it.
//!
//! Requests between members are casts carrying a correlation id and answered by a cast
//! (`Offer` → `OfferReply`, `FetchSnapshots` → `SnapshotsFound`), so the pure core needs no
//! reply channels. Requests from an application's handle to a member or router are ractor
//! calls: their payload types implement [`Request`], which names the reply type, and refusals
//! travel as enums ([`StartRefusal`], [`OfferRefusal`], [`Unavailable`]), never as text to
//! parse back.

use std::fmt;
use std::time::Duration;

use discovery::{Envelope, NodeId, WireError};
use ractor::RpcReplyPort;
use ractor::message::{BoxedDowncastErr, SerializedMessage};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// This build's protocol version (2: requests between members carry correlation ids,
/// refusals are enums, answers wait for replicas and quorum leases).
pub const PROTOCOL: u16 = 2;
/// The oldest protocol version this build talks to.
pub const MIN_PROTOCOL: u16 = 2;
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
    /// Its protocol version.
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
}

impl Wire {
    /// A short name for logs and traces.
    pub fn kind(&self) -> &'static str {
        match self {
            Wire::Hello(_) => "Hello",
            Wire::Sync { .. } => "Sync",
            Wire::Deltas { .. } => "Deltas",
            Wire::DeltaAck { .. } => "DeltaAck",
            Wire::Route(_) => "Route",
            Wire::Event { .. } => "Event",
            Wire::Offer { .. } => "Offer",
            Wire::OfferReply { .. } => "OfferReply",
            Wire::Abort { .. } => "Abort",
            Wire::StartChild(_) => "StartChild",
            Wire::Replicate(_) => "Replicate",
            Wire::ReplicaAck { .. } => "ReplicaAck",
            Wire::ReplicaNack { .. } => "ReplicaNack",
            Wire::FetchReplicas { .. } => "FetchReplicas",
            Wire::ReplicasFound { .. } => "ReplicasFound",
            Wire::Handover { .. } => "Handover",
            Wire::HandoverAck { .. } => "HandoverAck",
            Wire::Lease { .. } => "Lease",
            Wire::LeaseGrant { .. } => "LeaseGrant",
            Wire::Digest { .. } => "Digest",
            Wire::Repair { .. } => "Repair",
            Wire::Entries { .. } => "Entries",
            Wire::Reintroduce(_) => "Reintroduce",
            Wire::StopChild(_) => "StopChild",
            Wire::Collect { .. } => "Collect",
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
    let env = Envelope::encode(&request.into_wire()).map_err(CallFailed::Encode)?;
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
