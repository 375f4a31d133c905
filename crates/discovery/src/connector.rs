//! The connector: runs this node's ractor_cluster endpoint and keeps it connected to every
//! discovered peer, and tells subscribers which nodes are up.
//!
//! What ractor_cluster leaves to us (see `shared/research/ractor.md`), done here:
//! - dial each discovered peer not yet connected, concurrently, with a connect timeout;
//! - redial with jittered backoff while the peer is still discovered; never disconnect a live
//!   node because it left DNS (Swarm drops a task from DNS ~2 s before SIGTERM, and a draining
//!   node still has games to hand off);
//! - a full mesh, as Erlang's `global` makes one: every node tells the nodes it is connected to
//!   which nodes those are (through the beacon's heartbeat answers), and they dial the ones they
//!   lack. A node that starts while another is already out of DNS but still draining (a Swarm
//!   rolling update does exactly this) still connects to it;
//! - heartbeats with a deadline: a peer that does not answer is disconnected and reported down,
//!   and reconnected when it answers again;
//! - incarnations: a restarted node presents `name@host#<boot time>`, so its new session never
//!   competes with the stale one in ractor_cluster's election; the stale one is stopped first;
//! - a handshake deadline and a cap on half-open connections, so idle or garbage connections
//!   on the cluster port cost nothing lasting;
//! - node events (up/down with incarnation) for the horde layer.
//!
//! ```text
//! Connector (this actor)
//!  ├─ NodeServer (ractor_cluster)
//!  │   ├─ Listener
//!  │   └─ NodeSession per link ─ Session, RemoteActor proxies
//!  └─ Beacon (remotable: answers heartbeats)
//! ```
//! The connector owns the view of sessions and nodes. It must not know what runs on the nodes.

pub mod backoff;
pub mod beacon;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};
use ractor_cluster::node::{NodeConnectionMode, NodeServerSessionInformation};
use ractor_cluster::{NodeEventSubscription, NodeServer, NodeServerMessage, NodeSessionMessage};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use self::beacon::{
    BEACON_SERVICE, Beacon, BeaconMsg, MAX_MESH_PEERS, Mesh, MeshPeer, MeshReport, PingReply,
    PingRequest,
};
use crate::config::ConnectorConfig;
use crate::node_name::PeerKind;
use crate::wire::Envelope;
use crate::{NodeId, Peer, PeerSet};

/// How often the connector checks dials, handshakes and heartbeats.
const TICK: Duration = Duration::from_millis(50);
/// Timeout of a `ping` asked from the console.
const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a node whose link closed may take to finish another link before it is reported
/// down (see `on_closed`).
const RELINK_GRACE: Duration = Duration::from_secs(1);
/// A node whose name sorts first waits this long (plus jitter) before dialling a newly
/// discovered peer, which is likely dialling it at the same moment.
const FIRST_DIAL_DELAY: Duration = Duration::from_millis(150);
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

/// Why a node was reported down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownReason {
    /// The link closed (process exit, kill, network error).
    Disconnected,
    /// It stopped answering heartbeats (frozen, partitioned); the link was cut.
    Unresponsive,
    /// A newer incarnation of the same name connected.
    Replaced,
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
}

impl Connector {
    /// Starts the node's cluster endpoint and connects to the peers `peers` publishes.
    pub async fn start(
        config: ConnectorConfig,
        peers: watch::Receiver<PeerSet>,
    ) -> Result<(Connector, JoinHandle<()>), ConnectorError> {
        let node = config.node.clone();
        let addr = SocketAddr::new(config.bind, config.port);
        let own = advertised(&config).map(|addr| MeshPeer {
            name: config.node.name.clone(),
            addr,
        });
        let (actor, handle) = Actor::spawn(None, ConnectorActor { config, own }, peers)
            .await
            .map_err(|e| ConnectorError::Listen {
                addr,
                reason: root_cause(&e),
            })?;
        Ok((Connector { actor, node }, handle))
    }

    /// This node.
    pub fn node(&self) -> &NodeId {
        &self.node
    }

    /// The connected nodes, by name.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, ConnectorError> {
        self.call(ConnectorMsg::Nodes).await
    }

    /// Subscribes to node events.
    pub async fn subscribe(&self) -> Result<NodeEvents, ConnectorError> {
        self.call(ConnectorMsg::Subscribe).await
    }

    /// Round trip to `node` (a logical name such as `minotaur@10.0.1.7`).
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

/// What the NodeServer told us about a session.
#[derive(Debug, Clone, Copy)]
enum SessionStep {
    Opened,
    Authenticated,
    Ready,
    Closed,
}

