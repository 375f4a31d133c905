//! Which addresses to dial and when: discovered peers, peers that connected nodes reported
//! (the full mesh), backoff, and the first-dial election delay.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::debug;

use super::{Dial, LinkEffect, LinkHandle, LinkTable};
use crate::Peer;
use crate::connector::backoff;
use crate::connector::beacon::{MAX_MESH_PEERS, Mesh, MeshPeer};

impl<L: LinkHandle> LinkTable<L> {
    /// The jittered wait before redial number `attempt` (0 = the first after a success).
    fn backoff(&mut self, attempt: u32) -> Duration {
        let jitter = self.rng.unit();
        backoff::delay(
            attempt,
            self.config.backoff_min,
            self.config.backoff_max,
            jitter,
        )
    }

    /// When both nodes may dial each other at the same moment, the one whose name sorts first
    /// waits: ractor_cluster keeps the link dialled by the node whose name sorts last, so the
    /// other side's link would only be elected away.
    fn yield_delay(&mut self, peer: &str) -> Duration {
        if peer > self.config.node.name.as_str() {
            self.config.first_dial_delay.mul_f64(1.0 + self.rng.unit())
        } else {
            Duration::ZERO
        }
    }

    /// Keeps a dial entry for every discovered peer and every peer a connected node reported,
    /// and drops the others (their links stay up: only redials stop).
    pub(super) fn sync_dials(&mut self, now: Instant) {
        let own = self.config.listen;
        let own_name = &self.config.node.name;
        let advertised = self.config.advertised;
        let learned = self
            .nodes
            .iter()
            .flat_map(|(from, e)| e.mesh.iter().map(move |p| (p, Some(from))));
        let mut wanted: BTreeMap<SocketAddr, (Peer, Option<String>)> = BTreeMap::new();
        for (p, from) in self.discovered.iter().map(|p| (p, None)).chain(learned) {
            if p.addr == own
                || Some(p.addr) == advertised
                || p.name.to_string() == *own_name
                || self.self_addrs.contains(&p.addr)
            {
                continue;
            }
            wanted
                .entry(p.addr)
                .or_insert_with(|| (p.clone(), from.cloned()));
        }
        self.dials.retain(|addr, _| wanted.contains_key(addr));
        for (addr, (peer, from)) in wanted {
            if self.dials.contains_key(&addr) {
                continue;
            }
            match from {
                None => debug!(peer = %peer, "peer discovered"),
                Some(from) => {
                    debug!(peer = %peer, via = %from, "peer learned from a connected node")
                }
            }
            // ractor_cluster keeps the link dialled by the node whose name sorts last; the
            // other side waits a little so that both rarely dial at once.
            let next_at = now + self.yield_delay(&peer.name.to_string());
            self.dials.insert(
                addr,
                Dial {
                    peer,
                    attempts: 0,
                    next_at,
                    in_flight: false,
                },
            );
        }
    }

    /// True when `dial` needs no dialling: connected already, or cut off by `partition`.
    fn is_connected(&self, dial: &Dial, addr: &SocketAddr) -> bool {
        let name = dial.peer.name.to_string();
        self.blocked.contains(&name)
            || self.nodes.contains_key(&name)
            || self
                .addr_owner
                .get(addr)
                .is_some_and(|n| self.nodes.contains_key(n))
    }

    pub(super) fn dial_due(&mut self, now: Instant) {
        let due: Vec<SocketAddr> = self
            .dials
            .iter()
            .filter(|(addr, d)| !d.in_flight && d.next_at <= now && !self.is_connected(d, addr))
            .map(|(a, _)| *a)
            .collect();
        for addr in due {
            let Some(attempts) = self.dials.get(&addr).map(|d| d.attempts) else {
                continue;
            };
            // Whatever comes of it, the next attempt waits; a success resets the count.
            let wait = self.backoff(attempts);
            let Some(dial) = self.dials.get_mut(&addr) else {
                continue;
            };
            dial.in_flight = true;
            dial.next_at = now + wait;
            dial.attempts = dial.attempts.saturating_add(1);
            debug!(peer = %dial.peer, attempt = dial.attempts, "dialling");
            self.out.push(LinkEffect::Dial { addr });
        }
    }

    pub(super) fn on_dial_done(&mut self, addr: SocketAddr, error: Option<String>) {
        if let Some(dial) = self.dials.get_mut(&addr) {
            dial.in_flight = false;
            if let Some(error) = error {
                // Expected while a peer starts or after it left: debug, not warn.
                debug!(peer = %dial.peer, %error, attempts = dial.attempts, "dial failed");
            }
        }
    }

    /// A node just went down (or was healed): if it is still wanted, try it again after a
    /// short, jittered delay rather than the backoff accumulated while it was up.
    pub(super) fn redial_soon(&mut self, now: Instant, name: &str) {
        let matching: Vec<SocketAddr> = self
            .dials
            .iter()
            .filter(|(addr, dial)| {
                dial.peer.name.to_string() == name
                    || self.addr_owner.get(addr).map(String::as_str) == Some(name)
            })
            .map(|(a, _)| *a)
            .collect();
        for addr in matching {
            let wait = self.backoff(0) + self.yield_delay(name);
            if let Some(dial) = self.dials.get_mut(&addr) {
                dial.attempts = 0;
                dial.next_at = now + wait;
            }
        }
    }

    /// A node's link became ready: its dials start their backoff afresh.
    pub(super) fn reset_backoff(&mut self, name: &str) {
        for dial in self.dials.values_mut() {
            if dial.peer.name.to_string() == name
                || self.addr_owner.get(&dial.peer.addr).map(String::as_str) == Some(name)
            {
                dial.attempts = 0;
            }
        }
    }

    /// Publishes, for the beacon, this node and every connected node whose address is known.
    pub(super) fn publish_mesh(&mut self) {
        let mut peers: Vec<MeshPeer> = self.own.iter().cloned().collect();
        for (name, entry) in &self.nodes {
            let addr = entry.advertised.or_else(|| {
                self.addr_owner
                    .iter()
                    .find(|(_, n)| *n == name)
                    .map(|(a, _)| *a)
            });
            if let Some(addr) = addr {
                peers.push(MeshPeer {
                    name: name.clone(),
                    addr,
                });
            }
        }
        let mesh = Mesh::new(peers);
        if mesh.digest != self.mesh.digest {
            self.mesh = mesh.clone();
            self.out.push(LinkEffect::PublishMesh(mesh));
        }
    }

    /// A connected node told us which nodes it is connected to.
    pub(super) fn on_mesh(&mut self, now: Instant, from: &str, digest: u64, peers: Vec<MeshPeer>) {
        let mut advertised = None;
        let mut learned = Vec::new();
        for p in peers.into_iter().take(MAX_MESH_PEERS) {
            if p.name == from {
                advertised = Some(p.addr);
                continue;
            }
            match p.name.parse::<crate::NodeName>() {
                Ok(name) => learned.push(Peer { name, addr: p.addr }),
                Err(error) => debug!(node = %from, %error, "ignoring a malformed mesh entry"),
            }
        }
        let Some(entry) = self.nodes.get_mut(from) else {
            return;
        };
        entry.mesh_digest = digest;
        entry.mesh = learned;
        let moved = entry.advertised != advertised;
        entry.advertised = advertised;
        if moved {
            self.publish_mesh();
        }
        self.sync_dials(now);
    }
}
