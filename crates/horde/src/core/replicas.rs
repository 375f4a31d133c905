//! Replicas: this member as the backup of other members' children, and the backups of its
//! own.
//!
//! A backup stores the newest replica of each child it backs (by epoch, then sequence) and
//! acknowledges it to the owner, whose answers wait for that. It is also where a stale owner
//! is fenced: a replica of an epoch older than the backup knows (from the registry or a newer
//! replica) is refused as stale, and one from a member this node suspects is refused as
//! fenced; the owner's copy then answers nothing more. The backup of a child is the member
//! placement picks among the others that are alive (else draining) and read a schema this
//! build writes; every membership change recomputes them and tells the children whose backup
//! changed (they send their whole state to the new one before answering again). A child whose
//! backup is still alive and good keeps it for now when placement prefers another (a member
//! joined) and switches a few ticks later, `BACKUP_SWITCHES_PER_TICK` at a time: a join costs
//! the answers no burst of whole states.
//!
//! A member that drains hands the replicas it holds to the members that keep them from then
//! on (before it reports its drain done) and refuses new ones as `Leaving`: a child whose
//! owner cannot pick another backup in time (it is paused) keeps its last answers in the
//! cluster after the drained node exits.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use discovery::NodeId;

use super::planted::{self, Bug};
use super::{ChildCmd, Core, Effect};
use crate::membership::MemberStatus;
use crate::protocol::{Batches, Replica, ReplicaRefusal, Wire, batch_by_size, encoded_len};
use tracing::{debug, error};

/// A replica not updated for this long, of a child whose owner now backs up elsewhere, goes.
const IDLE_REPLICA: Duration = Duration::from_secs(60);
/// How long a member refuses an owner's replicas of a name after it gave its own to a failover
/// of that name: a lease the fetch gives the failover, renewed by every fetch it sends (a
/// failover still waiting for some member asks again every second or two), and ended early
/// when the registry moves past that epoch (fencing by epoch refuses them from then on). A
/// failover that was called off (its owner came back before it ran: the votes against it
/// lapsed) stops asking, and the owner's copy answers again within this.
const FETCH_FENCE: Duration = Duration::from_secs(5);
/// Children per tick that move to the backup placement now prefers while their own is still
/// good (after a join): 10,000 children switch in 2.5 s instead of all at once.
const BACKUP_SWITCHES_PER_TICK: usize = 200;

#[derive(Debug)]
struct Kept {
    replica: Replica,
    at: Instant,
}

/// Handovers in flight, by id: the member asked to keep them, the names.
type Handovers = BTreeMap<u64, (NodeId, Vec<Arc<str>>)>;

/// Replicas this member keeps for others.
#[derive(Debug, Default)]
pub(super) struct Replicas {
    held: BTreeMap<Arc<str>, Kept>,
    /// Set once this member hands its replicas over (it drains): the handovers not
    /// acknowledged yet, by id (target, names).
    handover: Option<Handovers>,
    /// Names whose replica this member gave to a failover (it answered `FetchReplicas`), with
    /// the newest epoch it knew of them then and when: the owner's replicas of that epoch or
    /// older are refused from then on (see [`Core::fence_fetched`]).
    fetched: BTreeMap<Arc<str>, (u64, Instant)>,
}

impl Replicas {
    /// True when no handover waits for its acknowledgement.
    pub(super) fn handover_done(&self) -> bool {
        self.handover.as_ref().is_none_or(|h| h.is_empty())
    }

    /// `from` keeps the replicas of handover `id`.
    pub(super) fn handed(&mut self, from: &NodeId, id: u64) {
        if let Some(h) = self.handover.as_mut()
            && h.get(&id).is_some_and(|(to, _)| to == from)
        {
            h.remove(&id);
        }
    }

    pub(super) fn get(&self, name: &str) -> Option<&Replica> {
        self.held.get(name).map(|k| &k.replica)
    }

    /// Number of replicas kept.
    pub(super) fn len(&self) -> usize {
        self.held.len()
    }

    pub(super) fn remove(&mut self, name: &str) {
        self.held.remove(name);
    }
}

