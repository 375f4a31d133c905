//! The connector's decisions without its IO: which peers to dial and when, which links to keep
//! and which to close, which nodes are up, heartbeats and their deadline, incarnations,
//! partitions and the full mesh.
//!
//! [`LinkTable`] is a sans-IO core (STYLE 17, as chitchat's `ClusterState`): it owns no socket,
//! no task, no clock and no global random source. A driver feeds it [`LinkInput`]s with the
//! time they happened at and carries out the [`LinkEffect`]s it returns. In production the
//! driver is the connector actor (`connector/actor.rs`), whose links are ractor_cluster
//! `NodeSession` actors; a deterministic simulator can drive the same table with plain integers
//! as links and a virtual clock. Given the same seed and the same inputs at the same instants,
//! the table returns the same effects: its maps are ordered and its jitter comes from a small
//! PRNG it owns.
//!
//! # What the driver must do
//! - Call [`LinkTable::on`] with [`LinkInput::Tick`] often (the connector does every 50 ms):
//!   dials, handshake deadlines, heartbeats and the relink grace are all decided on ticks.
//! - Report every session of its endpoint, in the order the endpoint reports them:
//!   [`SessionStep::Opened`], then `Authenticated` (with the name the peer presented), `Ready`,
//!   and `Closed` (which may come at any point, also for a link that never authenticated).
//! - [`LinkEffect::Dial`]: open a connection to the address, then answer
//!   [`LinkInput::DialDone`]; the link it opens is reported as sessions like any other.
//! - [`LinkEffect::Close`]: close the link; its `Closed` session step follows. A link may be
//!   asked to close again before its `Closed` arrives (as ractor's `stop` tolerates): closing
//!   a link that is already closing must do nothing.
//! - [`LinkEffect::Heartbeat`]: ask the node's beacon through that link, then answer
//!   [`LinkInput::Pong`] or [`LinkInput::PingFailed`]; if the beacon cannot be reached through
//!   the link yet (its proxy is not synced), answer [`LinkInput::BeaconMissing`] at once, and
//!   the table asks again on the next tick.
//! - [`LinkEffect::Up`], [`LinkEffect::Down`]: tell subscribers, in order.
//! - [`LinkEffect::PublishMesh`]: make the mesh what this node's beacon answers.
//!
//! # Example
//! A simulator's view of one peer dialling in, then falling silent:
//! ```
//! use std::net::IpAddr;
//! use std::time::{Duration, Instant};
//!
//! use discovery::connector::link_table::*;
//! use discovery::{ConnectorConfig, NodeId};
//!
//! let me = NodeId { name: "node@10.0.0.1".into(), incarnation: 1 };
//! let ip = IpAddr::from([10, 0, 0, 1]);
//! let config = LinkConfig::new(&ConnectorConfig::new(me, "cookie", ip, 9000));
//! let mut table: LinkTable<u64> = LinkTable::new(config, 42); // links are plain integers
//! let t0 = Instant::now(); // the simulator's epoch; only differences matter
//!
//! let peer = NodeId { name: "node@10.0.0.2".into(), incarnation: 7 };
//! let mut info = SessionInfo {
//!     peer_name: None,
//!     is_server: true, // it dialled us
//!     peer_addr: "10.0.0.2:40001".into(),
//! };
//! let session = |step, info: &SessionInfo| LinkInput::Session { step, link: 1, info: info.clone() };
//! table.on(t0, session(SessionStep::Opened, &info));
//! info.peer_name = Some(peer.ractor_name()); // `node@10.0.0.2#7`
//! table.on(t0, session(SessionStep::Authenticated, &info));
//! let effects = table.on(t0, session(SessionStep::Ready, &info));
//! assert!(effects.contains(&LinkEffect::Up { id: peer.clone(), link: 1 }));
//!
//! // The next tick sends a heartbeat through link 1; the driver would answer `Pong`.
//! let effects = table.on(t0 + Duration::from_millis(50), LinkInput::Tick);
//! assert!(matches!(&effects[..], [LinkEffect::Heartbeat { link: 1, .. }]));
//!
//! // No answer: past the failure timeout (2 s by default) the link is closed and the node down.
//! let effects = table.on(t0 + Duration::from_millis(2050), LinkInput::Tick);
//! assert!(effects.contains(&LinkEffect::Down { id: peer, reason: DownReason::Unresponsive }));
//! assert!(effects.iter().any(|e| matches!(e, LinkEffect::Close { link: 1, .. })));
//! ```

