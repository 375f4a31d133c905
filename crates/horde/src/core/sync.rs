//! Membership and registry sync: hellos, full syncs on first contact, deltas with
//! acknowledgements, readiness, node events, starting children placed here.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use discovery::NodeId;
use tracing::{debug, error, info, warn};

use super::{AckWait, Core, Effect, Link, Reply, SpawnFor};
use crate::membership::{Incompatible, MemberInfo, MemberStatus, Version};
use crate::protocol::{
    Feature, Hello, HelloHead, MemberWire, Protocols, StartRefusal, Wire, WireEntry, encoded_len,
};
use crate::registry::{self, Merged};
use crate::stats::{Counters, HordeEvent};

/// A start waits at most this long for every member to acknowledge the new name.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a joining member asks again for the hellos and registries it lacks.
const REINTRODUCE_EVERY: Duration = Duration::from_secs(1);
/// How long a member run that left is remembered after it was forgotten (a peer that missed
/// its farewell lists it until it forgets it too).
const DEPARTED_MEMORY: Duration = Duration::from_secs(600);
/// A joining member that received this many messages it could not decode, and no hello it
/// could, refuses to join (the cluster speaks a protocol it does not know at all)...
const UNDECODABLE_REFUSAL: u64 = 10;
/// ... once it has been trying this long.
const UNDECODABLE_GRACE: Duration = Duration::from_secs(2);

impl<T> Core<T> {
    pub(super) fn hello(&mut self) -> Wire {
        Wire::Hello(self.next_hello())
    }

    /// This member's hello, numbered after the last one.
    pub(super) fn next_hello(&mut self) -> Hello {
        self.hello_seq += 1;
        let speaks = self.config.protocols;
        Hello {
            node: self.me.clone(),
            // The oldest version it speaks: a member of release 0.1.0 reads this as the one
            // version this member speaks, and talks to a member of 2 only.
            protocol: speaks.min,
            version: self.version.0.clone(),
            status: self.status,
            seq: self.hello_seq,
            reads: self.config.reads.clone(),
            // Protocol 2 (release 0.1.0) appended nothing.
            max_protocol: (speaks.max > 2).then_some(speaks.max),
        }
    }

    /// Tells every ready link this member's current status. Hellos are numbered, so a stale one
    /// arriving late is ignored.
    pub(super) fn announce(&mut self, out: &mut Vec<Effect<T>>) {
        let hello = self.hello();
        let to: Vec<NodeId> = self
            .links
            .values_mut()
            .filter(|l| l.ready)
            .map(|l| {
                l.hello_sent = true;
                l.id.clone()
            })
            .collect();
        if !to.is_empty() {
            out.push(Effect::Broadcast { to, wire: hello });
        }
    }

    pub(super) fn on_up(&mut self, id: NodeId) {
        let fresh = self.links.get(&id.name).is_none_or(|l| l.id != id);
        let link = self.links.entry(id.name.clone()).or_insert_with(|| Link {
            id: id.clone(),
            ready: false,
            unreachable: false,
            hello_sent: false,
            sync_sent: false,
            relinked: false,
            refused: false,
        });
        if fresh {
            link.hello_sent = false;
            link.sync_sent = false;
            link.refused = false;
        } else {
            // The same run on a new link: what was in flight on the old one is lost. (A
            // joining member's lost introductions are asked for again: `reintroduce`.)
            link.relinked = true;
        }
        // A new link (or a replaced one): its proxies are new; the shell looks the member
        // actor up again and says `PeerReady`.
        link.id = id;
        link.ready = false;
        link.unreachable = false;
    }

    pub(super) fn on_peer_ready(&mut self, now: Instant, out: &mut Vec<Effect<T>>, id: NodeId) {
        let hello = self.hello();
        let Some(link) = self.links.get_mut(&id.name).filter(|l| l.id == id) else {
            return;
        };
        link.ready = true;
        if std::mem::take(&mut link.relinked) {
            // Replicas (or their acknowledgements) may have been lost with the old link:
            // every child sends its state again. So may a status announcement (a newcomer's
            // `alive`, lost, left it `joining` for the peer, never granted a lease): say
            // hello again (a newer number, so it is not taken for a stale one).
            self.backups_stale = true;
            self.force_backups = true;
            link.hello_sent = false;
        }
        if !link.hello_sent {
            link.hello_sent = true;
            out.push(Effect::Send {
                to: id.clone(),
                wire: hello,
            });
        }
        if let Some(h) = self.early_hellos.remove(&id.name) {
            self.on_hello(now, out, h);
        }
        self.check_ready(now, out);
    }

