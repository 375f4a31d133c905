//! The raw ractor_cluster baseline of the benchmarks: an actor that answers a `u64` with the
//! same `u64`, remotable, so a call to it over a link measures ractor_cluster alone.

use discovery::NodeId;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;

/// The service name of the echo actor: it runs as `NodeId::actor_name(SERVICE)`, and a peer
/// finds it with `PeerNode::remote_actor(SERVICE)`.
pub const SERVICE: &str = "echo";

/// The echo actor's one message.
#[derive(Debug, RactorClusterMessage)]
pub enum EchoMsg {
    /// Answers with the number it was sent.
    #[rpc]
    Echo(u64, RpcReplyPort<u64>),
}

/// The echo actor.
#[derive(Debug)]
pub struct Echo;

impl Actor for Echo {
    type Msg = EchoMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<EchoMsg>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<EchoMsg>,
        msg: EchoMsg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        let EchoMsg::Echo(v, reply) = msg;
        let _ = reply.send(v);
        Ok(())
    }
}

/// Starts the echo actor of `node` in this process (the benchmarks do so before starting the
/// node's connector).
///
/// # Panics
/// When it cannot start (its name is taken: one per incarnation).
pub async fn spawn(node: &NodeId) -> ActorRef<EchoMsg> {
    match Actor::spawn(Some(node.actor_name(SERVICE)), Echo, ()).await {
        Ok((actor, _)) => actor,
        Err(e) => panic!("cannot start the echo actor of {node}: {e}"),
    }
}
