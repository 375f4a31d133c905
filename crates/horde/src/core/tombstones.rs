//! Garbage collection of tombstones: a stopped child leaves a tombstone at `epoch + 1` so an
//! older entry cannot revive its name; once no member can hold (or send) an older entry any
//! more, the tombstone itself goes, so names that come and go do not grow every replica for
//! ever.
//!
//! # The rule
//! One member *collects* each tombstone: its owner (the member that removed the name), or,
//! when that run is gone (dead, replaced by a new run, forgotten), the lowest-named alive
//! member. The collector:
//! 1. notes every other member run it knows (not those that left) as *waiting*;
//! 2. sends each waiting member that is connected the tombstone in a `Deltas` batch of its own
//!    (again every [`RESEND`] until acknowledged) and crosses it off when it acknowledges
//!    that batch: it then holds the tombstone (or something newer) in its replica. A member
//!    run that is replaced by a new run of its name (which starts with an empty replica) or
//!    that left (it drained and exits) is crossed off at once. One that is down (dead, or
//!    dead and forgotten) stays waiting for [`DEAD_WAIT_GRACES`] graces (10 minutes by
//!    default): it may come back as the same run after a heal, with an older replica;
//! 3. once nobody waits and the tombstone is at least [`CoreConfig::tombstone_grace`] old
//!    here (messages sent before a member got the tombstone, still in flight, arrive within
//!    it), it drops its record and sends every peer `Collect`; a member drops its record
//!    only if it is still exactly that tombstone (name, epoch, owner).
//!
//! Why an older entry cannot revive the name: every member that could hold one has
//! acknowledged the tombstone, so no replica holds an older entry; what was in flight has
//! had the grace period to arrive; a member that joins later receives replicas that no
//! longer hold the name at all. A tombstone a member still holds (it missed the `Collect`,
//! its link was replaced at that instant) comes back to the others through anti-entropy
//! repair, harmlessly (it is a tombstone), and is collected again the same way.
//!
//! An owner is the authority on its own children: a live entry naming this run as owner for
//! a child it neither hosts, starts nor receives in a move is one it removed (and collected)
//! or lost; it removes it again, with a tombstone at the *same* epoch (a removal wins a tie,
//! and loses to any newer entry, such as a failed move's thaw at a higher epoch). So an old
//! entry a member brings back after a heal is removed again at once.
//!
//! What the rule does not cover: a member cut off for longer than the dead wait that comes
//! back as the same run, still hosting a child that was failed over, removed and collected
//! meanwhile, brings that child back; and a tombstone resurfacing as above beats a new child
//! started under the same name in between (epochs restart at 1 once a name is collected).
//!
//! [`CoreConfig::tombstone_grace`]: super::CoreConfig::tombstone_grace

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use discovery::NodeId;
use tracing::debug;

use super::planted::{self, Bug};
use super::{Core, Effect, repair};
use crate::membership::MemberStatus;
use crate::protocol::{Wire, WireEntry};
use crate::registry::{self, Entry};

/// A waiting member is sent its tombstones again this often until it acknowledges them.
pub const RESEND: Duration = Duration::from_secs(2);
/// A reminder batch not acknowledged within this is forgotten (it is sent again anyway).
const BATCH_MEMORY: Duration = Duration::from_secs(30);
/// Tombstones per reminder or `Collect` message.
const CHUNK: usize = 1000;
/// A member run that is down stays waiting this many tombstone graces (see the module docs).
pub const DEAD_WAIT_GRACES: u32 = 20;

/// A tombstone this member collects.
#[derive(Debug)]
struct Tomb {
    epoch: u64,
    owner: Arc<NodeId>,
    since: Instant,
    /// Member runs that have not acknowledged it yet, with since when each is down.
    waiting: BTreeMap<NodeId, Option<Instant>>,
    /// When each waiting member was last sent it.
    sent: BTreeMap<NodeId, Instant>,
}

/// A waiting member run, as this member sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    /// Connected.
    Up,
    /// Down (dead or forgotten): it may come back as the same run.
    Down,
    /// Replaced by a new run, or left: it will never answer and holds no replica.
    Gone,
}