mod dials;
mod heartbeats;
mod rng;
mod sessions;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::info;

use self::rng::SplitMix64;
use super::beacon::{Mesh, MeshPeer, MeshReport};
use crate::config::ConnectorConfig;
use crate::node_name::PeerKind;
use crate::{NodeId, Peer, PeerSet};

/// How long a node whose link closed may take to finish another link before it is reported
/// down (see [`SessionStep::Closed`] handling: both sides dialled at once).
pub const RELINK_GRACE: Duration = Duration::from_secs(1);
/// A node whose name sorts first waits this long (plus jitter) before dialling a newly
/// discovered peer, which is likely dialling it at the same moment.
pub const FIRST_DIAL_DELAY: Duration = Duration::from_millis(150);

/// A link handle: what the driver closes and sends heartbeats through. The table only clones
/// it, compares ids and hands it back in effects.
pub trait LinkHandle: Clone + fmt::Debug {
    /// Identifies one link (one TCP connection): a new link to the same node has a new id.
    type Id: Copy + Ord + fmt::Debug;
    /// This link's id.
    fn link_id(&self) -> Self::Id;
}

/// Plain integers as links, for simulators and tests.
impl LinkHandle for u64 {
    type Id = u64;
    fn link_id(&self) -> u64 {
        *self
    }
}

/// What the table needs to know about this node and its timing.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// This run of this node.
    pub node: NodeId,
    /// Where this node listens (bind address and port): a peer there is this node.
    pub listen: SocketAddr,
    /// Where other nodes should dial this node, when known (see [`advertised`]).
    pub advertised: Option<SocketAddr>,
    /// Each node is sent a heartbeat this often.
    pub heartbeat_interval: Duration,
    /// A node not heard from for this long is disconnected and reported down; also the
    /// timeout of one heartbeat.
    pub failure_timeout: Duration,
    /// A link that has not become a ready node link (or a console) by then is closed.
    pub handshake_timeout: Duration,
    /// First redial delay; doubles per attempt, with jitter.
    pub backoff_min: Duration,
    /// Longest redial delay.
    pub backoff_max: Duration,
    /// At most this many links may be in their handshake; beyond, the oldest is closed.
    pub max_pending_handshakes: usize,
    /// See [`RELINK_GRACE`].
    pub relink_grace: Duration,
    /// See [`FIRST_DIAL_DELAY`].
    pub first_dial_delay: Duration,
}

impl LinkConfig {
    /// The table's part of the connector's configuration.
    pub fn new(c: &ConnectorConfig) -> Self {
        Self {
            node: c.node.clone(),
            listen: SocketAddr::new(c.bind, c.port),
            advertised: advertised(c),
            heartbeat_interval: c.heartbeat_interval,
            failure_timeout: c.failure_timeout,
            handshake_timeout: c.handshake_timeout,
            backoff_min: c.backoff_min,
            backoff_max: c.backoff_max,
            max_pending_handshakes: c.max_pending_handshakes,
            relink_grace: RELINK_GRACE,
            first_dial_delay: FIRST_DIAL_DELAY,
        }
    }
}

/// Where a node tells others it listens: the IP of its name, else the bind address.
pub fn advertised(config: &ConnectorConfig) -> Option<SocketAddr> {
    let name: crate::NodeName = config.node.name.parse().ok()?;
    let ip = name
        .host()
        .and_then(|h| h.ip())
        .or_else(|| (!config.bind.is_unspecified()).then_some(config.bind))?;
    Some(SocketAddr::new(ip, config.port))
}

/// Which step of a session the endpoint reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStep {
    /// A TCP connection was accepted or dialled.
    Opened,
    /// The peer passed the cookie check and presented its name.
    Authenticated,
    /// The peer's actors are synced: the link can carry messages.
    Ready,
    /// The connection is gone.
    Closed,
}

/// What the endpoint tells with each session step (ractor_cluster's
/// `NodeServerSessionInformation` without the session actor, which is the link handle).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The name the peer presented (`name@host#incarnation` for a node), once authenticated.
    pub peer_name: Option<String>,
    /// True when the peer dialled us.
    pub is_server: bool,
    /// The peer's address as the socket tells it (`ip:port`).
    pub peer_addr: String,
}

