//! Moving live children between nodes: waves of moves out (the drain SIGTERM starts, and
//! rebalancing), and offers coming in.
//!
//! Children move in waves: a wave is up to `wave_size` children bound for one target. Each
//! child is frozen only just before its own wave's offer, so its pause is one wave (a round
//! trip plus copying its state), not the whole drain; several waves run at once. A wave:
//! freeze each child (its state includes every message accepted before), offer the batch,
//! and on acceptance write the registry (the new owner at epoch + 1, on the wire before
//! anything else) and release each child (its buffered messages go to the new owner in order);
//! on refusal or timeout, abort at the target and thaw each child here. After a drain's
//! deadline, what could not move live pushes a final snapshot to its failover target (it
//! restarts from it when this node is gone) and is counted.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use discovery::NodeId;
use tracing::{debug, info, warn};

use super::{ChildCmd, Core, Effect, Frozen, Init, Local, Reply, SpawnError, SpawnFor};
use crate::membership::MemberStatus;
use crate::protocol::{OfferItem, OfferRefusal, Wire};
use crate::registry::Entry;
use crate::stats::{Counters, HordeEvent};

/// A pending incoming child whose move is never committed is dropped after this long.
const PENDING_TTL: Duration = Duration::from_secs(60);
/// Pause between drain rounds that moved nothing.
const ROUND_PAUSE: Duration = Duration::from_millis(50);
/// How often a drain with nobody to move to asks for peers again.
const NEED_PEERS_EVERY: Duration = Duration::from_millis(500);
/// How often the rebalancer looks for children to move.
const REBALANCE_EVERY: Duration = Duration::from_secs(1);

/// How waves are sized and paced.
#[derive(Debug, Clone, Copy)]
pub struct MoveConfig {
    /// Children per wave.
    pub wave_size: usize,
    /// Waves in flight at once.
    pub parallel_waves: usize,
    /// Longest wait for a target to answer an offer.
    pub offer_timeout: Duration,
}

impl Default for MoveConfig {
    fn default() -> Self {
        Self {
            wave_size: 16,
            parallel_waves: 4,
            offer_timeout: Duration::from_secs(3),
        }
    }
}

/// Rebalancing on join (Horde's `process_redistribution: :active`).
#[derive(Debug, Clone, Copy)]
pub struct RebalanceConfig {
    /// Most children moved per second.
    pub rate_per_sec: usize,
}

/// What a drain did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Children moved live.
    pub moved: usize,
    /// Children that could not move before the deadline: they keep running here, and their
    /// backup holds their state (they restart from it elsewhere if this node exits).
    pub fallback: usize,
    /// Children left here with no backup (no other member): they stop with this node.
    pub stranded: usize,
    /// How long the drain took.
    pub duration: Duration,
}

/// Groups children by target and cuts each group into waves of at most `wave_size`, targets
/// interleaved so parallel waves spread over the nodes.
pub fn plan_waves(
    moves: impl IntoIterator<Item = (String, NodeId)>,
    wave_size: usize,
) -> Vec<(NodeId, Vec<String>)> {
    let mut by_target: BTreeMap<NodeId, Vec<String>> = BTreeMap::new();
    for (name, target) in moves {
        by_target.entry(target).or_default().push(name);
    }
    let mut queues: BTreeMap<NodeId, VecDeque<Vec<String>>> = BTreeMap::new();
    for (target, names) in by_target {
        for chunk in names.chunks(wave_size.max(1)) {
            queues
                .entry(target.clone())
                .or_default()
                .push_back(chunk.to_vec());
        }
    }
    let mut interleaved = Vec::new();
    while !queues.is_empty() {
        queues.retain(|t, q| {
            if let Some(w) = q.pop_front() {
                interleaved.push((t.clone(), w));
            }
            !q.is_empty()
        });
    }
    interleaved
}

/// A child received in a move, not yet committed by its previous owner's registry change.
#[derive(Debug, Clone)]
pub(super) struct PendingIn {
    pub epoch: u64,
    pub from: NodeId,
    pub spec: Arc<[u8]>,
    /// The state it arrived with (a replica for a failover if its previous owner dies).
    state: (u16, Vec<u8>, Vec<crate::protocol::Subscriber>, u64),
    since: Instant,
}

/// An offer being answered: its children spawn, then each waits until its backup holds its
/// state.
#[derive(Debug)]
struct Incoming {
    from: NodeId,
    offer: u64,
    /// Spawning.
    waiting: BTreeSet<Arc<str>>,
    /// Spawned, waiting for their backup.
    durable: BTreeSet<Arc<str>>,
    accepted: Vec<String>,
    refused: Vec<(String, OfferRefusal)>,
    /// Children not durable by then are refused.
    deadline: Instant,
}

/// What a run of waves is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunKind {
    Drain,
    Rebalance,
}

/// A child frozen for a wave.
#[derive(Debug)]
struct FrozenChild {
    name: Arc<str>,
    frozen: Frozen,
    epoch: u64,
    spec: Arc<[u8]>,
}

