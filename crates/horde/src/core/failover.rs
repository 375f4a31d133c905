//! Failover: snapshots held for other nodes' children, restarts of a dead node's children on
//! the member placement picks (from the newest snapshot found, else from the spec), and
//! restarts of crashed children in place.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use discovery::NodeId;
use tracing::{error, warn};

use super::{Core, Effect, Init, Local, SpawnError, SpawnFor};
use crate::child::RestartPolicy;
use crate::membership::MemberStatus;
use crate::protocol::{SnapshotItem, Wire};
use crate::registry::Entry;
use crate::stats::{Counters, HordeEvent};

/// How long a failover target waits for peers' snapshots of a dead node's children.
const SNAPSHOT_FETCH_TIMEOUT: Duration = Duration::from_millis(500);

/// A request for snapshots of one orphan, sent to every peer.
#[derive(Debug)]
struct Fetch {
    name: String,
    entry: Entry,
    waiting: BTreeSet<String>,
    best: Option<SnapshotItem>,
    deadline: Instant,
}

/// Failover state of a member.
#[derive(Debug, Default)]
pub(super) struct Failover {
    /// Snapshots held for other nodes' children.
    snapshots: BTreeMap<String, SnapshotItem>,
    /// Snapshots of local children waiting to go to their backups, by backup node name.
    out: BTreeMap<String, BTreeMap<String, SnapshotItem>>,
    /// Names being restarted here (a snapshot fetch is in flight).
    restarting: BTreeSet<String>,
    /// Snapshot fetches in flight, by correlation id.
    fetches: BTreeMap<u64, Fetch>,
}

impl Failover {
    /// Keeps snapshots sent by owners, the newest of each name.
    pub(super) fn hold(&mut self, items: Vec<SnapshotItem>) {
        for item in items {
            let newer = self
                .snapshots
                .get(&item.name)
                .is_none_or(|s| (item.epoch, item.handled) > (s.epoch, s.handled));
            if newer {
                self.snapshots.insert(item.name.clone(), item);
            }
        }
    }

    /// The snapshots held of these names.
    pub(super) fn held(&self, names: &[String]) -> Vec<SnapshotItem> {
        names
            .iter()
            .filter_map(|n| self.snapshots.get(n).cloned())
            .collect()
    }

    /// Forgets the snapshot of `name` (it runs here now, or moved away from here).
    pub(super) fn drop_snapshot(&mut self, name: &str) {
        self.snapshots.remove(name);
    }

    /// Queues a local child's snapshot for its backup.
    pub(super) fn queue_out(&mut self, backup: String, item: SnapshotItem) {
        self.out
            .entry(backup)
            .or_default()
            .insert(item.name.clone(), item);
    }

    /// The snapshots to send now, by backup node name.
    pub(super) fn take_out(&mut self) -> Vec<(String, Vec<SnapshotItem>)> {
        std::mem::take(&mut self.out)
            .into_iter()
            .map(|(node, items)| (node, items.into_values().collect()))
            .collect()
    }
}