/// Something that happened, for [`LinkTable::on`].
#[derive(Debug, Clone)]
pub enum LinkInput<L> {
    /// Discovery published a new peer set.
    Peers(PeerSet),
    /// Periodic work: dials, handshake deadlines, heartbeats, the relink grace.
    Tick,
    /// The endpoint reported a step of a session.
    Session {
        /// Which step.
        step: SessionStep,
        /// The link.
        link: L,
        /// What the endpoint said of it.
        info: SessionInfo,
    },
    /// A [`LinkEffect::Dial`] finished (connected or failed; the link's sessions follow).
    DialDone {
        /// Where.
        addr: SocketAddr,
        /// Why it failed, if it did.
        error: Option<String>,
    },
    /// A heartbeat came back.
    Pong {
        /// Who answered, with its incarnation.
        node: NodeId,
        /// Round trip.
        rtt: Duration,
        /// The answering node's mesh, when it sent one.
        mesh: Option<MeshReport>,
    },
    /// A heartbeat failed (timeout or link error); the deadline decides what it means.
    PingFailed {
        /// Which node's heartbeat (logical name).
        name: String,
    },
    /// A [`LinkEffect::Heartbeat`] could not be sent: the node's beacon is not reachable
    /// through the link yet. The table asks again on the next tick.
    BeaconMissing {
        /// The node the heartbeat was for.
        node: NodeId,
    },
    /// Cut the links to these nodes (logical names) and refuse them until [`LinkInput::Heal`].
    Partition {
        /// Logical names.
        nodes: Vec<String>,
    },
    /// End every partition; the nodes still wanted are dialled again.
    Heal,
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

/// Why the table closes a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// More links than allowed are in their handshake; this is the oldest.
    TooManyHandshakes,
    /// It did not become a node link or a console in time.
    HandshakeTimeout,
    /// The peer's name has no incarnation: not a cluster node.
    Foreign,
    /// The peer presented this node's name (this node itself, or a twin).
    SameName,
    /// The peer is cut off by a partition.
    Partitioned,
    /// The peer is an older run of a node whose newer run is connected.
    StaleIncarnation,
    /// The node was reported down.
    NodeDown(DownReason),
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::TooManyHandshakes => f.write_str("too many pending handshakes"),
            CloseReason::HandshakeTimeout => f.write_str("handshake timeout"),
            CloseReason::Foreign => f.write_str("not a cluster node"),
            CloseReason::SameName => f.write_str("same name as this node"),
            CloseReason::Partitioned => f.write_str("partitioned"),
            CloseReason::StaleIncarnation => f.write_str("stale incarnation"),
            CloseReason::NodeDown(reason) => write!(f, "node down: {reason:?}"),
        }
    }
}

/// Something the driver must do, returned by [`LinkTable::on`] in the order to do it.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkEffect<L> {
    /// Connect to a peer; answer [`LinkInput::DialDone`].
    Dial {
        /// Where.
        addr: SocketAddr,
    },
    /// Close a link.
    Close {
        /// Which.
        link: L,
        /// Why (for the peer's logs).
        reason: CloseReason,
    },
    /// Send a heartbeat to `node`'s beacon through `link`, giving up after `timeout`; answer
    /// [`LinkInput::Pong`], [`LinkInput::PingFailed`] or [`LinkInput::BeaconMissing`].
    Heartbeat {
        /// Which run of which node.
        node: NodeId,
        /// Through which link.
        link: L,
        /// The digest of the node's mesh this node has (0: none): the beacon sends the mesh
        /// only when its own differs.
        mesh_known: u64,
        /// How long to wait for the answer.
        timeout: Duration,
    },
    /// A node is connected and ready, through `link`. Sent again, without a `Down` between,
    /// when the link to the same incarnation was replaced by another one.
    Up {
        /// Which run of which node.
        id: NodeId,
        /// The link to it.
        link: L,
    },
    /// A node is no longer connected.
    Down {
        /// Which run of which node.
        id: NodeId,
        /// Why.
        reason: DownReason,
    },
    /// The beacon should answer this mesh from now on.
    PublishMesh(Mesh),
}

/// What [`LinkTable::nodes`] shows of a connected node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeStatus<L> {
    /// Which run of which node.
    pub id: NodeId,
    /// Its primary link.
    pub link: L,
    /// Last heartbeat round trip.
    pub rtt: Option<Duration>,
}

/// A dial target: a discovered or learnt peer's address.
#[derive(Debug)]
struct Dial {
    /// The peer as discovered (its expected name).
    peer: Peer,
    /// Failed or unproductive attempts since the last time it was up: drives the backoff.
    attempts: u32,
    /// Not before this instant.
    next_at: Instant,
    /// A dial is running: never two at once to one address.
    in_flight: bool,
}