    pub(super) fn on_hello(&mut self, now: Instant, out: &mut Vec<Effect<T>>, hello: Hello) {
        let theirs = hello.protocols();
        if !self.speaks_with(&hello.node, theirs) {
            self.incompatible(out, &hello.node, &hello.version, hello.status, Some(theirs));
            return;
        }
        let Hello {
            node,
            protocol,
            version,
            status,
            seq,
            reads,
            max_protocol,
        } = hello;
        let ready = self
            .links
            .get(&node.name)
            .is_some_and(|l| l.id == node && l.ready);
        if !ready {
            // Its Up event, or its member actor, has not arrived yet: keep the newest hello
            // until `on_peer_ready` can answer it.
            let newer = self
                .early_hellos
                .get(&node.name)
                .is_none_or(|h| (h.node.incarnation, h.seq) < (node.incarnation, seq));
            if newer {
                self.early_hellos.insert(
                    node.name.clone(),
                    Hello {
                        node,
                        protocol,
                        version,
                        status,
                        seq,
                        reads,
                        max_protocol,
                    },
                );
            }
            return;
        }
        let hello_sent = self.links.get(&node.name).is_some_and(|l| l.hello_sent);
        if !hello_sent {
            let ours = self.hello();
            out.push(Effect::Send {
                to: node.clone(),
                wire: ours,
            });
        }
        let Some(link) = self.links.get_mut(&node.name) else {
            return;
        };
        link.hello_sent = true;
        let send_sync = !link.sync_sent;
        link.sync_sent = true;
        let info = MemberInfo {
            node: node.clone(),
            status,
            version: Version::parse(&version),
            reads,
            protocols: Some(theirs),
        };
        let fresh_info = self.hello_seen.get(&node).is_none_or(|last| seq > *last);
        let previous = if fresh_info {
            self.members.upsert(info.clone())
        } else {
            None
        };
        let changed = previous.is_some();
        if let Some(Some(prev)) = &previous
            && prev.node != node
        {
            // Another run of this name: the previous one is gone, whatever the incarnation
            // numbers say (the new run's clock may be behind).
            info!(member = %node, previous = %prev.node, "member restarted");
            self.superseded.insert(prev.node.clone());
            self.quorum.forget(&prev.node);
        }
        if changed {
            self.backups_stale = true;
        }
        // Connected and introduced: a member this one only heard of (or lost) is granted
        // again at once if that is safe, rather than at its next lease request (a newcomer
        // must not refuse its peers' replicas meanwhile).
        self.readmit_if_safe(now, &node);
        if fresh_info && status != MemberStatus::Left {
            self.quorum.unremove(&node);
        }
        if fresh_info {
            self.hello_seen
                .retain(|n, _| n.name != node.name || n.incarnation >= node.incarnation);
            self.hello_seen.insert(node.clone(), seq);
        }
        if self.peers.get(&node.name) != Some(&node) {
            self.peers.insert(node.name.clone(), node.clone());
            self.dirty = true;
        }
        if changed {
            self.dirty = true;
            info!(member = %node, %status, version = %version, "member");
            self.emit(out, HordeEvent::Member(info));
        }
        if send_sync {
            self.send_sync(out, &node);
        }
        if status == MemberStatus::Left && theirs.max >= Feature::FarewellReceipt.since() {
            // Its farewell is heard: say so, with its number (it exits once every member did).
            out.push(Effect::Send {
                to: node.clone(),
                wire: Wire::FarewellAck {
                    from: self.me.clone(),
                    seq,
                },
            });
        }
        if changed && status == MemberStatus::Alive {
            // It may be the failover target some orphans wait for.
            self.failover(now, out);
        }
        let _ = now;
    }

    /// Sends `to` this member's full registry, in parts that each fit the message budget,
    /// the members it knows on the last.
    fn send_sync(&self, out: &mut Vec<Effect<T>>, to: &NodeId) {
        let mut members: Vec<MemberWire> = self
            .members
            .iter()
            .filter(|m| m.node != *to)
            .map(|m| MemberWire {
                node: m.node.clone(),
                status: m.status,
                version: m.version.0.clone(),
                reads: m.reads.clone(),
            })
            .collect();
        if self.protocol_in_use() >= Feature::DepartedInSync.since() {
            // Runs that left and were forgotten here: a member that was cut off when they
            // left learns it (it would wait for them as for a dead member otherwise).
            members.extend(
                self.departed
                    .iter()
                    .filter(|(n, _)| *n != to)
                    .map(|(_, (_, w))| w.clone()),
            );
        }
        let fixed = encoded_len(&Wire::Sync {
            from: self.me.clone(),
            members: members.clone(),
            nodes: Vec::new(),
            entries: Vec::new(),
            done: true,
        });
        let budget = self.config.max_message_bytes;
        let (mut parts, too_large) = registry::to_wire_parts(self.registry.iter(), fixed, budget);
        for (name, bytes) in too_large {
            error!(child = %name, to = %to, bytes, budget, "registry entry too large to send (over the message budget); left out of the sync");
        }
        if parts.is_empty() {
            parts.push((Vec::new(), Vec::new()));
        }
        let last = parts.len() - 1;
        let mut members = Some(members);
        for (i, (nodes, entries)) in parts.into_iter().enumerate() {
            let members = if i == last {
                members.take().unwrap_or_default()
            } else {
                Vec::new()
            };
            out.push(Effect::Send {
                to: to.clone(),
                wire: Wire::Sync {
                    from: self.me.clone(),
                    members,
                    nodes,
                    entries,
                    done: i == last,
                },
            });
        }
    }

