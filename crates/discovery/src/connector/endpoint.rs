//! The ractor_cluster side of the connector: what a link is in production (the session actor
//! of one TCP connection), the NodeServer started with the connector's settings, its session
//! callbacks turned into [`LinkInput`]s, and a peer's beacon found among a link's proxies.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, ActorStatus};
use ractor_cluster::node::{NodeConnectionMode, NodeServerSessionInformation};
use ractor_cluster::{
    ClusterBidiStream, NodeEventSubscription, NodeServer, NodeServerMessage, NodeSessionMessage,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

use super::PeerNode;
use super::beacon::{BEACON_SERVICE, BeaconMsg};
use super::gate::{Gate, GatedRead, GatedStream, Gates};
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

/// Starts the node's NodeServer (sessions), linked to the connector, with its session events
/// going to the connector's mailbox, and the cluster port's listener in front of it.
///
/// The cluster port is ours ([`accept`]), TLS or not: ractor_cluster's own listener runs each
/// TLS handshake inline, one at a time and without a deadline, and reads whatever an
/// unauthenticated connection sends for as long as it likes (see [`super::gate`]). Its
/// NodeServer listens on an unused loopback port, and receives the gated streams.
///
/// `M` is the connector's message type: the endpoint knows only that a [`LinkInput`] becomes
/// one, so it does not import the actor that drives it (the actor imports the endpoint).
pub(super) async fn start<M>(
    c: &ConnectorConfig,
    connector: &ActorRef<M>,
) -> Result<ActorRef<NodeServerMessage>, ActorProcessingErr>
where
    M: ractor::Message + From<LinkInput<Session>>,
{
    // Bind first: a port in use fails the start before anything else runs.
    let listener = TcpListener::bind((c.bind, c.port)).await?;
    let server = NodeServer::new(
        0,
        c.cookie.expose().to_string(),
        c.node.ractor_basename().to_string(),
        c.node.ractor_hostname(),
        None,
        Some(NodeConnectionMode::Isolated),
    )
    .with_listen_addr(IpAddr::V4(Ipv4Addr::LOCALHOST))
    .with_max_inbound_frame_size(c.max_frame_size);
    let (node_server, _) = Actor::spawn_linked(None, server, (), connector.get_cell()).await?;
    let gates = Gates::new(c.max_pending_handshakes);
    node_server.cast(NodeServerMessage::SubscribeToEvents {
        id: "connector".into(),
        subscription: Box::new(Subscription {
            connector: connector.clone(),
            gates: gates.clone(),
        }),
    })?;
    tokio::spawn(accept(
        listener,
        c.tls.as_ref().map(|t| t.acceptor()),
        node_server.clone(),
        gates,
        c.handshake_timeout,
    ));
    Ok(node_server)
}

/// The listener of the cluster port: each connection gets a gate (see [`super::gate`]) and a
/// task of its own that runs the TLS handshake or waits for the first bytes, under the
/// handshake deadline, then hands the gated stream to the NodeServer. Accepting never waits
/// for a handshake. Stops with the NodeServer.
async fn accept(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    node_server: ActorRef<NodeServerMessage>,
    gates: Arc<Gates>,
    deadline: Duration,
) {
    let mut evictions: u64 = 0;
    let mut last_eviction_log: Option<Instant> = None;
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
        let (gate, evicted) = gates.admit(&peer_addr.to_string());
        if evicted {
            evictions += 1;
            if last_eviction_log.is_none_or(|t| t.elapsed() > EVICTION_LOG_EVERY) {
                warn!(
                    closed = evictions,
                    "cluster port: too many connections in their handshake; closing the oldest"
                );
                evictions = 0;
                last_eviction_log = Some(Instant::now());
            }
        }
        let at = Instant::now() + deadline;
        let (tls, node_server, gates) = (tls.clone(), node_server.clone(), gates.clone());
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let opening = open(stream, peer_addr, tls, gate.clone(), gates.clone(), at);
            let opened = tokio::select! {
                s = tokio::time::timeout_at(at, opening) => s,
                () = gate.evicted() => {
                    debug!(%peer_addr, "cluster port: closed to make room for newer connections");
                    return;
                }
            };
            match opened {
                Ok(Ok(stream)) => {
                    let _ = node_server.cast(NodeServerMessage::ConnectionOpenedExternal {
                        stream,
                        is_server: true,
                    });
                }
                Ok(Err(e)) => {
                    gates.forget(&gate);
                    debug!(%peer_addr, error = %e, "cluster port: connection refused");
                }
                Err(_) => {
                    gates.forget(&gate);
                    debug!(%peer_addr, after = ?deadline, "cluster port: nothing received before the handshake deadline; connection closed");
                }
            }
        });
    }
}

/// The "too many connections in their handshake" warning is logged at most this often.
const EVICTION_LOG_EVERY: Duration = Duration::from_secs(10);

/// Runs the TLS handshake, or waits for a plain connection's first bytes (a dialling node or
/// console speaks first), and wraps the stream in its gate.
async fn open(
    stream: TcpStream,
    peer_addr: SocketAddr,
    tls: Option<TlsAcceptor>,
    gate: Arc<Gate>,
    gates: Arc<Gates>,
    at: Instant,
) -> std::io::Result<Box<dyn ClusterBidiStream>> {
    match tls {
        Some(acceptor) => {
            let stream = acceptor.accept(stream).await.inspect_err(|e| {
                warn!(%peer_addr, error = %e, "TLS handshake refused");
            })?;
            let (read, write) = tokio::io::split(stream);
            Ok(Box::new(GatedStream {
                read: GatedRead::new(read, gate, gates, at),
                write,
                peer_addr,
            }))
        }
        None => {
            stream.readable().await?;
            let (read, write) = stream.into_split();
            Ok(Box::new(GatedStream {
                read: GatedRead::new(read, gate, gates, at),
                write,
                peer_addr,
            }))
        }
    }
}

/// Forwards NodeServer callbacks (which run on the NodeServer's task and must not block) to the
/// connector's mailbox.
struct Subscription<M: ractor::Message> {
    connector: ActorRef<M>,
    /// Inbound connections still under the pre-authentication limits.
    gates: Arc<Gates>,
}

impl<M: ractor::Message + From<LinkInput<Session>>> Subscription<M> {
    fn forward(&self, step: SessionStep, ses: NodeServerSessionInformation) {
        if step == SessionStep::Opened && ses.is_server && !self.gates.is_pending(&ses.peer_addr) {
            // Not through the cluster port: ractor_cluster's own listener on its loopback
            // port, which has none of the door's limits. Closed before it reads a frame.
            tracing::warn!(
                peer = %ses.peer_addr,
                "closed a connection to the cluster's internal loopback port (only the cluster port is open to peers)"
            );
            ses.actor.stop(Some("not through the cluster port".into()));
        }
        if step == SessionStep::Authenticated && ses.is_server {
            // Inbound sessions are labelled with the peer's address (see `accept`).
            self.gates.authenticated(&ses.peer_addr);
        }
        let info = SessionInfo {
            peer_name: ses.peer_name.map(|n| n.name),
            is_server: ses.is_server,
            peer_addr: ses.peer_addr,
        };
        let link = ses.actor;
        let _ = self
            .connector
            .cast(M::from(LinkInput::Session { step, link, info }));
    }
}

impl<M: ractor::Message + From<LinkInput<Session>>> NodeEventSubscription for Subscription<M> {
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