/// One TCP link as the endpoint reported it.
#[derive(Debug)]
struct Link<L> {
    handle: L,
    /// The name the peer presented, as last reported: tells a duplicate link to a node we
    /// already have apart from a refused one (see `has_link_named`).
    peer_name: Option<String>,
    peer_addr: String,
    /// For the handshake deadline and for picking the oldest half-open link.
    opened_at: Instant,
    /// Passed the cookie check.
    authenticated: bool,
    /// What the peer said it is, once authenticated.
    kind: Option<PeerKind>,
    /// Closed by this table for a missed handshake deadline (the close is asked for once;
    /// the link leaves the table when the shell reports it gone).
    expired: bool,
}

/// A connected node.
#[derive(Debug)]
struct NodeEntry<L: LinkHandle> {
    id: NodeId,
    /// The link heartbeats and events use.
    link: L,
    /// Other ready links to the same incarnation (rare: the election normally closes them),
    /// promoted when the primary closes.
    spare_links: Vec<L::Id>,
    /// Last heartbeat answer (or when the link became ready): the failure deadline counts
    /// from here.
    last_heard: Instant,
    /// Last heartbeat round trip, for `nodes`.
    rtt: Option<Duration>,
    /// A heartbeat is outstanding: never more than one per peer.
    ping_in_flight: bool,
    /// When the last heartbeat was sent.
    last_ping: Option<Instant>,
    /// `last_ping` before the outstanding heartbeat, restored when it could not be sent
    /// ([`LinkInput::BeaconMissing`]) so that it is tried again on the next tick.
    last_ping_before: Option<Instant>,
    /// Set while the primary link is gone and another authenticated link to the same run is
    /// finishing its sync: the node is not reported down unless this passes.
    relink_deadline: Option<Instant>,
    /// The nodes it said it is connected to (see the connector's docs), and the digest of
    /// that answer (0: none yet).
    mesh: Vec<Peer>,
    mesh_digest: u64,
    /// Where it said it listens.
    advertised: Option<SocketAddr>,
}

/// The connector's view of links and nodes, and every decision about them. See the module
/// docs for how to drive it.
#[derive(Debug)]
pub struct LinkTable<L: LinkHandle> {
    config: LinkConfig,
    /// This node as others should dial it, when its address is known: the first mesh entry.
    own: Option<MeshPeer>,
    /// Backoff jitter and the first-dial delay; seeded so runs can be replayed.
    rng: SplitMix64,
    /// What discovery publishes now.
    discovered: PeerSet,
    /// Peers to keep connected by dial address: the discovered ones and those connected nodes
    /// reported (see `sync_dials`).
    dials: BTreeMap<SocketAddr, Dial>,
    /// Every link, by id.
    links: BTreeMap<L::Id, Link<L>>,
    /// Connected nodes by logical name.
    nodes: BTreeMap<String, NodeEntry<L>>,
    /// Dial address -> the node name that answered there, learnt from our own dials, so a node
    /// whose name differs from what discovery guessed is not redialled forever.
    addr_owner: BTreeMap<SocketAddr, String>,
    /// Addresses that turned out to be this node (e.g. own IP in DNS under another name).
    self_addrs: BTreeSet<SocketAddr>,
    /// Nodes cut off by `partition`: no links to them until `heal`.
    blocked: BTreeSet<String>,
    /// The mesh last published, so an unchanged one is not published again.
    mesh: Mesh,
    /// Half-open links closed for exceeding the cap since the last log line.
    refused_pending: u64,
    /// For rate-limiting the "too many handshakes" warning.
    last_refusal_log: Option<Instant>,
    /// Effects of the input being handled.
    out: Vec<LinkEffect<L>>,
}

impl<L: LinkHandle> LinkTable<L> {
    /// An empty table. `seed` drives every random choice (the connector passes
    /// `rand::random()`; a simulator, its own seed).
    pub fn new(config: LinkConfig, seed: u64) -> Self {
        let own = config.advertised.map(|addr| MeshPeer {
            name: config.node.name.clone(),
            addr,
        });
        let mesh = Mesh::new(own.iter().cloned().collect());
        Self {
            config,
            own,
            rng: SplitMix64::new(seed),
            discovered: PeerSet::new(),
            dials: BTreeMap::new(),
            links: BTreeMap::new(),
            nodes: BTreeMap::new(),
            addr_owner: BTreeMap::new(),
            self_addrs: BTreeSet::new(),
            blocked: BTreeSet::new(),
            mesh,
            refused_pending: 0,
            last_refusal_log: None,
            out: Vec::new(),
        }
    }