    /// Members a peer told of that this member has not heard from yet (it is not connected
    /// to them yet): known, so that a failover waits for their replicas. Not connected, they
    /// are suspects from here: this member never granted them a lease, so it may vote them
    /// dead at once (a newcomer that joined while a member was down must not keep the others
    /// from a majority against it); one that connects is granted again at its next request.
    pub(super) fn learn_members(&mut self, now: Instant, members: Vec<MemberWire>) {
        for m in members {
            if m.node.name == self.me.name
                || self.superseded.contains(&m.node)
                || self.departed.contains_key(&m.node)
            {
                continue;
            }
            if m.status == MemberStatus::Left
                && self
                    .members
                    .get(&m.node.name)
                    .is_none_or(|k| k.node != m.node)
            {
                // A run that left, unknown here (or another run of a known name): nothing to
                // learn but that it never comes back.
                if self.members.get(&m.node.name).is_none() {
                    self.departed.insert(m.node.clone(), (now, m));
                }
                continue;
            }
            if self.members.get(&m.node.name).is_some() {
                // A farewell this member missed (its link was down when it went out): the
                // member that heard it says so. A run that left stays left.
                if m.status == MemberStatus::Left && self.members.mark_left(&m.node) {
                    info!(member = %m.node, "member left (its farewell relayed by a peer)");
                    self.quorum.forget(&m.node);
                    self.backups_stale = true;
                    self.dirty = true;
                }
                continue;
            }
            self.quorum.suspect_learned(&m.node, now);
            self.members.upsert(MemberInfo {
                node: m.node,
                status: m.status,
                version: Version::parse(&m.version),
                reads: m.reads,
                // Until its own hello says (a list does not carry it).
                protocols: None,
            });
            self.dirty = true;
        }
    }

    /// Merges entries from another member; settles conflicts, commits incoming moves and drops
    /// arriving copies a newer epoch superseded.
    pub(super) fn merge_entries(
        &mut self,
        now: Instant,
        out: &mut Vec<Effect<T>>,
        from: &NodeId,
        nodes: &[NodeId],
        entries: Vec<WireEntry>,
    ) {
        let (entries, bad) = registry::from_wire(nodes, entries);
        for name in bad {
            warn!(child = %name, "registry entry with a bad owner index dropped");
        }
        let mut losers: Vec<(String, NodeId)> = Vec::new();
        let mut commits: Vec<Arc<str>> = Vec::new();
        let mut stale_pending: Vec<Arc<str>> = Vec::new();
        let mut removals: Vec<Arc<str>> = Vec::new();
        let mut disowned: Vec<Arc<str>> = Vec::new();
        let mut echoes: Vec<(Arc<str>, crate::registry::Entry)> = Vec::new();
        for (name, entry) in entries {
            if self.registry.get_any(&name).is_none() && self.tombs.is_echo(&name, &entry) {
                // A tombstone collected here lately, from a member that missed the
                // collection (it was not connected when it went out): already gone here, and
                // it is told so (with a record of the name here, it is news instead: a name
                // used again, removed again).
                echoes.push((Arc::from(name.as_str()), entry));
                continue;
            }
            let mine = *entry.owner == self.me;
            let epoch = entry.epoch;
            let removed = entry.removed;
            if !mine
                && self
                    .moves
                    .pending_epoch(&name)
                    .is_some_and(|p| p < epoch || (removed && p <= epoch))
            {
                stale_pending.push(Arc::from(name.as_str()));
            }
            match self.merge_one(&name, entry) {
                Merged::Kept => continue,
                Merged::Replaced(old) if *old.owner == self.me && !mine => {
                    if let Some(new) = self.registry.get_any(&name) {
                        if new.removed {
                            // Stopped from elsewhere while it moved here: not a conflict.
                            removals.push(Arc::from(name.as_str()));
                        } else {
                            losers.push((name.clone(), (*new.owner).clone()));
                        }
                    }
                }
                Merged::Inserted | Merged::Replaced(_)
                    if mine && self.moves.pending_epoch(&name) == Some(epoch) =>
                {
                    commits.push(Arc::from(name.as_str()));
                }
                Merged::Inserted | Merged::Replaced(_) if mine && !removed => {
                    disowned.push(Arc::from(name.as_str()));
                }
                _ => {}
            }
            self.dirty = true;
        }
        if !echoes.is_empty() && *from != self.me {
            let (nodes, entries) = registry::to_wire(echoes.iter().map(|(n, e)| (n, e)));
            out.push(Effect::Send {
                to: from.clone(),
                wire: Wire::Collect {
                    from: self.me.clone(),
                    nodes,
                    entries,
                },
            });
        }
        for name in commits {
            if let Some(p) = self.moves.take_pending(&name) {
                self.commit_pending(now, out, name, p, false);
            }
        }
        for name in stale_pending {
            if self.moves.take_pending(&name).is_some() {
                debug!(child = %name, "an arriving copy was superseded before its move committed");
                self.backups.remove(&name);
                out.push(Effect::ToChild {
                    name: name.clone(),
                    cmd: super::ChildCmd::Stop { report: false },
                });
                out.push(Effect::Forget { name });
            }
        }
        for name in disowned {
            self.disown(&name);
        }
        for name in removals {
            if self.local.remove(&name).is_none() {
                continue;
            }
            self.backups.remove(&name);
            debug!(child = %name, "removed elsewhere; this copy stops");
            out.push(Effect::ToChild {
                name: name.clone(),
                cmd: super::ChildCmd::Stop { report: false },
            });
            out.push(Effect::Forget { name });
        }
        for (name, winner) in losers {
            let key: Arc<str> = Arc::from(name.as_str());
            if self.local.remove(&key).is_none() {
                continue;
            }
            self.backups.remove(&key);
            Counters::add(&self.counters.conflicts, 1);
            warn!(child = %name, %winner, "name conflict after a partition: this copy lost and stops");
            self.emit(
                out,
                HordeEvent::Conflict {
                    name: name.clone(),
                    winner: winner.clone(),
                },
            );
            out.push(Effect::ToChild {
                name: key.clone(),
                cmd: super::ChildCmd::Stop { report: true },
            });
            out.push(Effect::Forget { name: key.clone() });
            self.conflict_waits.insert(key, winner);
        }
    }