/// Messages of the connector actor (local only).
enum ConnectorMsg {
    /// Discovery published a new peer set.
    Peers(PeerSet),
    /// Periodic work: dials, handshake deadlines, heartbeats.
    Tick,
    /// A NodeServer event.
    Session(SessionStep, NodeServerSessionInformation),
    /// A dial finished (TCP up or failed; authentication follows as session events).
    DialDone {
        /// Where.
        addr: SocketAddr,
        /// The error, if TCP could not connect.
        error: Option<String>,
    },
    /// A heartbeat came back.
    Pong {
        /// Who answered (with incarnation).
        node: NodeId,
        /// Round trip.
        rtt: Duration,
        /// The answering node's mesh, when it sent one.
        mesh: Option<MeshReport>,
    },
    /// A heartbeat failed (timeout or link error); the deadline decides what it means.
    PingFailed {
        /// Which node's ping.
        name: String,
    },
    /// List connected nodes.
    Nodes(RpcReplyPort<Vec<NodeInfo>>),
    /// Subscribe to node events.
    Subscribe(RpcReplyPort<NodeEvents>),
    /// Cut links to these nodes and refuse them.
    Partition {
        /// Logical names.
        nodes: Vec<String>,
        /// Done.
        reply: RpcReplyPort<()>,
    },
    /// End partitions.
    Heal(RpcReplyPort<()>),
    /// Ping a node for the console.
    Ping {
        /// Logical name.
        node: String,
        /// Answer.
        reply: RpcReplyPort<Result<Duration, PingError>>,
    },
}

impl std::fmt::Debug for ConnectorMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            ConnectorMsg::Peers(_) => "Peers",
            ConnectorMsg::Tick => "Tick",
            ConnectorMsg::Session(..) => "Session",
            ConnectorMsg::DialDone { .. } => "DialDone",
            ConnectorMsg::Pong { .. } => "Pong",
            ConnectorMsg::PingFailed { .. } => "PingFailed",
            ConnectorMsg::Nodes(_) => "Nodes",
            ConnectorMsg::Subscribe(_) => "Subscribe",
            ConnectorMsg::Ping { .. } => "Ping",
            ConnectorMsg::Partition { .. } => "Partition",
            ConnectorMsg::Heal(_) => "Heal",
        };
        f.write_str(name)
    }
}

impl ractor::Message for ConnectorMsg {}

/// Forwards NodeServer callbacks (which run on the NodeServer's task and must not block) to the
/// connector's mailbox.
struct Subscription(ActorRef<ConnectorMsg>);

impl NodeEventSubscription for Subscription {
    fn node_session_opened(&self, ses: NodeServerSessionInformation) {
        let _ = self.0.cast(ConnectorMsg::Session(SessionStep::Opened, ses));
    }
    fn node_session_authenticated(&self, ses: NodeServerSessionInformation) {
        let _ = self
            .0
            .cast(ConnectorMsg::Session(SessionStep::Authenticated, ses));
    }
    fn node_session_ready(&self, ses: NodeServerSessionInformation) {
        let _ = self.0.cast(ConnectorMsg::Session(SessionStep::Ready, ses));
    }
    fn node_session_disconnected(&self, ses: NodeServerSessionInformation) {
        let _ = self.0.cast(ConnectorMsg::Session(SessionStep::Closed, ses));
    }
}

/// The connector actor: `self` is its configuration.
/// Where a node tells others it listens: the IP of its name, else the bind address.
fn advertised(config: &ConnectorConfig) -> Option<SocketAddr> {
    let name: crate::NodeName = config.node.name.parse().ok()?;
    let ip = name
        .host()
        .and_then(|h| h.ip())
        .or_else(|| (!config.bind.is_unspecified()).then_some(config.bind))?;
    Some(SocketAddr::new(ip, config.port))
}

struct ConnectorActor {
    config: ConnectorConfig,
    /// This node as others should dial it, when its address is known (see [`advertised`]).
    own: Option<MeshPeer>,
}

/// A dial target: a discovered peer's address.
#[derive(Debug)]
struct Dial {
    /// The peer as discovered (its expected name).
    peer: Peer,
    /// Failed or unproductive attempts since the last time it was up: drives the backoff.
    attempts: u32,
    /// Not before this instant.
    next_at: Instant,
    /// A dial task is running.
    in_flight: bool,
}

/// One TCP link as the NodeServer reported it.
#[derive(Debug)]
struct Link {
    info: NodeServerSessionInformation,
    opened_at: Instant,
    /// Passed the cookie check.
    authenticated: bool,
    /// What the peer said it is, once authenticated.
    kind: Option<PeerKind>,
}

