//! Links as the endpoint reports them: the half-open cap and handshake deadline, who a peer
//! says it is, incarnations, spare links and the relink grace.

use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::{
    CloseReason, DownReason, Link, LinkEffect, LinkHandle, LinkTable, NodeEntry, SessionInfo,
};
use crate::node_name::PeerKind;

/// The "too many handshakes" warning is logged at most this often.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

impl<L: LinkHandle> LinkTable<L> {
    pub(super) fn on_opened(&mut self, now: Instant, handle: L, info: SessionInfo) {
        // Over the cap, close the oldest half-open connection: an attacker's idle
        // connections are the old ones, a real peer or console is the new one.
        let pending = self.links.values().filter(|l| !l.authenticated);
        let count = pending.clone().count();
        if count >= self.config.max_pending_handshakes
            && let Some(oldest) = pending.min_by_key(|l| (l.opened_at, l.handle.link_id()))
        {
            self.out.push(LinkEffect::Close {
                link: oldest.handle.clone(),
                reason: CloseReason::TooManyHandshakes,
            });
            self.refused_pending += 1;
            if self
                .last_refusal_log
                .is_none_or(|t| now.duration_since(t) > REFUSAL_LOG_EVERY)
            {
                warn!(
                    closed = self.refused_pending,
                    limit = self.config.max_pending_handshakes,
                    "too many connections in their handshake; closing the oldest"
                );
                self.refused_pending = 0;
                self.last_refusal_log = Some(now);
            }
        }
        self.links.insert(
            handle.link_id(),
            Link {
                handle,
                peer_name: info.peer_name,
                peer_addr: info.peer_addr,
                opened_at: now,
                expired: false,
                authenticated: false,
                kind: None,
            },
        );
    }

    pub(super) fn on_authenticated(&mut self, handle: L, info: SessionInfo) {
        let Some(link) = self.links.get_mut(&handle.link_id()) else {
            return;
        };
        link.authenticated = true;
        let name = info.peer_name.clone().unwrap_or_default();
        let kind = PeerKind::from_ractor_name(&name);
        let close = |reason| LinkEffect::Close {
            link: handle.clone(),
            reason,
        };
        match &kind {
            PeerKind::Foreign(n) => {
                warn!(peer = ?n, peer_addr = %info.peer_addr, "peer is not a cluster node (no incarnation in its name); disconnecting");
                self.out.push(close(CloseReason::Foreign));
            }
            PeerKind::Node(peer) if peer.name == self.config.node.name => {
                if peer.incarnation == self.config.node.incarnation {
                    debug!(peer_addr = %info.peer_addr, "connected to myself; never dialling this address again");
                    if let Ok(addr) = info.peer_addr.parse() {
                        self.self_addrs.insert(addr);
                        self.dials.remove(&addr);
                    }
                } else {
                    warn!(peer = %peer, "another node uses this node's name; disconnecting it");
                }
                self.out.push(close(CloseReason::SameName));
            }
            PeerKind::Console(n) => {
                info!(console = ?n, peer_addr = %info.peer_addr, "console attached");
            }
            PeerKind::Node(peer) if self.blocked.contains(&peer.name) => {
                debug!(peer = %peer, "refusing partitioned node");
                self.out.push(close(CloseReason::Partitioned));
            }
            PeerKind::Node(_) => {}
        }
        link.kind = Some(kind);
        link.peer_name = info.peer_name;
        link.peer_addr = info.peer_addr;
    }

    pub(super) fn on_ready(&mut self, now: Instant, handle: L, info: SessionInfo) {
        let link_id = handle.link_id();
        let Some(link) = self.links.get_mut(&link_id) else {
            return;
        };
        let Some(PeerKind::Node(peer_id)) = link.kind.clone() else {
            return;
        };
        if self.blocked.contains(&peer_id.name) {
            self.out.push(LinkEffect::Close {
                link: handle,
                reason: CloseReason::Partitioned,
            });
            return;
        }
        let dialled: Option<std::net::SocketAddr> = (!info.is_server)
            .then(|| info.peer_addr.parse().ok())
            .flatten();
        link.handle = handle.clone();
        link.peer_name = info.peer_name;
        link.peer_addr = info.peer_addr.clone();

        if let Some(existing) = self.nodes.get_mut(&peer_id.name) {
            if existing.id.incarnation == peer_id.incarnation {
                if existing.relink_deadline.take().is_some() {
                    existing.link = handle.clone();
                    existing.last_heard = now;
                    existing.ping_in_flight = false;
                    debug!(node = %peer_id.name, "link replaced");
                    self.out.push(LinkEffect::Up {
                        id: existing.id.clone(),
                        link: handle,
                    });
                } else {
                    existing.spare_links.push(link_id);
                }
                return;
            }
            if existing.id.incarnation > peer_id.incarnation {
                warn!(node = %peer_id.name, stale = peer_id.incarnation, current = existing.id.incarnation, "an older incarnation connected; disconnecting it");
                self.out.push(LinkEffect::Close {
                    link: handle,
                    reason: CloseReason::StaleIncarnation,
                });
                return;
            }
            // A newer run of a node we still hold a link to: the old run is gone (restarted
            // process, frozen then replaced). Stop its links first.
            info!(node = %peer_id.name, old = existing.id.incarnation, new = peer_id.incarnation, "node restarted; dropping links to its previous run");
            self.node_down(now, &peer_id.name, DownReason::Replaced);
        }

        if let Some(addr) = dialled {
            self.addr_owner.insert(addr, peer_id.name.clone());
        }
        self.reset_backoff(&peer_id.name);
        info!(node = %peer_id.name, incarnation = peer_id.incarnation, peer_addr = %info.peer_addr, "node up");
        self.nodes.insert(
            peer_id.name.clone(),
            NodeEntry::new(peer_id.clone(), handle.clone(), now),
        );
        self.publish_mesh();
        self.out.push(LinkEffect::Up {
            id: peer_id,
            link: handle,
        });
    }