impl<T> Core<T> {
    /// A replica from an owner: kept and acknowledged, or refused.
    pub(super) fn on_replicate(&mut self, now: Instant, out: &mut Vec<Effect<T>>, r: Replica) {
        let refuse = |why: ReplicaRefusal| Effect::Send {
            to: r.owner.clone(),
            wire: Wire::ReplicaNack {
                from: self.me.clone(),
                name: r.name.clone(),
                epoch: r.epoch,
                why,
            },
        };
        if self.quorum.suspects(&r.owner) || self.is_dead(&r.owner) {
            return out.push(refuse(ReplicaRefusal::Fenced));
        }
        if !planted::on(Bug::AckAfterFetch)
            && self
                .replicas
                .fetched
                .get(r.name.as_str())
                .is_some_and(|(e, at)| {
                    r.epoch <= *e && now.saturating_duration_since(*at) < FETCH_FENCE
                })
        {
            return out.push(refuse(ReplicaRefusal::Fenced));
        }
        if self.replicas.handover.is_some() {
            return out.push(refuse(ReplicaRefusal::Leaving));
        }
        let fencing = !planted::on(Bug::AcceptOlderEpoch);
        if fencing
            && self
                .registry
                .get_any(&r.name)
                .is_some_and(|e| e.epoch > r.epoch)
        {
            return out.push(refuse(ReplicaRefusal::Stale));
        }
        if let Some(k) = self.replicas.held.get(r.name.as_str()) {
            if fencing && k.replica.epoch > r.epoch {
                return out.push(refuse(ReplicaRefusal::Stale));
            }
            if (k.replica.epoch, k.replica.seq) >= (r.epoch, r.seq) {
                return out.push(ack(&self.me, &r));
            }
        }
        out.push(ack(&self.me, &r));
        self.replicas.held.insert(
            Arc::from(r.name.as_str()),
            Kept {
                replica: r,
                at: now,
            },
        );
    }

    /// Replicas a leaving member hands to this one: kept where newer than what this member
    /// has (whoever their owner is: they are for a failover), and acknowledged.
    pub(super) fn on_handover(
        &mut self,
        now: Instant,
        out: &mut Vec<Effect<T>>,
        from: NodeId,
        id: u64,
        items: Vec<Replica>,
    ) {
        for r in items {
            let stale = self
                .registry
                .get_any(&r.name)
                .is_some_and(|e| e.epoch > r.epoch || e.removed);
            let older = self
                .replicas
                .held
                .get(r.name.as_str())
                .is_some_and(|k| (k.replica.epoch, k.replica.seq) >= (r.epoch, r.seq));
            if stale || older || self.local.contains_key(r.name.as_str()) {
                continue;
            }
            self.replicas.held.insert(
                Arc::from(r.name.as_str()),
                Kept {
                    replica: r,
                    at: now,
                },
            );
        }
        out.push(Effect::Send {
            to: from,
            wire: Wire::HandoverAck {
                from: self.me.clone(),
                id,
            },
        });
    }

    /// This member drains: hands every replica it holds to the member that keeps it from now
    /// on, and takes no new ones.
    pub(super) fn start_handover(&mut self, out: &mut Vec<Effect<T>>) {
        if self.replicas.handover.is_some() {
            return;
        }
        self.replicas.handover = Some(BTreeMap::new());
        let names: Vec<Arc<str>> = self.replicas.held.keys().cloned().collect();
        self.hand_over(out, names);
    }

    /// A member that was to keep some of this member's replicas went down: to others.
    pub(super) fn handover_peer_down(&mut self, out: &mut Vec<Effect<T>>, id: &NodeId) {
        let Some(h) = self.replicas.handover.as_mut() else {
            return;
        };
        let lost: Vec<u64> = h
            .iter()
            .filter(|(_, (to, _))| to == id)
            .map(|(i, _)| *i)
            .collect();
        let mut names = Vec::new();
        for i in lost {
            if let Some((_, n)) = h.remove(&i) {
                names.extend(n);
            }
        }
        if !names.is_empty() {
            self.hand_over(out, names);
        }
    }

    fn hand_over(&mut self, out: &mut Vec<Effect<T>>, names: Vec<Arc<str>>) {
        let mut by_target: BTreeMap<NodeId, Vec<Arc<str>>> = BTreeMap::new();
        for name in names {
            let Some(k) = self.replicas.held.get(&name) else {
                continue;
            };
            match self.handover_target(&k.replica) {
                Some(t) => by_target.entry(t).or_default().push(name),
                None => debug!(child = %name, "no member to hand this replica to"),
            }
        }
        let fixed = encoded_len(&Wire::Handover {
            from: self.me.clone(),
            id: u64::MAX,
            items: Vec::new(),
        });
        for (to, names) in by_target {
            let replicas = names
                .iter()
                .filter_map(|n| self.replicas.held.get(n).map(|k| k.replica.clone()));
            let Batches { batches, too_large } =
                batch_by_size(replicas, fixed, self.config.max_message_bytes);
            for (r, size) in too_large {
                // It could not have arrived in one message: a peer with a larger budget.
                error!(child = %r.name, to = %to, bytes = size, budget = self.config.max_message_bytes, "replica too large to hand over (over the message budget); not handed over");
            }
            for items in batches {
                let chunk: Vec<Arc<str>> =
                    items.iter().map(|r| Arc::from(r.name.as_str())).collect();
                let id = self.next_id();
                out.push(Effect::Send {
                    to: to.clone(),
                    wire: Wire::Handover {
                        from: self.me.clone(),
                        id,
                        items,
                    },
                });
                if let Some(h) = self.replicas.handover.as_mut() {
                    h.insert(id, (to.clone(), chunk));
                }
            }
        }
    }

