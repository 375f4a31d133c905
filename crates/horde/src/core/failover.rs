//! Failover: restarts of a dead member's children on the member placement picks, from the
//! newest replica any member holds (else from the spec, and counted as state lost), and
//! restarts of crashed children in place.
//!
//! Only a member that holds its quorum lease restarts anything (the majority side), and only
//! the children of a member a majority voted dead (its lease surely ran out). The replicas of
//! a child are asked of every member that may hold one (every member not surely gone:
//! connected or not, since a link that stalls or was refused says nothing of the member
//! behind it) and the restart waits for all of them, however long: the backup that
//! acknowledged the child's last answers is among them. Only a member that is surely gone
//! (voted dead by a majority, replaced by a new run, departed) is not waited for; if it was
//! the backup too (two faults at once), the child restarts from the newest replica found, or
//! its spec, and the loss is logged and counted.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use discovery::NodeId;
use tracing::{error, warn};

use super::planted::{self, Bug};
use super::{Core, Effect, Init, Local, SpawnError, SpawnFor};
use crate::child::RestartPolicy;
use crate::membership::MemberStatus;
use crate::protocol::{Replica, Wire};
use crate::registry::Entry;
use crate::stats::{Counters, HordeEvent};

/// How long a replica fetch waits before it is asked again (of the members that may hold a
/// replica then).
const FETCH_TIMEOUT: Duration = Duration::from_secs(1);

/// A request for the replicas of one orphan, sent to every peer.
#[derive(Debug)]
struct Fetch {
    name: String,
    entry: Entry,
    waiting: BTreeSet<String>,
    /// Every member asked (or to be asked): the answers name the members their senders know,
    /// and those not asked yet are waited for too.
    asked: BTreeSet<String>,
    best: Option<Replica>,
    deadline: Instant,
}

/// Failover state of a member.
#[derive(Debug, Default)]
pub(super) struct Failover {
    /// Names being restarted here (a fetch is in flight).
    restarting: BTreeSet<String>,
    /// Fetches in flight, by correlation id.
    fetches: BTreeMap<u64, Fetch>,
    /// Names whose fetch went unanswered by some member, with those members (logged once).
    waiting_for: BTreeMap<String, BTreeSet<String>>,
}

fn newer(a: &Replica, b: &Option<Replica>) -> bool {
    b.as_ref()
        .is_none_or(|b| (a.epoch, a.seq) > (b.epoch, b.seq))
}

impl<T> Core<T> {
    /// Restarts, here, the children of dead owners that placement gives to this node.
    pub(super) fn failover(&mut self, now: Instant, out: &mut Vec<Effect<T>>) {
        if self.status != MemberStatus::Alive || !self.quorum.valid(now) {
            tracing::trace!(node = %self.me, status = %self.status, lease = self.quorum.valid(now), "no failover from here");
            return;
        }
        // One verdict per owner (a few nodes), not per entry (this runs every second over
        // the whole registry).
        let mut verdicts: BTreeMap<&NodeId, bool> = BTreeMap::new();
        let mut orphans: Vec<(String, Entry)> = Vec::new();
        for (n, e) in self.registry.iter().filter(|(_, e)| !e.removed) {
            let dead = *verdicts
                .entry(&e.owner)
                .or_insert_with(|| self.dead_for_failover(&e.owner, now));
            if dead {
                orphans.push((n.to_string(), e.clone()));
            }
        }
        // What unanswered fetches were waiting for is kept only for names still orphaned.
        if !self.failover.waiting_for.is_empty() {
            let orphaned: BTreeSet<&str> = orphans.iter().map(|(n, _)| n.as_str()).collect();
            self.failover
                .waiting_for
                .retain(|n, _| orphaned.contains(n.as_str()));
        }
        if orphans.is_empty() {
            return;
        }
        let mut candidates = self.candidates();
        candidates.retain(|c| !self.is_dead(&c.node) && !self.dead_for_failover(&c.node, now));
        for (name, entry) in orphans {
            if self.failover.restarting.contains(&name) {
                continue;
            }
            let target = self.config.placement.place(&name, &candidates);
            if target.as_ref() != Some(&self.me) {
                tracing::debug!(child = %name, target = ?target.map(|t| t.name), "orphan placed on another member");
                continue;
            }
            self.failover.restarting.insert(name.clone());
            // This member may be the child's backup too: what it takes from the owner from
            // now on would miss the restart, which starts from the replica it holds now.
            self.fence_fetched(now, std::slice::from_ref(&name));
            let mut best = None;
            for r in self.replicas_of(std::slice::from_ref(&name)) {
                if newer(&r, &best) {
                    best = Some(r);
                }
            }
            let peers = self.replica_holders(&entry.owner, now);
            if peers.is_empty() {
                self.restart(now, out, name, entry, best);
                continue;
            }
            let id = self.next_id();
            for p in &peers {
                out.push(Effect::Send {
                    to: p.clone(),
                    wire: Wire::FetchReplicas {
                        from: self.me.clone(),
                        id,
                        names: vec![name.clone()],
                    },
                });
            }
            self.failover.fetches.insert(
                id,
                Fetch {
                    name,
                    entry,
                    waiting: peers.iter().map(|p| p.name.clone()).collect(),
                    asked: peers.into_iter().map(|p| p.name).collect(),
                    best,
                    deadline: now + FETCH_TIMEOUT,
                },
            );
        }
    }