    pub(super) fn on_down(&mut self, now: Instant, out: &mut Vec<Effect<T>>, id: &NodeId) {
        // A member that drained and left handed its replicas over first (it sets `Left` only
        // then); any other that goes may have taken them along.
        let left = self
            .members
            .get(&id.name)
            .is_some_and(|m| m.node == *id && m.status == MemberStatus::Left);
        self.backups_peer_down(out, id, left);
        if self.links.get(&id.name).is_some_and(|l| l.id == *id) {
            self.links.remove(&id.name);
        }
        if self.peers.get(&id.name) == Some(id) {
            self.peers.remove(&id.name);
            self.dirty = true;
        }
        self.synced.remove(&id.name);
        if self.members.mark_dead(id) {
            self.dirty = true;
            info!(member = %id, "member dead");
            if let Some(info) = self.members.get(&id.name).cloned() {
                self.emit(out, HordeEvent::Member(info));
            }
        }
        // Nobody waits for its acknowledgements any more (those it owed are lost).
        let batches: Vec<u64> = self.ack_waits.keys().copied().collect();
        for b in batches {
            if let Some(w) = self.ack_waits.get_mut(&b)
                && w.pending.contains(&id.name)
            {
                w.lost = true;
            }
            self.on_ack(out, &id.name, b);
        }
        // No more lease for it from here; its writes are refused from now on.
        self.quorum.suspect(id, now);
        self.backups_stale = true;
        // Offers to it and replica fetches from it will not be answered.
        self.moves_peer_down(now, out, id);
        self.fetches_peer_down(now, out, id);
        self.handover_peer_down(out, id);
        self.farewell_heard(now, out, &id.name, true);
        // Children it was moving here stay pending: they commit only by its registry change;
        // if it died first, they are replicas for the failover like any other.
        self.failover(now, out);
        self.check_ready(now, out);
    }

    pub(super) fn flush(&mut self, now: Instant, out: &mut Vec<Effect<T>>) {
        let waiters = std::mem::take(&mut self.next_flush_waiters);
        if self.outbox.is_empty() {
            self.started(out, waiters, true);
            return;
        }
        let entries = std::mem::take(&mut self.outbox);
        let to: Vec<NodeId> = self.peers.values().cloned().collect();
        // Every member that could serve a name (alive or draining, in the quorum set) must
        // get the change for it to be complete; one that is not connected will not now.
        let unreached = self.quorum_set().members().iter().any(|m| {
            *m != self.me
                && !to.contains(m)
                && self
                    .members
                    .get(&m.name)
                    .is_some_and(|i| i.node == *m && i.status != MemberStatus::Dead)
        });
        if to.is_empty() {
            self.started(out, waiters, !unreached);
            return;
        }
        // In as many batches as the message budget takes; the starts wait for the last one
        // (a link delivers in order: a member that acknowledged it applied the others).
        let fixed = encoded_len(&Wire::Deltas {
            from: self.me.clone(),
            batch: u64::MAX,
            nodes: Vec::new(),
            entries: Vec::new(),
        });
        let budget = self.config.max_message_bytes;
        let (parts, too_large) =
            registry::to_wire_parts(entries.iter().map(|(n, e)| (n, e)), fixed, budget);
        for (name, bytes) in too_large {
            error!(child = %name, bytes, budget, "registry change too large to send (over the message budget); peers learn it only by repair, which cannot send it either");
        }
        if parts.is_empty() {
            self.started(out, waiters, false);
            return;
        }
        let last = parts.len() - 1;
        let mut waiters = Some(waiters);
        for (i, (nodes, wire_entries)) in parts.into_iter().enumerate() {
            self.batch += 1;
            let batch = self.batch;
            out.push(Effect::Broadcast {
                to: to.clone(),
                wire: Wire::Deltas {
                    from: self.me.clone(),
                    batch,
                    nodes,
                    entries: wire_entries,
                },
            });
            self.ack_waits.insert(
                batch,
                AckWait {
                    pending: to.iter().map(|n| n.name.clone()).collect::<BTreeSet<_>>(),
                    lost: unreached,
                    waiters: if i == last {
                        waiters.take().unwrap_or_default()
                    } else {
                        Vec::new()
                    },
                    deadline: now + ACK_TIMEOUT,
                },
            );
        }
    }

    /// Answers starts (and stops) whose registry change every member acknowledged (or that
    /// timed out). A stop is confirmed only when the change is `complete`: every member
    /// that could serve the name holds the tombstone, so none restarts it; otherwise it
    /// answers false (the tombstone is published and wins against older entries once the
    /// members meet again, but one cut off may serve the name until then).
    fn started(&self, out: &mut Vec<Effect<T>>, waiters: Vec<(T, Reply)>, complete: bool) {
        for (to, reply) in waiters {
            let reply = match reply {
                Reply::Stopped(found) => Reply::Stopped(found && complete),
                other => other,
            };
            out.push(Effect::Reply { to, reply });
        }
    }

    pub(super) fn on_ack(&mut self, out: &mut Vec<Effect<T>>, node: &str, batch: u64) {
        let done = match self.ack_waits.get_mut(&batch) {
            Some(w) => {
                w.pending.remove(node);
                w.pending.is_empty()
            }
            None => false,
        };
        if done && let Some(w) = self.ack_waits.remove(&batch) {
            self.started(out, w.waiters, !w.lost);
        }
    }