#[derive(Debug)]
enum WavePhase {
    /// Freezes sent; answers arriving.
    Freezing {
        waiting: BTreeSet<Arc<str>>,
        frozen: Vec<FrozenChild>,
        deadline: Instant,
    },
    /// Offer sent; waiting for the target.
    Offered {
        offer: u64,
        children: Vec<(Arc<str>, u64)>,
        deadline: Instant,
    },
}

#[derive(Debug)]
struct Wave {
    run: RunKind,
    target: NodeId,
    started: Instant,
    phase: WavePhase,
}

/// A set of waves (one drain round, or one rebalance step).
#[derive(Debug)]
struct Run {
    queue: VecDeque<(NodeId, Vec<String>)>,
    in_flight: BTreeSet<u64>,
    moved: usize,
    failed: usize,
}

impl Run {
    fn done(&self) -> bool {
        self.queue.is_empty() && self.in_flight.is_empty()
    }
}

#[derive(Debug)]
enum DrainPhase {
    /// Rounds of waves until nothing is left or the deadline passes.
    Moving {
        run: Option<Run>,
        not_before: Option<Instant>,
        last_refresh: Option<Instant>,
    },
    /// Waiting (until the deadline at most) for every member to acknowledge the registry
    /// changes, so no peer learns of this node's exit before it learns where its children
    /// went, and for the replicas this node held for others to be kept elsewhere.
    Barrier,
}

/// What a drain does next.
enum DrainNext {
    /// Nothing until the next input.
    Wait,
    /// The deadline passed mid-round: give these waves up (thawing their children).
    Abandon(Vec<u64>),
    /// Moving is over: wait for the registry changes to be acknowledged.
    Settle,
    /// A round of moves.
    Run(Vec<(String, NodeId)>),
    /// Done: answer.
    Finish,
}

#[derive(Debug)]
struct Drain<T> {
    reply: T,
    leave: bool,
    started: Instant,
    end: Instant,
    report: DrainReport,
    phase: DrainPhase,
}

/// A copy arriving in a move, as sent: schema, state, subscribers, last event sequence.
type Arriving = (u16, Vec<u8>, Vec<crate::protocol::Subscriber>, u64);

/// Moves state of a member.
#[derive(Debug)]
pub(super) struct Moves<T> {
    pending_in: BTreeMap<Arc<str>, PendingIn>,
    /// States of children spawning for an offer (kept as their replica once spawned).
    arriving: BTreeMap<Arc<str>, Arriving>,
    incoming: BTreeMap<u64, Incoming>,
    waves: BTreeMap<u64, Wave>,
    /// Freeze tickets of waves: ticket → (wave, child).
    tickets: BTreeMap<u64, (u64, Arc<str>)>,
    /// Offers out: offer id → wave.
    offers: BTreeMap<u64, u64>,
    drain: Option<Drain<T>>,
    rebalance: Option<Run>,
    last_rebalance: Option<Instant>,
}

impl<T> Default for Moves<T> {
    fn default() -> Self {
        Self {
            pending_in: BTreeMap::new(),
            arriving: BTreeMap::new(),
            incoming: BTreeMap::new(),
            waves: BTreeMap::new(),
            tickets: BTreeMap::new(),
            offers: BTreeMap::new(),
            drain: None,
            rebalance: None,
            last_rebalance: None,
        }
    }
}

impl<T> Moves<T> {
    pub(super) fn pending_epoch(&self, name: &str) -> Option<u64> {
        self.pending_in.get(name).map(|p| p.epoch)
    }

    pub(super) fn take_pending(&mut self, name: &str) -> Option<PendingIn> {
        self.pending_in.remove(name)
    }

    pub(super) fn is_pending(&self, name: &str) -> bool {
        self.pending_in.contains_key(name)
    }

    /// The state of a copy arriving here, as a replica.
    pub(super) fn pending_replica(
        &self,
        name: &str,
        me: &NodeId,
    ) -> Option<crate::protocol::Replica> {
        let p = self.pending_in.get(name)?;
        let (schema, state, subscribers, event_seq) = p.state.clone();
        Some(crate::protocol::Replica {
            name: name.to_string(),
            owner: me.clone(),
            epoch: p.epoch,
            seq: u64::MAX,
            schema,
            state,
            subscribers,
            event_seq,
        })
    }

    fn run_mut(&mut self, kind: RunKind) -> Option<&mut Run> {
        match kind {
            RunKind::Drain => match &mut self.drain {
                Some(Drain {
                    phase: DrainPhase::Moving { run: Some(run), .. },
                    ..
                }) => Some(run),
                _ => None,
            },
            RunKind::Rebalance => self.rebalance.as_mut(),
        }
    }
}

impl<T> Core<T> {
    // === offers in ===