    pub(super) fn on_replicas_found(
        &mut self,
        now: Instant,
        out: &mut Vec<Effect<T>>,
        from: NodeId,
        id: u64,
        items: Vec<Replica>,
        members: Option<Vec<NodeId>>,
    ) {
        // Members the answer names that this one did not ask (it has not heard of them yet:
        // a join whose link to it stalled) may hold the newest replica: asked now when
        // connected, else waited for until the fetch is asked again, of them too once known.
        let unasked: Vec<NodeId> = match (self.failover.fetches.get(&id), members) {
            (Some(f), Some(members)) => members
                .into_iter()
                .filter(|m| {
                    *m != self.me
                        && *m != *f.entry.owner
                        && !f.asked.contains(&m.name)
                        && !self.dead_for_failover(m, now)
                })
                .collect(),
            _ => Vec::new(),
        };
        let Some(f) = self.failover.fetches.get_mut(&id) else {
            return;
        };
        if !planted::on(Bug::FailoverSkipsUnknown) {
            for m in unasked {
                f.asked.insert(m.name.clone());
                f.waiting.insert(m.name.clone());
                if self.peers.get(&m.name) == Some(&m) {
                    out.push(Effect::Send {
                        to: m,
                        wire: Wire::FetchReplicas {
                            from: self.me.clone(),
                            id,
                            names: vec![f.name.clone()],
                        },
                    });
                }
            }
        }
        f.waiting.remove(&from.name);
        for r in items {
            if r.name == f.name && newer(&r, &f.best) {
                f.best = Some(r);
            }
        }
        if f.waiting.is_empty()
            && let Some(f) = self.failover.fetches.remove(&id)
        {
            self.failover.waiting_for.remove(&f.name);
            self.restart(now, out, f.name, f.entry, f.best);
        }
    }