/// Tombstones of this replica and those this member collects.
#[derive(Debug, Default)]
pub(super) struct Tombstones {
    /// Names whose record in the replica is (or was lately) a tombstone.
    seen: BTreeSet<Arc<str>>,
    /// The tombstones this member collects.
    tracked: BTreeMap<Arc<str>, Tomb>,
    /// Reminder batches: to whom, which names, when.
    batches: BTreeMap<u64, (String, Vec<Arc<str>>, Instant)>,
    /// Waiting member runs seen leave (once forgotten, they are no longer in the members).
    left: BTreeSet<NodeId>,
    /// Tombstones collected here lately (epoch, owner, when): the same tombstone arriving
    /// again from a member that had not applied the `Collect` yet (an anti-entropy repair
    /// crossing it) is an echo, not news: taking it back would start its collection over,
    /// a grace later each time. Kept two graces.
    collected: BTreeMap<Arc<str>, (u64, Arc<NodeId>, Instant)>,
}

impl Tombstones {
    /// The record of `name` is now `entry`.
    pub fn noted(&mut self, name: &str, entry: &Entry) {
        if entry.removed {
            if !self.seen.contains(name) {
                self.seen.insert(Arc::from(name));
            }
        } else if self.seen.remove(name) {
            self.tracked.remove(name);
        }
    }

    /// Number of tombstones in the replica.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// True when `entry` is a tombstone of `name` collected here lately (an echo).
    pub fn is_echo(&self, name: &str, entry: &Entry) -> bool {
        entry.removed
            && self
                .collected
                .get(name)
                .is_some_and(|(epoch, owner, _)| *epoch == entry.epoch && *owner == entry.owner)
    }
}

impl<T> Core<T> {
    /// True when this member collects the tombstone `e` (see the module docs).
    fn collects(&self, e: &Entry) -> bool {
        if *e.owner == self.me {
            return true;
        }
        let owner_gone = self.is_dead(&e.owner)
            || self
                .members
                .get(&e.owner.name)
                .is_none_or(|m| m.node != *e.owner);
        if !owner_gone {
            return false;
        }
        let lowest = self
            .members
            .live()
            .filter(|m| m.status == MemberStatus::Alive)
            .map(|m| m.node.name.as_str())
            .chain(std::iter::once(self.me.name.as_str()))
            .min();
        lowest == Some(self.me.name.as_str())
    }

    /// Member runs that must acknowledge a tombstone before it goes.
    fn tomb_audience(&self) -> BTreeSet<NodeId> {
        let mut out: BTreeSet<NodeId> = self
            .members
            .iter()
            .filter(|m| m.node != self.me)
            .filter(|m| m.status != MemberStatus::Left || self.peers.contains_key(&m.node.name))
            .map(|m| m.node.clone())
            .collect();
        out.extend(self.peers.values().filter(|p| **p != self.me).cloned());
        // Dead runs already removed from the quorum set and forgotten: one cut off (not
        // crashed) comes back as the same run after a heal, with its old replica, and must
        // hold the tombstone before it goes (it would bring the name back otherwise). Runs
        // that departed, or that a new run of their name replaced, never come back.
        out.extend(
            self.quorum
                .removed_runs()
                .filter(|n| **n != self.me && !self.departed.contains_key(*n))
                .filter(|n| self.members.get(&n.name).is_none_or(|m| m.node == **n))
                .cloned(),
        );
        out
    }

    /// Where a waiting member run stands.
    fn tomb_standing(&self, node: &NodeId) -> Standing {
        if self.superseded.contains(node)
            || self.tombs.left.contains(node)
            || self.departed.contains_key(node)
        {
            return Standing::Gone;
        }
        if self.peers.get(&node.name) == Some(node) {
            return Standing::Up;
        }
        match self.members.get(&node.name) {
            Some(m) if m.node != *node => Standing::Gone,
            Some(m) if m.status == MemberStatus::Left => Standing::Gone,
            // Dead, or forgotten: it may come back as the same run.
            _ => Standing::Down,
        }
    }