    pub(super) fn on_offer(
        &mut self,
        now: Instant,
        out: &mut Vec<Effect<T>>,
        from: NodeId,
        offer: u64,
        items: Vec<OfferItem>,
    ) {
        let id = self.next_id();
        let mut incoming = Incoming {
            from: from.clone(),
            offer,
            waiting: BTreeSet::new(),
            durable: BTreeSet::new(),
            accepted: Vec::new(),
            refused: Vec::new(),
            // Half the sender's patience: an answer must reach it before it gives up.
            deadline: now + self.config.moves.offer_timeout / 2,
        };
        for item in items {
            if self.status != MemberStatus::Alive {
                incoming
                    .refused
                    .push((item.name, OfferRefusal::NotAlive(self.status)));
                continue;
            }
            let key: Arc<str> = Arc::from(item.name.as_str());
            if self.local.contains_key(&key)
                || self.moves.is_pending(&key)
                || self.spawning.contains_key(&key)
            {
                incoming
                    .refused
                    .push((item.name, OfferRefusal::AlreadyHere));
                continue;
            }
            if self
                .registry
                .get_any(&item.name)
                .is_some_and(|e| e.epoch >= item.epoch)
            {
                incoming.refused.push((item.name, OfferRefusal::Stale));
                continue;
            }
            self.spawning.insert(
                key.clone(),
                SpawnFor::Offer {
                    incoming: id,
                    epoch: item.epoch,
                    from: from.clone(),
                    spec: Arc::from(item.spec),
                },
            );
            self.moves.arriving.insert(
                key.clone(),
                (
                    item.schema,
                    item.state.clone(),
                    item.subscribers.clone(),
                    item.event_seq,
                ),
            );
            incoming.waiting.insert(key.clone());
            out.push(Effect::Spawn {
                name: key,
                init: Init::Restore {
                    schema: item.schema,
                    state: item.state,
                    subscribers: item.subscribers,
                    event_seq: item.event_seq,
                },
                epoch: item.epoch,
                pending: true,
            });
        }
        if incoming.waiting.is_empty() {
            self.answer_offer(out, incoming);
        } else {
            self.moves.incoming.insert(id, incoming);
        }
    }

    /// An arriving child's backup holds its state: it may be accepted.
    pub(super) fn on_durable(&mut self, _now: Instant, out: &mut Vec<Effect<T>>, name: Arc<str>) {
        let found = self
            .moves
            .incoming
            .iter_mut()
            .find(|(_, inc)| inc.durable.contains(&name))
            .map(|(id, inc)| {
                inc.durable.remove(&name);
                inc.accepted.push(name.to_string());
                *id
            });
        if let Some(id) = found {
            self.maybe_answer(out, id);
        }
    }

    fn maybe_answer(&mut self, out: &mut Vec<Effect<T>>, id: u64) {
        let done = self
            .moves
            .incoming
            .get(&id)
            .is_some_and(|inc| inc.waiting.is_empty() && inc.durable.is_empty());
        if done && let Some(inc) = self.moves.incoming.remove(&id) {
            self.answer_offer(out, inc);
        }
    }