    /// True when every registry change sent so far is acknowledged (or timed out).
    pub(super) fn all_acked(&self) -> bool {
        self.ack_waits.is_empty() && self.outbox.is_empty()
    }

    pub(super) fn expire_acks(&mut self, now: Instant, out: &mut Vec<Effect<T>>) {
        let expired: Vec<u64> = self
            .ack_waits
            .iter()
            .filter(|(_, w)| w.deadline <= now)
            .map(|(b, _)| *b)
            .collect();
        for b in expired {
            if let Some(w) = self.ack_waits.remove(&b) {
                warn!(batch = b, missing = ?w.pending, "registry change not acknowledged in time");
                self.started(out, w.waiters, false);
            }
        }
    }

    /// Asks again, once a second, for the introductions a replaced link lost (both sides
    /// dialling at once makes ractor_cluster close one of two links right after a join, with
    /// the hellos and registries in flight on it): a joining member asks every connected
    /// peer whose hello or full registry it lacks, a member that joined asks those whose
    /// hello it lacks (without it, it never grants them a lease). The peer answers with a
    /// plain hello (and its registry to a joining member): see `on_reintroduce`.
    pub(super) fn reintroduce(&mut self, now: Instant, out: &mut Vec<Effect<T>>) {
        if now.duration_since(self.last_reintroduce) < REINTRODUCE_EVERY {
            return;
        }
        self.last_reintroduce = now;
        let joining = self.status == MemberStatus::Joining;
        let to: Vec<NodeId> = self
            .links
            .values()
            .filter(|l| l.ready && l.hello_sent && !l.refused)
            .filter(|l| {
                if joining {
                    !self.introduced(l)
                } else {
                    self.peers.get(&l.id.name) != Some(&l.id)
                }
            })
            .map(|l| l.id.clone())
            .collect();
        if !to.is_empty() {
            debug!(peers = ?to, "asking peers again for the hello or registry this member lacks");
            let Wire::Hello(hello) = self.hello() else {
                return;
            };
            out.push(Effect::Broadcast {
                to,
                wire: Wire::Reintroduce(hello),
            });
        }
    }

    /// A peer asks again for this member's hello (and registry, when it is joining).
    pub(super) fn on_reintroduce(&mut self, now: Instant, out: &mut Vec<Effect<T>>, hello: Hello) {
        let node = hello.node.clone();
        let joining = hello.status == MemberStatus::Joining;
        let hello_sent = self.links.get(&node.name).is_some_and(|l| l.hello_sent);
        let sync_sent = self.links.get(&node.name).is_some_and(|l| l.sync_sent);
        self.on_hello(now, out, hello);
        let ready = self
            .links
            .get(&node.name)
            .is_some_and(|l| l.id == node && l.ready);
        if !ready {
            return;
        }
        // `on_hello` answered a first hello itself (with this member's hello and registry).
        if hello_sent {
            let ours = self.hello();
            out.push(Effect::Send {
                to: node.clone(),
                wire: ours,
            });
        }
        if joining && sync_sent {
            self.send_sync(out, &node);
        }
    }

    /// This member has the peer's hello (this run) and its full registry.
    fn introduced(&self, link: &Link) -> bool {
        self.peers.get(&link.id.name) == Some(&link.id) && self.synced.contains(&link.id.name)
    }

    pub(super) fn check_ready(&mut self, now: Instant, out: &mut Vec<Effect<T>>) {
        if self.status != MemberStatus::Joining || self.refusal.is_some() {
            return;
        }
        // Every connected peer introduced itself and sent its registry (not only those whose
        // hello arrived: one lost with a replaced link is asked for again), but the ones
        // refused for their protocol.
        let synced_all = self.peers.keys().all(|n| self.synced.contains(n))
            && self
                .links
                .values()
                .filter(|l| l.ready && !l.refused)
                .all(|l| self.introduced(l));
        let waiting_for_link = self
            .links
            .values()
            .any(|l| !l.ready && !l.unreachable && !l.refused);
        let someone = !self.peers.is_empty();
        let timed_out = now.duration_since(self.started) >= self.config.join_timeout;
        if synced_all && !waiting_for_link && (someone || self.alone || timed_out) {
            self.status = MemberStatus::Alive;
            self.dirty = true;
            info!(node = %self.me, peers = self.peers.len(), registry = self.registry.live(), "member alive (registry synced)");
            self.announce(out);
            // Into the quorum set now: ask for a lease at once rather than at the next
            // round, so that it is ready to answer as soon as the others grant it.
            self.quorum.due_now();
            self.lease_tick(now, out);
        }
    }