    /// Runs every sweep: tracks the tombstones this member collects, reminds waiting members,
    /// collects what is due.
    pub(super) fn tombstones_sweep(&mut self, now: Instant, out: &mut Vec<Effect<T>>) {
        let echoes = self.config.tombstone_grace * 2;
        self.tombs
            .collected
            .retain(|_, (_, _, at)| now.saturating_duration_since(*at) < echoes);
        if !matches!(self.status, MemberStatus::Alive | MemberStatus::Draining) {
            return;
        }
        self.tombs
            .batches
            .retain(|_, (_, _, at)| now.saturating_duration_since(*at) < BATCH_MEMORY);
        // Which tombstones are this member's to collect.
        let names: Vec<Arc<str>> = self.tombs.seen.iter().cloned().collect();
        let audience = self.tomb_audience();
        for name in names {
            let Some(e) = self.registry.get_any(&name).cloned() else {
                self.tombs.seen.remove(&name);
                self.tombs.tracked.remove(&name);
                continue;
            };
            if !e.removed {
                self.tombs.seen.remove(&name);
                self.tombs.tracked.remove(&name);
                continue;
            }
            if !self.collects(&e) {
                self.tombs.tracked.remove(&name);
                continue;
            }
            let fresh = self
                .tombs
                .tracked
                .get(&name)
                .is_none_or(|t| t.epoch != e.epoch || t.owner != e.owner);
            if fresh {
                self.tombs.tracked.insert(
                    name.clone(),
                    Tomb {
                        epoch: e.epoch,
                        owner: e.owner.clone(),
                        since: now,
                        waiting: audience.iter().map(|n| (n.clone(), None)).collect(),
                        sent: BTreeMap::new(),
                    },
                );
            }
        }
        // Cross off member runs that are gone (or down too long); remind the connected ones
        // still waiting.
        let waiting: BTreeSet<NodeId> = self
            .tombs
            .tracked
            .values()
            .flat_map(|t| t.waiting.keys().cloned())
            .collect();
        for m in self.members.iter() {
            if m.status == MemberStatus::Left && waiting.contains(&m.node) {
                self.tombs.left.insert(m.node.clone());
            }
        }
        self.tombs.left.retain(|n| waiting.contains(n));
        let standing: BTreeMap<NodeId, Standing> = self
            .tombs
            .tracked
            .values()
            .flat_map(|t| t.waiting.keys())
            .map(|n| (n.clone(), self.tomb_standing(n)))
            .collect();
        let mut remind: BTreeMap<NodeId, Vec<Arc<str>>> = BTreeMap::new();
        let mut due: Vec<Arc<str>> = Vec::new();
        let grace = self.config.tombstone_grace;
        let dead_wait = grace * DEAD_WAIT_GRACES;
        for (name, t) in self.tombs.tracked.iter_mut() {
            t.waiting.retain(|n, down| match standing.get(n) {
                Some(Standing::Gone) => false,
                Some(Standing::Down) => {
                    let since = *down.get_or_insert(now);
                    now.saturating_duration_since(since) < dead_wait
                }
                _ => {
                    *down = None;
                    true
                }
            });
            t.sent.retain(|n, _| t.waiting.contains_key(n));
            for n in t.waiting.keys() {
                let connected = self.peers.get(&n.name) == Some(n);
                let stale = t
                    .sent
                    .get(n)
                    .is_none_or(|at| now.saturating_duration_since(*at) >= RESEND);
                if connected && stale {
                    t.sent.insert(n.clone(), now);
                    remind.entry(n.clone()).or_default().push(name.clone());
                }
            }
            tracing::trace!(child = %name, waiting = ?t.waiting.keys().collect::<Vec<_>>(), "tombstone");
            let all_hold = t.waiting.is_empty() || planted::on(Bug::CollectBeforeAllAcked);
            if all_hold && now.saturating_duration_since(t.since) >= grace {
                due.push(name.clone());
            }
        }
        for (node, names) in remind {
            for chunk in names.chunks(CHUNK) {
                let entries: Vec<(Arc<str>, Entry)> = chunk
                    .iter()
                    .filter_map(|n| self.registry.get_any(n).map(|e| (n.clone(), e.clone())))
                    .collect();
                let (nodes, wire) = registry::to_wire(entries.iter().map(|(n, e)| (n, e)));
                self.batch += 1;
                let batch = self.batch;
                self.tombs
                    .batches
                    .insert(batch, (node.name.clone(), chunk.to_vec(), now));
                out.push(Effect::Send {
                    to: node.clone(),
                    wire: Wire::Deltas {
                        from: self.me.clone(),
                        batch,
                        nodes,
                        entries: wire,
                    },
                });
            }
        }
        if due.is_empty() {
            return;
        }
        let mut collected: Vec<(Arc<str>, Entry)> = Vec::with_capacity(due.len());
        for name in due {
            self.tombs.tracked.remove(&name);
            if let Some(e) = self.collect_one(now, &name, None) {
                collected.push((name, e));
            }
        }
        debug!(tombstones = collected.len(), "tombstones collected");
        let to: Vec<NodeId> = self.peers.values().cloned().collect();
        if to.is_empty() {
            return;
        }
        for chunk in collected.chunks(CHUNK) {
            let (nodes, entries) = registry::to_wire(chunk.iter().map(|(n, e)| (n, e)));
            out.push(Effect::Broadcast {
                to: to.clone(),
                wire: Wire::Collect {
                    from: self.me.clone(),
                    nodes: nodes.clone(),
                    entries,
                },
            });
        }
    }