    fn answer_offer(&self, out: &mut Vec<Effect<T>>, incoming: Incoming) {
        out.push(Effect::Send {
            to: incoming.from,
            wire: Wire::OfferReply {
                from: self.me.clone(),
                id: incoming.offer,
                accepted: incoming.accepted,
                refused: incoming.refused,
            },
        });
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn offer_spawned(
        &mut self,
        now: Instant,
        out: &mut Vec<Effect<T>>,
        incoming: u64,
        name: Arc<str>,
        epoch: u64,
        from: NodeId,
        spec: Arc<[u8]>,
        result: Result<(), SpawnError>,
    ) {
        let state = self.moves.arriving.remove(&name);
        let Some(inc) = self.moves.incoming.get_mut(&incoming) else {
            return;
        };
        inc.waiting.remove(&name);
        match (result, state) {
            (Ok(()), Some(state)) => {
                self.moves.pending_in.insert(
                    name.clone(),
                    PendingIn {
                        epoch,
                        from,
                        spec,
                        state,
                        since: now,
                    },
                );
                // Accepted once its backup holds it (`on_durable`).
                inc.durable.insert(name.clone());
                self.tell_backup(out, &name);
            }
            (Ok(()), None) => inc.refused.push((
                name.to_string(),
                OfferRefusal::Rehydrate("lost its state".into()),
            )),
            (Err(e), _) => {
                warn!(child = %name, error = %e, "cannot take over child");
                inc.refused
                    .push((name.to_string(), OfferRefusal::Rehydrate(e.to_string())));
            }
        }
        self.maybe_answer(out, incoming);
    }

    pub(super) fn on_abort(&mut self, out: &mut Vec<Effect<T>>, names: Vec<(String, u64)>) {
        for (name, epoch) in names {
            if self.moves.pending_epoch(&name) == Some(epoch)
                && self.moves.take_pending(&name).is_some()
            {
                debug!(child = %name, "move aborted by its owner");
                let key: Arc<str> = Arc::from(name.as_str());
                self.backups.remove(&key);
                for inc in self.moves.incoming.values_mut() {
                    if inc.durable.remove(&key) {
                        inc.refused.push((name.clone(), OfferRefusal::Stale));
                    }
                }
                out.push(Effect::ToChild {
                    name: key.clone(),
                    cmd: ChildCmd::Stop { report: false },
                });
                out.push(Effect::Forget { name: key });
            }
        }
    }

    pub(super) fn commit_pending(
        &mut self,
        out: &mut Vec<Effect<T>>,
        name: Arc<str>,
        pending: PendingIn,
        publish: bool,
    ) {
        self.local.insert(
            name.clone(),
            Local {
                epoch: pending.epoch,
            },
        );
        self.backups.entry(name.clone()).or_insert(None);
        self.backups_stale = true;
        out.push(Effect::Serve { name: name.clone() });
        Counters::add(&self.counters.handoffs_in, 1);
        self.emit(
            out,
            HordeEvent::TookOver {
                name: name.to_string(),
                from: pending.from.clone(),
            },
        );
        if publish {
            self.publish(
                name,
                Entry {
                    owner: Arc::new(self.me.clone()),
                    epoch: pending.epoch,
                    spec: pending.spec,
                    removed: false,
                },
            );
        }
    }

    // === waves out ===

    fn start_run(&mut self, now: Instant, out: &mut Vec<Effect<T>>, kind: RunKind) {
        let parallel = self.config.moves.parallel_waves.max(1);
        loop {
            let next = match self.moves.run_mut(kind) {
                Some(run) if run.in_flight.len() < parallel => run.queue.pop_front(),
                _ => None,
            };
            let Some((target, names)) = next else {
                return;
            };
            self.start_wave(now, out, kind, target, names);
        }
    }

    fn start_wave(
        &mut self,
        now: Instant,
        out: &mut Vec<Effect<T>>,
        kind: RunKind,
        target: NodeId,
        names: Vec<String>,
    ) {
        if self.peers.get(&target.name) != Some(&target) {
            if let Some(run) = self.moves.run_mut(kind) {
                run.failed += names.len();
            }
            return;
        }
        // The state goes in the newest schema the target reads.
        let schema = self
            .members
            .get(&target.name)
            .and_then(|m| {
                m.reads
                    .iter()
                    .filter(|s| self.config.writes.contains(s))
                    .max()
                    .copied()
            })
            .unwrap_or_else(|| self.config.writes.iter().max().copied().unwrap_or(1));
        let wave_id = self.next_id();
        let mut waiting = BTreeSet::new();
        for name in names {
            let key: Arc<str> = Arc::from(name.as_str());
            if !self.local.contains_key(&key) {
                continue;
            }
            let ticket = self.next_id();
            self.moves.tickets.insert(ticket, (wave_id, key.clone()));
            waiting.insert(key.clone());
            out.push(Effect::ToChild {
                name: key,
                cmd: ChildCmd::Freeze { ticket, schema },
            });
        }
        if waiting.is_empty() {
            return;
        }
        if let Some(run) = self.moves.run_mut(kind) {
            run.in_flight.insert(wave_id);
        }
        self.moves.waves.insert(
            wave_id,
            Wave {
                run: kind,
                target,
                started: now,
                phase: WavePhase::Freezing {
                    waiting,
                    frozen: Vec::new(),
                    deadline: now + self.config.moves.offer_timeout,
                },
            },
        );
    }

    pub(super) fn on_frozen(
        &mut self,
        now: Instant,
        out: &mut Vec<Effect<T>>,
        ticket: u64,
        name: Arc<str>,
        frozen: Option<Frozen>,
    ) {
        let Some((wave_id, _)) = self.moves.tickets.remove(&ticket) else {
            return;
        };
        let entry = self.registry.get(&name).cloned();
        let me = self.me.clone();
        let Some(wave) = self.moves.waves.get_mut(&wave_id) else {
            // The wave was abandoned (a drain's deadline): the child stays as it is.
            return;
        };
        let WavePhase::Freezing {
            waiting,
            frozen: list,
            ..
        } = &mut wave.phase
        else {
            return;
        };
        waiting.remove(&name);
        if let Some(f) = frozen {
            match entry {
                Some(e) if *e.owner == me => list.push(FrozenChild {
                    name: name.clone(),
                    frozen: f,
                    epoch: e.epoch + 1,
                    spec: e.spec.clone(),
                }),
                _ => {
                    let epoch = entry.map(|e| e.epoch).unwrap_or(0);
                    out.push(Effect::ToChild {
                        name,
                        cmd: ChildCmd::Thaw { epoch },
                    })
                }
            }
        }
        if waiting.is_empty() {
            self.offer_wave(now, out, wave_id);
        }
    }

    /// Every freeze of the wave answered (or timed out): offer what froze.
    fn offer_wave(&mut self, now: Instant, out: &mut Vec<Effect<T>>, wave_id: u64) {
        let offer = self.next_id();
        let Some(wave) = self.moves.waves.get_mut(&wave_id) else {
            return;
        };
        let WavePhase::Freezing { frozen, .. } = &mut wave.phase else {
            return;
        };
        let frozen = std::mem::take(frozen);
        if frozen.is_empty() {
            let kind = wave.run;
            self.finish_wave(now, out, wave_id, kind, 0, 0);
            return;
        }
        let children: Vec<(Arc<str>, u64)> =
            frozen.iter().map(|f| (f.name.clone(), f.epoch)).collect();
        let items: Vec<OfferItem> = frozen
            .into_iter()
            .map(|f| OfferItem {
                name: f.name.to_string(),
                epoch: f.epoch,
                spec: f.spec.to_vec(),
                schema: f.frozen.schema,
                state: f.frozen.state,
                subscribers: f.frozen.subscribers,
                event_seq: f.frozen.event_seq,
            })
            .collect();
        out.push(Effect::Send {
            to: wave.target.clone(),
            wire: Wire::Offer {
                from: self.me.clone(),
                id: offer,
                items,
            },
        });
        wave.phase = WavePhase::Offered {
            offer,
            children,
            deadline: now + self.config.moves.offer_timeout,
        };
        self.moves.offers.insert(offer, wave_id);
    }

    pub(super) fn on_offer_reply(
        &mut self,
        now: Instant,
        out: &mut Vec<Effect<T>>,
        from: NodeId,
        offer: u64,
        accepted: Vec<String>,
        refused: Vec<(String, OfferRefusal)>,
    ) {
        let Some(wave_id) = self.moves.offers.remove(&offer) else {
            return;
        };
        let Some(wave) = self.moves.waves.remove(&wave_id) else {
            return;
        };
        let WavePhase::Offered { children, .. } = wave.phase else {
            return;
        };
        if wave.target != from {
            warn!(target = %wave.target, answered = %from, "offer answered by another node; ignored");
        }
        let accepted: BTreeSet<String> = accepted.into_iter().collect();
        let owner = Arc::new(wave.target.clone());
        for (name, epoch) in children.iter().filter(|(n, _)| accepted.contains(&**n)) {
            let spec = self
                .registry
                .get_any(name)
                .map(|e| e.spec.clone())
                .unwrap_or_else(|| Arc::from(Vec::new()));
            if self.local.remove(name).is_some() {
                out.push(Effect::Forget { name: name.clone() });
            }
            self.replicas.remove(name);
            self.publish(
                name.clone(),
                Entry {
                    owner: owner.clone(),
                    epoch: *epoch,
                    spec,
                    removed: false,
                },
            );
            Counters::add(&self.counters.handoffs_out, 1);
        }
        // The registry change goes out before any child forwards its buffer.
        self.flush(now, out);
        for (name, offered) in &children {
            let cmd = if accepted.contains(&**name) {
                ChildCmd::Release {
                    to: wave.target.clone(),
                }
            } else {
                // Refused: the target holds no copy, the child carries on at its epoch.
                ChildCmd::Thaw { epoch: offered - 1 }
            };
            out.push(Effect::ToChild {
                name: name.clone(),
                cmd,
            });
        }
        for (name, reason) in &refused {
            warn!(child = %name, target = %wave.target, %reason, "move refused");
        }
        Counters::add(&self.counters.handoff_failures, refused.len() as u64);
        self.counters.last_handoff_us.store(
            now.duration_since(wave.started).as_micros() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        self.finish_wave(now, out, wave_id, wave.run, accepted.len(), refused.len());
    }

    /// The offer of a wave will not be answered: abort it at the target, thaw the children at
    /// a higher epoch than the one offered, so a copy the target may still hold loses to them.
    fn fail_wave(&mut self, now: Instant, out: &mut Vec<Effect<T>>, wave_id: u64) {
        let Some(wave) = self.moves.waves.remove(&wave_id) else {
            return;
        };
        match wave.phase {
            WavePhase::Offered {
                offer, children, ..
            } => {
                self.moves.offers.remove(&offer);
                warn!(target = %wave.target, children = children.len(), "offer not answered; aborting the wave");
                self.abort_offered(out, &wave.target, &children);
                let failed = children.len();
                self.finish_wave(now, out, wave_id, wave.run, 0, failed);
            }
            WavePhase::Freezing { .. } => {
                // Not offered yet: `moves_tick` offers what froze instead.
                self.moves.waves.insert(wave_id, wave);
            }
        }
    }

    /// Aborts offered children at the target and thaws them here at the offered epoch + 1.
    fn abort_offered(
        &mut self,
        out: &mut Vec<Effect<T>>,
        target: &NodeId,
        children: &[(Arc<str>, u64)],
    ) {
        out.push(Effect::Send {
            to: target.clone(),
            wire: Wire::Abort {
                names: children.iter().map(|(n, e)| (n.to_string(), *e)).collect(),
            },
        });
        Counters::add(&self.counters.handoff_failures, children.len() as u64);
        for (name, offered) in children {
            let epoch = offered + 1;
            if let Some(e) = self.registry.get(name).cloned()
                && *e.owner == self.me
            {
                if let Some(l) = self.local.get_mut(name) {
                    l.epoch = epoch;
                }
                self.publish(
                    name.clone(),
                    Entry {
                        owner: e.owner.clone(),
                        epoch,
                        spec: e.spec.clone(),
                        removed: false,
                    },
                );
            }
            out.push(Effect::ToChild {
                name: name.clone(),
                cmd: ChildCmd::Thaw { epoch },
            });
        }
    }

    /// Freezes of a wave still out at its deadline: offer what froze (answers arriving later
    /// are dropped, and those children stay as they are).
    fn freeze_timeout(&mut self, now: Instant, out: &mut Vec<Effect<T>>, wave_id: u64) {
        self.moves.tickets.retain(|_, (w, _)| *w != wave_id);
        if let Some(Wave {
            phase: WavePhase::Freezing { waiting, .. },
            ..
        }) = self.moves.waves.get_mut(&wave_id)
        {
            waiting.clear();
        }
        self.offer_wave(now, out, wave_id);
    }

    fn finish_wave(
        &mut self,
        now: Instant,
        out: &mut Vec<Effect<T>>,
        wave_id: u64,
        kind: RunKind,
        moved: usize,
        failed: usize,
    ) {
        self.moves.waves.remove(&wave_id);
        if let Some(run) = self.moves.run_mut(kind) {
            run.in_flight.remove(&wave_id);
            run.moved += moved;
            run.failed += failed;
        }
        self.start_run(now, out, kind);
        if kind == RunKind::Drain {
            self.drain_step(now, out);
        } else if self.moves.rebalance.as_ref().is_some_and(Run::done)
            && let Some(run) = self.moves.rebalance.take()
            && run.failed > 0
        {
            warn!(
                moved = run.moved,
                failed = run.failed,
                "rebalance moves failed"
            );
        }
    }

    /// Offers to a node that went down will not be answered (its link closed).
    pub(super) fn moves_peer_down(&mut self, now: Instant, out: &mut Vec<Effect<T>>, id: &NodeId) {
        let waves: Vec<u64> = self
            .moves
            .waves
            .iter()
            .filter(|(_, w)| w.target == *id && matches!(w.phase, WavePhase::Offered { .. }))
            .map(|(id, _)| *id)
            .collect();
        for w in waves {
            self.fail_wave(now, out, w);
        }
    }

    pub(super) fn moves_tick(&mut self, now: Instant, out: &mut Vec<Effect<T>>) {
        // Arriving children whose backup did not confirm in time are refused (the sender
        // keeps its copy).
        let late: Vec<u64> = self
            .moves
            .incoming
            .iter()
            .filter(|(_, inc)| inc.deadline <= now && inc.waiting.is_empty())
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            let names: Vec<Arc<str>> = match self.moves.incoming.get_mut(&id) {
                Some(inc) => std::mem::take(&mut inc.durable).into_iter().collect(),
                None => continue,
            };
            for name in names {
                warn!(child = %name, "arriving child not backed up in time; refusing it");
                if let Some(inc) = self.moves.incoming.get_mut(&id) {
                    inc.refused.push((
                        name.to_string(),
                        OfferRefusal::Rehydrate("its backup did not answer in time".into()),
                    ));
                }
                if self.moves.take_pending(&name).is_some() {
                    self.backups.remove(&name);
                    out.push(Effect::ToChild {
                        name: name.clone(),
                        cmd: ChildCmd::Stop { report: false },
                    });
                    out.push(Effect::Forget { name });
                }
            }
            self.maybe_answer(out, id);
        }
        // Moves never committed.
        let stale: Vec<Arc<str>> = self
            .moves
            .pending_in
            .iter()
            .filter(|(_, p)| now.duration_since(p.since) > PENDING_TTL)
            .map(|(n, _)| n.clone())
            .collect();
        for n in stale {
            if let Some(p) = self.moves.take_pending(&n) {
                warn!(child = %n, from = %p.from, "incoming move never committed; dropped");
                out.push(Effect::ToChild {
                    name: n.clone(),
                    cmd: ChildCmd::Stop { report: false },
                });
                out.push(Effect::Forget { name: n });
            }
        }
        // Waves past their deadline.
        let late: Vec<(u64, bool)> = self
            .moves
            .waves
            .iter()
            .filter_map(|(id, w)| match &w.phase {
                WavePhase::Freezing { deadline, .. } => (*deadline <= now).then_some((*id, true)),
                WavePhase::Offered { deadline, .. } => (*deadline <= now).then_some((*id, false)),
            })
            .collect();
        for (w, freezing) in late {
            if freezing {
                self.freeze_timeout(now, out, w);
            } else {
                self.fail_wave(now, out, w);
            }
        }
        self.drain_step(now, out);
        self.rebalance_step(now, out);
    }

    // === drain ===

    pub(super) fn start_drain(
        &mut self,
        now: Instant,
        out: &mut Vec<Effect<T>>,
        deadline: Duration,
        leave: bool,
        reply: T,
    ) {
        if self.moves.drain.is_some() {
            // One drain at a time; a second request gets an empty report at once.
            out.push(Effect::Reply {
                to: reply,
                reply: Reply::Drained(DrainReport::default()),
            });
            return;
        }
        self.set_status(out, MemberStatus::Draining);
        self.moves.drain = Some(Drain {
            reply,
            leave,
            started: now,
            end: now + deadline,
            report: DrainReport::default(),
            phase: DrainPhase::Moving {
                run: None,
                not_before: None,
                last_refresh: None,
            },
        });
        self.drain_step(now, out);
    }

    /// Advances the drain as far as it can go now.
    pub(super) fn drain_step(&mut self, now: Instant, out: &mut Vec<Effect<T>>) {
        loop {
            match self.drain_next(now, out) {
                DrainNext::Wait => return,
                DrainNext::Abandon(waves) => {
                    // Deadline mid-round: nothing stays frozen. Children not offered yet
                    // carry on here; offered ones are aborted at the target and carry on here
                    // at a higher epoch.
                    for w in waves {
                        self.give_up_wave(out, w);
                    }
                    self.settle();
                    self.start_handover(out);
                }
                DrainNext::Settle => {
                    self.settle();
                    self.start_handover(out);
                }
                DrainNext::Run(moves) => {
                    if let Some(Drain {
                        phase: DrainPhase::Moving { run, .. },
                        ..
                    }) = self.moves.drain.as_mut()
                    {
                        *run = Some(Run {
                            queue: plan_waves(moves, self.config.moves.wave_size).into(),
                            in_flight: BTreeSet::new(),
                            moved: 0,
                            failed: 0,
                        });
                    }
                    self.start_run(now, out, RunKind::Drain);
                    // A round whose waves all ended at once (nothing to freeze) is over already.
                    if !self.moves.run_mut(RunKind::Drain).is_some_and(|r| r.done()) {
                        return;
                    }
                }
                DrainNext::Finish => {
                    if let Some(d) = self.moves.drain.take() {
                        self.finish_drain(now, out, d);
                    }
                    return;
                }
            }
        }
    }

    /// Ends a wave without waiting for it: thaws what it froze, aborts what it offered.
    fn give_up_wave(&mut self, out: &mut Vec<Effect<T>>, wave_id: u64) {
        self.moves.tickets.retain(|_, (id, _)| *id != wave_id);
        let Some(wave) = self.moves.waves.remove(&wave_id) else {
            return;
        };
        match wave.phase {
            WavePhase::Freezing {
                waiting, frozen, ..
            } => {
                let names = waiting
                    .into_iter()
                    .chain(frozen.into_iter().map(|f| f.name));
                for name in names {
                    let epoch = self.local.get(&name).map(|l| l.epoch).unwrap_or(0);
                    out.push(Effect::ToChild {
                        name,
                        cmd: ChildCmd::Thaw { epoch },
                    });
                }
            }
            WavePhase::Offered {
                offer, children, ..
            } => {
                self.moves.offers.remove(&offer);
                self.abort_offered(out, &wave.target, &children);
            }
        }
    }

    fn settle(&mut self) {
        if let Some(d) = self.moves.drain.as_mut() {
            d.phase = DrainPhase::Barrier;
        }
    }

    /// Decides the drain's next step (and records what needs no other part of the core).
    fn drain_next(&mut self, now: Instant, out: &mut Vec<Effect<T>>) -> DrainNext {
        let others = self.move_targets();
        let names: Vec<Arc<str>> = self.local.keys().cloned().collect();
        let acked = self.all_acked() && self.replicas.handover_done();
        let Some(drain) = self.moves.drain.as_mut() else {
            return DrainNext::Wait;
        };
        let end = drain.end;
        match &mut drain.phase {
            DrainPhase::Moving {
                run,
                not_before,
                last_refresh,
            } => {
                if let Some(r) = run {
                    if now >= end {
                        let waves = r.in_flight.iter().copied().collect();
                        *run = None;
                        return DrainNext::Abandon(waves);
                    }
                    if !r.done() {
                        return DrainNext::Wait;
                    }
                    drain.report.moved += r.moved;
                    if r.moved == 0 && r.failed > 0 {
                        *not_before = Some(now + ROUND_PAUSE);
                    }
                    *run = None;
                }
                if names.is_empty() || now >= end {
                    return DrainNext::Settle;
                }
                if not_before.is_some_and(|t| now < t) {
                    return DrainNext::Wait;
                }
                let moves: Vec<(String, NodeId)> = names
                    .iter()
                    .filter_map(|n| {
                        self.config
                            .placement
                            .place(n, &others)
                            .map(|t| (n.to_string(), t))
                    })
                    .collect();
                if moves.is_empty() {
                    // Nobody to move to (replicas: 1 with start-first: the new container may
                    // not be known yet). Ask discovery to look again, and wait.
                    if last_refresh.is_none_or(|t| now.duration_since(t) > NEED_PEERS_EVERY) {
                        if last_refresh.is_none() {
                            info!(
                                children = names.len(),
                                "drain: no other member yet; looking for peers until the deadline"
                            );
                        } else {
                            debug!(children = names.len(), "drain: still no other member");
                        }
                        out.push(Effect::NeedPeers);
                        *last_refresh = Some(now);
                    }
                    *not_before = Some(now + ROUND_PAUSE);
                    return DrainNext::Wait;
                }
                *not_before = None;
                DrainNext::Run(moves)
            }
            DrainPhase::Barrier => {
                if acked {
                    return DrainNext::Finish;
                }
                if now < end {
                    return DrainNext::Wait;
                }
                warn!(
                    "drain: registry changes or replicas handed over not acknowledged by every \
                     member before the deadline"
                );
                DrainNext::Finish
            }
        }
    }

    /// Members a child may move to: alive ones that read a schema this build writes.
    fn move_targets(&self) -> Vec<crate::placement::Candidate> {
        let mut c = self.others();
        c.retain(|c| c.reads.iter().any(|s| self.config.writes.contains(s)));
        c
    }

    fn finish_drain(&mut self, now: Instant, out: &mut Vec<Effect<T>>, mut d: Drain<T>) {
        d.report.duration = now.duration_since(d.started);
        let backed = |n: &Arc<str>| self.backups.get(n).is_some_and(|b| b.is_some());
        d.report.fallback = self.local.keys().filter(|n| backed(n)).count();
        d.report.stranded = self.local.len() - d.report.fallback;
        let r = &d.report;
        if r.stranded > 0 {
            warn!(
                moved = r.moved,
                left = r.fallback,
                stranded = r.stranded,
                "drain deadline passed with no member to take some children and none to back \
                 them up: they stop with this node"
            );
        }
        if r.fallback + r.stranded > 0 {
            warn!(
                moved = r.moved,
                left = r.fallback,
                "drain deadline passed: the children left keep running here (their backups hold \
                 their state: if this node exits, they restart elsewhere from it)"
            );
            Counters::add(&self.counters.drain_fallbacks, r.fallback as u64);
        } else {
            info!(
                moved = r.moved,
                ms = r.duration.as_millis() as u64,
                "drain complete"
            );
            if d.leave {
                // Nothing left here and about to exit: no longer counted toward the majority.
                self.set_status(out, MemberStatus::Left);
            }
        }
        out.push(Effect::Reply {
            to: d.reply,
            reply: Reply::Drained(d.report),
        });
    }

    // === rebalance ===

    fn rebalance_step(&mut self, now: Instant, out: &mut Vec<Effect<T>>) {
        let Some(rb) = self.config.rebalance else {
            return;
        };
        if self.moves.rebalance.is_some()
            || self
                .moves
                .last_rebalance
                .is_some_and(|t| now.duration_since(t) < REBALANCE_EVERY)
        {
            return;
        }
        self.moves.last_rebalance = Some(now);
        if self.status != MemberStatus::Alive {
            return;
        }
        // Versions differ when any live member runs another version than this node; settling
        // while any live member is not alive.
        let versions_differ = self.members.live().any(|i| i.version != self.version);
        let settling = self.members.live().any(|i| i.status != MemberStatus::Alive);
        if versions_differ || settling {
            return;
        }
        let mut candidates = self.candidates();
        candidates.retain(|c| {
            c.node == self.me || c.reads.iter().any(|s| self.config.writes.contains(s))
        });
        let moves: Vec<(String, NodeId)> = self
            .local
            .keys()
            .filter_map(|n| {
                let target = self.config.placement.place(n, &candidates)?;
                (target != self.me).then(|| (n.to_string(), target))
            })
            .take(rb.rate_per_sec.max(1))
            .collect();
        if moves.is_empty() {
            return;
        }
        info!(children = moves.len(), "rebalancing");
        self.moves.rebalance = Some(Run {
            queue: plan_waves(moves, self.config.moves.wave_size).into(),
            in_flight: BTreeSet::new(),
            moved: 0,
            failed: 0,
        });
        self.start_run(now, out, RunKind::Rebalance);
        if self.moves.rebalance.as_ref().is_some_and(Run::done) {
            self.moves.rebalance = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: &str) -> NodeId {
        NodeId {
            name: n.into(),
            incarnation: 1,
        }
    }

    #[test]
    fn waves_group_by_target_cap_their_size_and_interleave_targets() {
        let moves: Vec<(String, NodeId)> = (0..10)
            .map(|i| (format!("g{i}"), node(if i % 2 == 0 { "a" } else { "b" })))
            .collect();
        let waves = plan_waves(moves, 2);
        assert_eq!(waves.len(), 6);
        assert!(waves.iter().all(|(_, w)| w.len() <= 2));
        let targets: Vec<&str> = waves.iter().map(|(t, _)| t.name.as_str()).collect();
        assert_eq!(targets, ["a", "b", "a", "b", "a", "b"]);
        let mut all: Vec<String> = waves.into_iter().flat_map(|(_, w)| w).collect();
        all.sort();
        assert_eq!(all.len(), 10);
        all.dedup();
        assert_eq!(all.len(), 10, "no child in two waves");
    }

    #[test]
    fn no_moves_no_waves() {
        assert!(plan_waves(Vec::new(), 64).is_empty());
    }
}
