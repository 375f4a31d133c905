//! The router: the data plane of a node's horde. One remotable actor per node and scope that
//! takes routed messages and events from other nodes and hands them to local children (or
//! subscribers), or forwards them to the child's owner when they reached a stale one.
//!
//! It is separate from the member actor so that control messages (moves, registry changes,
//! membership) never queue behind application traffic: under load a drain still advances at
//! full speed. It owns nothing: it reads the shared view only.

use std::sync::Arc;

use discovery::{Envelope, NodeId};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tracing::{debug, warn};

use crate::child::Child;
use crate::hosted::{HostedMsg, reply_remote};
use crate::member::MAX_HOPS;
use crate::stats::Counters;
use crate::view::View;
use crate::wire::{MemberMsg, RouteBody, RouteReply, Subscriber, Wire};

/// Reference to a router (local, or a proxy). A peer whose router is not visible is reached
/// through its member actor, which speaks the same wire variants.
pub(crate) type RouterRef = ActorRef<MemberMsg<()>>;

/// The router's service name for a horde scope.
pub(crate) fn service(scope: &str) -> String {
    format!("horde-router-{scope}")
}

/// The router actor.
pub(crate) struct Router<C: Child> {
    pub view: Arc<View<C>>,
}

impl<C: Child> Actor for Router<C> {
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
        match env.decode::<Wire>() {
            Ok(wire) => dispatch(&self.view, wire, port),
            Err(error) => {
                warn!(%error, "undecodable routed message dropped");
                if let Some(p) = port {
                    reply_remote(p, RouteReply::Unavailable(error.to_string()));
                }
            }
        }
        Ok(())
    }
}

/// Handles a data-plane message (also used by the member for messages sent to it directly).
pub(crate) fn dispatch<C: Child>(view: &View<C>, wire: Wire, port: Option<RpcReplyPort<Vec<u8>>>) {
    match wire {
        Wire::Route { name, hops, body } => route(view, name, hops, body, port),
        Wire::Event {
            sink,
            name,
            seq,
            event,
        } => {
            let delivered = match postcard::from_bytes::<C::Event>(&event) {
                Ok(ev) => view
                    .sinks
                    .lock()
                    .ok()
                    .and_then(|s| s.get(&sink).map(|tx| tx.send((seq, ev)).is_ok()))
                    .unwrap_or(false),
                Err(e) => {
                    warn!(child = %name, error = %e, "undecodable event dropped");
                    true
                }
            };
            if !delivered {
                // The subscriber is gone: tell the child.
                let sub = Subscriber {
                    node: view.me.clone(),
                    sink,
                };
                route(view, name, 0, RouteBody::Unsubscribe(sub), None);
            }
        }
        other => {
            debug!(message = ?std::mem::discriminant(&other), "control message sent to a router dropped");
            if let Some(p) = port {
                reply_remote(p, RouteReply::Unavailable("not a routed message".into()));
            }
        }
    }
}

/// Delivers a routed message to a child hosted here (or arriving here), or forwards it to its
/// owner as the registry knows it.
pub(crate) fn route<C: Child>(
    view: &View<C>,
    name: String,
    hops: u8,
    body: RouteBody,
    port: Option<RpcReplyPort<Vec<u8>>>,
) {
    let target = view.local(&name).or_else(|| view.pending(&name));
    if let Some(actor) = target {
        match actor.cast(HostedMsg::Routed {
            body,
            hops,
            reply: port,
        }) {
            Ok(()) => return,
            // Stopped meanwhile (it moved away): recover the message and ask the registry.
            Err(ractor::MessagingErr::SendErr(HostedMsg::Routed { body, reply, .. })) => {
                return forward_by_registry(view, name, hops, body, reply);
            }
            Err(_) => return,
        }
    }
    forward_by_registry(view, name, hops, body, port);
}

fn forward_by_registry<C: Child>(
    view: &View<C>,
    name: String,
    hops: u8,
    body: RouteBody,
    port: Option<RpcReplyPort<Vec<u8>>>,
) {
    let answer = |port: Option<RpcReplyPort<Vec<u8>>>, reply: RouteReply| {
        if let Some(p) = port {
            reply_remote(p, reply);
        }
    };
    let entry = view.entry(&name);
    let Some(entry) = entry else {
        return answer(port, RouteReply::NotFound);
    };
    if *entry.owner == view.me {
        return answer(
            port,
            RouteReply::Unavailable("restarting here; retry".into()),
        );
    }
    if hops >= MAX_HOPS {
        return answer(
            port,
            RouteReply::Unavailable("too many forwarding hops".into()),
        );
    }
    let Some(router) = router_of(view, &entry.owner) else {
        return answer(
            port,
            RouteReply::Unavailable(format!("owner {} is not reachable", entry.owner.name)),
        );
    };
    Counters::add(&view.counters.forwarded, 1);
    send_route(&router, name, hops + 1, body, port);
}

/// The router of `node` (that incarnation), if it is a live member.
pub(crate) fn router_of<C: Child>(view: &View<C>, node: &NodeId) -> Option<RouterRef> {
    view.peer_of(node).map(|p| p.router)
}

/// Sends a routed message; `port` makes it a call.
pub(crate) fn send_route(
    router: &RouterRef,
    name: String,
    hops: u8,
    body: RouteBody,
    port: Option<RpcReplyPort<Vec<u8>>>,
) -> bool {
    let Ok(env) = Envelope::encode(&Wire::Route { name, hops, body }) else {
        return false;
    };
    match port {
        Some(p) => router.cast(MemberMsg::Call(env, p)).is_ok(),
        None => router.cast(MemberMsg::Cast(env)).is_ok(),
    }
}
