//! The schedule's operations: start, stop and drain requests through a node, as a `Horde`
//! handle makes them, and what their answers change in the world.

use std::time::Duration;

use horde::Rendezvous;
use horde::core::{Input, Reply, Request};

use super::{MS, NetMsg, Time, Token, World};

/// An operation of the schedule waiting for its answer.
#[derive(Debug)]
pub(crate) enum Op {
    Start {
        name: String,
    },
    Stop {
        name: String,
    },
    Drain {
        slot: usize,
        inc: u64,
        started: Time,
        exit: bool,
    },
}

impl World {
    /// Asks `slot` to start `name` (the handle's placement decides where).
    pub(crate) fn op_start(&mut self, slot: usize, name: &str) {
        self.next_op += 1;
        let op = self.next_op;
        self.ops.insert(op, Op::Start { name: name.into() });
        let Some(node) = self.nodes[slot].as_ref() else {
            return;
        };
        let view = node.core.view();
        let target = horde::Placement::place(&Rendezvous, name, &view.candidates(false));
        let inc = node.id.incarnation;
        match target {
            Some(t) if t == node.id => self.run_member(
                slot,
                inc,
                Input::Request(Request::Start {
                    name: name.into(),
                    spec: postcard::to_stdvec(&self.config.state_padding).unwrap_or_default(),
                    reply: Token::Op(op),
                }),
            ),
            Some(t) => {
                self.send_net(
                    slot,
                    &t,
                    NetMsg::StartChild {
                        name: name.into(),
                        op,
                    },
                );
            }
            None => {
                self.log(|| format!("start of {name} at slot {slot}: no member"));
            }
        }
    }

    /// Asks `slot` to stop `name` (the handle sends it to the owner its registry names).
    pub(crate) fn op_stop(&mut self, slot: usize, name: &str) {
        let Some(node) = self.nodes[slot].as_ref() else {
            return;
        };
        let Some(owner) = node.core.registry().get(name).map(|e| (*e.owner).clone()) else {
            return;
        };
        self.next_op += 1;
        let op = self.next_op;
        self.ops.insert(op, Op::Stop { name: name.into() });
        self.stop_asked.insert(name.into());
        let (inc, me) = (node.id.incarnation, node.id.clone());
        self.log(|| format!("stop of {name} asked at slot {slot} (owner {owner})"));
        if owner == me {
            self.run_member(
                slot,
                inc,
                Input::Request(Request::Stop {
                    name: name.into(),
                    reply: Token::Op(op),
                }),
            );
        } else {
            let name = name.into();
            self.send_net(slot, &owner, NetMsg::StopChild { name, op });
        }
    }

    /// Drains `slot` (SIGTERM when `exit`, the console's `drain` otherwise).
    pub(crate) fn op_drain(&mut self, slot: usize, exit: bool) {
        let Some(node) = self.nodes[slot].as_ref() else {
            return;
        };
        let inc = node.id.incarnation;
        self.next_op += 1;
        let op = self.next_op;
        self.ops.insert(
            op,
            Op::Drain {
                slot,
                inc,
                started: self.now,
                exit,
            },
        );
        let deadline = Duration::from_micros(self.config.drain_deadline);
        self.log(|| format!("slot {slot} drains (exit: {exit})"));
        self.run_member(
            slot,
            inc,
            Input::Request(Request::Drain {
                deadline,
                leave: exit,
                reply: Token::Op(op),
            }),
        );
    }

    pub(super) fn op_reply(&mut self, op: u64, reply: Reply) {
        let Some(o) = self.ops.remove(&op) else {
            return;
        };
        match (o, reply) {
            (Op::Start { name }, Reply::Started(r)) => {
                self.log(|| format!("start of {name}: {r:?}"));
                if r.is_ok() && !self.live_names.contains(&name) {
                    self.live_names.push(name);
                }
            }
            (Op::Stop { name }, Reply::Stopped(found)) => {
                self.log(|| format!("stop of {name}: {found}"));
                if found {
                    self.live_names.retain(|n| *n != name);
                    self.removed.entry(name).or_insert(self.now);
                }
            }
            (
                Op::Drain {
                    slot,
                    inc,
                    started,
                    exit,
                },
                Reply::Drained(report),
            ) => {
                let took = self.now - started;
                self.log(|| format!("slot {slot} drained in {} ms: {report:?}", took / MS));
                self.drains.push((slot, took));
                if exit && self.node(slot, inc).is_some() {
                    // The process exits: its sockets close.
                    self.crash(slot);
                }
            }
            _ => {}
        }
    }
}
