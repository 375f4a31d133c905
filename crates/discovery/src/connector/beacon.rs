//! The beacon: one remotable actor per node that answers heartbeats and `ping`.
//!
//! It is the only thing the connector asks of a peer, so it stays tiny and its wire format
//! (one RPC variant carrying an [`Envelope`]) never changes. It owns no state but the node's
//! identity, and must not touch the connector's view of peers.

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};
use tracing::debug;

use crate::NodeId;
use crate::wire::Envelope;

/// Service name of the beacon (see [`NodeId::actor_name`]).
pub const BEACON_SERVICE: &str = "beacon";

/// Messages of the beacon.
#[derive(Debug, RactorClusterMessage)]
pub enum BeaconMsg {
    /// A heartbeat or `ping`: answers a [`PingReply`] at once.
    #[rpc]
    Ping(Envelope, RpcReplyPort<Envelope>),
}

/// What a ping carries.
#[derive(Debug, Serialize, Deserialize)]
pub struct PingRequest {
    /// Who asks.
    pub from: NodeId,
}

/// What a beacon answers.
#[derive(Debug, Serialize, Deserialize)]
pub struct PingReply {
    /// The answering node, incarnation included: a reply from an older run must not count as
    /// a heartbeat of the newer one.
    pub node: NodeId,
}

/// The beacon actor; `self` holds the node identity it answers with.
#[derive(Debug)]
pub struct Beacon {
    /// This node.
    pub node: NodeId,
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
                if let Err(error) = request.decode::<PingRequest>() {
                    debug!(%error, "malformed ping");
                    return Ok(());
                }
                let answer = Envelope::encode(&PingReply {
                    node: self.node.clone(),
                })?;
                let _ = reply.send(answer);
            }
        }
        Ok(())
    }
}