    /// Fetches not answered in time are asked again at the next sweep, of the members that may
    /// hold a replica then: one that is slow, stalled or cut off is waited for until it
    /// answers or is surely gone (a majority voted it dead), never given up on by a timer.
    pub(super) fn fetches_tick(&mut self, now: Instant, out: &mut Vec<Effect<T>>) {
        let _ = out;
        let expired: Vec<u64> = self
            .failover
            .fetches
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            let Some(f) = self.failover.fetches.remove(&id) else {
                continue;
            };
            let known = self.failover.waiting_for.get(&f.name);
            if known != Some(&f.waiting) {
                warn!(child = %f.name, waiting = ?f.waiting, "restart waits for members that may hold a newer replica of it");
                self.failover
                    .waiting_for
                    .insert(f.name.clone(), f.waiting.clone());
            }
            self.failover.restarting.remove(&f.name);
        }
    }

    /// A member a fetch waits for went down: the fetch is asked again at the next sweep, of
    /// the members that may hold a replica then (a leaving member hands its replicas over
    /// before it goes: the others may have answered before theirs arrived).
    pub(super) fn fetches_peer_down(
        &mut self,
        now: Instant,
        out: &mut Vec<Effect<T>>,
        id: &NodeId,
    ) {
        let _ = (now, out);
        let unanswered: Vec<u64> = self
            .failover
            .fetches
            .iter()
            .filter(|(_, f)| f.waiting.contains(&id.name))
            .map(|(fid, _)| *fid)
            .collect();
        for fid in unanswered {
            if let Some(f) = self.failover.fetches.remove(&fid) {
                self.failover.restarting.remove(&f.name);
            }
        }
    }

    /// The members this one knows that may hold replicas, itself left out: what its answer to
    /// a fetch names ([`crate::protocol::Feature::FetchNamesMembers`]).
    pub(super) fn fetch_members(&self, now: Instant) -> Vec<NodeId> {
        self.replica_holders(&self.me, now)
    }

    /// The members that may hold a replica of a child of `owner`: every member known but
    /// `owner` and this one, connected or not, unless it is surely gone (an earlier run of a
    /// name, a member that left and is gone, one a majority voted dead).
    fn replica_holders(&self, owner: &NodeId, now: Instant) -> Vec<NodeId> {
        let mut out: Vec<NodeId> = self
            .peers
            .values()
            .filter(|p| **p != *owner && **p != self.me)
            .cloned()
            .collect();
        for m in self.members.iter() {
            if m.node != *owner
                && m.node != self.me
                && !out.contains(&m.node)
                && !self.dead_for_failover(&m.node, now)
            {
                out.push(m.node.clone());
            }
        }
        out
    }

    fn restart(
        &mut self,
        now: Instant,
        out: &mut Vec<Effect<T>>,
        name: String,
        entry: Entry,
        best: Option<Replica>,
    ) {
        self.failover.restarting.remove(&name);
        // Still orphaned, still ours?
        let current = self.registry.get(&name);
        if current.is_none_or(|c| c.epoch != entry.epoch || !self.dead_for_failover(&c.owner, now))
        {
            return;
        }
        let key: Arc<str> = Arc::from(name.as_str());
        if self.spawning.contains_key(&key) || self.local.contains_key(&key) {
            return;
        }
        if self.moves.take_pending(&key).is_some() {
            // A copy arriving here from the dead owner: its state was one of the replicas.
            out.push(Effect::ToChild {
                name: key.clone(),
                cmd: super::ChildCmd::Stop { report: false },
            });
            out.push(Effect::Forget { name: key.clone() });
        }
        let from_replica = best.is_some();
        let newest = entry.epoch.max(best.as_ref().map_or(0, |r| r.epoch));
        let epoch = if super::planted::on(super::planted::Bug::FailoverInOldTerm) {
            newest + 1
        } else {
            crate::registry::failover_epoch(newest)
        };
        let init = match best {
            Some(r) => Init::Restore {
                schema: r.schema,
                state: r.state,
                subscribers: r.subscribers,
                event_seq: r.event_seq,
            },
            None => Init::Fresh {
                spec: entry.spec.clone(),
            },
        };
        self.spawning.insert(
            key.clone(),
            SpawnFor::Restart {
                entry,
                epoch,
                from_replica,
            },
        );
        out.push(Effect::Spawn {
            name: key,
            init,
            epoch,
            pending: false,
        });
    }

    pub(super) fn restart_spawned(
        &mut self,
        out: &mut Vec<Effect<T>>,
        name: Arc<str>,
        entry: Entry,
        epoch: u64,
        from_replica: bool,
        result: Result<(), SpawnError>,
    ) {
        if let Err(e) = result {
            warn!(child = %name, error = %e, "restart failed");
            return;
        }
        self.local.insert(name.clone(), Local { epoch });
        self.tell_backup(out, &name);
        self.replicas.remove(&name);
        if from_replica {
            Counters::add(&self.counters.restarts_from_snapshot, 1);
        } else {
            Counters::add(&self.counters.restarts_from_spec, 1);
            warn!(child = %name, previous = %entry.owner, "restarted from its spec: no member held a replica of it");
        }
        self.emit(
            out,
            HordeEvent::Restarted {
                name: name.to_string(),
                previous: (*entry.owner).clone(),
                from_snapshot: from_replica,
            },
        );
        self.publish(
            name,
            Entry {
                owner: Arc::new(self.me.clone()),
                epoch,
                spec: entry.spec.clone(),
                removed: false,
            },
        );
    }

    /// A hosted child panicked: restart it in place from its spec, or remove it.
    pub(super) fn on_child_crash(
        &mut self,
        now: Instant,
        out: &mut Vec<Effect<T>>,
        name: Arc<str>,
        error: String,
    ) {
        if self.local.remove(&name).is_some() {
            out.push(Effect::Forget { name: name.clone() });
        }
        self.backups.remove(&name);
        let window = self.config.restart_window;
        let recent = self.crashes.entry(name.clone()).or_default();
        recent.retain(|t| now.duration_since(*t) < window);
        recent.push_back(now);
        let allowed = self.config.restart_policy == RestartPolicy::Permanent
            && recent.len() as u32 <= self.config.max_restarts;
        let Some(entry) = self
            .registry
            .get(&name)
            .filter(|e| *e.owner == self.me)
            .cloned()
        else {
            return;
        };
        if !allowed {
            error!(child = %name, %error, "child crashed too often (or is temporary); removing it");
            self.crashes.remove(&name);
            self.remove_name(out, &name);
            return;
        }
        warn!(child = %name, %error, "child crashed; restarting it from its spec");
        let spec = entry.spec.clone();
        let epoch = entry.epoch + 1;
        self.spawning
            .insert(name.clone(), SpawnFor::CrashRestart { entry });
        out.push(Effect::Spawn {
            name,
            init: Init::Fresh { spec },
            epoch,
            pending: false,
        });
    }

    pub(super) fn crash_restart_spawned(
        &mut self,
        out: &mut Vec<Effect<T>>,
        name: Arc<str>,
        entry: Entry,
        result: Result<(), SpawnError>,
    ) {
        match result {
            Ok(()) => {
                let epoch = entry.epoch + 1;
                self.local.insert(name.clone(), Local { epoch });
                self.tell_backup(out, &name);
                Counters::add(&self.counters.crashes, 1);
                self.publish(
                    name,
                    Entry {
                        owner: entry.owner.clone(),
                        epoch,
                        spec: entry.spec.clone(),
                        removed: false,
                    },
                );
            }
            Err(e) => {
                error!(child = %name, error = %e, "restart failed; removing it");
                // Not in `local` (it crashed), but the name is still ours: remove it.
                self.remove_name(out, &name);
            }
        }
    }
}
