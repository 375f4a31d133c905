//! The local message types of the node's actors: what the member and the hosted actors accept
//! from this node (the wire variants are [`crate::protocol::MemberMsg`]'s), and the reply
//! tokens the cores carry without looking inside. Below the read side and the actors, so they
//! can all name each other's mailboxes without import cycles.

use std::sync::Arc;

use discovery::NodeEvent;
use ractor::RpcReplyPort;
use tokio::sync::oneshot;

use crate::child::Child;
use crate::core::child_core::{ChildEffect, ChildInput};
use crate::core::{ChildReport, Reply, Request};
use crate::errors::CallError;

/// Where the answer to a member request goes.
#[derive(Debug)]
pub(crate) enum Token {
    /// A handle on this node.
    Local(oneshot::Sender<Reply>),
    /// A handle on another node (its call's reply port).
    Remote(RpcReplyPort<Vec<u8>>),
}

/// Local messages of the member actor.
#[derive(Debug)]
pub(crate) enum LocalMsg {
    /// A node event from the connector.
    Node(NodeEvent),
    /// A request from a handle.
    Request(Request<Token>),
    /// A hosted child's report.
    Child {
        /// The child.
        name: Arc<str>,
        /// What it says.
        report: ChildReport,
    },
    /// Periodic work.
    Tick,
}

/// Where the answer to a child's message goes.
pub(crate) enum ReplyTo<C: Child> {
    /// A caller on this node.
    Local(oneshot::Sender<Result<C::Reply, CallError>>),
    /// A caller elsewhere: an envelope of [`crate::protocol::RouteReply`].
    Remote(RpcReplyPort<Vec<u8>>),
}

impl<C: Child> std::fmt::Debug for ReplyTo<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReplyTo::Local(_) => "Local",
            ReplyTo::Remote(_) => "Remote",
        })
    }
}

/// Effects of a child's first callback, run by its actor when it starts.
pub(crate) type FirstEffects<C> = Vec<ChildEffect<C, ReplyTo<C>>>;

/// Messages of a hosting actor: its core's inputs.
pub(crate) struct HostedMsg<C: Child>(pub ChildInput<C::Msg, ReplyTo<C>>);

impl<C: Child> std::fmt::Debug for HostedMsg<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match &self.0 {
            ChildInput::Message(_) => "Message",
            ChildInput::Timer { .. } => "Timer",
            ChildInput::Cmd(_) => "Cmd",
            ChildInput::Replica(_) => "Replica",
        })
    }
}

impl<C: Child> ractor::Message for HostedMsg<C> {}