    pub(super) fn on_closed(&mut self, now: Instant, handle: L, info: SessionInfo) {
        let link_id = handle.link_id();
        let Some(link) = self.links.remove(&link_id) else {
            return;
        };
        if !link.authenticated {
            // The name is whatever the peer claimed before proving the cookie: logged escaped
            // (`?`), so control characters and newlines cannot forge log lines.
            match info.peer_name {
                // Both sides dialled at once and ractor_cluster's election closed one link.
                Some(name) if self.has_link_named(&name) => {
                    debug!(peer = ?name, "duplicate connection closed")
                }
                Some(name) => {
                    warn!(peer = ?name, peer_addr = %info.peer_addr, "peer failed to authenticate (wrong cookie?); connection closed")
                }
                None => {
                    debug!(peer_addr = %info.peer_addr, "connection closed before the handshake")
                }
            }
            return;
        }
        let Some(PeerKind::Node(peer_id)) = link.kind else {
            return;
        };
        let other_link_pending = self.has_link_named(&peer_id.ractor_name());
        let Some(entry) = self.nodes.get_mut(&peer_id.name) else {
            return;
        };
        if entry.id != peer_id {
            return;
        }
        if entry.link.link_id() != link_id {
            entry.spare_links.retain(|l| *l != link_id);
            // The link we were waiting for closed too.
            if entry.relink_deadline.is_some() && !other_link_pending {
                self.node_down(now, &peer_id.name, DownReason::Disconnected);
            }
            return;
        }
        // The primary link closed: promote a spare if one is ready.
        while let Some(spare) = entry.spare_links.pop() {
            if let Some(l) = self.links.get(&spare) {
                entry.link = l.handle.clone();
                self.out.push(LinkEffect::Up {
                    id: entry.id.clone(),
                    link: l.handle.clone(),
                });
                return;
            }
        }
        // When both sides dial at once, ractor_cluster may close a link that was already ready
        // here while the other link is still finishing its sync: wait for that one briefly
        // rather than report the node down and up again.
        if other_link_pending {
            entry.relink_deadline = Some(now + self.config.relink_grace);
            return;
        }
        self.node_down(now, &peer_id.name, DownReason::Disconnected);
    }

    /// Closes links that have not become a ready node link (primary or spare) or a console
    /// within the handshake deadline.
    pub(super) fn expire_handshakes(&mut self, now: Instant) {
        for link in self.links.values_mut() {
            if link.expired {
                continue;
            }
            let id = link.handle.link_id();
            let ready = matches!(&link.kind, Some(PeerKind::Node(peer)) if self.nodes.get(&peer.name).is_some_and(|n| n.link.link_id() == id || n.spare_links.contains(&id)));
            let console = matches!(link.kind, Some(PeerKind::Console(_)));
            if !ready
                && !console
                && now.duration_since(link.opened_at) > self.config.handshake_timeout
            {
                warn!(peer_addr = %link.peer_addr, authenticated = link.authenticated, "closing connection that did not complete its handshake in time");
                link.expired = true;
                self.out.push(LinkEffect::Close {
                    link: link.handle.clone(),
                    reason: CloseReason::HandshakeTimeout,
                });
            }
        }
    }

    /// True when an authenticated link to the peer that presented `ractor_name` exists.
    fn has_link_named(&self, ractor_name: &str) -> bool {
        self.links
            .values()
            .any(|l| l.authenticated && l.peer_name.as_deref() == Some(ractor_name))
    }
}
