//! The ractor_cluster side of the connector: what a link is in production (the session actor
//! of one TCP connection), the NodeServer started with the connector's settings, its session
//! callbacks turned into [`LinkInput`]s, and a peer's beacon found among a link's proxies.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, ActorStatus};
use ractor_cluster::node::{NodeConnectionMode, NodeServerSessionInformation};
use ractor_cluster::{
    NetworkStream, NodeEventSubscription, NodeServer, NodeServerMessage, NodeSessionMessage,
};

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

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
///
/// With TLS, the cluster port is ours ([`accept_tls`]): ractor_cluster's own TLS listener runs
/// each handshake inline, one at a time and without a deadline, so one silent connection (a
/// port scanner, a half-open peer) would hold every later node and console at the door. Its
/// NodeServer then listens on an unused loopback port, and receives the encrypted streams.
pub(super) async fn start(
    c: &ConnectorConfig,
    connector: &ActorRef<ConnectorMsg>,
) -> Result<ActorRef<NodeServerMessage>, ActorProcessingErr> {
    let (port, bind) = match c.tls {
        Some(_) => (0, IpAddr::V4(Ipv4Addr::LOCALHOST)),
        None => (c.port, c.bind),
    };
    let server = NodeServer::new(
        port,
        c.cookie.clone(),
        c.node.ractor_basename().to_string(),
        c.node.ractor_hostname(),
        None,
        Some(NodeConnectionMode::Isolated),
    )
    .with_listen_addr(bind)
    .with_max_inbound_frame_size(c.max_frame_size);
    let (node_server, _) = Actor::spawn_linked(None, server, (), connector.get_cell()).await?;
    node_server.cast(NodeServerMessage::SubscribeToEvents {
        id: "connector".into(),
        subscription: Box::new(Subscription(connector.clone())),
    })?;
    if let Some(tls) = &c.tls {
        let listener = TcpListener::bind((c.bind, c.port)).await?;
        tokio::spawn(accept_tls(
            listener,
            tls.acceptor(),
            node_server.clone(),
            c.handshake_timeout,
            c.max_pending_handshakes,
        ));
    }
    Ok(node_server)
}

/// The TLS listener of the cluster port: each handshake in a task of its own under `deadline`,
/// at most `max_pending` at once (beyond, new connections are closed at once); a finished one
/// goes to the NodeServer as ractor_cluster's own listener would hand it over. Stops with the
/// NodeServer.
async fn accept_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    node_server: ActorRef<NodeServerMessage>,
    deadline: Duration,
    max_pending: usize,
) {
    let pending = Arc::new(Semaphore::new(max_pending.max(1)));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = tokio::time::sleep(Duration::from_secs(1)) => {
                if node_server.get_status() >= ActorStatus::Stopping {
                    return;
                }
                continue;
            }
        };
        let (stream, peer_addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, "cluster port: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = pending.clone().try_acquire_owned() else {
            debug!(%peer_addr, "cluster port: too many TLS handshakes in progress; connection closed");
            continue;
        };
        let (acceptor, node_server) = (acceptor.clone(), node_server.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let _ = stream.set_nodelay(true);
            let Ok(local_addr) = stream.local_addr() else {
                return;
            };
            match tokio::time::timeout(deadline, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => {
                    let _ = node_server.cast(NodeServerMessage::ConnectionOpened {
                        stream: Box::new(NetworkStream::TlsServer {
                            peer_addr,
                            local_addr,
                            stream,
                        }),
                        is_server: true,
                    });
                }
                Ok(Err(e)) => warn!(%peer_addr, error = %e, "TLS handshake refused"),
                Err(_) => {
                    debug!(%peer_addr, after = ?deadline, "TLS handshake timed out; connection closed")
                }
            }
        });
    }
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
