//! The connector: runs this node's ractor_cluster endpoint and keeps it connected to every
//! discovered peer, and tells subscribers which nodes are up.
//!
//! What ractor_cluster leaves to us (see `shared/research/ractor.md`), done here:
//! - dial each discovered peer not yet connected, concurrently, with a connect timeout;
//! - redial with jittered backoff while the peer is still discovered; never disconnect a live
//!   node because it left DNS (Swarm drops a task from DNS ~2 s before SIGTERM, and a draining
//!   node still has work to hand off);
//! - a full mesh, as Erlang's `global` makes one: every node tells the nodes it is connected to
//!   which nodes those are (through the beacon's heartbeat answers), and they dial the ones they
//!   lack. A node that starts while another is already out of DNS but still draining (a Swarm
//!   rolling update does exactly this) still connects to it;
//! - heartbeats with a deadline: a peer that does not answer is disconnected and reported down,
//!   and reconnected when it answers again;
//! - incarnations: a restarted node presents `name@host#<boot time>`, so its new session never
//!   competes with the stale one in ractor_cluster's election; the stale one is stopped first;
//! - a handshake deadline, a byte cap before the cookie handshake (64 KiB) and a cap on
//!   half-open connections, so idle or garbage connections on the cluster port cost nothing
//!   lasting and never keep a node or console out;
//! - node events (up/down with incarnation) for the horde layer.
//!
//! ```text
//! Connector (actor: the shell around a LinkTable, which decides)
//!  ├─ NodeServer (ractor_cluster; its own listener only on an unused loopback port)
//!  │   └─ NodeSession per link ─ Session, RemoteActor proxies
//!  │        ▲ gated streams
//!  ├─ cluster port listener (task; see `gate`)
//!  └─ Beacon (remotable: answers heartbeats)
//! ```
//! The connector owns the view of sessions and nodes. It must not know what runs on the nodes.
//!
//! # Layout
//! Core and shell (STYLE 17): every decision above lives in [`link_table::LinkTable`], a
//! sans-IO struct that takes inputs with the time they happened and returns effects; the
//! actor only turns NodeServer callbacks, timers and task results into inputs and carries out
//! the effects.
//! - [`link_table`]: the decisions (dials, links, nodes, heartbeats, partitions, the mesh).
//! - [`backoff`]: redial delays.
//! - [`beacon`]: the remotable actor that answers heartbeats, and its wire types.
//! - `actor`: the connector actor, the shell around the table.
//! - `gate`: what a connection may do before the cookie handshake (bytes, deadline, how many).
//! - `endpoint`: the ractor_cluster side: session actors as links, the NodeServer and its
//!   session callbacks as table inputs, a peer's beacon among a link's proxies. It sits below
//!   `actor` and does not import it: it sends session steps as any message a `LinkInput`
//!   converts into (`From`), so the two form layers, not a cycle.
//! - this module: the handle ([`Connector`]) and the events it publishes.

mod actor;
pub mod backoff;
pub mod beacon;
mod endpoint;
mod gate;
pub mod link_table;

use std::net::SocketAddr;
use std::time::Duration;

use ractor::{Actor, ActorCell, ActorId, ActorRef, RpcReplyPort};
use ractor_cluster::NodeSessionMessage;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use self::actor::{ConnectorActor, ConnectorMsg};
pub use self::link_table::DownReason;
use crate::config::ConnectorConfig;
use crate::{NodeId, PeerSet};

/// Timeout of calls into the connector actor from its handle.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the connector could not start or answer.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// The cluster listener could not be started.
    #[error(
        "cannot listen for node connections on {addr}: {reason} (is another node using it? set CLUSTER_PORT or CLUSTER_BIND)"
    )]
    Listen {
        /// Bind address and port.
        addr: SocketAddr,
        /// What failed.
        reason: String,
    },
    /// The connector actor is gone (the node is shutting down).
    #[error("the node's connector is not running")]
    Stopped,
}

/// Why a ping failed.
#[derive(Debug, thiserror::Error)]
pub enum PingError {
    /// No node of that name is connected.
    #[error("node `{0}` is not connected (see `nodes`)")]
    NotConnected(String),
    /// The node did not answer in time.
    #[error("node `{0}` did not answer within {1:?}")]
    Timeout(String, Duration),
    /// The connector is gone.
    #[error(transparent)]
    Connector(#[from] ConnectorError),
}

/// A connected peer node and the link to it.
#[derive(Debug, Clone)]
pub struct PeerNode {
    /// Which run of which node.
    pub id: NodeId,
    session: ActorRef<NodeSessionMessage>,
}

impl PeerNode {
    pub(crate) fn new(id: NodeId, session: ActorRef<NodeSessionMessage>) -> Self {
        Self { id, session }
    }

