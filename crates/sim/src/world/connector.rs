//! The connector in the simulation: each node's links are decided by discovery's own
//! [`LinkTable`] (the sans-IO core the production connector actor drives), not by a model of
//! it. The world is only its driver, as `discovery/src/connector/actor.rs` is in production:
//! it dials (a handshake over the simulated network), reports each link's session steps,
//! carries heartbeats over the link as messages (delayed, stalled, held by partitions like
//! any other) and answers their outcome, closes links, and hands `Up`/`Down` to the member
//! core. Links are plain integers; every node listens at `10.0.x.y:9000` and knows every
//! other node's address (static discovery).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use discovery::connector::link_table::{
    LinkConfig, LinkEffect, LinkInput, LinkTable, SessionInfo, SessionStep,
};
use discovery::{ConnectorConfig, NodeId, NodeName, Peer, PeerSet};
use horde::core::Input;

use super::{Ev, Life, MS, NetMsg, SEC, Time, World};

/// The port every simulated node listens on.
const PORT: u16 = 9000;

/// Where slot `slot` listens.
pub(crate) fn addr_of(slot: usize) -> SocketAddr {
    let n = slot as u32 + 1;
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(10, 0, (n >> 8) as u8, (n & 0xff) as u8)),
        PORT,
    )
}

/// The node name of slot `slot` called `name` in the schedule (`n1@10.0.0.1`): the connector
/// takes only names with a host for nodes.
pub(crate) fn node_name(name: &str, slot: usize) -> String {
    format!("{name}@{}", addr_of(slot).ip())
}

/// The schedule's name of a node name (`n1` of `n1@10.0.0.1`).
pub(crate) fn short(name: &str) -> &str {
    name.split_once('@').map_or(name, |(n, _)| n)
}

/// A node's link table, configured as the production connector configures it, with the
/// world's heartbeat and failure timeout.
pub(crate) fn table_for(
    id: &NodeId,
    slot: usize,
    heartbeat: Time,
    failure_timeout: Time,
    seed: u64,
) -> LinkTable<u64> {
    let mut c = ConnectorConfig::new(id.clone(), "sim", addr_of(slot).ip(), PORT);
    c.heartbeat_interval = Duration::from_micros(heartbeat);
    c.failure_timeout = Duration::from_micros(failure_timeout);
    LinkTable::new(LinkConfig::new(&c), seed)
}

impl World {
    /// Every other slot's address, as static discovery publishes it.
    fn peers_of(&self, slot: usize) -> PeerSet {
        let mut set = PeerSet::new();
        for (other, name) in self.names.iter().enumerate() {
            if other == slot {
                continue;
            }
            if let Ok(n) = NodeName::parse(&node_name(name, other)) {
                set.insert(Peer {
                    name: n,
                    addr: addr_of(other),
                });
            }
        }
        set
    }

    /// Tells every running node's table the peers it should know (after a new name).
    pub(crate) fn publish_peers(&mut self) {
        let running: Vec<(usize, u64)> = self
            .nodes
            .iter()
            .flatten()
            .map(|n| (n.slot, n.id.incarnation))
            .collect();
        for (slot, inc) in running {
            let peers = self.peers_of(slot);
            self.link_input(slot, inc, LinkInput::Peers(peers));
        }
    }

    /// Feeds one input to a node's link table and carries out what it decides.
    pub(crate) fn link_input(&mut self, slot: usize, inc: u64, input: LinkInput<u64>) {
        let now = self.now;
        let Some(node) = self.node_mut(slot, inc) else {
            return;
        };
        let t = node.local(now);
        let effects = node.table.on(t, input);
        for e in effects {
            self.link_effect(slot, inc, e);
        }
    }