/// A connected node.
#[derive(Debug)]
struct NodeEntry {
    peer: PeerNode,
    /// Other ready links to the same incarnation (rare: the election normally closes them).
    spare_links: Vec<ActorId>,
    /// The peer's beacon, found among the link's proxies.
    beacon: Option<ActorRef<BeaconMsg>>,
    /// Last heartbeat answer (or when the link became ready): the failure deadline counts
    /// from here.
    last_heard: Instant,
    /// Last heartbeat round trip.
    rtt: Option<Duration>,
    /// A heartbeat is outstanding: never more than one per peer.
    ping_in_flight: bool,
    /// When the last heartbeat was sent.
    last_ping: Option<Instant>,
    /// Set while the primary link is gone and another authenticated link to the same run is
    /// finishing its sync: the node is not reported down unless this passes.
    relink_deadline: Option<Instant>,
    /// The nodes it said it is connected to (see the module docs), and the digest of that
    /// answer (0: none yet).
    mesh: Vec<Peer>,
    mesh_digest: u64,
    /// Where it said it listens.
    advertised: Option<SocketAddr>,
}

/// Mutable state of the connector.
struct State {
    node_server: ActorRef<NodeServerMessage>,
    /// The beacon's id: its death ends the connector, like the NodeServer's.
    beacon: ActorId,
    /// What discovery publishes now.
    discovered: PeerSet,
    /// Peers to keep connected by dial address: the discovered ones and those connected nodes
    /// reported (see `sync_dials`).
    dials: BTreeMap<SocketAddr, Dial>,
    /// The mesh as the beacon answers it.
    mesh: watch::Sender<Arc<Mesh>>,
    /// Every link, by the NodeSession actor's id.
    links: HashMap<ActorId, Link>,
    /// Connected nodes by logical name.
    nodes: BTreeMap<String, NodeEntry>,
    /// Dial address -> the node name that answered there, learnt from our own dials, so a node
    /// whose name differs from what discovery guessed is not redialled forever.
    addr_owner: HashMap<SocketAddr, String>,
    /// Addresses that turned out to be this node (e.g. own IP in DNS under another name).
    self_addrs: HashSet<SocketAddr>,
    /// Nodes cut off by `partition`: no links to them until `heal`.
    blocked: HashSet<String>,
    /// Event subscribers; closed ones are dropped on the next send.
    subscribers: Vec<mpsc::UnboundedSender<NodeEvent>>,
    /// Half-open connections closed for exceeding the cap since the last log line.
    refused_pending: u64,
    /// For rate-limiting the "too many handshakes" warning.
    last_refusal_log: Option<Instant>,
}

