//! The horde protocol between members: what crosses the cluster inside a
//! [`discovery::Envelope`], and the remotable message type of the member actor.
//!
//! Every member exposes one remotable actor whose message type has exactly two wire variants,
//! `Cast` and `Call`, carrying an envelope; they never change, so nodes of two releases always
//! reach each other's decoder. Inside, [`Wire`] is versioned by [`PROTOCOL`]: a peer outside
//! [`MIN_PROTOCOL`]..=[`PROTOCOL`] is refused with a log line at `Hello`. New variants go at the
//! end (postcard numbers them), and a node that cannot decode one logs and drops it.
//! Call replies travel as raw bytes (no bridge task per call).

use std::time::Duration;

use discovery::{Envelope, NodeId};
use ractor::RpcReplyPort;
use ractor::message::{BoxedDowncastErr, SerializedMessage};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::membership::MemberStatus;

/// This build's protocol version.
pub const PROTOCOL: u16 = 1;
/// The oldest protocol version this build talks to.
pub const MIN_PROTOCOL: u16 = 1;

/// A subscriber of a child's events: a sink on some node.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Subscriber {
    /// The node holding the sink.
    pub node: NodeId,
    /// The sink's id on that node.
    pub sink: u64,
}

/// What a routed message asks of a child.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RouteBody {
    /// An application message (postcard of `C::Msg`).
    User(Vec<u8>),
    /// Add a subscriber.
    Subscribe(Subscriber),
    /// Remove a subscriber.
    Unsubscribe(Subscriber),
}

/// The answer to a routed call.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RouteReply {
    /// The child's reply (postcard of `C::Reply`).
    Ok(Vec<u8>),
    /// No child of that name in the cluster.
    NotFound,
    /// The name exists but could not be reached (owner down, too many hops).
    Unavailable(String),
}

/// A registry entry on the wire; `owner` indexes the message's node table (node ids repeat a
/// lot: a sync of 100,000 names would otherwise carry 100,000 copies of three names).
#[derive(Debug, Clone, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
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

/// A snapshot kept by a backup node for a crash restart.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotItem {
    /// The name.
    pub name: String,
    /// The owner's epoch when it was taken.
    pub epoch: u64,
    /// Messages handled by the owner when it was taken (orders snapshots of one epoch).
    pub handled: u64,
    /// Schema of `state`.
    pub schema: u16,
    /// The state.
    pub state: Vec<u8>,
}

/// Messages between members.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Wire {
    /// First message to a newly connected member, and the answer to one.
    Hello {
        /// The sender.
        node: NodeId,
        /// Its protocol version.
        protocol: u16,
        /// Its app version.
        version: String,
        /// Its status.
        status: MemberStatus,
        /// Grows with every hello the sender sends: hellos travel on whichever link is up,
        /// so an older one may arrive after a newer one and must not undo it.
        seq: u64,
    },
    /// Reserved: no build sends it (a status change travels in `Hello`, ordered by its `seq`);
    /// kept so that the variants after it keep their numbers on the wire.
    Status {
        /// The sender.
        node: NodeId,
        /// The new status.
        status: MemberStatus,
    },
    /// Part of the sender's full registry (sent after `Hello`); `done` on the last part.
    Sync {
        /// The sender.
        from: NodeId,
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
    /// A message for the child `name` (a `Call` expects a [`RouteReply`]).
    Route {
        /// The child.
        name: String,
        /// Forwarding hops so far.
        hops: u8,
        /// What to do.
        body: RouteBody,
    },
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
    /// Children moving to the receiver (a `Call`, answered with `OfferReply`).
    Offer {
        /// The sender.
        from: NodeId,
        /// The children.
        items: Vec<OfferItem>,
    },
    /// The answer to an `Offer`.
    OfferReply {
        /// Names taken over (pending until the sender's registry change arrives).
        accepted: Vec<String>,
        /// Names refused, with the reason.
        refused: Vec<(String, String)>,
    },
    /// The sender gave up on these offers (name, offered epoch): drop the pending copies.
    Abort {
        /// The names and epochs.
        names: Vec<(String, u64)>,
    },
    /// Start a child here (a `Call`, answered with `Started`).
    StartChild {
        /// The name.
        name: String,
        /// Spec bytes.
        spec: Vec<u8>,
    },
    /// The answer to `StartChild`.
    Started {
        /// `Ok(owner)` or the reason.
        result: Result<NodeId, String>,
    },
    /// Snapshots to keep for crash restarts.
    Snapshots {
        /// The snapshots.
        items: Vec<SnapshotItem>,
    },
    /// Ask for snapshots (a `Call`, answered with `Snapshots`).
    FetchSnapshots {
        /// The names.
        names: Vec<String>,
    },
}

/// The member actor's messages: two wire variants, plus local ones that never leave the node.
pub enum MemberMsg<L: Send + 'static> {
    /// A one-way [`Wire`] message from a member.
    Cast(Envelope),
    /// A [`Wire`] request; the answer is an envelope's bytes.
    Call(Envelope, RpcReplyPort<Vec<u8>>),
    /// From this node only (handles, hosted actors, node events).
    Local(L),
}

/// Sends a request to a member and returns its answer's envelope.
pub(crate) async fn call_member<L: Send + 'static>(
    member: &ractor::ActorRef<MemberMsg<L>>,
    wire: &Wire,
    timeout: Duration,
) -> Option<Envelope> {
    let env = Envelope::encode(wire).ok()?;
    let (tx, rx) = oneshot::channel();
    let port: RpcReplyPort<Vec<u8>> = (tx, timeout).into();
    member.cast(MemberMsg::Call(env, port)).ok()?;
    let bytes = tokio::time::timeout(timeout, rx).await.ok()?.ok()?;
    Some(<Envelope as ractor::BytesConvertable>::from_bytes(bytes))
}

impl<L: Send + 'static> std::fmt::Debug for MemberMsg<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
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