    fn link_effect(&mut self, slot: usize, inc: u64, effect: LinkEffect<u64>) {
        match effect {
            LinkEffect::Dial { addr } => self.dial(slot, inc, addr),
            LinkEffect::Close { link, reason } => {
                let me = self.node(slot, inc).map(|n| n.id.clone());
                if let Some(me) = me {
                    self.log(|| format!("{me} closes link {link} ({reason})"));
                }
                self.break_link(slot, inc, link);
            }
            LinkEffect::Heartbeat {
                node: id,
                link,
                timeout,
                ..
            } => {
                let Some(node) = self.node_mut(slot, inc) else {
                    return;
                };
                let Some(&(peer, peer_inc)) = node.links.get(&link) else {
                    self.link_input(slot, inc, LinkInput::PingFailed { name: id.name });
                    return;
                };
                self.next_session += 1;
                let ping = self.next_session;
                let now = self.now;
                if let Some(node) = self.node_mut(slot, inc) {
                    node.pings.insert(ping, (id, now));
                }
                self.send_on(slot, peer, link, peer_inc, NetMsg::Ping { ping });
                self.at(
                    now + timeout.as_micros() as Time,
                    Ev::PingTimeout { slot, inc, ping },
                );
            }
            LinkEffect::Up { id, .. } => {
                let me = self.node(slot, inc).map(|n| n.id.clone());
                if let Some(me) = me {
                    self.log(|| format!("{me} up with {id}"));
                }
                self.run_member(slot, inc, Input::NodeUp(id.clone()));
                self.run_member(slot, inc, Input::PeerReady(id));
            }
            LinkEffect::Down { id, reason } => {
                let me = self.node(slot, inc).map(|n| n.id.clone());
                if let Some(me) = me {
                    self.log(|| format!("{me} down with {id} ({reason:?})"));
                }
                self.run_member(slot, inc, Input::NodeDown { id, reason });
            }
            LinkEffect::PublishMesh(_) => {}
        }
    }

    /// What the endpoint of `slot`'s node tells of a link to `peer`.
    fn session_info(&self, peer: usize, is_server: bool) -> SessionInfo {
        let name = self.nodes[peer].as_ref().map(|n| n.id.ractor_name());
        let addr = addr_of(peer);
        SessionInfo {
            peer_name: name,
            is_server,
            peer_addr: if is_server {
                // A dialling node's ephemeral port.
                format!("{}:{}", addr.ip(), 40000 + peer)
            } else {
                addr.to_string()
            },
        }
    }

    /// A dial: the handshake completes after a round trip or two when the target runs and
    /// the network lets it through; else the dial fails (refused at once, or after a while
    /// when a partition swallows the SYN).
    fn dial(&mut self, a: usize, a_inc: u64, addr: SocketAddr) {
        let now = self.now;
        let b = (0..self.names.len()).find(|s| addr_of(*s) == addr);
        let reachable =
            b.is_some_and(|b| !self.blocked.contains(&(a, b)) && !self.blocked.contains(&(b, a)));
        let target = b.and_then(|b| {
            self.nodes[b]
                .as_ref()
                .filter(|n| n.life == Life::Running)
                .map(|n| (b, n.id.incarnation))
        });
        match (reachable, target) {
            (true, Some((b, b_inc))) => {
                self.next_session += 1;
                let link = self.next_session;
                let rtt = self.rng.range(300, 3 * MS);
                self.at(
                    now + rtt,
                    Ev::Establish {
                        a,
                        a_inc,
                        b,
                        b_inc,
                        link,
                    },
                );
            }
            _ => {
                let wait = if reachable {
                    self.rng.range(200, 2 * MS)
                } else {
                    SEC
                };
                self.at(
                    now + wait,
                    Ev::DialFailed {
                        slot: a,
                        inc: a_inc,
                        addr,
                    },
                );
            }
        }
    }

    pub(crate) fn dial_failed(&mut self, slot: usize, inc: u64, addr: SocketAddr) {
        self.link_input(
            slot,
            inc,
            LinkInput::DialDone {
                addr,
                error: Some("connection refused".into()),
            },
        );
    }

    /// The handshake of link `link` completes at both ends (if both still run and the
    /// network still lets it through).
    pub(crate) fn on_establish(&mut self, a: usize, a_inc: u64, b: usize, b_inc: u64, link: u64) {
        let running = |w: &World, s, i| w.node(s, i).is_some_and(|n| n.life == Life::Running);
        let open = running(self, a, a_inc)
            && running(self, b, b_inc)
            && !self.blocked.contains(&(a, b))
            && !self.blocked.contains(&(b, a));
        if !open {
            self.dial_failed(a, a_inc, addr_of(b));
            return;
        }
        self.link_input(
            a,
            a_inc,
            LinkInput::DialDone {
                addr: addr_of(b),
                error: None,
            },
        );
        for (x, x_inc, y, y_inc, server) in
            [(b, b_inc, a, a_inc, true), (a, a_inc, b, b_inc, false)]
        {
            let Some(node) = self.node_mut(x, x_inc) else {
                continue;
            };
            node.links.insert(link, (y, y_inc));
            let info = self.session_info(y, server);
            for step in [
                SessionStep::Opened,
                SessionStep::Authenticated,
                SessionStep::Ready,
            ] {
                if !self
                    .node(x, x_inc)
                    .is_some_and(|n| n.links.contains_key(&link))
                {
                    // Closed meanwhile by the table (an election, a stale incarnation).
                    break;
                }
                self.link_input(
                    x,
                    x_inc,
                    LinkInput::Session {
                        step,
                        link,
                        info: info.clone(),
                    },
                );
            }
        }
    }

