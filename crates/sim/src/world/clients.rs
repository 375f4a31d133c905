//! The world's clients: each writes inputs with ids to a random running node, one at a time,
//! retries an unanswered one with the same id, and now and then subscribes to a name.

use discovery::NodeId;
use horde::protocol::{Route, RouteBody};

use super::{Ev, MS, Time, Token, World};
use crate::log::LogReply;

/// A subscription a client made through a node: that node's sink gets the name's events.
#[derive(Debug, Clone)]
pub(crate) struct Sub {
    pub name: String,
    pub slot: usize,
    pub node: NodeId,
    /// The child answered it (from then on its subscriber list holds it, wherever it runs).
    pub confirmed: Option<Time>,
    /// Events its sink received.
    pub received: u64,
}

/// A client's call in flight.
#[derive(Debug, Clone)]
pub(super) struct Inflight {
    pub(super) call: u64,
    pub(super) name: String,
    pub(super) id: u64,
    /// The node the call went to (slot, incarnation): its connection closes if that node
    /// dies, and the client retries at once (no timeout to wait for).
    pub(super) via: Option<(usize, u64)>,
}

#[derive(Debug, Default)]
pub(super) struct Client {
    pub(super) inflight: Option<Inflight>,
    pub(super) next_id: u64,
    pub(super) acked: u64,
    pub(super) stopped: bool,
}

impl World {
    /// Adds `count` clients that write to the started names until [`World::stop_clients`].
    pub(crate) fn add_clients(&mut self, count: usize) {
        for _ in 0..count {
            let c = self.clients.len();
            self.clients.push(Client {
                next_id: (c as u64 + 1) << 32,
                ..Client::default()
            });
            let d = self.rng.range(0, 100 * MS);
            self.at(self.now + d, Ev::ClientNext { client: c });
        }
    }

    /// Clients stop starting new inputs (those in flight are retried until answered).
    pub(crate) fn stop_clients(&mut self) {
        for c in &mut self.clients {
            c.stopped = true;
        }
    }

    /// Inputs still unanswered.
    pub(crate) fn inflight(&self) -> Vec<(String, u64)> {
        self.clients
            .iter()
            .filter_map(|c| c.inflight.as_ref().map(|i| (i.name.clone(), i.id)))
            .collect()
    }

    /// Inputs answered.
    pub(crate) fn acked_count(&self) -> u64 {
        self.clients.iter().map(|c| c.acked).sum()
    }

    pub(super) fn client_next(&mut self, client: usize) {
        if client >= self.clients.len() || self.client_resend_if_due(client) {
            return;
        }
        let c = &self.clients[client];
        if c.inflight.is_some() {
            return;
        }
        if c.stopped || self.live_names.is_empty() {
            if !c.stopped {
                self.at(self.now + 100 * MS, Ev::ClientNext { client });
            }
            return;
        }
        // Now and then a name whose stop was asked: it must answer "not found" once the stop
        // was confirmed, never an input (S6, checked on every answer).
        let stopped: Vec<String> = if self.rng.chance(0.03) {
            self.stop_asked.iter().cloned().collect()
        } else {
            Vec::new()
        };
        let name = match self
            .rng
            .pick(&stopped)
            .or_else(|| self.rng.pick(&self.live_names))
        {
            Some(n) => n.clone(),
            None => return,
        };
        // Now and then the client subscribes to the name through a node (a WebSocket): the
        // node's sink gets its events, wherever the child moves.
        if self.rng.chance(0.02) {
            let slots = self.up_slots();
            if let Some(slot) = self.rng.pick(&slots).copied() {
                self.subscribe(slot, name.clone());
            }
        }
        let c = &mut self.clients[client];
        c.next_id += 1;
        let id = c.next_id;
        c.inflight = Some(Inflight {
            call: 0,
            name,
            id,
            via: None,
        });
        self.client_send(client);
    }

    /// A subscription to `name` through node `slot`.
    pub(super) fn subscribe(&mut self, slot: usize, name: String) {
        let Some(node) = self.nodes.get(slot).and_then(Option::as_ref) else {
            return;
        };
        let (id, inc) = (node.id.clone(), node.id.incarnation);
        let sink = self.subs.len() as u64 + 1;
        self.log(|| format!("{id} subscribes sink {sink} to {name}"));
        self.subs.insert(
            sink,
            Sub {
                name: name.clone(),
                slot,
                node: id.clone(),
                confirmed: None,
                received: 0,
            },
        );
        let route = Route {
            name,
            hops: 0,
            body: RouteBody::Subscribe(horde::protocol::Subscriber { node: id, sink }),
        };
        self.route(slot, inc, route, Some(Token::Sub(sink)));
    }

    pub(super) fn client_send(&mut self, client: usize) {
        let slots = self.up_slots();
        let slot = self.rng.pick(&slots).copied();
        let call = self.rng.next_u64();
        let Some(inf) = self.clients[client].inflight.as_mut() else {
            return;
        };
        inf.call = call;
        let (name, id) = (inf.name.clone(), inf.id);
        let timeout = self.config.client_timeout;
        self.at(self.now + timeout, Ev::ClientTimeout { client, call });
        let Some(slot) = slot else {
            return;
        };
        let inc = self.nodes[slot]
            .as_ref()
            .map(|n| n.id.incarnation)
            .unwrap_or(0);
        if let Some(inf) = self.clients[client].inflight.as_mut() {
            inf.via = Some((slot, inc));
        }
        let d = self.rng.range(100, 400);
        let deadline = self.now + timeout;
        self.at(
            self.now + d,
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

    pub(super) fn reply_client(
        &mut self,
        client: usize,
        call: u64,
        result: Result<LogReply, String>,
    ) {
        let d = self.rng.range(100, 400);
        self.at(
            self.now + d,
            Ev::ClientReply {
                client,
                call,
                result,
            },
        );
    }

    pub(super) fn client_result(
        &mut self,
        client: usize,
        call: u64,
        result: Result<LogReply, String>,
    ) {
        let Some(c) = self.clients.get_mut(client) else {
            return;
        };
        let Some(inf) = c.inflight.as_ref().filter(|i| i.call == call) else {
            return;
        };
        match result {
            Ok(r) => {
                let (name, id) = (inf.name.clone(), inf.id);
                c.inflight = None;
                c.acked += 1;
                debug_assert_eq!(r.id, id);
                self.check
                    .client_acked(&name, id, (!r.dup).then_some(r.len));
                let think = self.rng.range(5 * MS, 150 * MS);
                self.at(self.now + think, Ev::ClientNext { client });
            }
            Err(why) if why == "not found" && self.stop_asked.contains(&inf.name) => {
                // Its name was removed: nothing will answer it (not an input to keep).
                c.inflight = None;
                let think = self.rng.range(5 * MS, 150 * MS);
                self.at(self.now + think, Ev::ClientNext { client });
            }
            Err(_) => {
                // Same id, to a node picked again, after a pause: `ClientNext` resends an
                // input whose call number was cleared.
                if let Some(inf) = c.inflight.as_mut() {
                    inf.call = 0;
                }
                let pause = self.rng.range(20 * MS, 80 * MS);
                self.at(self.now + pause, Ev::ClientNext { client });
            }
        }
    }
}

impl World {
    /// Resends an input whose last attempt failed (its call number was cleared).
    pub(crate) fn client_resend_if_due(&mut self, client: usize) -> bool {
        let due = self.clients[client]
            .inflight
            .as_ref()
            .is_some_and(|i| i.call == 0);
        if due {
            self.client_send(client);
        }
        due
    }
}
