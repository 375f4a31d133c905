//! Counters and the event stream of a horde: handoffs in and out, forwarded messages, conflicts,
//! restarts, and per-move pause times. Plain atomics so the hot paths never wait for them.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use discovery::NodeId;

use crate::membership::MemberInfo;

/// How many recent move pauses are kept for percentiles.
const PAUSE_WINDOW: usize = 20_000;

/// Live counters (shared by the member, the hosted actors and the handle).
#[derive(Debug, Default)]
pub struct Counters {
    /// Children moved to another node.
    pub handoffs_out: AtomicU64,
    /// Children received from another node.
    pub handoffs_in: AtomicU64,
    /// Moves that failed and were rolled back.
    pub handoff_failures: AtomicU64,
    /// Messages that reached a stale owner and were forwarded.
    pub forwarded: AtomicU64,
    /// Messages routed to another node.
    pub routed: AtomicU64,
    /// Name conflicts settled after a partition (the loser stopped).
    pub conflicts: AtomicU64,
    /// Children restarted from a replicated snapshot after their node died.
    pub restarts_from_snapshot: AtomicU64,
    /// Children restarted from their spec after their node died (state lost).
    pub restarts_from_spec: AtomicU64,
    /// Children restarted in place after a callback panicked.
    pub crashes: AtomicU64,
    /// Children a drain could not move live before its deadline (snapshot pushed instead).
    pub drain_fallbacks: AtomicU64,
    /// Duration of the last move batch, in microseconds.
    pub last_handoff_us: AtomicU64,
    /// Recent per-child pauses (freeze to release), in microseconds.
    pauses: Mutex<VecDeque<u32>>,
}

impl Counters {
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn record_pause(&self, pause: Duration) {
        if let Ok(mut p) = self.pauses.lock() {
            if p.len() == PAUSE_WINDOW {
                p.pop_front();
            }
            p.push_back(pause.as_micros().min(u128::from(u32::MAX)) as u32);
        }
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut pauses: Vec<u32> = self
            .pauses
            .lock()
            .map(|p| p.iter().copied().collect())
            .unwrap_or_default();
        pauses.sort_unstable();
        let pct = |q: f64| -> Option<Duration> {
            (!pauses.is_empty()).then(|| {
                let i = ((pauses.len() as f64 - 1.0) * q).round() as usize;
                Duration::from_micros(u64::from(pauses[i]))
            })
        };
        Stats {
            handoffs_out: get(&self.handoffs_out),
            handoffs_in: get(&self.handoffs_in),
            handoff_failures: get(&self.handoff_failures),
            forwarded: get(&self.forwarded),
            routed: get(&self.routed),
            conflicts: get(&self.conflicts),
            restarts_from_snapshot: get(&self.restarts_from_snapshot),
            restarts_from_spec: get(&self.restarts_from_spec),
            drain_fallbacks: get(&self.drain_fallbacks),
            crashes: get(&self.crashes),
            last_handoff: Duration::from_micros(get(&self.last_handoff_us)),
            pause_p50: pct(0.5),
            pause_p99: pct(0.99),
            pause_max: pauses.last().map(|m| Duration::from_micros(u64::from(*m))),
        }
    }
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// See [`Counters::handoffs_out`].
    pub handoffs_out: u64,
    /// See [`Counters::handoffs_in`].
    pub handoffs_in: u64,
    /// See [`Counters::handoff_failures`].
    pub handoff_failures: u64,
    /// See [`Counters::forwarded`].
    pub forwarded: u64,
    /// See [`Counters::routed`].
    pub routed: u64,
    /// See [`Counters::conflicts`].
    pub conflicts: u64,
    /// See [`Counters::restarts_from_snapshot`].
    pub restarts_from_snapshot: u64,
    /// See [`Counters::restarts_from_spec`].
    pub restarts_from_spec: u64,
    /// See [`Counters::drain_fallbacks`].
    pub drain_fallbacks: u64,
    /// See [`Counters::crashes`].
    pub crashes: u64,
    /// Duration of the last move batch.
    pub last_handoff: Duration,
    /// Median pause of recent moves.
    pub pause_p50: Option<Duration>,
    /// 99th percentile pause of recent moves.
    pub pause_p99: Option<Duration>,
    /// Longest pause of recent moves.
    pub pause_max: Option<Duration>,
}

/// Something that happened in the horde, for subscribers of [`crate::Horde::events`].
#[derive(Debug, Clone)]
pub enum HordeEvent {
    /// A child moved away from this node.
    HandedOff {
        /// The child.
        name: String,
        /// Where it went.
        to: NodeId,
        /// How long it could not process messages.
        pause: Duration,
    },
    /// A child arrived on this node.
    TookOver {
        /// The child.
        name: String,
        /// Where it came from.
        from: NodeId,
    },
    /// Two nodes both ran a name (after a partition); this node's copy lost and stopped.
    Conflict {
        /// The child.
        name: String,
        /// The surviving owner.
        winner: NodeId,
    },
    /// A child of a dead node was restarted here.
    Restarted {
        /// The child.
        name: String,
        /// Its previous owner.
        previous: NodeId,
        /// True when it resumed from a replicated snapshot, false when from its spec.
        from_snapshot: bool,
    },
    /// A member changed.
    Member(MemberInfo),
}
