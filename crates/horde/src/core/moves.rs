//! Moving live children between nodes: waves of moves out (the drain SIGTERM starts, and
//! rebalancing), and offers coming in.
//!
//! Children move in waves: a wave is up to `wave_size` children bound for one target. Each
//! child is frozen only just before its own wave's offer, so its pause is one wave (a round
//! trip plus copying its state), not the whole drain; several waves run at once. A wave:
//! freeze each child (its state includes every message accepted before), offer the batch
//! (in the schema the target reads), and on acceptance (the target's backup holds the state)
//! write the registry (the new owner at epoch + 1, on the wire before anything else) and
//! release each child (its buffered messages go to the new owner in order). A refused offer
//! thaws the children here at their epoch; an unanswered one is aborted at the target and
//! thaws them at epoch + 2, so a late commit there loses. At a drain's deadline nothing stays
//! frozen: what could not move keeps running here, backed up.
//!
//! - `incoming`: the target's side (offers, pending copies, commits).
//! - `waves`: the source's side (freeze, offer, commit or thaw; wave timers).
//! - `drain`: rounds of waves, the barrier, the report.
//! - `rebalance`: opt-in moves toward placement after a join.

mod drain;
mod incoming;
mod rebalance;
mod waves;

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
/// How long a leaving member waits for its peers to answer its `Left` hello.
const FAREWELL_WAIT: Duration = Duration::from_millis(500);
/// How often a drain with nobody to move to asks for peers again.
const NEED_PEERS_EVERY: Duration = Duration::from_millis(500);
/// How often the rebalancer looks for children to move.
const REBALANCE_EVERY: Duration = Duration::from_secs(1);
/// A child whose state was too large to offer is not tried again for this long (a drain's
/// rounds would otherwise freeze it, and log it, every 50 ms).
const UNMOVABLE_FOR: Duration = Duration::from_secs(10);

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
    /// How long it had been frozen when its offer left its previous owner, when the offer
    /// said ([`crate::protocol::Feature::PauseAtTarget`]): its pause is recorded here.
    frozen_before: Option<Duration>,
}

/// A child arriving in a move, while it spawns.
#[derive(Debug)]
pub(super) struct Arrival {
    /// The offer being answered (`Moves::incoming`).
    pub incoming: u64,
    pub epoch: u64,
    pub from: NodeId,
    pub spec: Arc<[u8]>,
    /// How long it had been frozen when offered, when the offer said so.
    pub frozen_before: Option<Duration>,
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
    /// When its freeze was reported (its pause runs from about then).
    frozen_at: Instant,
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
        /// The offer told the target how long its children had been frozen: the target
        /// records their pauses ([`crate::protocol::Feature::PauseAtTarget`]), not this member.
        pause_at_target: bool,
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
    /// Left: waiting (until `until` at most) for every member to acknowledge this member's
    /// `Left` hello, so that none learns of its exit only from the link going down (it would
    /// count it dead, not left, and still in its quorum set: with one more member lost it
    /// would see no majority where the others see one).
    Farewell {
        waiting: BTreeSet<String>,
        until: Instant,
        /// The `Left` hello's number, which a `FarewellAck` must carry (`None`: a member of
        /// the previous protocol is in the cluster; any hello from a peer answers, as then).
        receipt: Option<u64>,
    },
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
    /// Moving and the barrier are over: report (and leave).
    Finish,
    /// Every peer heard this member left (or the wait ran out): answer.
    Answer,
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
    /// Children whose state alone exceeds the message budget, until when they are not
    /// offered again.
    unmovable: BTreeMap<Arc<str>, Instant>,
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
            unmovable: BTreeMap::new(),
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

    /// True when `name` may be offered now (its state did not exceed the budget lately).
    fn movable(&self, name: &str, now: Instant) -> bool {
        self.unmovable.get(name).is_none_or(|until| *until <= now)
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
