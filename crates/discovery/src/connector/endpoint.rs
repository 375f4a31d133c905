//! The ractor_cluster side of the connector: what a link is in production (the session actor
//! of one TCP connection), the NodeServer started with the connector's settings, its session
//! callbacks turned into [`LinkInput`]s, and a peer's beacon found among a link's proxies.

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef};
use ractor_cluster::node::{NodeConnectionMode, NodeServerSessionInformation};
use ractor_cluster::{
    IncomingEncryptionMode, NodeEventSubscription, NodeServer, NodeServerMessage,
    NodeSessionMessage,
};

use super::PeerNode;
use super::actor::ConnectorMsg;
use super::beacon::{BEACON_SERVICE, BeaconMsg};
use super::link_table::{LinkHandle, LinkInput, SessionInfo, SessionStep};
use crate::NodeId;
use crate::config::ConnectorConfig;

/// A link in production: the ractor_cluster session actor of one TCP connection.
pub(super) type Session = ActorRef<NodeSessionMessage>;

impl LinkHandle for Session {
    type Id = ActorId;
    fn link_id(&self) -> ActorId {
        self.get_id()
    }
}

/// Starts the node's NodeServer (listener and sessions), linked to the connector, with its
/// session events going to the connector's mailbox.
pub(super) async fn start(
    c: &ConnectorConfig,
    connector: &ActorRef<ConnectorMsg>,
) -> Result<ActorRef<NodeServerMessage>, ActorProcessingErr> {
    let server = NodeServer::new(
        c.port,
        c.cookie.clone(),
        c.node.ractor_basename().to_string(),
        c.node.ractor_hostname(),
        c.tls
            .as_ref()
            .map(|t| IncomingEncryptionMode::Tls(t.acceptor())),
        Some(NodeConnectionMode::Isolated),
    )
    .with_listen_addr(c.bind)
    .with_max_inbound_frame_size(c.max_frame_size);
    let (node_server, _) = Actor::spawn_linked(None, server, (), connector.get_cell()).await?;
    node_server.cast(NodeServerMessage::SubscribeToEvents {
        id: "minotaur-connector".into(),
        subscription: Box::new(Subscription(connector.clone())),
    })?;
    Ok(node_server)
}

/// Forwards NodeServer callbacks (which run on the NodeServer's task and must not block) to the
/// connector's mailbox.
struct Subscription(ActorRef<ConnectorMsg>);

impl Subscription {
    fn forward(&self, step: SessionStep, ses: NodeServerSessionInformation) {
        let info = SessionInfo {
            peer_name: ses.peer_name.map(|n| n.name),
            is_server: ses.is_server,
            peer_addr: ses.peer_addr,
        };
        let link = ses.actor;
        let _ = self
            .0
            .cast(ConnectorMsg::Input(LinkInput::Session { step, link, info }));
    }
}

impl NodeEventSubscription for Subscription {
    fn node_session_opened(&self, ses: NodeServerSessionInformation) {
        self.forward(SessionStep::Opened, ses);
    }
    fn node_session_authenticated(&self, ses: NodeServerSessionInformation) {
        self.forward(SessionStep::Authenticated, ses);
    }
    fn node_session_ready(&self, ses: NodeServerSessionInformation) {
        self.forward(SessionStep::Ready, ses);
    }
    fn node_session_disconnected(&self, ses: NodeServerSessionInformation) {
        self.forward(SessionStep::Closed, ses);
    }
}

/// The beacon of `id` among the proxies of `link`, once ractor_cluster has synced it.
pub(super) fn beacon_of(id: NodeId, link: Session) -> Option<ActorRef<BeaconMsg>> {
    PeerNode::new(id, link).remote_actor(BEACON_SERVICE)
}