    /// Who keeps a replica this member hands over: placement among the other connected,
    /// alive members that read its schema, its owner left out.
    fn handover_target(&self, r: &Replica) -> Option<NodeId> {
        let cands: Vec<crate::placement::Candidate> = self
            .candidates()
            .into_iter()
            .filter(|c| {
                c.node != self.me
                    && c.node != r.owner
                    && c.status == MemberStatus::Alive
                    && self.peers.get(&c.node.name) == Some(&c.node)
                    && c.reads.contains(&r.schema)
            })
            .collect();
        self.config.placement.place(&r.name, &cands)
    }

    /// What this member can give a failover of these names: the replicas it keeps, and the
    /// state of copies arriving here in a move that was not committed.
    pub(super) fn replicas_of(&self, names: &[String]) -> Vec<Replica> {
        names
            .iter()
            .filter_map(|n| {
                let kept = self.replicas.get(n).cloned();
                let pending = self.moves.pending_replica(n, &self.me);
                match (kept, pending) {
                    (Some(a), Some(b)) => Some(if (b.epoch, b.seq) > (a.epoch, a.seq) {
                        b
                    } else {
                        a
                    }),
                    (a, b) => a.or(b),
                }
            })
            .collect()
    }

    /// This member gives its replicas of `names` to a failover: from now on it refuses their
    /// owner's replicas at the epochs it knows (`Fenced`). The failover was decided because a
    /// majority voted the owner dead, so the owner's lease ran out on every clock that keeps
    /// time; one whose clock stopped (a frozen virtual machine) may still believe in it and
    /// send a change its backup acknowledges *after* handing the failover an older state: that
    /// answer would be lost. Each backup reads the fetch and the owner's replicas in one
    /// order, so a change is either in what it gave the failover or refused. The failover's
    /// copy runs at a newer epoch, whose replicas pass.
    pub(super) fn fence_fetched(&mut self, now: Instant, names: &[String]) {
        for n in names {
            let mut epoch = self.registry.get_any(n).map(|e| e.epoch).unwrap_or(0);
            if let Some(r) = self.replicas.get(n) {
                epoch = epoch.max(r.epoch);
            }
            if let Some(e) = self.moves.pending_epoch(n) {
                epoch = epoch.max(e);
            }
            let key: Arc<str> = Arc::from(n.as_str());
            let at = self.replicas.fetched.entry(key).or_insert((epoch, now));
            *at = (at.0.max(epoch), now);
        }
    }

    /// Drops replicas nobody will need: of removed names, of children now hosted here, and of
    /// children whose owner backs up on another member (after a quiet while).
    pub(super) fn replicas_gc(&mut self, now: Instant) {
        let mut drop = Vec::new();
        for (name, k) in &self.replicas.held {
            let gone = match self.registry.get_any(name) {
                Some(e) if e.removed => true,
                // A name the registry no longer knows (its tombstone was collected; a
                // replica still in flight then arrived): not a new child's, whose entry
                // arrives within moments.
                None => now.saturating_duration_since(k.at) > IDLE_REPLICA,
                Some(e) if *e.owner == self.me && self.local.contains_key(name) => true,
                Some(e) if !self.is_dead(&e.owner) => {
                    now.saturating_duration_since(k.at) > IDLE_REPLICA
                        && self
                            .backups_at
                            .is_none_or(|t| now.saturating_duration_since(t) > IDLE_REPLICA)
                        && self
                            .backup_choice(&e.owner, name)
                            .is_none_or(|(b, _)| b != self.me)
                }
                _ => false,
            };
            if gone {
                drop.push(name.clone());
            }
        }
        for n in drop {
            self.replicas.held.remove(&n);
        }
        // A fence lasts until the registry moved past it (epoch fencing takes over) or it
        // has done its work (bounded: one per name a failover asked of this member).
        let registry = &self.registry;
        self.replicas.fetched.retain(|name, (epoch, at)| {
            now.saturating_duration_since(*at) < FETCH_FENCE
                && registry
                    .get_any(name)
                    .is_some_and(|e| !e.removed && e.epoch <= *epoch)
        });
    }

