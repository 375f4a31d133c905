//! The node's console actor: one remotable actor per node that runs console commands.
//!
//! Each command runs in its own task so that a slow one (`ping` of a frozen node, `drain`)
//! never blocks another console. Owns nothing but the node context it was given.

use discovery::Envelope;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tracing::debug;

use super::commands;
use super::protocol::{ConsoleMsg, Request, Response};
use crate::node::NodeContext;

/// The console actor; `self` holds the node's context.
#[derive(Debug)]
pub struct ConsoleServer {
    /// Handles of the node's parts the commands look at.
    pub ctx: NodeContext,
}

impl Actor for ConsoleServer {
    type Msg = ConsoleMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _me: ActorRef<ConsoleMsg>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        _me: ActorRef<ConsoleMsg>,
        msg: ConsoleMsg,
        _state: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        let ConsoleMsg::Exec(request, reply) = msg;
        let ctx = self.ctx.clone();
        tokio::spawn(async move {
            let response = match request.decode::<Request>() {
                Ok(req) => commands::execute(&ctx, &req.args).await,
                Err(e) => Response {
                    ok: false,
                    text: format!("malformed console request: {e}"),
                    json: serde_json::json!({ "error": e.to_string() }).to_string(),
                },
            };
            match Envelope::encode(&response) {
                Ok(env) => {
                    let _ = reply.send(env);
                }
                Err(error) => debug!(%error, "cannot encode console answer"),
            }
        });
        Ok(())
    }
}