    /// The peer's remotable actor of `service`, through this link. ractor_cluster creates a
    /// proxy (child of the link's session) for every remotable actor of the peer's process; the
    /// name, which includes the incarnation, picks the one that belongs to this peer.
    pub fn remote_actor<M: ractor::Message>(&self, service: &str) -> Option<ActorRef<M>> {
        let wanted = self.id.actor_name(service);
        self.session
            .get_cell()
            .get_children()
            .into_iter()
            .find(|c| c.get_name().as_deref() == Some(wanted.as_str()))
            .map(ActorRef::<M>::from)
    }

    /// The link's actor id: a new link to the same incarnation has a new id.
    pub fn link_id(&self) -> ActorId {
        self.session.get_id()
    }
}

/// A change in the set of connected nodes.
#[derive(Debug, Clone)]
pub enum NodeEvent {
    /// A node is connected and ready. Sent again, without a `Down` between, when the link to
    /// the same incarnation was replaced by another one.
    Up(PeerNode),
    /// A node is no longer connected.
    Down {
        /// Which run of which node.
        id: NodeId,
        /// Why.
        reason: DownReason,
    },
}

/// A subscription: the nodes up now, then every change, in order, with nothing missed.
#[derive(Debug)]
pub struct NodeEvents {
    /// Nodes up at the time of subscribing.
    pub current: Vec<PeerNode>,
    /// Changes after that.
    pub events: mpsc::UnboundedReceiver<NodeEvent>,
}

/// What `nodes` shows of a connected node.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// Which run of which node.
    pub id: NodeId,
    /// Last heartbeat round trip.
    pub rtt: Option<Duration>,
}

/// Handle to a running connector.
#[derive(Debug, Clone)]
pub struct Connector {
    actor: ActorRef<ConnectorMsg>,
    node: NodeId,
    /// The largest inbound frame its links accept ([`ConnectorConfig::max_frame_size`]):
    /// senders keep their messages well under it (a larger one closes the link).
    max_frame_size: u64,
}

impl Connector {
    /// Starts the node's cluster endpoint and connects to the peers `peers` publishes.
    pub async fn start(
        config: ConnectorConfig,
        peers: watch::Receiver<PeerSet>,
    ) -> Result<(Connector, JoinHandle<()>), ConnectorError> {
        let node = config.node.clone();
        let max_frame_size = config.max_frame_size;
        let addr = SocketAddr::new(config.bind, config.port);
        let (actor, handle) = Actor::spawn(None, ConnectorActor { config }, peers)
            .await
            .map_err(|e| ConnectorError::Listen {
                addr,
                reason: root_cause(&e),
            })?;
        Ok((
            Connector {
                actor,
                node,
                max_frame_size,
            },
            handle,
        ))
    }

    /// This node.
    pub fn node(&self) -> &NodeId {
        &self.node
    }

    /// The largest inbound frame this node's links accept (every node should use the same):
    /// a frame over it closes the link, which its peer sees as this node going down.
    pub fn max_frame_size(&self) -> u64 {
        self.max_frame_size
    }

    /// The connected nodes, by name.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, ConnectorError> {
        self.call(ConnectorMsg::Nodes).await
    }

    /// Subscribes to node events.
    pub async fn subscribe(&self) -> Result<NodeEvents, ConnectorError> {
        self.call(ConnectorMsg::Subscribe).await
    }

    /// Round trip to `node` (a logical name such as `node@10.0.1.7`).
    pub async fn ping(&self, node: &str) -> Result<Duration, PingError> {
        let node = node.to_string();
        self.call(|reply| ConnectorMsg::Ping { node, reply })
            .await?
    }

    /// Cuts this node off from `nodes` (logical names) until [`Connector::heal`]: their links
    /// close, they are reported down, and neither side's dials get through. What a network
    /// partition does, on demand (tests, fencing a misbehaving node).
    pub async fn partition(&self, nodes: &[String]) -> Result<(), ConnectorError> {
        let nodes = nodes.to_vec();
        self.call(|reply| ConnectorMsg::Partition { nodes, reply })
            .await
    }

    /// Ends every [`Connector::partition`]; peers still discovered are dialled again.
    pub async fn heal(&self) -> Result<(), ConnectorError> {
        self.call(ConnectorMsg::Heal).await
    }

    /// The cell to link actors to, so they stop with the connector.
    pub fn cell(&self) -> ActorCell {
        self.actor.get_cell()
    }

    /// Closes every link and the listener, and waits for it.
    pub async fn stop(&self) {
        let _ = self
            .actor
            .stop_and_wait(Some("shutdown".into()), Some(CALL_TIMEOUT))
            .await;
    }

    async fn call<R: Send + 'static>(
        &self,
        msg: impl FnOnce(RpcReplyPort<R>) -> ConnectorMsg,
    ) -> Result<R, ConnectorError> {
        match self.actor.call(msg, Some(CALL_TIMEOUT)).await {
            Ok(ractor::rpc::CallResult::Success(r)) => Ok(r),
            _ => Err(ConnectorError::Stopped),
        }
    }
}

fn root_cause(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg = s.to_string();
        src = s.source();
    }
    msg
}
