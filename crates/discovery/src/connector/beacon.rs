//! The beacon: one remotable actor per node that answers heartbeats and `ping`, and tells the
//! asking node which nodes this one is connected to (the mesh), so that every node connects
//! to every other one even when discovery does not list them all (see the connector's docs).
//!
//! It is the only thing the connector asks of a peer, so it stays tiny and its wire format
//! (one RPC variant carrying an [`Envelope`]) never changes; requests and replies only grow by
//! appending fields, which older nodes ignore ([`Envelope::decode_extended`]). It owns nothing
//! but the node's identity and a read side of the mesh the connector publishes; it must not
//! touch the connector's view of peers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::debug;

use crate::NodeId;
use crate::wire::{Envelope, WireError};

/// Service name of the beacon (see [`NodeId::actor_name`]).
pub const BEACON_SERVICE: &str = "beacon";

/// Most mesh entries taken from one peer's answer; the rest is ignored.
pub const MAX_MESH_PEERS: usize = 4096;

/// Messages of the beacon.
#[derive(Debug, RactorClusterMessage)]
pub enum BeaconMsg {
    /// A heartbeat or `ping`: answers a [`PingReply`] at once.
    #[rpc]
    Ping(Envelope, RpcReplyPort<Envelope>),
}

/// What a ping carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PingRequest {
    /// Who asks.
    pub from: NodeId,
    /// Appended in protocol 1.1: `Some(digest)` asks for the mesh unless its digest is
    /// `digest` (what the asker has already); `None` (also what an older asker means) asks
    /// for the node only.
    pub mesh_known: Option<u64>,
}

impl PingRequest {
    /// Decodes a request of any protocol version.
    pub fn decode(env: &Envelope) -> Result<Self, WireError> {
        let (from, mesh_known) = env.decode_extended()?;
        Ok(Self { from, mesh_known })
    }
}

/// A node another node is connected to, and where it listens.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MeshPeer {
    /// Its logical name (`name@host`).
    pub name: String,
    /// Its cluster address.
    pub addr: SocketAddr,
}

/// The nodes a node is connected to (itself included when it knows its own address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mesh {
    /// Identifies `peers`; changes when they do.
    pub digest: u64,
    /// Sorted.
    pub peers: Vec<MeshPeer>,
}

impl Mesh {
    /// A mesh of these peers, with its digest.
    pub fn new(mut peers: Vec<MeshPeer>) -> Self {
        use std::hash::{Hash, Hasher};
        peers.sort();
        peers.dedup();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        peers.hash(&mut h);
        // 0 never names a mesh: it is what an asker that has none sends.
        let digest = h.finish().max(1);
        Self { digest, peers }
    }
}

/// The mesh part of a reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeshReport {
    /// The digest of the answering node's mesh now.
    pub digest: u64,
    /// The mesh, unless the asker said it has this digest already.
    pub peers: Option<Vec<MeshPeer>>,
}

/// What a beacon answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PingReply {
    /// The answering node, incarnation included: a reply from an older run must not count as
    /// a heartbeat of the newer one.
    pub node: NodeId,
    /// Appended in protocol 1.1, when the request asked for it.
    pub mesh: Option<MeshReport>,
}

impl PingReply {
    /// Decodes a reply of any protocol version.
    pub fn decode(env: &Envelope) -> Result<Self, WireError> {
        let (node, mesh) = env.decode_extended()?;
        Ok(Self { node, mesh })
    }
}

/// One heartbeat or ping: `Some((the answer, round trip))`, `None` on timeout or error.
pub(crate) async fn ping(
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

/// The beacon actor; `self` holds the node identity it answers with.
#[derive(Debug)]
pub struct Beacon {
    /// This node.
    pub node: NodeId,
    /// The mesh as the connector publishes it.
    pub mesh: watch::Receiver<Arc<Mesh>>,
}

impl Actor for Beacon {
    type Msg = BeaconMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        _args: (),
    ) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        _state: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            BeaconMsg::Ping(request, reply) => {
                let request = match PingRequest::decode(&request) {
                    Ok(r) => r,
                    Err(error) => {
                        debug!(%error, "malformed ping");
                        return Ok(());
                    }
                };
                let mesh = request.mesh_known.map(|known| {
                    let mesh = self.mesh.borrow().clone();
                    MeshReport {
                        digest: mesh.digest,
                        peers: (known != mesh.digest).then(|| mesh.peers.clone()),
                    }
                });
                let answer = Envelope::encode(&PingReply {
                    node: self.node.clone(),
                    mesh,
                })?;
                let _ = reply.send(answer);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn id(name: &str) -> NodeId {
        NodeId {
            name: name.into(),
            incarnation: 5,
        }
    }

    /// What a node of protocol 1.0 sent: the node only.
    #[derive(Serialize, Deserialize)]
    struct OldPing {
        from: NodeId,
    }

    #[test]
    fn old_and_new_requests_and_replies_decode_both_ways() {
        let old = Envelope::encode(&OldPing {
            from: id("a@1.2.3.4"),
        })
        .unwrap();
        assert_eq!(
            PingRequest::decode(&old).unwrap(),
            PingRequest {
                from: id("a@1.2.3.4"),
                mesh_known: None
            }
        );
        let new = PingRequest {
            from: id("a@1.2.3.4"),
            mesh_known: Some(3),
        };
        let env = Envelope::encode(&new).unwrap();
        assert_eq!(PingRequest::decode(&env).unwrap(), new);
        // What a 1.0 beacon reads of a new request.
        assert_eq!(env.decode::<OldPing>().unwrap().from, id("a@1.2.3.4"));

        let old_reply = Envelope::encode(&OldPing {
            from: id("b@1.2.3.5"),
        })
        .unwrap();
        assert_eq!(
            PingReply::decode(&old_reply).unwrap(),
            PingReply {
                node: id("b@1.2.3.5"),
                mesh: None
            }
        );
        let reply = PingReply {
            node: id("b@1.2.3.5"),
            mesh: Some(MeshReport {
                digest: 9,
                peers: Some(vec![MeshPeer {
                    name: "c@1.2.3.6".into(),
                    addr: "1.2.3.6:9000".parse().unwrap(),
                }]),
            }),
        };
        assert_eq!(
            PingReply::decode(&Envelope::encode(&reply).unwrap()).unwrap(),
            reply
        );
    }

    #[test]
    fn a_mesh_digest_follows_its_peers_not_their_order() {
        let p = |n: &str, a: &str| MeshPeer {
            name: n.into(),
            addr: a.parse().unwrap(),
        };
        let a = Mesh::new(vec![
            p("x@1.0.0.1", "1.0.0.1:1"),
            p("y@1.0.0.2", "1.0.0.2:1"),
        ]);
        let b = Mesh::new(vec![
            p("y@1.0.0.2", "1.0.0.2:1"),
            p("x@1.0.0.1", "1.0.0.1:1"),
        ]);
        let c = Mesh::new(vec![p("x@1.0.0.1", "1.0.0.1:1")]);
        assert_eq!(a, b);
        assert_ne!(a.digest, c.digest);
        assert_ne!(Mesh::new(vec![]).digest, 0);
    }
}