    /// Handles one input that happened at `now` and returns what to do, in order.
    pub fn on(&mut self, now: Instant, input: LinkInput<L>) -> Vec<LinkEffect<L>> {
        match input {
            LinkInput::Peers(set) => {
                self.discovered = set;
                self.sync_dials(now);
            }
            LinkInput::Tick => {
                self.dial_due(now);
                self.expire_handshakes(now);
                self.heartbeat(now);
            }
            LinkInput::Session { step, link, info } => match step {
                SessionStep::Opened => self.on_opened(now, link, info),
                SessionStep::Authenticated => self.on_authenticated(link, info),
                SessionStep::Ready => self.on_ready(now, link, info),
                SessionStep::Closed => self.on_closed(now, link, info),
            },
            LinkInput::DialDone { addr, error } => self.on_dial_done(addr, error),
            LinkInput::Pong { node, rtt, mesh } => self.on_pong(now, node, rtt, mesh),
            LinkInput::PingFailed { name } => self.on_ping_failed(&name),
            LinkInput::BeaconMissing { node } => self.on_beacon_missing(&node),
            LinkInput::Partition { nodes } => self.partition(now, nodes),
            LinkInput::Heal => self.heal(now),
        }
        std::mem::take(&mut self.out)
    }

    /// This node.
    pub fn node(&self) -> &NodeId {
        &self.config.node
    }

    /// The connected nodes, by name.
    pub fn nodes(&self) -> Vec<NodeStatus<L>> {
        self.nodes.values().map(NodeEntry::status).collect()
    }

    /// The connected node called `name` (logical name), if any.
    pub fn get(&self, name: &str) -> Option<NodeStatus<L>> {
        self.nodes.get(name).map(NodeEntry::status)
    }

    /// The mesh the beacon should answer now (the last one published, or this node alone).
    pub fn mesh(&self) -> &Mesh {
        &self.mesh
    }

    fn partition(&mut self, now: Instant, nodes: Vec<String>) {
        for n in nodes {
            tracing::warn!(node = %n, "partitioned from node (on request)");
            self.blocked.insert(n.clone());
            self.node_down(now, &n, DownReason::Disconnected);
        }
        // Half-open or spare links to them too.
        for l in self.links.values() {
            if let Some(PeerKind::Node(id)) = &l.kind
                && self.blocked.contains(&id.name)
            {
                self.out.push(LinkEffect::Close {
                    link: l.handle.clone(),
                    reason: CloseReason::Partitioned,
                });
            }
        }
    }

    fn heal(&mut self, now: Instant) {
        for n in std::mem::take(&mut self.blocked) {
            info!(node = %n, "partition healed");
            self.redial_soon(now, &n);
        }
    }

    /// Forgets a node, reports it down and schedules a redial if it is still wanted.
    fn node_down(&mut self, now: Instant, name: &str, reason: DownReason) {
        let Some(entry) = self.nodes.remove(name) else {
            return;
        };
        info!(node = %name, incarnation = entry.id.incarnation, ?reason, "node down");
        for link in std::iter::once(entry.link.link_id()).chain(entry.spare_links) {
            if let Some(l) = self.links.get(&link) {
                self.out.push(LinkEffect::Close {
                    link: l.handle.clone(),
                    reason: CloseReason::NodeDown(reason),
                });
            }
        }
        self.out.push(LinkEffect::Down {
            id: entry.id,
            reason,
        });
        self.publish_mesh();
        self.sync_dials(now);
        self.redial_soon(now, name);
    }
}

impl<L: LinkHandle> NodeEntry<L> {
    fn new(id: NodeId, link: L, now: Instant) -> Self {
        Self {
            id,
            link,
            spare_links: Vec::new(),
            last_heard: now,
            rtt: None,
            ping_in_flight: false,
            last_ping: None,
            last_ping_before: None,
            relink_deadline: None,
            mesh: Vec::new(),
            mesh_digest: 0,
            advertised: None,
        }
    }

    fn status(&self) -> NodeStatus<L> {
        NodeStatus {
            id: self.id.clone(),
            link: self.link.clone(),
            rtt: self.rtt,
        }
    }
}
