//! The network between nodes: sessions that are FIFO per direction with random delays and
//! stalls, held while a partition blocks their direction, every member message passing
//! through the codec as its receiver's release reads it; and how the trace describes them.

use discovery::NodeId;
use horde::core::child_core::ReplicaAnswer;
use horde::core::{Input, Request};
use horde::protocol::{Protocols, Route, Wire, encoded_len, wire_len};

use super::{Ev, MS, Token, World, chan};

/// A message between two nodes on a session.
#[derive(Debug, Clone)]
pub enum NetMsg {
    /// To the member core.
    Member(Wire),
    /// To the router (a call when `reply` is set).
    Route {
        /// The routed message.
        route: Route,
        /// Where the answer goes.
        reply: Option<Token>,
    },
    /// A handle's stop request to the member the registry names.
    StopChild {
        /// The name.
        name: String,
        /// The operation waiting for the answer.
        op: u64,
    },
    /// A handle's start request to the member placement chose.
    StartChild {
        /// The name.
        name: String,
        /// The operation waiting for the answer.
        op: u64,
    },
    /// A heartbeat (the connector's beacon ping).
    Ping {
        /// Its number.
        ping: u64,
    },
    /// Its answer.
    Pong {
        /// The ping's number.
        ping: u64,
    },
    /// The session was closed by the sender's end.
    Fin,
}

impl World {
    /// Sends on a given session, held while a partition blocks the direction.
    pub(super) fn send_on(
        &mut self,
        from: usize,
        to: usize,
        session: u64,
        to_inc: u64,
        msg: NetMsg,
    ) {
        self.check_size(from, to, &msg);
        if self.blocked.contains(&(from, to)) {
            self.held
                .entry((from, to))
                .or_default()
                .push_back((session, msg));
            return;
        }
        let delay = if self.config.stall_chance > 0.0 && self.rng.chance(self.config.stall_chance) {
            // A stall: retransmissions back off 200 ms, 400 ms, 800 ms ...; what follows in
            // this direction waits behind it (the channel is FIFO).
            let tries = self.rng.range(1, 6) as u32;
            let stall = (200 * MS * ((1 << tries) - 1)).min(self.config.stall_max);
            let stall = self.rng.range(stall / 2, stall + 1);
            self.log(|| format!("s{from} -> s{to}: stalls {} ms", stall / MS));
            stall
        } else if self.rng.chance(0.05) {
            self.rng.range(MS, 20 * MS)
        } else {
            self.rng.range(100, 800)
        };
        self.fifo_at(
            chan(from as u64, (1 << 32) | to as u64),
            delay,
            Ev::Net {
                slot: to,
                inc: to_inc,
                from,
                session,
                msg,
            },
        );
    }

    /// S5: a message over the budget would close the link in production (ractor_cluster
    /// refuses frames over its limit, and the budget is kept well under it).
    pub(super) fn check_size(&mut self, from: usize, to: usize, msg: &NetMsg) {
        let (bytes, kind) = match msg {
            NetMsg::Member(w) => (wire_len(w), w.kind()),
            // `Wire::Route` adds its variant's tag, one byte.
            NetMsg::Route { route, .. } => (encoded_len(route) + 1, "Route"),
            _ => return,
        };
        if bytes > self.check.largest_message.0 {
            self.check.largest_message = (bytes, kind);
        }
        if bytes > self.config.max_message_bytes {
            let v = format!(
                "S5: s{from} sent s{to} a {kind} of {bytes} bytes, over the {}-byte message budget (the link would close)",
                self.config.max_message_bytes
            );
            self.check.violate(v);
        }
    }

    /// Sends to a node (that incarnation) over the current session, if there is one.
    pub(super) fn send_net(&mut self, from: usize, to: &NodeId, msg: NetMsg) -> bool {
        let Some(node) = self.nodes[from].as_ref() else {
            return false;
        };
        let Some((peer, session)) = self.link_to(from, to) else {
            return false;
        };
        let accepts = matches!(&msg, NetMsg::Member(Wire::OfferReply { accepted, .. }) if !accepted.is_empty());
        let inc = node.id.incarnation;
        self.send_on(from, peer, session, to.incarnation, msg);
        if accepts && std::mem::take(&mut self.crash_on_accept) {
            let d = self.rng.range(0, 5 * MS);
            self.log(|| format!("s{from} accepted children: it crashes in {d} us"));
            self.at(self.now + d, Ev::Kill { slot: from, inc });
        }
        true
    }