    /// The backup `owner` should use for `name`, as this member sees the cluster: placement
    /// among the others that are alive (else draining), connected, and read a schema this
    /// build writes; with the newest such schema. Backups that just refused this node's
    /// replicas come last (tried again when there is no other).
    pub(super) fn backup_choice(&self, owner: &NodeId, name: &str) -> Option<(NodeId, u16)> {
        self.backup_among(&self.candidates(), owner, name)
    }

    /// [`Core::backup_choice`] among `all` (the candidates, worked out once for many names).
    fn backup_among(
        &self,
        all: &[crate::placement::Candidate],
        owner: &NodeId,
        name: &str,
    ) -> Option<(NodeId, u16)> {
        self.backup_in(&self.backup_lists(all, owner), name)
    }

    /// The candidates `owner`'s children may back up on, in the order they are tried: alive
    /// then draining members, first without those that just refused `owner`'s replicas. They
    /// depend on the owner only, so many names share them; placement picks per name.
    fn backup_lists(
        &self,
        all: &[crate::placement::Candidate],
        owner: &NodeId,
    ) -> Vec<Vec<crate::placement::Candidate>> {
        let writes = &self.config.writes;
        let mine = *owner == self.me;
        let mut lists = Vec::with_capacity(4);
        for avoid_refusing in [true, false] {
            for status in [MemberStatus::Alive, MemberStatus::Draining] {
                lists.push(
                    all.iter()
                        .filter(|c| {
                            c.node != *owner
                                && c.status == status
                                && !(avoid_refusing && mine && self.refusing.contains_key(&c.node))
                                && (c.node == self.me
                                    || self.peers.get(&c.node.name) == Some(&c.node))
                                && c.reads.iter().any(|s| writes.contains(s))
                        })
                        .cloned()
                        .map(|mut c| {
                            // Placement only takes alive members: a draining backup is still one.
                            c.status = MemberStatus::Alive;
                            c
                        })
                        .collect(),
                );
            }
        }
        lists
    }

    /// Placement's pick for `name` from the first of `lists` that yields one, with the newest
    /// schema it reads that this build writes.
    fn backup_in(
        &self,
        lists: &[Vec<crate::placement::Candidate>],
        name: &str,
    ) -> Option<(NodeId, u16)> {
        let writes = &self.config.writes;
        for cands in lists.iter().filter(|l| !l.is_empty()) {
            if let Some(node) = self.config.placement.place(name, cands) {
                let schema = cands
                    .iter()
                    .find(|c| c.node == node)
                    .and_then(|c| c.reads.iter().filter(|s| writes.contains(s)).max().copied())
                    .unwrap_or(0);
                return Some((node, schema));
            }
        }
        None
    }

    /// True when this member is the only one in its quorum set: a cluster of one, whose
    /// children answer with no backup. Any other member, even unreachable, means a child with
    /// no reachable backup waits instead.
    pub(super) fn alone_in_quorum(&self) -> bool {
        let set = self.quorum_set();
        set.members().iter().all(|m| *m == self.me)
    }

    /// A member went down: children that left it lazily (it was draining) send their state
    /// to their backup now (what it held may be gone with it); one that left cleanly handed
    /// it over.
    pub(super) fn backups_peer_down(&mut self, out: &mut Vec<Effect<T>>, id: &NodeId, left: bool) {
        let names: Vec<Arc<str>> = self
            .lazy_from
            .iter()
            .filter(|(_, from)| *from == id)
            .map(|(n, _)| n.clone())
            .collect();
        for name in names {
            self.lazy_from.remove(&name);
            if left {
                continue;
            }
            if let Some(b) = self.backups.get(&name).cloned() {
                out.push(Effect::ToChild {
                    name,
                    cmd: ChildCmd::Backup {
                        node: b,
                        lazy: false,
                    },
                });
            }
        }
    }

