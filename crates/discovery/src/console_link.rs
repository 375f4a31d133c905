//! Attaching to one node as a console: an operator's remote shell or one-off command.
//!
//! A console is a transient ractor_cluster peer: it runs its own endpoint under a name marked
//! `#console`, passes the same cookie handshake as a node, and talks to the node's remotable
//! console actor. Nodes recognise the marker and never list a console as a node nor dial it.
//! This module owns the client side of that link only; what the console says is the binary's.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use ractor::{Actor, ActorRef};
use ractor_cluster::node::{NodeConnectionMode, NodeServerSessionInformation};
use ractor_cluster::{
    IncomingEncryptionMode, NodeEventSubscription, NodeServer, NodeServerMessage,
};
use tokio::sync::mpsc;

use crate::ClusterTls;
use crate::connector::PeerNode;
use crate::node_name::{PeerKind, console_ractor_hostname};

/// Why a console could not attach.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// Nothing accepted a connection there.
    #[error(
        "cannot reach a node at {addr}: {reason} (is it running? are the host and CLUSTER_PORT right?)"
    )]
    Unreachable {
        /// Where.
        addr: SocketAddr,
        /// The connect error.
        reason: String,
    },
    /// The node closed the connection during the cookie handshake.
    #[error(
        "the node at {addr} closed the connection during the handshake: wrong cookie? (check RELEASE_COOKIE or RELEASE_COOKIE_FILE) or does it require TLS? (set CLUSTER_TLS_CERT_FILE, CLUSTER_TLS_KEY_FILE and CLUSTER_TLS_CA_FILE as on the nodes)"
    )]
    Refused {
        /// Where.
        addr: SocketAddr,
    },
    /// Something answered the handshake that is not a cluster node (no incarnation in its
    /// name).
    #[error("{addr} is `{name}`, not a node of this cluster")]
    Foreign {
        /// Where.
        addr: SocketAddr,
        /// What it called itself.
        name: String,
    },
    /// The handshake did not finish in time.
    #[error("the node at {addr} did not complete the handshake within {after:?}")]
    Timeout {
        /// Where.
        addr: SocketAddr,
        /// How long we waited.
        after: Duration,
    },
    /// The console's own endpoint could not start.
    #[error("cannot start the console's endpoint: {0}")]
    Local(String),
}

/// An attached console link.
#[derive(Debug)]
pub struct ConsoleLink {
    peer: PeerNode,
    server: ActorRef<NodeServerMessage>,
}

impl ConsoleLink {
    /// The node attached to (its name, incarnation and link).
    pub fn peer(&self) -> &PeerNode {
        &self.peer
    }

    /// Closes the link.
    pub async fn close(self) {
        let _ = self
            .server
            .stop_and_wait(Some("console closed".into()), Some(Duration::from_secs(2)))
            .await;
    }
}

struct Forward(mpsc::UnboundedSender<(bool, NodeServerSessionInformation)>);

impl NodeEventSubscription for Forward {
    fn node_session_opened(&self, _ses: NodeServerSessionInformation) {}
    fn node_session_authenticated(&self, _ses: NodeServerSessionInformation) {}
    fn node_session_ready(&self, ses: NodeServerSessionInformation) {
        let _ = self.0.send((true, ses));
    }
    fn node_session_disconnected(&self, ses: NodeServerSessionInformation) {
        let _ = self.0.send((false, ses));
    }
}

/// Connects to the node listening at `target` with `cookie`, over mutual TLS when `tls` is set
/// (a node with `CLUSTER_TLS_*` accepts nothing else).
pub async fn attach(
    target: SocketAddr,
    cookie: &str,
    tls: Option<&ClusterTls>,
    timeout: Duration,
) -> Result<ConsoleLink, AttachError> {
    let local_ip: IpAddr = if target.ip().is_loopback() {
        Ipv4Addr::LOCALHOST.into()
    } else {
        crate::own_address::own_ip(Some(target.ip())).unwrap_or(Ipv4Addr::LOCALHOST.into())
    };
    let basename = format!("console-{:08x}", rand::random::<u32>());
    let server = NodeServer::new(
        0,
        cookie.to_string(),
        basename,
        console_ractor_hostname(&local_ip.to_string()),
        tls.map(|t| IncomingEncryptionMode::Tls(t.acceptor())),
        Some(NodeConnectionMode::Isolated),
    )
    .with_listen_addr(Ipv4Addr::LOCALHOST.into());
    let (server, _) = Actor::spawn(None, server, ())
        .await
        .map_err(|e| AttachError::Local(e.to_string()))?;
    let result = handshake(&server, target, tls, timeout).await;
    match result {
        Ok(peer) => Ok(ConsoleLink { peer, server }),
        Err(e) => {
            server.stop(None);
            Err(e)
        }
    }
}

async fn handshake(
    server: &ActorRef<NodeServerMessage>,
    target: SocketAddr,
    tls: Option<&ClusterTls>,
    timeout: Duration,
) -> Result<PeerNode, AttachError> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    server
        .cast(NodeServerMessage::SubscribeToEvents {
            id: "console".into(),
            subscription: Box::new(Forward(tx)),
        })
        .map_err(|e| AttachError::Local(e.to_string()))?;
    let deadline = tokio::time::Instant::now() + timeout;
    match tokio::time::timeout(timeout, crate::tls::dial(server, target, tls)).await {
        Ok(Ok(())) => {}
        Ok(Err(reason)) => {
            return Err(AttachError::Unreachable {
                addr: target,
                reason,
            });
        }
        Err(_) => {
            return Err(AttachError::Timeout {
                addr: target,
                after: timeout,
            });
        }
    }
    let (ready, ses) = match tokio::time::timeout_at(deadline, rx.recv()).await {
        Ok(Some(e)) => e,
        Ok(None) => return Err(AttachError::Local("endpoint stopped".into())),
        Err(_) => {
            return Err(AttachError::Timeout {
                addr: target,
                after: timeout,
            });
        }
    };
    if !ready {
        return Err(AttachError::Refused { addr: target });
    }
    let name = ses
        .peer_name
        .as_ref()
        .map(|n| n.name.clone())
        .unwrap_or_default();
    match PeerKind::from_ractor_name(&name) {
        PeerKind::Node(id) => Ok(PeerNode::new(id, ses.actor)),
        _ => Err(AttachError::Foreign { addr: target, name }),
    }
}