    /// Removes from the quorum set the dead members a majority voted dead once they own no
    /// name any more (their children restarted elsewhere), and forgets earlier runs nothing
    /// references, so a long series of rolling updates does not accumulate them.
    pub(super) fn forget_gone_members(&mut self, now: Instant) {
        let gone_or_going = |s: MemberStatus| matches!(s, MemberStatus::Left | MemberStatus::Dead);
        if self.superseded.is_empty() && !self.members.iter().any(|i| gone_or_going(i.status)) {
            // Nothing to forget: no pass over the registry (it runs every second).
            return;
        }
        let owners: BTreeSet<NodeId> = {
            let mut seen: BTreeSet<&NodeId> = BTreeSet::new();
            for (_, e) in self.registry.iter().filter(|(_, e)| !e.removed) {
                seen.insert(&e.owner);
            }
            seen.into_iter().cloned().collect()
        };
        self.superseded.retain(|n| owners.contains(n));
        // Members that left and are gone own nothing: forget them.
        let departed: Vec<MemberWire> = self
            .members
            .iter()
            .filter(|i| {
                i.status == MemberStatus::Left
                    && !self.peers.contains_key(&i.node.name)
                    && !owners.contains(&i.node)
            })
            .map(|m| MemberWire {
                node: m.node.clone(),
                status: MemberStatus::Left,
                version: m.version.0.clone(),
                reads: m.reads.clone(),
            })
            .collect();
        for wire in departed {
            let node = wire.node.clone();
            self.members.forget(&node);
            // Still voted dead a while, as a removed member is: a member that missed its
            // farewell counts it dead, in its quorum set, and needs the others' votes to
            // remove it (it left: it holds no lease from this member).
            self.quorum.removed(&node, now);
            self.hello_seen.remove(&node);
            self.departed.insert(node, (now, wire));
            self.dirty = true;
        }
        self.departed
            .retain(|_, (at, _)| now.saturating_duration_since(*at) < DEPARTED_MEMORY);
        if !self.members.iter().any(|i| i.status == MemberStatus::Dead) {
            return;
        }
        let set = self.quorum_set();
        let gone: Vec<NodeId> = self
            .members
            .iter()
            .filter(|i| {
                i.status == MemberStatus::Dead
                    && !owners.contains(&i.node)
                    && self.quorum.dead(&self.me, &i.node, &set, now)
            })
            .map(|i| i.node.clone())
            .collect();
        for node in gone {
            info!(member = %node, "dead member removed from the quorum set");
            self.members.forget(&node);
            self.quorum.removed(&node, now);
            self.hello_seen.remove(&node);
            self.dirty = true;
        }
    }

    /// Starts `name` here at the next epoch, unless it already runs somewhere.
    pub(super) fn start_here(
        &mut self,
        out: &mut Vec<Effect<T>>,
        name: String,
        spec: Vec<u8>,
        reply: T,
    ) {
        let refuse = |out: &mut Vec<Effect<T>>, reply: T, why: StartRefusal| {
            out.push(Effect::Reply {
                to: reply,
                reply: Reply::Started(Err(why)),
            })
        };
        let prev_epoch = match self.registry.get_any(&name) {
            Some(e) if !e.removed => {
                let owner = e.owner.name.clone();
                return refuse(out, reply, StartRefusal::AlreadyStarted { owner });
            }
            Some(e) => e.epoch,
            None => 0,
        };
        if matches!(self.status, MemberStatus::Draining | MemberStatus::Dead) {
            return refuse(out, reply, StartRefusal::Draining);
        }
        let key: Arc<str> = Arc::from(name.as_str());
        if self.spawning.contains_key(&key) || self.local.contains_key(&key) {
            let owner = self.me.name.clone();
            return refuse(out, reply, StartRefusal::AlreadyStarted { owner });
        }
        // Its registry entry travels in syncs, deltas and offers: it must leave room there.
        let most = self.config.max_message_bytes / 4;
        if name.len() + spec.len() > most {
            let bytes = name.len() + spec.len();
            return refuse(
                out,
                reply,
                StartRefusal::Failed(format!(
                    "its name and spec take {bytes} bytes; at most {most} (a quarter of the \
                     message budget between members) are allowed"
                )),
            );
        }
        if let Some(limit) = self.config.max_children {
            let starting = self
                .spawning
                .values()
                .filter(|s| matches!(s, SpawnFor::Start { .. }))
                .count();
            if self.local.len() + starting >= limit {
                return refuse(out, reply, StartRefusal::Full { limit });
            }
        }
        let epoch = prev_epoch + 1;
        let spec: Arc<[u8]> = Arc::from(spec);
        self.spawning.insert(
            key.clone(),
            SpawnFor::Start {
                reply,
                spec: spec.clone(),
                epoch,
            },
        );
        out.push(Effect::Spawn {
            name: key,
            init: super::Init::Fresh { spec },
            epoch,
            pending: false,
        });
        debug!(child = %name, epoch, "starting child here");
    }

    // === protocol versions ===

    /// True when a member speaking `theirs` can be one of this cluster: it shares a version
    /// with this member, and with every member heard from (the cluster uses the highest
    /// version all speak; one it would leave none to is refused whoever it meets first).
    fn speaks_with(&self, node: &NodeId, theirs: Protocols) -> bool {
        self.config.protocols.overlaps(&theirs)
            && self
                .members
                .live()
                .filter(|m| m.node.name != node.name)
                .filter_map(|m| m.protocols)
                .all(|p| p.overlaps(&theirs))
    }

    /// The highest protocol version every member speaks (this one included): what may be sent.
    /// A member known only from a list counts as speaking the oldest version this one does.
    pub(super) fn protocol_in_use(&self) -> u16 {
        let mine = self.config.protocols;
        self.members
            .iter()
            .map(|m| m.protocols.map_or(mine.min, |p| p.max))
            .fold(mine.max, u16::min)
            .max(mine.min)
    }

    /// Tells the quorum which members answer lease requests with their votes (they speak
    /// protocol 3): only those answers count for them.
    pub(super) fn note_round_voters(&mut self) {
        let since = Feature::VotesByRound.since();
        let reads = |m: &&MemberInfo| m.protocols.is_some_and(|p| p.max >= since);
        let same = self.members.iter().filter(reads).count() == self.quorum.round_voters.len()
            && self
                .members
                .iter()
                .filter(reads)
                .all(|m| self.quorum.round_voters.contains(&m.node));
        if !same {
            self.quorum.round_voters = self
                .members
                .iter()
                .filter(reads)
                .map(|m| m.node.clone())
                .collect();
        }
    }

