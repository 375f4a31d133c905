//! The router: the data plane of a node's horde. One remotable actor per node and scope that
//! takes routed messages and events from other nodes and hands them to local children (or
//! subscribers), or forwards them to the child's owner when they reached a stale one.
//!
//! It is separate from the member actor so that control messages (moves, registry changes,
//! membership) never queue behind application traffic: under load a drain still advances at
//! full speed. It owns nothing and decides nothing of its own: it reads the published view and
//! asks [`CoreView::forward_to`] where a message goes.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tracing::{debug, warn};

use crate::child::Handoff;
use crate::core::CoreView;
use crate::core::child_core::{Body, ChildInput, Envelope as ChildMsg, ReplicaAnswer};
use crate::mailbox::{HostedMsg, ReplyTo};
use crate::protocol::{
    MemberMsg, Route, RouteBody, RouteReply, Subscriber, Unavailable, Wire, reply_to,
};
use crate::stats::Counters;
use crate::view::{RouterRef, Shared};

/// The router's service name for a horde scope.
pub(crate) fn service(scope: &str) -> String {
    format!("horde-router-{scope}")
}

/// The router actor.
pub(crate) struct Router<C: Handoff> {
    pub shared: Arc<Shared<C>>,
}

impl<C: Handoff> Actor for Router<C> {
    type Msg = MemberMsg<()>;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<Self::Msg>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        msg: Self::Msg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        let (env, port) = match msg {
            MemberMsg::Cast(env) => (env, None),
            MemberMsg::Call(env, port) => (env, Some(port)),
            MemberMsg::Local(()) => return Ok(()),
        };
        match crate::protocol::decode_wire(&env) {
            Ok(wire) => dispatch(&self.shared, wire, port),
            Err(u) => {
                crate::member::count_undecodable(&self.shared.counters, &u);
                if let Some(p) = port {
                    reply_to(
                        p,
                        &RouteReply::Unavailable(Unavailable::Malformed(u.error.to_string())),
                    );
                }
            }
        }
        Ok(())
    }
}

/// Handles a data-plane message (also used by the member for messages sent to it directly).
pub(crate) fn dispatch<C: Handoff>(
    shared: &Shared<C>,
    wire: Wire,
    port: Option<RpcReplyPort<Vec<u8>>>,
) {
    match wire {
        Wire::Route(Route { name, hops, body }) => route(shared, name, hops, body, port),
        Wire::Event {
            sink,
            name,
            seq,
            event,
        } => {
            let delivered = match postcard::from_bytes::<C::Event>(&event) {
                Ok(ev) => shared.sinks.send(sink, seq, ev),
                Err(e) => {
                    warn!(child = %name, error = %e, "undecodable event dropped");
                    true
                }
            };
            if !delivered {
                // The subscriber is gone: tell the child.
                let sub = Subscriber {
                    node: shared.me.clone(),
                    sink,
                };
                route(shared, name, 0, RouteBody::Unsubscribe(sub), None);
            }
        }
        Wire::ReplicaAck {
            from,
            name,
            epoch,
            seq,
        } => to_child(shared, &name, ReplicaAnswer::Ack { from, epoch, seq }),
        Wire::ReplicaNack {
            from,
            name,
            epoch,
            why,
        } => to_child(shared, &name, ReplicaAnswer::Nack { from, epoch, why }),
        other => {
            debug!(
                message = other.kind(),
                "control message sent to a router dropped"
            );
            if let Some(p) = port {
                reply_to(p, &RouteReply::Unavailable(Unavailable::NotRouted));
            }
        }
    }
}

/// Hands a backup's answer to the child (serving or arriving) it is for.
fn to_child<C: Handoff>(shared: &Shared<C>, name: &str, answer: ReplicaAnswer) {
    if let Some(h) = shared.load().children.get(name) {
        let _ = h.actor.cast(HostedMsg(ChildInput::Replica(answer)));
    }
}

/// Delivers a routed message to a child hosted here (or arriving here), or forwards it to its
/// owner as the registry knows it.
pub(crate) fn route<C: Handoff>(
    shared: &Shared<C>,
    name: String,
    hops: u8,
    body: RouteBody,
    port: Option<RpcReplyPort<Vec<u8>>>,
) {
    let published = shared.load();
    if let Some(h) = published.children.get(name.as_str()) {
        let msg = HostedMsg::<C>(ChildInput::Message(ChildMsg {
            body: Body::Routed(body),
            hops,
            reply: port.map(ReplyTo::Remote),
        }));
        match h.actor.cast(msg) {
            Ok(()) => return,
            // Stopped meanwhile (it moved away): recover the message and ask the registry.
            Err(ractor::MessagingErr::SendErr(HostedMsg(ChildInput::Message(m)))) => {
                let port = match m.reply {
                    Some(ReplyTo::Remote(p)) => Some(p),
                    _ => None,
                };
                let body = match m.body {
                    Body::Routed(b) => b,
                    Body::Typed(_) => return,
                };
                return forward_by_registry(shared, &published.core, name, hops, body, port);
            }
            Err(_) => return,
        }
    }
    forward_by_registry(shared, &published.core, name, hops, body, port);
}

fn forward_by_registry<C: Handoff>(
    shared: &Shared<C>,
    view: &CoreView,
    name: String,
    hops: u8,
    body: RouteBody,
    port: Option<RpcReplyPort<Vec<u8>>>,
) {
    let owner = match view.forward_to(&name, hops) {
        Ok(owner) => owner,
        Err(reply) => {
            if let Some(p) = port {
                reply_to(p, &reply);
            }
            return;
        }
    };
    let Some(router) = shared.load().peer_of(&owner).map(|p| p.router.clone()) else {
        if let Some(p) = port {
            reply_to(
                p,
                &RouteReply::Unavailable(Unavailable::OwnerUnreachable { owner: owner.name }),
            );
        }
        return;
    };
    Counters::add(&shared.counters.forwarded, 1);
    send_route(&router, name, hops + 1, body, port);
}

/// Sends a routed message; `port` makes it a call.
pub(crate) fn send_route(
    router: &RouterRef,
    name: String,
    hops: u8,
    body: RouteBody,
    port: Option<RpcReplyPort<Vec<u8>>>,
) -> bool {
    let Ok(env) = crate::protocol::encode_wire(&Wire::Route(Route { name, hops, body })) else {
        return false;
    };
    match port {
        Some(p) => router.cast(MemberMsg::Call(env, p)).is_ok(),
        None => router.cast(MemberMsg::Cast(env)).is_ok(),
    }
}
