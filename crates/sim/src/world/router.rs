//! Each node's router and `Horde` handle: a call goes to the local copy when it serves the
//! name, else is routed to the owner the registry names, forwarded along the view, or refused.

use horde::core::child_core::{Body, Envelope};
use horde::protocol::{Route, RouteBody, RouteReply};

use super::{Ev, MS, NetMsg, Time, Token, World};
use crate::log::LogMsg;

impl World {
    pub(super) fn route(&mut self, slot: usize, inc: u64, route: Route, reply: Option<Token>) {
        let Some(node) = self.node(slot, inc) else {
            return;
        };
        let target = node.routes.get(route.name.as_str()).map(|(i, _)| *i);
        if let Some(instance) = target
            && self.instances.get(&instance).is_some_and(|i| i.alive)
        {
            let envelope = Envelope {
                body: Body::Routed(route.body),
                hops: route.hops,
                reply,
            };
            self.message_to_child(4, slot, inc, instance, envelope);
            return;
        }
        let decision = node.core.view().forward_to(&route.name, route.hops);
        match decision {
            Ok(owner) => {
                let fwd = Route {
                    name: route.name,
                    hops: route.hops + 1,
                    body: route.body,
                };
                if !self.send_net(
                    slot,
                    &owner,
                    NetMsg::Route {
                        route: fwd,
                        reply: reply.clone(),
                    },
                ) && let Some(Token::Call { client, call }) = reply
                {
                    self.reply_client(client, call, Err("owner unreachable".into()));
                }
            }
            Err(answer) => {
                if let Some(Token::Call { client, call }) = reply {
                    let why = match answer {
                        RouteReply::NotFound => "not found".to_string(),
                        RouteReply::Unavailable(u) => u.to_string(),
                        RouteReply::Ok(_) => "ok".into(),
                    };
                    self.reply_client(client, call, Err(why));
                }
            }
        }
    }

    /// What `Horde::call` does on node `slot`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn handle_call(
        &mut self,
        slot: usize,
        inc: u64,
        client: usize,
        call: u64,
        name: String,
        id: u64,
        deadline: Time,
    ) {
        let Some(node) = self.node(slot, inc) else {
            return;
        };
        let msg = LogMsg::Input { id };
        let token = Token::Call { client, call };
        let Some(entry) = node.core.registry().get(&name).cloned() else {
            return self.reply_client(client, call, Err("not found".into()));
        };
        if *entry.owner == node.id {
            let local = node
                .routes
                .get(name.as_str())
                .filter(|(_, pending)| !pending)
                .map(|(i, _)| *i)
                .filter(|i| self.instances.get(i).is_some_and(|x| x.alive));
            match local {
                Some(instance) => {
                    let envelope = Envelope {
                        body: Body::Typed(msg),
                        hops: 0,
                        reply: Some(token),
                    };
                    self.message_to_child(5, slot, inc, instance, envelope);
                }
                None => {
                    let route = Route {
                        name,
                        hops: 0,
                        body: RouteBody::User(postcard::to_stdvec(&msg).unwrap_or_default()),
                    };
                    self.route(slot, inc, route, Some(token));
                }
            }
            return;
        }
        if node.core.view().is_peer(&entry.owner) {
            let route = Route {
                name,
                hops: 0,
                body: RouteBody::User(postcard::to_stdvec(&msg).unwrap_or_default()),
            };
            self.send_net(
                slot,
                &entry.owner,
                NetMsg::Route {
                    route,
                    reply: Some(token),
                },
            );
            return;
        }
        // The owner is down and nobody restarted it yet: look again shortly.
        if self.now + 10 * MS >= deadline {
            return self.reply_client(client, call, Err("owner down, not restarted".into()));
        }
        self.at(
            self.now + 10 * MS,
            Ev::Call {
                slot,
                inc,
                client,
                call,
                name,
                id,
                deadline,
            },
        );
    }
}
