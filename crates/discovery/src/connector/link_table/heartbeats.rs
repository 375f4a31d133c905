//! Heartbeats: one outstanding per node, a failure deadline, and the mesh reports that ride on
//! the answers.

use std::time::{Duration, Instant};

use tracing::warn;

use super::{DownReason, LinkEffect, LinkHandle, LinkTable};
use crate::NodeId;
use crate::connector::beacon::MeshReport;

impl<L: LinkHandle> LinkTable<L> {
    /// Sends due heartbeats, and reports down the nodes that stayed silent past the deadline
    /// and those whose relink grace passed.
    pub(super) fn heartbeat(&mut self, now: Instant) {
        let mut unresponsive = Vec::new();
        for (name, entry) in self.nodes.iter_mut() {
            if now.duration_since(entry.last_heard) > self.config.failure_timeout {
                unresponsive.push(name.clone());
                continue;
            }
            if entry.relink_deadline.is_some() {
                continue;
            }
            let due = entry
                .last_ping
                .is_none_or(|t| now.duration_since(t) >= self.config.heartbeat_interval);
            if !entry.ping_in_flight && due {
                entry.ping_in_flight = true;
                entry.last_ping_before = entry.last_ping;
                entry.last_ping = Some(now);
                self.out.push(LinkEffect::Heartbeat {
                    node: entry.id.clone(),
                    link: entry.link.clone(),
                    mesh_known: entry.mesh_digest,
                    timeout: self.config.failure_timeout,
                });
            }
        }
        for name in unresponsive {
            if let Some(entry) = self.nodes.get(&name) {
                warn!(node = %entry.id.name, incarnation = entry.id.incarnation, silent_ms = now.duration_since(entry.last_heard).as_millis() as u64, "node stopped answering heartbeats; disconnecting");
            }
            self.node_down(now, &name, DownReason::Unresponsive);
        }
        let relink_expired: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, e)| e.relink_deadline.is_some_and(|d| d <= now))
            .map(|(n, _)| n.clone())
            .collect();
        for name in relink_expired {
            self.node_down(now, &name, DownReason::Disconnected);
        }
    }

    /// A heartbeat answer. Only an answer from the incarnation we hold counts: a reply from an
    /// older run must not keep the newer one alive (nor the other way round).
    pub(super) fn on_pong(
        &mut self,
        now: Instant,
        node: NodeId,
        rtt: Duration,
        mesh: Option<MeshReport>,
    ) {
        tracing::trace!(node = %node, rtt_us = rtt.as_micros() as u64, "pong");
        let Some(entry) = self.nodes.get_mut(&node.name) else {
            return;
        };
        if entry.id != node {
            return;
        }
        entry.ping_in_flight = false;
        entry.last_heard = now;
        entry.rtt = Some(rtt);
        if let Some(MeshReport {
            digest,
            peers: Some(peers),
        }) = mesh
        {
            self.on_mesh(now, &node.name, digest, peers);
        }
    }

    pub(super) fn on_ping_failed(&mut self, name: &str) {
        if let Some(entry) = self.nodes.get_mut(name) {
            entry.ping_in_flight = false;
        }
    }

    /// The heartbeat could not be sent (the beacon's proxy is not synced on the link yet):
    /// undo it so the next tick tries again, as if it had never been due.
    pub(super) fn on_beacon_missing(&mut self, node: &NodeId) {
        if let Some(entry) = self.nodes.get_mut(&node.name)
            && entry.id == *node
            && entry.ping_in_flight
        {
            entry.ping_in_flight = false;
            entry.last_ping = entry.last_ping_before;
        }
    }
}