    /// Drops the record of `name` if it is a tombstone (and exactly `expected` when given);
    /// returns what was dropped.
    fn collect_one(&mut self, now: Instant, name: &str, expected: Option<&Entry>) -> Option<Entry> {
        let e = self.registry.get_any(name)?.clone();
        if !e.removed || expected.is_some_and(|x| x.epoch != e.epoch || x.owner != e.owner) {
            return None;
        }
        self.tombs
            .collected
            .insert(Arc::from(name), (e.epoch, e.owner.clone(), now));
        self.registry.remove(name);
        self.repair
            .changed(name, Some(repair::entry_hash(name, &e)), None);
        self.tombs.seen.remove(name);
        self.tombs.tracked.remove(name);
        self.replicas.remove(name);
        self.dirty = true;
        Some(e)
    }

    /// A `DeltaAck`: crosses the member off the tombstones of that batch, if it was a reminder.
    pub(super) fn tombstones_acked(&mut self, node: &NodeId, batch: u64) {
        let Some((to, names, _)) = self.tombs.batches.remove(&batch) else {
            return;
        };
        if to != node.name {
            return;
        }
        for name in names {
            if let Some(t) = self.tombs.tracked.get_mut(&name) {
                t.waiting.retain(|n, _| n.name != node.name);
            }
        }
    }

    /// A live entry naming this run arrived for a child it neither hosts, starts nor
    /// receives: removed (and collected) here, or lost. Removed again at the same epoch (see
    /// the module docs).
    pub(super) fn disown(&mut self, name: &Arc<str>) {
        let Some(e) = self.registry.get(name).cloned() else {
            return;
        };
        if *e.owner != self.me
            || self.local.contains_key(name)
            || self.spawning.contains_key(name)
            || self.moves.pending_epoch(name).is_some()
        {
            return;
        }
        debug!(child = %name, epoch = e.epoch, "an entry of a child not hosted here came back; removed again");
        self.publish(name.clone(), Entry { removed: true, ..e });
    }

    /// Another member collected these tombstones: drop the same records here.
    pub(super) fn on_collect(&mut self, now: Instant, nodes: &[NodeId], entries: Vec<WireEntry>) {
        let (entries, _bad) = registry::from_wire(nodes, entries);
        for (name, e) in entries {
            self.collect_one(now, &name, Some(&e));
        }
    }
}