impl<T> Core<T> {
    /// Restarts, here, the children of dead owners that placement gives to this node.
    pub(super) fn failover(&mut self, now: Instant, out: &mut Vec<Effect<T>>) {
        if self.status != MemberStatus::Alive {
            return;
        }
        let orphans: Vec<(String, Entry)> = self
            .registry
            .iter()
            .filter(|(_, e)| !e.removed && self.is_dead(&e.owner))
            .map(|(n, e)| (n.to_string(), e.clone()))
            .collect();
        if orphans.is_empty() {
            return;
        }
        let candidates = self.candidates();
        for (name, entry) in orphans {
            if self.failover.restarting.contains(&name)
                || self.config.placement.place(&name, &candidates).as_ref() != Some(&self.me)
            {
                continue;
            }
            self.failover.restarting.insert(name.clone());
            let local = self
                .failover
                .snapshots
                .get(&name)
                .filter(|s| s.epoch >= entry.epoch)
                .cloned();
            if local.is_some() {
                self.restart(out, name, entry, local);
                continue;
            }
            // Ask the other members for a newer snapshot, briefly.
            let peers: Vec<NodeId> = self.peers.values().cloned().collect();
            if peers.is_empty() {
                self.restart(out, name, entry, None);
                continue;
            }
            let id = self.next_id();
            for p in &peers {
                out.push(Effect::Send {
                    to: p.clone(),
                    wire: Wire::FetchSnapshots {
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
                    waiting: peers.into_iter().map(|p| p.name).collect(),
                    best: None,
                    deadline: now + SNAPSHOT_FETCH_TIMEOUT,
                },
            );
        }
    }

    pub(super) fn on_snapshots_found(
        &mut self,
        _now: Instant,
        out: &mut Vec<Effect<T>>,
        from: NodeId,
        id: u64,
        items: Vec<SnapshotItem>,
    ) {
        let Some(f) = self.failover.fetches.get_mut(&id) else {
            return;
        };
        f.waiting.remove(&from.name);
        for s in items {
            if s.name == f.name
                && s.epoch >= f.entry.epoch
                && f.best
                    .as_ref()
                    .is_none_or(|b| (s.epoch, s.handled) > (b.epoch, b.handled))
            {
                f.best = Some(s);
            }
        }
        if f.waiting.is_empty() {
            self.finish_fetch(out, id);
        }
    }

    fn finish_fetch(&mut self, out: &mut Vec<Effect<T>>, id: u64) {
        if let Some(f) = self.failover.fetches.remove(&id) {
            self.restart(out, f.name, f.entry, f.best);
        }
    }

    pub(super) fn fetches_tick(&mut self, now: Instant, out: &mut Vec<Effect<T>>) {
        let expired: Vec<u64> = self
            .failover
            .fetches
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.finish_fetch(out, id);
        }
    }

    pub(super) fn fetches_peer_down(&mut self, out: &mut Vec<Effect<T>>, id: &NodeId) {
        let done: Vec<u64> = self
            .failover
            .fetches
            .iter_mut()
            .filter_map(|(fid, f)| {
                (f.waiting.remove(&id.name) && f.waiting.is_empty()).then_some(*fid)
            })
            .collect();
        for fid in done {
            self.finish_fetch(out, fid);
        }
    }

    fn restart(
        &mut self,
        out: &mut Vec<Effect<T>>,
        name: String,
        entry: Entry,
        snapshot: Option<SnapshotItem>,
    ) {
        self.failover.restarting.remove(&name);
        // Still orphaned, still ours?
        let current = self.registry.get(&name);
        if current.is_none_or(|c| c.epoch != entry.epoch || !self.is_dead(&c.owner)) {
            return;
        }
        let key: Arc<str> = Arc::from(name.as_str());
        if self.spawning.contains_key(&key) || self.local.contains_key(&key) {
            return;
        }
        let from_snapshot = snapshot.is_some();
        let init = match snapshot {
            Some(s) => Init::Restore {
                schema: s.schema,
                state: s.state,
                subscribers: Vec::new(),
                event_seq: 0,
            },
            None => Init::Fresh {
                spec: entry.spec.clone(),
            },
        };
        let epoch = entry.epoch + 1;
        self.spawning.insert(
            key.clone(),
            SpawnFor::Restart {
                entry,
                from_snapshot,
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
        from_snapshot: bool,
        result: Result<(), SpawnError>,
    ) {
        if let Err(e) = result {
            warn!(child = %name, error = %e, "restart failed");
            return;
        }
        let epoch = entry.epoch + 1;
        self.local.insert(name.clone(), Local { epoch });
        self.failover.drop_snapshot(&name);
        if from_snapshot {
            Counters::add(&self.counters.restarts_from_snapshot, 1);
        } else {
            Counters::add(&self.counters.restarts_from_spec, 1);
            warn!(child = %name, previous = %entry.owner, "restarted from its spec: state since the start is lost");
        }
        self.emit(
            out,
            HordeEvent::Restarted {
                name: name.to_string(),
                previous: (*entry.owner).clone(),
                from_snapshot,
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
        let epoch = entry.epoch + 1;
        let spec = entry.spec.clone();
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