impl Actor for ConnectorActor {
    type Msg = ConnectorMsg;
    type State = State;
    type Arguments = watch::Receiver<PeerSet>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        mut peers: watch::Receiver<PeerSet>,
    ) -> Result<State, ActorProcessingErr> {
        let c = &self.config;
        // The beacon must exist before the listener so it is in every peer's initial sync.
        let (mesh, mesh_rx) =
            watch::channel(Arc::new(Mesh::new(self.own.iter().cloned().collect())));
        let (beacon, _) = Actor::spawn_linked(
            Some(c.node.actor_name(BEACON_SERVICE)),
            Beacon {
                node: c.node.clone(),
                mesh: mesh_rx,
            },
            (),
            myself.get_cell(),
        )
        .await?;
        let server = NodeServer::new(
            c.port,
            c.cookie.clone(),
            c.node.ractor_basename().to_string(),
            c.node.ractor_hostname(),
            None,
            Some(NodeConnectionMode::Isolated),
        )
        .with_listen_addr(c.bind)
        .with_max_inbound_frame_size(c.max_frame_size);
        let (node_server, _) = Actor::spawn_linked(None, server, (), myself.get_cell()).await?;
        node_server.cast(NodeServerMessage::SubscribeToEvents {
            id: "minotaur-connector".into(),
            subscription: Box::new(Subscription(myself.clone())),
        })?;

        // Forward peer sets; the task ends with the watch or with this actor.
        let me = myself.clone();
        tokio::spawn(async move {
            loop {
                let set = peers.borrow_and_update().clone();
                if me.cast(ConnectorMsg::Peers(set)).is_err() {
                    return;
                }
                if peers.changed().await.is_err() {
                    return;
                }
            }
        });
        myself.send_interval(TICK, || ConnectorMsg::Tick);
        info!(node = %c.node.name, incarnation = c.node.incarnation, bind = %c.bind, port = c.port, "cluster endpoint listening");
        Ok(State {
            beacon: beacon.get_id(),
            node_server,
            discovered: PeerSet::new(),
            dials: BTreeMap::new(),
            mesh,
            links: HashMap::new(),
            nodes: BTreeMap::new(),
            addr_owner: HashMap::new(),
            self_addrs: HashSet::new(),
            blocked: HashSet::new(),
            subscribers: Vec::new(),
            refused_pending: 0,
            last_refusal_log: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ConnectorMsg::Peers(set) => self.on_peers(state, set),
            ConnectorMsg::Tick => self.on_tick(&myself, state),
            ConnectorMsg::Session(step, info) => self.on_session(state, step, info),
            ConnectorMsg::DialDone { addr, error } => self.on_dial_done(state, addr, error),
            ConnectorMsg::Pong { node, rtt, mesh } => {
                tracing::trace!(node = %node, rtt_us = rtt.as_micros() as u64, "pong");
                if let Some(entry) = state.nodes.get_mut(&node.name)
                    && entry.peer.id == node
                {
                    entry.ping_in_flight = false;
                    entry.last_heard = Instant::now();
                    entry.rtt = Some(rtt);
                    if let Some(MeshReport {
                        digest,
                        peers: Some(peers),
                    }) = mesh
                    {
                        self.on_mesh(state, &node.name, digest, peers);
                    }
                }
            }
            ConnectorMsg::PingFailed { name } => {
                if let Some(entry) = state.nodes.get_mut(&name) {
                    entry.ping_in_flight = false;
                }
            }
            ConnectorMsg::Partition { nodes, reply } => {
                for n in &nodes {
                    warn!(node = %n, "partitioned from node (on request)");
                    state.blocked.insert(n.clone());
                    self.node_down(state, n, DownReason::Disconnected);
                }
                // Half-open or spare links to them too.
                for l in state.links.values() {
                    if let Some(PeerKind::Node(id)) = &l.kind
                        && state.blocked.contains(&id.name)
                    {
                        l.info.actor.stop(Some("partitioned".into()));
                    }
                }
                let _ = reply.send(());
            }
            ConnectorMsg::Heal(reply) => {
                let healed: Vec<String> = state.blocked.drain().collect();
                for n in healed {
                    info!(node = %n, "partition healed");
                    self.redial_soon(state, &n);
                }
                let _ = reply.send(());
            }
            ConnectorMsg::Nodes(reply) => {
                let list = state
                    .nodes
                    .values()
                    .map(|n| NodeInfo {
                        id: n.peer.id.clone(),
                        rtt: n.rtt,
                    })
                    .collect();
                let _ = reply.send(list);
            }
            ConnectorMsg::Subscribe(reply) => {
                let (tx, rx) = mpsc::unbounded_channel();
                state.subscribers.push(tx);
                let current = state.nodes.values().map(|n| n.peer.clone()).collect();
                let _ = reply.send(NodeEvents {
                    current,
                    events: rx,
                });
            }
            ConnectorMsg::Ping { node, reply } => {
                let beacon = state.nodes.get(&node).and_then(|n| n.beacon.clone());
                let request = PingRequest {
                    from: self.config.node.clone(),
                    mesh_known: None,
                };
                match beacon {
                    None => {
                        let _ = reply.send(Err(PingError::NotConnected(node)));
                    }
                    Some(beacon) => {
                        tokio::spawn(async move {
                            let result = ping(&beacon, &request, PING_TIMEOUT)
                                .await
                                .map(|(_, rtt)| rtt)
                                .ok_or(PingError::Timeout(node, PING_TIMEOUT));
                            let _ = reply.send(result);
                        });
                    }
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        evt: SupervisionEvent,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        // The NodeServer or the beacon died: this node can no longer be a cluster member.
        // Other actors linked here (the console, ...) stop alone.
        let essential = |id: ActorId| id == state.node_server.get_id() || id == state.beacon;
        match evt {
            SupervisionEvent::ActorTerminated(who, _, reason) if essential(who.get_id()) => {
                warn!(actor = %who.get_id(), reason = ?reason, "cluster endpoint stopped");
                myself.stop(Some("cluster endpoint failed".into()));
            }
            SupervisionEvent::ActorFailed(who, error) if essential(who.get_id()) => {
                warn!(actor = %who.get_id(), %error, "cluster endpoint failed");
                myself.stop(Some("cluster endpoint failed".into()));
            }
            SupervisionEvent::ActorFailed(who, error) => {
                warn!(actor = %who.get_id(), name = ?who.get_name(), %error, "actor linked to the connector failed");
            }
            _ => {}
        }
        Ok(())
    }
}

/// One heartbeat or ping: `Some((the answer, round trip))`, `None` on timeout or error.
async fn ping(
    beacon: &ActorRef<BeaconMsg>,
    request: &PingRequest,
    timeout: Duration,
) -> Option<(PingReply, Duration)> {
    let request = Envelope::encode(request).ok()?;
    let started = Instant::now();
    match beacon
        .call(|r| BeaconMsg::Ping(request, r), Some(timeout))
        .await
    {
        Ok(ractor::rpc::CallResult::Success(reply)) => {
            let reply = PingReply::decode(&reply).ok()?;
            Some((reply, started.elapsed()))
        }
        _ => None,
    }
}

impl ConnectorActor {
    /// The jittered wait before redial number `attempt` (0 = the first after a success).
    fn backoff(&self, attempt: u32) -> Duration {
        backoff::delay(
            attempt,
            self.config.backoff_min,
            self.config.backoff_max,
            rand::random::<f64>(),
        )
    }

    fn on_peers(&self, state: &mut State, set: PeerSet) {
        state.discovered = set;
        self.sync_dials(state);
    }

    /// Publishes, for the beacon, this node and every connected node whose address is known.
    fn publish_mesh(&self, state: &mut State) {
        let mut peers: Vec<MeshPeer> = self.own.iter().cloned().collect();
        for (name, entry) in &state.nodes {
            let addr = entry.advertised.or_else(|| {
                state
                    .addr_owner
                    .iter()
                    .find(|(_, n)| *n == name)
                    .map(|(a, _)| *a)
            });
            if let Some(addr) = addr {
                peers.push(MeshPeer {
                    name: name.clone(),
                    addr,
                });
            }
        }
        let mesh = Mesh::new(peers);
        state.mesh.send_if_modified(|current| {
            if current.digest == mesh.digest {
                return false;
            }
            *current = Arc::new(mesh);
            true
        });
    }

    /// A connected node told us which nodes it is connected to.
    fn on_mesh(&self, state: &mut State, from: &str, digest: u64, peers: Vec<MeshPeer>) {
        let mut advertised = None;
        let mut learned = Vec::new();
        for p in peers.into_iter().take(MAX_MESH_PEERS) {
            if p.name == from {
                advertised = Some(p.addr);
                continue;
            }
            match p.name.parse::<crate::NodeName>() {
                Ok(name) => learned.push(Peer { name, addr: p.addr }),
                Err(error) => debug!(node = %from, %error, "ignoring a malformed mesh entry"),
            }
        }
        let Some(entry) = state.nodes.get_mut(from) else {
            return;
        };
        entry.mesh_digest = digest;
        entry.mesh = learned;
        let moved = entry.advertised != advertised;
        entry.advertised = advertised;
        if moved {
            self.publish_mesh(state);
        }
        self.sync_dials(state);
    }

    /// Keeps a dial entry for every discovered peer and every peer a connected node reported,
    /// and drops the others (their links stay up: only redials stop).
    fn sync_dials(&self, state: &mut State) {
        let own = SocketAddr::new(self.config.bind, self.config.port);
        let own_name = &self.config.node.name;
        let advertised = self.own.as_ref().map(|p| p.addr);
        let learned = state
            .nodes
            .iter()
            .flat_map(|(from, e)| e.mesh.iter().map(move |p| (p, Some(from))));
        let mut wanted: BTreeMap<SocketAddr, (Peer, Option<&String>)> = BTreeMap::new();
        for (p, from) in state.discovered.iter().map(|p| (p, None)).chain(learned) {
            if p.addr == own
                || Some(p.addr) == advertised
                || p.name.to_string() == *own_name
                || state.self_addrs.contains(&p.addr)
            {
                continue;
            }
            wanted.entry(p.addr).or_insert_with(|| (p.clone(), from));
        }
        state.dials.retain(|addr, _| wanted.contains_key(addr));
        let now = Instant::now();
        for (addr, (peer, from)) in wanted {
            state.dials.entry(addr).or_insert_with(|| {
                match from {
                    None => debug!(peer = %peer, "peer discovered"),
                    Some(from) => {
                        debug!(peer = %peer, via = %from, "peer learned from a connected node")
                    }
                }
                // ractor_cluster keeps the link dialled by the node whose name sorts last; the
                // other side waits a little so that both rarely dial at once.
                let next_at = now + Self::yield_delay(own_name, &peer.name.to_string());
                Dial {
                    peer,
                    attempts: 0,
                    next_at,
                    in_flight: false,
                }
            });
        }
    }

    /// True when `dial` needs no dialling: connected already, or cut off by `partition`.
    fn is_connected(state: &State, dial: &Dial, addr: &SocketAddr) -> bool {
        let name = dial.peer.name.to_string();
        state.blocked.contains(&name)
            || state.nodes.contains_key(&name)
            || state
                .addr_owner
                .get(addr)
                .is_some_and(|n| state.nodes.contains_key(n))
    }

    fn on_tick(&self, myself: &ActorRef<ConnectorMsg>, state: &mut State) {
        let now = Instant::now();
        self.dial_due(myself, state, now);
        self.expire_handshakes(state, now);
        self.heartbeat(myself, state, now);
    }

    fn dial_due(&self, myself: &ActorRef<ConnectorMsg>, state: &mut State, now: Instant) {
        let due: Vec<SocketAddr> = state
            .dials
            .iter()
            .filter(|(addr, d)| {
                !d.in_flight && d.next_at <= now && !Self::is_connected(state, d, addr)
            })
            .map(|(a, _)| *a)
            .collect();
        for addr in due {
            let Some(dial) = state.dials.get_mut(&addr) else {
                continue;
            };
            dial.in_flight = true;
            // Whatever comes of it, the next attempt waits; a success resets the count.
            dial.next_at = now + self.backoff(dial.attempts);
            dial.attempts = dial.attempts.saturating_add(1);
            let server = state.node_server.clone();
            let me = myself.clone();
            let timeout = self.config.dial_timeout;
            debug!(peer = %dial.peer, attempt = dial.attempts, "dialling");
            tokio::spawn(async move {
                let error = match tokio::time::timeout(
                    timeout,
                    ractor_cluster::client_connect(&server, addr),
                )
                .await
                {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(_) => Some(format!("no answer within {timeout:?}")),
                };
                let _ = me.cast(ConnectorMsg::DialDone { addr, error });
            });
        }
    }

    fn on_dial_done(&self, state: &mut State, addr: SocketAddr, error: Option<String>) {
        if let Some(dial) = state.dials.get_mut(&addr) {
            dial.in_flight = false;
            if let Some(error) = error {
                // Expected while a peer starts or after it left: debug, not warn.
                debug!(peer = %dial.peer, %error, attempts = dial.attempts, "dial failed");
            }
        }
    }

    fn expire_handshakes(&self, state: &mut State, now: Instant) {
        for link in state.links.values() {
            let ready = matches!(link.kind, Some(PeerKind::Node(ref id)) if state.nodes.get(&id.name).is_some_and(|n| n.peer.link_id() == link.info.actor.get_id() || n.spare_links.contains(&link.info.actor.get_id())));
            let console = matches!(link.kind, Some(PeerKind::Console(_)));
            if !ready
                && !console
                && now.duration_since(link.opened_at) > self.config.handshake_timeout
            {
                warn!(peer_addr = %link.info.peer_addr, authenticated = link.authenticated, "closing connection that did not complete its handshake in time");
                link.info.actor.stop(Some("handshake timeout".into()));
            }
        }
    }

    fn heartbeat(&self, myself: &ActorRef<ConnectorMsg>, state: &mut State, now: Instant) {
        let mut unresponsive = Vec::new();
        for (name, entry) in state.nodes.iter_mut() {
            if now.duration_since(entry.last_heard) > self.config.failure_timeout {
                unresponsive.push(name.clone());
                continue;
            }
            if entry.relink_deadline.is_some() {
                continue;
            }
            if entry.beacon.is_none() {
                entry.beacon = entry.peer.remote_actor::<BeaconMsg>(BEACON_SERVICE);
            }
            let due = entry
                .last_ping
                .is_none_or(|t| now.duration_since(t) >= self.config.heartbeat_interval);
            if let (Some(beacon), false, true) = (&entry.beacon, entry.ping_in_flight, due) {
                entry.ping_in_flight = true;
                entry.last_ping = Some(now);
                let request = PingRequest {
                    from: self.config.node.clone(),
                    mesh_known: Some(entry.mesh_digest),
                };
                let (beacon, me, name) = (beacon.clone(), myself.clone(), name.clone());
                let timeout = self.config.failure_timeout;
                tokio::spawn(async move {
                    let msg = match ping(&beacon, &request, timeout).await {
                        Some((reply, rtt)) => ConnectorMsg::Pong {
                            node: reply.node,
                            rtt,
                            mesh: reply.mesh,
                        },
                        None => ConnectorMsg::PingFailed { name },
                    };
                    let _ = me.cast(msg);
                });
            }
        }
        for name in unresponsive {
            if let Some(entry) = state.nodes.get(&name) {
                warn!(node = %entry.peer.id.name, incarnation = entry.peer.id.incarnation, silent_ms = now.duration_since(entry.last_heard).as_millis() as u64, "node stopped answering heartbeats; disconnecting");
            }
            self.node_down(state, &name, DownReason::Unresponsive);
        }
        let relink_expired: Vec<String> = state
            .nodes
            .iter()
            .filter(|(_, e)| e.relink_deadline.is_some_and(|d| d <= now))
            .map(|(n, _)| n.clone())
            .collect();
        for name in relink_expired {
            self.node_down(state, &name, DownReason::Disconnected);
        }
    }

    fn on_session(&self, state: &mut State, step: SessionStep, info: NodeServerSessionInformation) {
        let id = info.actor.get_id();
        match step {
            SessionStep::Opened => {
                // Over the cap, close the oldest half-open connection: an attacker's idle
                // connections are the old ones, a real peer or console is the new one.
                let pending: Vec<(Instant, ActorId)> = state
                    .links
                    .values()
                    .filter(|l| !l.authenticated)
                    .map(|l| (l.opened_at, l.info.actor.get_id()))
                    .collect();
                if pending.len() >= self.config.max_pending_handshakes
                    && let Some((_, oldest)) = pending.iter().min()
                    && let Some(old) = state.links.get(oldest)
                {
                    old.info
                        .actor
                        .stop(Some("too many pending handshakes".into()));
                    state.refused_pending += 1;
                    let now = Instant::now();
                    if state
                        .last_refusal_log
                        .is_none_or(|t| now.duration_since(t) > Duration::from_secs(10))
                    {
                        warn!(
                            closed = state.refused_pending,
                            limit = self.config.max_pending_handshakes,
                            "too many connections in their handshake; closing the oldest"
                        );
                        state.refused_pending = 0;
                        state.last_refusal_log = Some(now);
                    }
                }
                state.links.insert(
                    id,
                    Link {
                        info,
                        opened_at: Instant::now(),
                        authenticated: false,
                        kind: None,
                    },
                );
            }
            SessionStep::Authenticated => {
                let Some(link) = state.links.get_mut(&id) else {
                    return;
                };
                link.authenticated = true;
                let name = info
                    .peer_name
                    .as_ref()
                    .map(|n| n.name.clone())
                    .unwrap_or_default();
                let kind = PeerKind::from_ractor_name(&name);
                match &kind {
                    PeerKind::Foreign(n) => {
                        warn!(peer = %n, peer_addr = %info.peer_addr, "peer is not a minotaur node (no incarnation in its name); disconnecting");
                        info.actor.stop(Some("not a minotaur node".into()));
                    }
                    PeerKind::Node(peer) if peer.name == self.config.node.name => {
                        if peer.incarnation == self.config.node.incarnation {
                            debug!(peer_addr = %info.peer_addr, "connected to myself; never dialling this address again");
                            if let Ok(addr) = info.peer_addr.parse() {
                                state.self_addrs.insert(addr);
                                state.dials.remove(&addr);
                            }
                        } else {
                            warn!(peer = %peer, "another node uses this node's name; disconnecting it");
                        }
                        info.actor.stop(Some("same name as this node".into()));
                    }
                    PeerKind::Console(n) => {
                        info!(console = %n, peer_addr = %info.peer_addr, "console attached");
                    }
                    PeerKind::Node(peer) if state.blocked.contains(&peer.name) => {
                        debug!(peer = %peer, "refusing partitioned node");
                        info.actor.stop(Some("partitioned".into()));
                    }
                    PeerKind::Node(_) => {}
                }
                link.kind = Some(kind);
                link.info = info;
            }
            SessionStep::Ready => self.on_ready(state, info),
            SessionStep::Closed => self.on_closed(state, info),
        }
    }

    fn on_ready(&self, state: &mut State, info: NodeServerSessionInformation) {
        let link_id = info.actor.get_id();
        let Some(link) = state.links.get_mut(&link_id) else {
            return;
        };
        let Some(PeerKind::Node(peer_id)) = link.kind.clone() else {
            return;
        };
        if state.blocked.contains(&peer_id.name) {
            info.actor.stop(Some("partitioned".into()));
            return;
        }
        let dialled: Option<SocketAddr> = (!info.is_server)
            .then(|| info.peer_addr.parse().ok())
            .flatten();
        link.info = info.clone();

        if let Some(existing) = state.nodes.get_mut(&peer_id.name) {
            if existing.peer.id.incarnation == peer_id.incarnation {
                if existing.relink_deadline.take().is_some() {
                    existing.peer.session = info.actor.clone();
                    existing.beacon = existing.peer.remote_actor(BEACON_SERVICE);
                    existing.last_heard = Instant::now();
                    existing.ping_in_flight = false;
                    let peer = existing.peer.clone();
                    debug!(node = %peer_id.name, "link replaced");
                    Self::publish(state, NodeEvent::Up(peer));
                } else {
                    existing.spare_links.push(link_id);
                }
                return;
            }
            if existing.peer.id.incarnation > peer_id.incarnation {
                warn!(node = %peer_id.name, stale = peer_id.incarnation, current = existing.peer.id.incarnation, "an older incarnation connected; disconnecting it");
                info.actor.stop(Some("stale incarnation".into()));
                return;
            }
            // A newer run of a node we still hold a link to: the old run is gone (restarted
            // process, frozen then replaced). Stop its links first.
            info!(node = %peer_id.name, old = existing.peer.id.incarnation, new = peer_id.incarnation, "node restarted; dropping links to its previous run");
            self.node_down(state, &peer_id.name, DownReason::Replaced);
        }

        let peer = PeerNode {
            id: peer_id.clone(),
            session: info.actor.clone(),
        };
        let beacon = peer.remote_actor::<BeaconMsg>(BEACON_SERVICE);
        if let Some(addr) = dialled {
            state.addr_owner.insert(addr, peer_id.name.clone());
        }
        for dial in state.dials.values_mut() {
            if dial.peer.name.to_string() == peer_id.name
                || state.addr_owner.get(&dial.peer.addr) == Some(&peer_id.name)
            {
                dial.attempts = 0;
            }
        }
        info!(node = %peer_id.name, incarnation = peer_id.incarnation, peer_addr = %info.peer_addr, "node up");
        state.nodes.insert(
            peer_id.name.clone(),
            NodeEntry {
                peer: peer.clone(),
                spare_links: Vec::new(),
                beacon,
                last_heard: Instant::now(),
                rtt: None,
                ping_in_flight: false,
                last_ping: None,
                relink_deadline: None,
                mesh: Vec::new(),
                mesh_digest: 0,
                advertised: None,
            },
        );
        self.publish_mesh(state);
        Self::publish(state, NodeEvent::Up(peer));
    }

    fn on_closed(&self, state: &mut State, info: NodeServerSessionInformation) {
        let link_id = info.actor.get_id();
        let Some(link) = state.links.remove(&link_id) else {
            return;
        };
        let peer_name = info.peer_name.as_ref().map(|n| n.name.clone());
        if !link.authenticated {
            match peer_name {
                // Both sides dialled at once and ractor_cluster's election closed one link.
                Some(name) if Self::has_link_named(state, &name) => {
                    debug!(peer = %name, "duplicate connection closed")
                }
                Some(name) => {
                    warn!(peer = %name, peer_addr = %info.peer_addr, "peer failed to authenticate (wrong cookie?); connection closed")
                }
                None => {
                    debug!(peer_addr = %info.peer_addr, "connection closed before the handshake")
                }
            }
            return;
        }
        let Some(PeerKind::Node(peer_id)) = link.kind else {
            return;
        };
        let ractor_name = peer_id.ractor_name();
        let other_link_pending = Self::has_link_named(state, &ractor_name);
        let Some(entry) = state.nodes.get_mut(&peer_id.name) else {
            return;
        };
        if entry.peer.id != peer_id {
            return;
        }
        if entry.peer.link_id() != link_id {
            entry.spare_links.retain(|l| *l != link_id);
            // The link we were waiting for closed too.
            if entry.relink_deadline.is_some() && !other_link_pending {
                self.node_down(state, &peer_id.name, DownReason::Disconnected);
            }
            return;
        }
        // The primary link closed: promote a spare if one is ready.
        while let Some(spare) = entry.spare_links.pop() {
            if let Some(l) = state.links.get(&spare) {
                entry.peer.session = l.info.actor.clone();
                entry.beacon = entry.peer.remote_actor(BEACON_SERVICE);
                let peer = entry.peer.clone();
                Self::publish(state, NodeEvent::Up(peer));
                return;
            }
        }
        // When both sides dial at once, ractor_cluster may close a link that was already ready
        // here while the other link is still finishing its sync: wait for that one briefly
        // rather than report the node down and up again.
        if other_link_pending {
            entry.relink_deadline = Some(Instant::now() + RELINK_GRACE);
            return;
        }
        self.node_down(state, &peer_id.name, DownReason::Disconnected);
    }

    /// Forgets a node, reports it down and schedules a redial if it is still discovered.
    fn node_down(&self, state: &mut State, name: &str, reason: DownReason) {
        if let Some(entry) = state.nodes.remove(name) {
            info!(node = %name, incarnation = entry.peer.id.incarnation, ?reason, "node down");
            for link in std::iter::once(entry.peer.link_id()).chain(entry.spare_links) {
                if let Some(l) = state.links.get(&link) {
                    l.info.actor.stop(Some(format!("node down: {reason:?}")));
                }
            }
            Self::publish(
                state,
                NodeEvent::Down {
                    id: entry.peer.id,
                    reason,
                },
            );
            self.publish_mesh(state);
            self.sync_dials(state);
            self.redial_soon(state, name);
        }
    }

    /// A node just went down: if it is still discovered, try it again after a short, jittered
    /// delay rather than the backoff accumulated while it was up.
    fn redial_soon(&self, state: &mut State, name: &str) {
        let now = Instant::now();
        for (addr, dial) in state.dials.iter_mut() {
            if dial.peer.name.to_string() == name
                || state.addr_owner.get(addr).map(String::as_str) == Some(name)
            {
                dial.attempts = 0;
                dial.next_at =
                    now + self.backoff(0) + Self::yield_delay(&self.config.node.name, name);
            }
        }
    }

    /// When both nodes may dial each other at the same moment, the one whose name sorts first
    /// waits: ractor_cluster keeps the link dialled by the node whose name sorts last, so the
    /// other side's link would only be elected away.
    fn yield_delay(own: &str, peer: &str) -> Duration {
        if peer > own {
            FIRST_DIAL_DELAY.mul_f64(1.0 + rand::random::<f64>())
        } else {
            Duration::ZERO
        }
    }

    /// True when an authenticated link to the peer that presented `ractor_name` exists.
    fn has_link_named(state: &State, ractor_name: &str) -> bool {
        state.links.values().any(|l| {
            l.authenticated
                && l.info
                    .peer_name
                    .as_ref()
                    .is_some_and(|n| n.name == ractor_name)
        })
    }

    fn publish(state: &mut State, event: NodeEvent) {
        state
            .subscribers
            .retain(|tx| tx.send(event.clone()).is_ok());
    }
}
