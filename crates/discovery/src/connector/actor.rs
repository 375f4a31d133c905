//! The connector actor: the shell around [`LinkTable`]. It runs the NodeServer and the beacon,
//! turns NodeServer callbacks, ticks, peer sets and task results into [`LinkInput`]s, and
//! carries out the [`LinkEffect`]s (dials, closes, heartbeats, events, the mesh). It decides
//! nothing itself; see [`super::link_table`] for every rule.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use ractor_cluster::NodeServerMessage;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{info, warn};

use super::beacon::{BEACON_SERVICE, Beacon, BeaconMsg, Mesh, PingRequest, ping};
use super::endpoint::{self, Session, beacon_of};
use super::link_table::{LinkConfig, LinkEffect, LinkInput, LinkTable};
use super::{NodeEvent, NodeEvents, NodeInfo, PeerNode, PingError};
use crate::PeerSet;
use crate::config::ConnectorConfig;

/// How often the table checks dials, handshakes and heartbeats.
const TICK: Duration = Duration::from_millis(50);
/// Timeout of a `ping` asked from the console.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// Messages of the connector actor (local only).
#[derive(Debug)]
pub(super) enum ConnectorMsg {
    /// Something for the table: a peer set, a tick, a session step, a dial or heartbeat result.
    Input(LinkInput<Session>),
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

impl ractor::Message for ConnectorMsg {}

/// What the endpoint reports (a session step) reaches the actor as a table input.
impl From<LinkInput<Session>> for ConnectorMsg {
    fn from(input: LinkInput<Session>) -> Self {
        ConnectorMsg::Input(input)
    }
}

/// The connector actor: `self` is its configuration.
pub(super) struct ConnectorActor {
    pub(super) config: ConnectorConfig,
}

/// Mutable state of the connector.
pub(super) struct State {
    /// Every decision about links and nodes.
    table: LinkTable<Session>,
    node_server: ActorRef<NodeServerMessage>,
    /// The beacon's id: its death ends the connector, like the NodeServer's.
    beacon: ActorId,
    /// The mesh as the beacon answers it.
    mesh: watch::Sender<Arc<Mesh>>,
    /// Event subscribers; closed ones are dropped on the next send.
    subscribers: Vec<mpsc::UnboundedSender<NodeEvent>>,
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
        let table = LinkTable::new(LinkConfig::new(c), rand::random());
        // The beacon must exist before the listener so it is in every peer's initial sync.
        let (mesh, mesh_rx) = watch::channel(Arc::new(table.mesh().clone()));
        let beacon = Beacon {
            node: c.node.clone(),
            mesh: mesh_rx,
        };
        let name = Some(c.node.actor_name(BEACON_SERVICE));
        let (beacon, _) = Actor::spawn_linked(name, beacon, (), myself.get_cell()).await?;
        let node_server = endpoint::start(c, &myself).await?;