    /// What arrives on a link the connector handles itself: heartbeats and closes. `false`
    /// when the message is for the node's actors.
    pub(crate) fn on_link_msg(
        &mut self,
        slot: usize,
        inc: u64,
        from: usize,
        link: u64,
        msg: &NetMsg,
    ) -> bool {
        match msg {
            NetMsg::Ping { ping } => {
                let peer_inc = self
                    .node(slot, inc)
                    .and_then(|n| n.links.get(&link))
                    .map(|(_, i)| *i)
                    .unwrap_or(0);
                self.send_on(slot, from, link, peer_inc, NetMsg::Pong { ping: *ping });
            }
            NetMsg::Pong { ping } => {
                let now = self.now;
                let Some(node) = self.node_mut(slot, inc) else {
                    return true;
                };
                if let Some((id, sent)) = node.pings.remove(ping) {
                    let rtt = Duration::from_micros(now.saturating_sub(sent));
                    self.link_input(
                        slot,
                        inc,
                        LinkInput::Pong {
                            node: id,
                            rtt,
                            mesh: None,
                        },
                    );
                }
            }
            NetMsg::Fin => {
                let Some(node) = self.node_mut(slot, inc) else {
                    return true;
                };
                if node.links.remove(&link).is_some() {
                    self.report_closed(slot, inc, link, from);
                }
            }
            _ => return false,
        }
        true
    }

    pub(crate) fn ping_timeout(&mut self, slot: usize, inc: u64, ping: u64) {
        let Some(node) = self.node_mut(slot, inc) else {
            return;
        };
        if let Some((id, _)) = node.pings.remove(&ping) {
            self.link_input(slot, inc, LinkInput::PingFailed { name: id.name });
        }
    }

    /// The link `from` uses to reach `to` (that run), and the slot behind it.
    pub(crate) fn link_to(&self, from: usize, to: &NodeId) -> Option<(usize, u64)> {
        let node = self.nodes[from].as_ref()?;
        let status = node.table.get(&to.name)?;
        if status.id != *to {
            return None;
        }
        let (peer, _) = node.links.get(&status.link)?;
        Some((*peer, status.link))
    }

    /// This end of `link` goes (closed, or broken by the network): the peer gets its FIN,
    /// this node's table hears `Closed`.
    fn break_link(&mut self, slot: usize, inc: u64, link: u64) {
        let Some(node) = self.node_mut(slot, inc) else {
            return;
        };
        let Some((peer, peer_inc)) = node.links.remove(&link) else {
            return;
        };
        self.send_on(slot, peer, link, peer_inc, NetMsg::Fin);
        self.report_closed(slot, inc, link, peer);
    }

    /// The endpoint reports `link` (to `peer`) gone to this node's table.
    fn report_closed(&mut self, slot: usize, inc: u64, link: u64, peer: usize) {
        let info = self.session_info(peer, false);
        self.link_input(
            slot,
            inc,
            LinkInput::Session {
                step: SessionStep::Closed,
                link,
                info,
            },
        );
    }

    /// The links between two connected nodes break (a network error at `a`'s end: what was
    /// on them is lost); the connector dials again.
    pub(crate) fn flap(&mut self, a: usize, b: usize) {
        let Some(na) = self.nodes[a].as_ref() else {
            return;
        };
        let links: BTreeSet<u64> = na
            .links
            .iter()
            .filter(|(_, (p, _))| *p == b)
            .map(|(l, _)| *l)
            .collect();
        let a_inc = na.id.incarnation;
        for link in links {
            self.log(|| format!("link {link} between s{a} and s{b} breaks"));
            self.break_link(a, a_inc, link);
        }
    }
}
