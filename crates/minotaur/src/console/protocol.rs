//! What crosses the console link. Owns the message shapes only.

use discovery::Envelope;
use ractor::RpcReplyPort;
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};

/// Service name of the console actor (see `NodeId::actor_name`).
pub const CONSOLE_SERVICE: &str = "console";

/// Messages of the node's console actor.
#[derive(Debug, RactorClusterMessage)]
pub enum ConsoleMsg {
    /// Run one command line; answers a [`Response`].
    #[rpc]
    Exec(Envelope, RpcReplyPort<Envelope>),
}

/// A command line, split into words.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// The command and its arguments.
    pub args: Vec<String>,
}

/// The answer to a command.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    /// False when the command failed (unknown command, bad argument, unreachable node).
    pub ok: bool,
    /// What a person reads.
    pub text: String,
    /// The same answer as a JSON document (what `rpc --json` prints).
    pub json: String,
}