        // Forward peer sets; the task ends with the watch or with this actor.
        let me = myself.clone();
        tokio::spawn(async move {
            loop {
                let set = peers.borrow_and_update().clone();
                if me.cast(ConnectorMsg::Input(LinkInput::Peers(set))).is_err() {
                    return;
                }
                if peers.changed().await.is_err() {
                    return;
                }
            }
        });
        myself.send_interval(TICK, || ConnectorMsg::Input(LinkInput::Tick));
        info!(node = %c.node.name, incarnation = c.node.incarnation, bind = %c.bind, port = c.port, "cluster endpoint listening");
        Ok(State {
            table,
            beacon: beacon.get_id(),
            node_server,
            mesh,
            subscribers: Vec::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ConnectorMsg::Input(input) => self.run(&myself, state, input),
            ConnectorMsg::Partition { nodes, reply } => {
                self.run(&myself, state, LinkInput::Partition { nodes });
                let _ = reply.send(());
            }
            ConnectorMsg::Heal(reply) => {
                self.run(&myself, state, LinkInput::Heal);
                let _ = reply.send(());
            }
            ConnectorMsg::Nodes(reply) => {
                let list = state.table.nodes().into_iter();
                let list = list.map(|n| NodeInfo {
                    id: n.id,
                    rtt: n.rtt,
                });
                let _ = reply.send(list.collect());
            }
            ConnectorMsg::Subscribe(reply) => {
                let (tx, rx) = mpsc::unbounded_channel();
                state.subscribers.push(tx);
                let current = state.table.nodes().into_iter();
                let current = current.map(|n| PeerNode::new(n.id, n.link)).collect();
                let _ = reply.send(NodeEvents {
                    current,
                    events: rx,
                });
            }
            ConnectorMsg::Ping { node, reply } => {
                let request = PingRequest {
                    from: self.config.node.clone(),
                    mesh_known: None,
                };
                let beacon = state.table.get(&node).and_then(|n| beacon_of(n.id, n.link));
                let Some(beacon) = beacon else {
                    let _ = reply.send(Err(PingError::NotConnected(node)));
                    return Ok(());
                };
                tokio::spawn(async move {
                    let result = ping(&beacon, &request, PING_TIMEOUT)
                        .await
                        .map(|(_, rtt)| rtt)
                        .ok_or(PingError::Timeout(node, PING_TIMEOUT));
                    let _ = reply.send(result);
                });
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

impl ConnectorActor {
    /// Feeds one input to the table and carries out what it returns.
    fn run(&self, myself: &ActorRef<ConnectorMsg>, state: &mut State, input: LinkInput<Session>) {
        let now = Instant::now().into_std();
        let mut effects = VecDeque::from(state.table.on(now, input));
        while let Some(effect) = effects.pop_front() {
            match effect {
                LinkEffect::Dial { addr } => self.dial(myself, state, addr),
                LinkEffect::Close { link, reason } => link.stop(Some(reason.to_string())),
                LinkEffect::Heartbeat {
                    node,
                    link,
                    mesh_known,
                    timeout,
                } => match beacon_of(node.clone(), link) {
                    Some(beacon) => self.heartbeat(myself, beacon, node.name, mesh_known, timeout),
                    None => effects.extend(state.table.on(now, LinkInput::BeaconMissing { node })),
                },
                LinkEffect::Up { id, link } => {
                    publish(state, NodeEvent::Up(PeerNode::new(id, link)))
                }
                LinkEffect::Down { id, reason } => publish(state, NodeEvent::Down { id, reason }),
                LinkEffect::PublishMesh(mesh) => {
                    state.mesh.send_replace(Arc::new(mesh));
                }
            }
        }
    }

    /// Sends one heartbeat and reports its answer or failure.
    fn heartbeat(
        &self,
        myself: &ActorRef<ConnectorMsg>,
        beacon: ActorRef<BeaconMsg>,
        name: String,
        mesh_known: u64,
        timeout: Duration,
    ) {
        let request = PingRequest {
            from: self.config.node.clone(),
            mesh_known: Some(mesh_known),
        };
        let me = myself.clone();
        tokio::spawn(async move {
            let input = match ping(&beacon, &request, timeout).await {
                Some((reply, rtt)) => LinkInput::Pong {
                    node: reply.node,
                    rtt,
                    mesh: reply.mesh,
                },
                None => LinkInput::PingFailed { name },
            };
            let _ = me.cast(ConnectorMsg::Input(input));
        });
    }

    /// Connects to `addr` under the dial timeout and reports how it went.
    fn dial(&self, myself: &ActorRef<ConnectorMsg>, state: &State, addr: SocketAddr) {
        let (server, me) = (state.node_server.clone(), myself.clone());
        let timeout = self.config.dial_timeout;
        let tls = self.config.tls.clone();
        tokio::spawn(async move {
            let dial = crate::tls::dial(&server, addr, tls.as_ref());
            let error = match tokio::time::timeout(timeout, dial).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e),
                Err(_) => Some(format!("no answer within {timeout:?}")),
            };
            let _ = me.cast(ConnectorMsg::Input(LinkInput::DialDone { addr, error }));
        });
    }
}

fn publish(state: &mut State, event: NodeEvent) {
    state
        .subscribers
        .retain(|tx| tx.send(event.clone()).is_ok());
}
