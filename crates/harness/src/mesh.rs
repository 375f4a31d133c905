//! In-process nodes: several connectors (ractor_cluster endpoints over real TCP, each on its
//! own 127.0.x.y) in one process, with horde members on top. The test is their discovery:
//! it publishes each node's peer set on the node's watch channel ([`Node::discover`]), so a
//! scenario can give any node any view of the others.

use std::net::{IpAddr, SocketAddr};
use std::ops::Deref;
use std::time::Duration;

use discovery::{
    Connector, ConnectorConfig, NodeEvent, NodeEvents, NodeId, NodeName, Peer, PeerSet,
};
use horde::{Handoff, Horde, HordeConfig, MemberStatus};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::node;
use crate::wait::{eventually, scaled};

/// Longest wait (scaled) for a connector's port: a node stopped a moment ago may hold it while
/// its listener winds down.
const PORT_DEADLINE: Duration = Duration::from_secs(20);
/// Longest wait (scaled) for nodes to see each other alive.
const MESH_DEADLINE: Duration = Duration::from_secs(30);
/// Longest wait (scaled) for the next node event.
const EVENT_DEADLINE: Duration = Duration::from_secs(30);

/// The node name of the node on `ip` (`minotaur@ip`).
///
/// # Panics
/// Never for an address: every IP is a valid host.
pub fn node_name(ip: IpAddr) -> NodeName {
    match NodeName::parse(&node::name(ip)) {
        Ok(n) => n,
        Err(e) => panic!("{ip} makes no node name: {e}"),
    }
}

/// The node listening on `addr`, as discovery would publish it.
pub fn peer(addr: SocketAddr) -> Peer {
    Peer {
        name: node_name(addr.ip()),
        addr,
    }
}

/// Connector settings of a new incarnation of the node on `ip`, listening on `port`, with
/// `cookie`; the defaults otherwise (a test changes what it needs).
pub fn connector_config(ip: IpAddr, port: u16, cookie: &str) -> ConnectorConfig {
    ConnectorConfig::new(NodeId::new_incarnation(&node_name(ip)), cookie, ip, port)
}

/// Starts a connector that dials what `peers` publishes, retrying while its port is still
/// held.
///
/// # Panics
/// When it cannot listen within 20 s (scaled).
pub async fn start_connector(
    config: ConnectorConfig,
    peers: watch::Receiver<PeerSet>,
) -> Connector {
    let what = format!("{}:{} free to listen on", config.bind, config.port);
    eventually(&what, PORT_DEADLINE, || {
        let (config, peers) = (config.clone(), peers.clone());
        async move { Connector::start(config, peers).await.ok().map(|(c, _)| c) }
    })
    .await
}

/// A connector whose peer set the test publishes.
#[derive(Debug)]
pub struct Node {
    /// The node's connector.
    pub connector: Connector,
    /// The node's discovery: what is sent here is the peer set it dials.
    pub peers: watch::Sender<PeerSet>,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Node {
    /// Starts a node with `config` and no peers.
    pub async fn start(config: ConnectorConfig) -> Node {
        let addr = SocketAddr::new(config.bind, config.port);
        let (peers, rx) = watch::channel(PeerSet::new());
        let connector = start_connector(config, rx).await;
        Node {
            connector,
            peers,
            addr,
        }
    }

    /// This node as a peer of others.
    pub fn peer(&self) -> Peer {
        peer(self.addr)
    }

    /// Makes `peers` this node's peer set, as its discovery would.
    pub fn discover(&self, peers: impl IntoIterator<Item = Peer>) {
        // `send_replace`: the receiver lives in the connector, and a stopped connector must not
        // fail a test that still updates its peers.
        self.peers.send_replace(peers.into_iter().collect());
    }

    /// The names of the nodes it is connected to, sorted.
    ///
    /// # Panics
    /// When the connector is gone.
    pub async fn connected(&self) -> Vec<String> {
        let nodes = match self.connector.nodes().await {
            Ok(nodes) => nodes,
            Err(e) => panic!("{} lists no nodes: {e}", self.connector.node()),
        };
        let mut names: Vec<String> = nodes.into_iter().map(|n| n.id.name).collect();
        names.sort();
        names
    }
}

/// A node with a horde member on its connector. Derefs to its [`Node`].
pub struct HordeNode<C: Handoff> {
    node: Node,
    /// The node's horde member.
    pub horde: Horde<C>,
}

impl<C: Handoff> HordeNode<C> {
    /// Starts a node with `config` and no peers, and a horde member with `horde` on it.
    ///
    /// # Panics
    /// When the member does not start.
    pub async fn start(config: ConnectorConfig, horde: HordeConfig) -> HordeNode<C> {
        let node = Node::start(config).await;
        let horde = match Horde::<C>::start(horde, &node.connector).await {
            Ok(h) => h,
            Err(e) => panic!("the horde member of {} did not start: {e}", node.addr),
        };
        HordeNode { node, horde }
    }
}

impl<C: Handoff> Deref for HordeNode<C> {
    type Target = Node;
    fn deref(&self) -> &Node {
        &self.node
    }
}

impl<C: Handoff> std::fmt::Debug for HordeNode<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HordeNode")
            .field("node", &self.node)
            .field("horde", &self.horde)
            .finish()
    }
}

/// Makes every node of `nodes` discover all of them, and waits until each sees them all as
/// alive members.
///
/// # Panics
/// When they do not within 30 s (scaled).
pub async fn mesh<C: Handoff>(nodes: &[&HordeNode<C>]) {
    let all: Vec<Peer> = nodes.iter().map(|n| n.peer()).collect();
    for n in nodes {
        n.discover(all.iter().cloned());
    }
    for n in nodes {
        eventually("all members alive", MESH_DEADLINE, || async {
            let alive = n
                .horde
                .members()
                .iter()
                .filter(|m| m.status == MemberStatus::Alive)
                .count();
            (alive == nodes.len()).then_some(())
        })
        .await;
    }
}

/// Waits for node `who` to come up on `events`, skipping other events; when it did.
///
/// # Panics
/// When no event comes for 30 s (scaled), or the connector is gone.
pub async fn wait_up(events: &mut NodeEvents, who: &str) -> Instant {
    loop {
        match next_event(events, who).await {
            NodeEvent::Up(p) if p.id.name == who => return Instant::now(),
            _ => continue,
        }
    }
}

/// Waits for node `who` to go down on `events`, skipping other events; when it did.
///
/// # Panics
/// When no event comes for 30 s (scaled), or the connector is gone.
pub async fn wait_down(events: &mut NodeEvents, who: &str) -> Instant {
    loop {
        match next_event(events, who).await {
            NodeEvent::Down { id, .. } if id.name == who => return Instant::now(),
            _ => continue,
        }
    }
}

async fn next_event(events: &mut NodeEvents, who: &str) -> NodeEvent {
    match tokio::time::timeout(scaled(EVENT_DEADLINE), events.events.recv()).await {
        Ok(Some(event)) => event,
        Ok(None) => panic!("the connector stopped while waiting for {who}"),
        Err(_) => panic!("no node event for {EVENT_DEADLINE:?} while waiting for {who}"),
    }
}