    /// Tells one child its backup (when it starts or arrives).
    pub(super) fn tell_backup(&mut self, out: &mut Vec<Effect<T>>, name: &Arc<str>) {
        let b = self.backup_choice(&self.me.clone(), name);
        self.backups.insert(name.clone(), b.clone());
        if b.is_none() && !self.alone_in_quorum() {
            // No member to back up on now, though there are members: its answers wait
            // (told once one is reachable), never leave unreplicated.
            return;
        }
        out.push(Effect::ToChild {
            name: name.clone(),
            cmd: ChildCmd::Backup {
                node: b,
                lazy: false,
            },
        });
    }

    /// Recomputes every child's backup after a membership change; tells those that changed
    /// (all of them with `force`: a backup refused and they must try again).
    pub(super) fn assign_backups(&mut self, out: &mut Vec<Effect<T>>, force: bool) {
        let all = self.candidates();
        let lists = self.backup_lists(&all, &self.me);
        let children: Vec<_> = self
            .backups
            .iter()
            .map(|(n, b)| (n.clone(), b.clone()))
            .collect();
        let alone = self.alone_in_quorum();
        for (name, current) in children {
            let b = self.backup_in(&lists, &name);
            if b == current && !force {
                continue;
            }
            if b.is_none() && !alone {
                // No member reachable to back up on, but this is not a cluster of one: the
                // child keeps waiting for its current backup's acknowledgements (it is told
                // of the next backup that can be reached); answering without a backup would
                // leave answers on one member only.
                self.backups.insert(name, None);
                continue;
            }
            if !force
                && b.is_some()
                && current
                    .as_ref()
                    .is_some_and(|(old, _)| self.still_good_backup(&all, old))
            {
                // Its backup is alive and holds its state: it moves later, paced.
                self.deferred_backups.insert(name);
                continue;
            }
            if !self.deferred_backups.is_empty() {
                self.deferred_backups.remove(&name);
            }
            // Away from a draining backup: it hands what it holds over before it leaves,
            // so the children switch without sending their state at once (a drain would
            // otherwise make every child it backs up send its whole state at the same
            // moment). If it dies instead, they send it then (`backups_peer_down`).
            let lazy = !force
                && match &current {
                    Some((old, _)) if b.as_ref().is_some_and(|(n, _)| n != old) => {
                        let draining = self
                            .members
                            .get(&old.name)
                            .is_some_and(|m| m.node == *old && m.status == MemberStatus::Draining);
                        if draining {
                            self.lazy_from.insert(name.clone(), old.clone());
                        }
                        draining
                    }
                    _ => false,
                };
            self.backups.insert(name.clone(), b.clone());
            out.push(Effect::ToChild {
                name,
                cmd: ChildCmd::Backup { node: b, lazy },
            });
        }
    }
}

impl<T> Core<T> {
    /// True when `node` is still a backup this member's children may keep: an alive member,
    /// connected, that reads a schema this build writes and has not refused replicas lately.
    fn still_good_backup(&self, all: &[crate::placement::Candidate], node: &NodeId) -> bool {
        let writes = &self.config.writes;
        !self.refusing.contains_key(node)
            && self.peers.get(&node.name) == Some(node)
            && all.iter().any(|c| {
                c.node == *node
                    && c.status == MemberStatus::Alive
                    && c.reads.iter().any(|s| writes.contains(s))
            })
    }

    /// Moves a few deferred children to the backup placement now prefers (see
    /// `deferred_backups`); each sends its whole state to the new one.
    pub(super) fn pace_backups(&mut self, out: &mut Vec<Effect<T>>) {
        if self.deferred_backups.is_empty() {
            return;
        }
        let all = self.candidates();
        let lists = self.backup_lists(&all, &self.me);
        let batch: Vec<Arc<str>> = self
            .deferred_backups
            .iter()
            .take(BACKUP_SWITCHES_PER_TICK)
            .cloned()
            .collect();
        for name in batch {
            self.deferred_backups.remove(&name);
            let Some(current) = self.backups.get(&name).cloned() else {
                continue;
            };
            let b = self.backup_in(&lists, &name);
            if b.is_none() {
                continue;
            }
            if b != current {
                self.lazy_from.remove(&name);
                self.backups.insert(name.clone(), b.clone());
                out.push(Effect::ToChild {
                    name,
                    cmd: ChildCmd::Backup {
                        node: b,
                        lazy: false,
                    },
                });
            }
        }
    }
}

fn ack<T>(me: &NodeId, r: &Replica) -> Effect<T> {
    Effect::Send {
        to: r.owner.clone(),
        wire: Wire::ReplicaAck {
            from: me.clone(),
            name: r.name.clone(),
            epoch: r.epoch,
            seq: r.seq,
        },
    }
}