    /// True while every member speaks the version that added `feature`.
    pub(super) fn uses(&self, feature: Feature) -> bool {
        self.protocol_in_use() >= feature.since()
    }

    /// Logs (and publishes) a change of the protocol version in use.
    pub(super) fn note_protocol_in_use(&mut self) {
        let now_in_use = self.protocol_in_use();
        if now_in_use != self.in_use {
            info!(
                from = self.in_use,
                to = now_in_use,
                "horde protocol in use changed (the highest version every member speaks)"
            );
            self.in_use = now_in_use;
            self.dirty = true;
        }
    }

    /// A member speaks no version this cluster speaks. A joining member that meets such an
    /// established member (alive or draining) cannot join: it refuses, and never becomes
    /// alive. Anyone else refuses that member: no hello back, no registry, no lease, no
    /// children, and nothing waits for it.
    fn incompatible(
        &mut self,
        out: &mut Vec<Effect<T>>,
        node: &NodeId,
        version: &str,
        status: MemberStatus,
        theirs: Option<Protocols>,
    ) {
        let _ = out;
        if let Some(link) = self.links.get_mut(&node.name).filter(|l| l.id == *node) {
            link.refused = true;
        }
        self.early_hellos.remove(&node.name);
        let established = matches!(status, MemberStatus::Alive | MemberStatus::Draining);
        if self.status == MemberStatus::Joining && established {
            if self.refusal.is_none() {
                let refusal = Incompatible {
                    node: self.me.clone(),
                    version: self.version.clone(),
                    protocols: self.config.protocols,
                    peer: Some(node.clone()),
                    peer_version: Some(version.to_string()),
                    peer_protocols: theirs,
                    undecodable: self.undecodable,
                };
                error!(%refusal, "refusing to join");
                self.refusal = Some(refusal);
                self.dirty = true;
            }
            return;
        }
        if self.refused.insert(node.clone()) {
            let theirs = theirs.map_or_else(|| "unknown".to_string(), |p| p.to_string());
            warn!(member = %node, version, protocol = %theirs, ours = %self.config.protocols, in_use = self.protocol_in_use(), "refusing member: it speaks no horde protocol version this cluster speaks (a node of this release or newer refuses to join by itself; an older one must be replaced by a node of a release the cluster speaks)");
        }
    }

    /// A hello whose first fields decoded but not the rest: a member of another protocol, or a
    /// malformed hello of this one (then only counted).
    pub(super) fn on_foreign_hello(
        &mut self,
        now: Instant,
        out: &mut Vec<Effect<T>>,
        head: HelloHead,
    ) {
        let theirs = Protocols::new(head.protocol, head.protocol);
        if self.config.protocols.overlaps(&theirs) {
            return self.on_undecodable(now, out);
        }
        self.incompatible(out, &head.node, &head.version, head.status, Some(theirs));
    }

