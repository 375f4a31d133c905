//! The hosted children's shells: each child's core runs with its node's clock and lease, and
//! the world carries out its effects (replies, forwards, timers, events, replication).

use std::sync::Arc;

use horde::core::child_core::{
    Answer, Body, ChildEffect, ChildEnv, ChildInput, Envelope, ReplicaAnswer,
};
use horde::core::{ChildCmd, Input};
use horde::protocol::{Route, RouteBody, Wire};

use super::{Ev, NetMsg, Time, Token, World, chan, connector};
use crate::log::{Hosted, Log, LogMsg};

/// A hosted child instance.
pub(crate) struct Instance {
    pub slot: usize,
    pub inc: u64,
    pub name: Arc<str>,
    pub epoch: u64,
    pub core: Box<dyn Hosted>,
    pub alive: bool,
}

impl World {
    /// A fresh child name.
    /// Every fourth is a log that is not replicated (`u…`): only the one-owner promise holds
    /// for it.
    pub(crate) fn new_child_name(&mut self) -> String {
        self.next_child += 1;
        let kind = if self.next_child.is_multiple_of(4) {
            "u"
        } else {
            "g"
        };
        format!("{kind}{}", self.next_child)
    }

    pub(super) fn run_child(
        &mut self,
        slot: usize,
        inc: u64,
        instance: u64,
        input: ChildInput<LogMsg, Token>,
    ) {
        let (t, lease) = match self.node(slot, inc) {
            Some(n) => {
                let t = n.local(self.now);
                (t, n.core.lease_valid(t))
            }
            None => return,
        };
        let Some(inst) = self.instances.get_mut(&instance) else {
            return;
        };
        if !inst.alive {
            return;
        }
        let env = ChildEnv {
            lease,
            is_live: &|_| true,
            max_message_bytes: self.config.max_message_bytes,
        };
        let effects = inst.core.on(t, input, &env);
        for e in effects {
            self.child_effect(slot, inc, instance, e);
        }
    }

    pub(super) fn child_effect(
        &mut self,
        slot: usize,
        inc: u64,
        instance: u64,
        effect: ChildEffect<Log<1>, Token>,
    ) {
        match effect {
            ChildEffect::Reply { to, answer } => {
                if let (Token::Sub(sink), Answer::Done) = (&to, &answer)
                    && let Some(s) = self.subs.get_mut(sink)
                {
                    s.confirmed.get_or_insert(self.now);
                    return;
                }
                let Token::Call { client, call } = to else {
                    return;
                };
                let result = match answer {
                    Answer::Reply(r) => {
                        self.on_ack(slot, instance, r);
                        Ok(r)
                    }
                    Answer::Done => Err("no reply".into()),
                    Answer::Failed(why) => Err(why.to_string()),
                };
                self.reply_client(client, call, result);
            }
            ChildEffect::Forward { to, msg } => {
                let Some(name) = self.instances.get(&instance).map(|i| i.name.to_string()) else {
                    return;
                };
                let body = match msg.body {
                    Body::Typed(m) => RouteBody::User(postcard::to_stdvec(&m).unwrap_or_default()),
                    Body::Routed(b) => b,
                };
                let route = Route {
                    name,
                    hops: msg.hops,
                    body,
                };
                if !self.send_net(
                    slot,
                    &to,
                    NetMsg::Route {
                        route,
                        reply: msg.reply.clone(),
                    },
                ) && let Some(Token::Call { client, call }) = msg.reply
                {
                    self.reply_client(client, call, Err("new owner unreachable".into()));
                }
            }
            ChildEffect::SetTimer { after, generation } => {
                self.log(|| format!("#{instance} sets timer {generation} in {after:?}"));
                self.at(
                    self.now + after.as_micros() as Time,
                    Ev::Child {
                        slot,
                        inc,
                        instance,
                        input: ChildInput::Timer { generation },
                    },
                );
            }
            ChildEffect::Deliver { seq, event, to } => {
                for sub in &to {
                    let running = self
                        .names
                        .iter()
                        .position(|n| n == connector::short(&sub.node.name))
                        .and_then(|slot| self.node(slot, sub.node.incarnation))
                        .is_some();
                    if let Some(s) = self.subs.get_mut(&sub.sink)
                        && running
                    {
                        s.received += 1;
                    }
                }
                if let Some(inst) = self.instances.get(&instance) {
                    let name = inst.name.clone();
                    let node = self.names.get(slot).cloned().unwrap_or_default();
                    self.log(|| {
                        format!(
                            "{name}#{instance} on {node} emits event {seq} ({}, {})",
                            event.id, event.len
                        )
                    });
                    self.check.event(&name, instance, seq, event);
                }
            }
            ChildEffect::Replicate { to, replica } => {
                self.send_net(slot, &to, NetMsg::Member(Wire::Replicate(replica)));
            }
            ChildEffect::Report(report) => {
                let Some(name) = self.instances.get(&instance).map(|i| i.name.clone()) else {
                    return;
                };
                let d = self.rng.range(1, 60);
                self.fifo_at(
                    chan((3 << 32) | instance, slot as u64),
                    d,
                    Ev::Member {
                        slot,
                        inc,
                        input: Input::Child { name, report },
                    },
                );
            }
            ChildEffect::Paused(_) | ChildEffect::Forwarded(_) | ChildEffect::HandedOff { .. } => {}
            ChildEffect::Stop => {
                if let Some(inst) = self.instances.get_mut(&instance) {
                    inst.alive = false;
                    let name = inst.name.clone();
                    if let Some(node) = self.node_mut(slot, inc)
                        && node.actors.get(&name) == Some(&instance)
                    {
                        node.actors.remove(&name);
                    }
                }
            }
            ChildEffect::StopAfter(d) => {
                self.at(
                    self.now + d.as_micros() as Time,
                    Ev::Child {
                        slot,
                        inc,
                        instance,
                        input: ChildInput::Cmd(ChildCmd::Stop { report: false }),
                    },
                );
            }
        }
    }

    /// A backup's answer, for the child it is about (serving or arriving).
    pub(super) fn answer_child(
        &mut self,
        slot: usize,
        inc: u64,
        name: &str,
        answer: ReplicaAnswer,
    ) {
        let Some(instance) = self
            .node(slot, inc)
            .and_then(|n| n.routes.get(name).map(|(i, _)| *i))
        else {
            return;
        };
        let d = self.rng.range(1, 60);
        self.fifo_at(
            chan((4 << 32) | slot as u64, instance),
            d,
            Ev::Child {
                slot,
                inc,
                instance,
                input: ChildInput::Replica(answer),
            },
        );
    }

    /// A message for a child of node `slot` (run `inc`), delivered in order on the node's
    /// `lane` towards that child after a random delay.
    pub(super) fn message_to_child(
        &mut self,
        lane: u64,
        slot: usize,
        inc: u64,
        instance: u64,
        envelope: Envelope<LogMsg, Token>,
    ) {
        let d = self.rng.range(1, 60);
        self.fifo_at(
            chan((lane << 32) | slot as u64, instance),
            d,
            Ev::Child {
                slot,
                inc,
                instance,
                input: ChildInput::Message(envelope),
            },
        );
    }
}