    pub(super) fn on_net(&mut self, slot: usize, inc: u64, from: usize, session: u64, msg: NetMsg) {
        let Some(node) = self.node_mut(slot, inc) else {
            return;
        };
        if !node.links.contains_key(&session) {
            // A closed link: its bytes go nowhere.
            return;
        }
        if self.on_link_msg(slot, inc, from, session, &msg) {
            return;
        }
        let Some(node) = self.node_mut(slot, inc) else {
            return;
        };
        match msg {
            NetMsg::Ping { .. } | NetMsg::Pong { .. } | NetMsg::Fin => {}
            NetMsg::Member(Wire::ReplicaAck {
                from,
                name,
                epoch,
                seq,
            }) => self.answer_child(slot, inc, &name, ReplicaAnswer::Ack { from, epoch, seq }),
            NetMsg::Member(Wire::ReplicaNack {
                from,
                name,
                epoch,
                why,
            }) => self.answer_child(slot, inc, &name, ReplicaAnswer::Nack { from, epoch, why }),
            NetMsg::Member(wire) => {
                let speaks = node.protocols;
                if wire.needs() > speaks.max {
                    let v = format!(
                        "S7: s{from} sent s{slot} (protocol {speaks}) a {} that needs protocol {}",
                        wire.kind(),
                        wire.needs()
                    );
                    self.check.violate(v);
                }
                // Through the codec, as the receiver's release decodes it: the fields a newer
                // protocol appended are not read by an older one.
                let kind = wire.kind();
                let decoded = horde::protocol::encode_wire(&wire)
                    .map_err(|e| e.to_string())
                    .and_then(|env| {
                        horde::protocol::decode_wire(&env).map_err(|u| u.error.to_string())
                    });
                match decoded {
                    Ok(back) if back == wire => {
                        self.run_member(slot, inc, Input::Peer(read_as(back, speaks)))
                    }
                    other => {
                        let v = format!(
                            "codec: a {kind} from s{from} does not decode as sent: {other:?}"
                        );
                        self.check.violate(v);
                    }
                }
            }
            NetMsg::Route { route, reply } => self.route(slot, inc, route, reply),
            NetMsg::StopChild { name, op } => self.run_member(
                slot,
                inc,
                Input::Request(Request::Stop {
                    name,
                    reply: Token::Op(op),
                }),
            ),
            NetMsg::StartChild { name, op } => self.run_member(
                slot,
                inc,
                Input::Request(Request::Start {
                    name,
                    spec: postcard::to_stdvec(&self.config.state_padding).unwrap_or_default(),
                    reply: Token::Op(op),
                }),
            ),
        }
    }
}

/// Periodic messages that say nothing new (left out of the trace).
pub(super) fn chatty(w: &Wire) -> bool {
    match w {
        Wire::Lease { votes, .. } => votes.is_empty(),
        Wire::LeaseGrant { .. } | Wire::Digest { .. } | Wire::DeltaAck { .. } => true,
        _ => false,
    }
}

/// A short description of a member message for the trace.
pub(super) fn describe(w: &Wire) -> String {
    match w {
        Wire::Hello(h) => format!("Hello({}, {})", h.status, h.seq),
        Wire::Reintroduce(h) => format!("Reintroduce({}, {})", h.status, h.seq),
        Wire::Sync { entries, done, .. } => {
            format!("Sync({} entries, done: {done})", entries.len())
        }
        Wire::Deltas { batch, entries, .. } => format!(
            "Deltas#{batch}({})",
            entries
                .iter()
                .map(|e| format!("{}@{}{}", e.name, e.epoch, if e.removed { "†" } else { "" }))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Wire::DeltaAck { batch, .. } => format!("DeltaAck#{batch}"),
        Wire::FetchReplicas { id, names, .. } => format!("FetchReplicas#{id}({})", names.join(" ")),
        Wire::Handover { items, .. } | Wire::ReplicasFound { items, .. } => format!(
            "{}({})",
            w.kind(),
            items
                .iter()
                .map(|r| format!("{}@{}/{}", r.name, r.epoch, r.seq))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Wire::Collect { entries, .. } | Wire::Entries { entries, .. } => format!(
            "{}({})",
            w.kind(),
            entries
                .iter()
                .map(|e| format!("{}@{}{}", e.name, e.epoch, if e.removed { "†" } else { "" }))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Wire::Offer { id, items, .. } => format!(
            "Offer#{id}({})",
            items
                .iter()
                .map(|i| format!("{}@{}", i.name, i.epoch))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Wire::OfferReply {
            id,
            accepted,
            refused,
            ..
        } => format!("OfferReply#{id}(+{} -{})", accepted.len(), refused.len()),
        Wire::Abort { names } => format!("Abort({})", names.len()),
        Wire::Replicate(r) => format!("Replicate({}@{}/{})", r.name, r.epoch, r.seq),
        Wire::ReplicaAck {
            name, epoch, seq, ..
        } => format!("ReplicaAck({name}@{epoch}/{seq})"),
        Wire::ReplicaNack {
            name, epoch, why, ..
        } => format!("ReplicaNack({name}@{epoch} {why:?})"),
        Wire::Lease { round, votes, .. } => format!("Lease#{round}(votes {votes:?})"),
        other => other.kind().to_string(),
    }
}

/// `wire` as a member speaking `speaks` reads it: what a newer protocol appended after a
/// message is invisible to a reader of an older one.
fn read_as(mut wire: Wire, speaks: Protocols) -> Wire {
    if speaks.max >= horde::protocol::PROTOCOL {
        return wire;
    }
    match &mut wire {
        Wire::Hello(h) | Wire::Reintroduce(h) => h.max_protocol = None,
        Wire::Offer { frozen_us, .. } => frozen_us.clear(),
        Wire::ReplicasFound { members, .. } => *members = None,
        _ => {}
    }
    wire
}