    /// A message that did not decode at all. While joining, with no member's hello decoded
    /// and many such messages, the cluster speaks something this build does not know: refuse.
    pub(super) fn on_undecodable(&mut self, now: Instant, out: &mut Vec<Effect<T>>) {
        let _ = out;
        self.undecodable += 1;
        let stuck = self.status == MemberStatus::Joining
            && self.refusal.is_none()
            && self.peers.is_empty()
            && self.undecodable >= UNDECODABLE_REFUSAL
            && now.saturating_duration_since(self.started) >= UNDECODABLE_GRACE
            && self.links.values().any(|l| l.ready);
        if stuck {
            let refusal = Incompatible {
                node: self.me.clone(),
                version: self.version.clone(),
                protocols: self.config.protocols,
                peer: None,
                peer_version: None,
                peer_protocols: None,
                undecodable: self.undecodable,
            };
            error!(%refusal, "refusing to join");
            self.refusal = Some(refusal);
            self.dirty = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use discovery::NodeId;

    use super::super::{CoreConfig, Effect, Input, MoveConfig, Request};
    use super::Core;
    use crate::child::RestartPolicy;
    use crate::membership::MemberStatus;
    use crate::placement::Rendezvous;
    use crate::protocol::{Hello, HelloHead, Protocols, Wire};
    use crate::stats::Counters;

    fn node(n: &str) -> NodeId {
        NodeId {
            name: format!("{n}@127.0.0.1"),
            incarnation: 1,
        }
    }

    fn core(name: &str, protocols: Protocols, now: Instant) -> Core<u32> {
        let config = CoreConfig {
            join_timeout: Duration::from_secs(3),
            max_restarts: 3,
            restart_window: Duration::from_secs(5),
            restart_policy: RestartPolicy::Permanent,
            moves: MoveConfig::default(),
            rebalance: None,
            placement: Arc::new(Rendezvous),
            lease: Duration::from_secs(1),
            reads: vec![1],
            writes: vec![1],
            max_message_bytes: crate::protocol::DEFAULT_MAX_MESSAGE_BYTES,
            max_children: None,
            tombstone_grace: Duration::from_secs(30),
            protocols,
        };
        Core::new(
            node(name),
            "0.2.0",
            config,
            Arc::new(Counters::default()),
            now,
        )
    }

    fn hello(name: &str, protocols: Protocols, status: MemberStatus) -> Hello {
        Hello {
            node: node(name),
            protocol: protocols.min,
            version: format!("v-{name}"),
            status,
            seq: 1,
            reads: vec![1],
            max_protocol: (protocols.max > 2).then_some(protocols.max),
        }
    }

    /// Connects `peer` to `core` (its link is up and its member actor found).
    fn connect(core: &mut Core<u32>, peer: &str, now: Instant) -> Vec<Effect<u32>> {
        core.on(now, Input::NodeUp(node(peer)));
        core.on(now, Input::PeerReady(node(peer)))
    }

    fn sent_to(effects: &[Effect<u32>], to: &str, kind: &str) -> bool {
        effects.iter().any(|e| match e {
            Effect::Send { to: t, wire } => t.name.starts_with(to) && wire.kind() == kind,
            Effect::Broadcast { to: ts, wire } => {
                wire.kind() == kind && ts.iter().any(|t| t.name.starts_with(to))
            }
            _ => false,
        })
    }

    #[test]
    fn a_joining_member_refuses_a_cluster_it_shares_no_version_with_and_never_becomes_alive() {
        let t0 = Instant::now();
        let mut b = core("b", Protocols::THIS, t0);
        connect(&mut b, "a", t0);
        // Release 367b6ad's hello: the first fields decode, the rest does not.
        b.on(
            t0,
            Input::ForeignHello(HelloHead {
                node: node("a"),
                protocol: 1,
                version: "0.1.0-367b6ad".into(),
                status: MemberStatus::Alive,
            }),
        );
        let refusal = b.view().refusal.expect("refused");
        let text = refusal.to_string();
        for part in [
            "version 0.2.0",
            "protocol 2-3",
            "0.1.0-367b6ad",
            "protocol 1",
            "upgrade",
        ] {
            assert!(text.contains(part), "`{part}` missing from: {text}");
        }
        b.on(t0 + Duration::from_secs(10), Input::Tick);
        assert_eq!(b.status(), MemberStatus::Joining, "never alive");
        assert!(b.view().members.iter().next().is_none(), "a is no member");

        // A newer one: the text says this node is the older.
        let mut c = core("c", Protocols::THIS, t0);
        connect(&mut c, "a", t0);
        let h = hello("a", Protocols::new(4, 5), MemberStatus::Alive);
        c.on(t0, Input::Peer(Wire::Hello(h)));
        let text = c.view().refusal.expect("refused").to_string();
        assert!(text.contains("protocol 4-5, newer"), "{text}");
    }

    #[test]
    fn a_joining_member_is_not_refused_for_another_newcomer_it_cannot_speak_with() {
        let t0 = Instant::now();
        let mut b = core("b", Protocols::THIS, t0);
        connect(&mut b, "x", t0);
        b.on(
            t0,
            Input::Peer(Wire::Hello(hello(
                "x",
                Protocols::new(5, 5),
                MemberStatus::Joining,
            ))),
        );
        assert!(b.view().refusal.is_none(), "x is no established member");
        // Nothing waits for x: alone otherwise, b becomes alive.
        b.on(t0, Input::Request(Request::NoPeersExpected));
        b.on(t0 + Duration::from_secs(4), Input::Tick);
        assert_eq!(b.status(), MemberStatus::Alive);
    }

    #[test]
    fn an_established_member_refuses_a_newcomer_it_shares_no_version_with() {
        let t0 = Instant::now();
        let mut a = core("a", Protocols::THIS, t0);
        a.on(t0, Input::Request(Request::NoPeersExpected));
        assert_eq!(a.status(), MemberStatus::Alive);
        connect(&mut a, "z", t0);
        let out = a.on(
            t0,
            Input::Peer(Wire::Hello(hello(
                "z",
                Protocols::new(4, 4),
                MemberStatus::Joining,
            ))),
        );
        assert!(
            !sent_to(&out, "z", "Sync"),
            "no registry for a refused member"
        );
        assert!(a.view().members.iter().next().is_none(), "z is no member");
        assert!(a.view().peers.is_empty(), "nothing is routed to z");
        // It is not asked again for its hello.
        let later = a.on(t0 + Duration::from_secs(3), Input::Tick);
        assert!(!sent_to(&later, "z", "Reintroduce"), "{later:?}");
    }

    #[test]
    fn the_protocol_in_use_is_the_highest_every_member_speaks() {
        let t0 = Instant::now();
        let mut a = core("a", Protocols::THIS, t0);
        a.on(t0, Input::Request(Request::NoPeersExpected));
        assert_eq!(a.view().protocol_in_use, 3, "alone: its own newest");
        connect(&mut a, "b", t0);
        a.on(
            t0,
            Input::Peer(Wire::Hello(hello(
                "b",
                Protocols::THIS,
                MemberStatus::Alive,
            ))),
        );
        assert_eq!(a.view().protocol_in_use, 3);
        // A node of the previous release joins (a rollback): the protocol falls at once.
        connect(&mut a, "c", t0);
        let old = hello("c", Protocols::new(2, 2), MemberStatus::Joining);
        assert_eq!(old.max_protocol, None, "0.1.0 appends nothing");
        a.on(t0, Input::Peer(Wire::Hello(old)));
        assert_eq!(a.view().protocol_in_use, 2);
        let members = a.view().members;
        let c = members.get(&node("c").name).expect("c is a member");
        assert_eq!(c.protocols, Some(Protocols::new(2, 2)));
    }
}
