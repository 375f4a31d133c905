//! Counters and the event stream of a horde: handoffs in and out, forwarded messages, conflicts,
//! restarts, and per-move pause times. Plain atomics so the hot paths never wait for them.
//!
//! Pauses go into a fixed-bucket [`Histogram`] (as Prometheus keeps one): recording is one
//! atomic add, and percentiles are estimated from the buckets, so neither a scrape nor a
//! `stats` call sorts a window of samples. The histogram knows nothing of Prometheus; an
//! application exports [`HistogramSnapshot::buckets`] with whatever metrics library it uses.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use discovery::NodeId;

use crate::membership::MemberInfo;

/// Upper bounds, in seconds, of the buckets of [`Histogram::default`]: a 1-2-5 series from
/// 0.5 ms to 10 s. A live move pauses a game for one wave (a round trip or two on a LAN, so
/// milliseconds); a move that waits on a slow or dying peer can take seconds.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
];

/// A histogram of durations with fixed buckets, safe to share and lock-free: observing is one
/// atomic add per field. Counts only grow (a Prometheus histogram is cumulative since start).
#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds in seconds, ascending; a last bucket (`+Inf`) takes the rest.
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); one more than `bounds`.
    counts: Box<[AtomicU64]>,
    /// Sum of the observations, in nanoseconds (584 years of pauses before it wraps).
    sum_ns: AtomicU64,
    /// Longest observation, in nanoseconds (the buckets only bound it).
    max_ns: AtomicU64,
}

impl Default for Histogram {
    /// A histogram with the [`LATENCY_BUCKETS`].
    fn default() -> Self {
        Self::new(&LATENCY_BUCKETS)
    }
}

impl Histogram {
    /// A histogram with buckets ending at `bounds` (seconds, ascending) and `+Inf`.
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
            max_ns: AtomicU64::new(0),
        }
    }

    /// Counts one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = self.bounds.partition_point(|b| *b < secs);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
        self.max_ns.fetch_max(ns, Ordering::Relaxed);
    }

    /// The counts now. Buckets are read one by one, so an observation made meanwhile may be
    /// in the buckets and not yet in the sum; the count is the buckets' total.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let buckets: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(self.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect();
        HistogramSnapshot {
            count: buckets.iter().map(|(_, n)| n).sum(),
            buckets,
            sum: Duration::from_nanos(self.sum_ns.load(Ordering::Relaxed)),
            max: Duration::from_nanos(self.max_ns.load(Ordering::Relaxed)),
        }
    }
}

/// A [`Histogram`]'s counts at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound in seconds, observations in this bucket)`, ascending, not cumulative;
    /// the last bound is `f64::INFINITY`.
    pub buckets: Vec<(f64, u64)>,
    /// Observations.
    pub count: u64,
    /// Sum of the observations.
    pub sum: Duration,
    /// Longest observation.
    pub max: Duration,
}

impl HistogramSnapshot {
    /// The `q`-quantile (0 to 1) estimated from the buckets as Prometheus's
    /// `histogram_quantile` does: linear within the bucket the rank falls in, the bucket's
    /// lower bound being the previous bound (0 for the first); a rank in the `+Inf` bucket
    /// gives the largest finite bound. Never above [`HistogramSnapshot::max`]. `None` without
    /// observations.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.count == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = q * self.count as f64;
        let mut below = 0u64;
        let mut lower = 0.0;
        for &(upper, n) in &self.buckets {
            if n > 0 && (below + n) as f64 >= rank {
                let secs = if upper.is_finite() {
                    lower + (upper - lower) * ((rank - below as f64) / n as f64)
                } else {
                    lower
                };
                return Some(Duration::from_secs_f64(secs.max(0.0)).min(self.max));
            }
            below += n;
            lower = upper;
        }
        Some(self.max)
    }
}

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
    /// Per-child pauses of moves, recorded where the child resumes: from its freeze to its
    /// commit on the member it moved to (or to its release here when that member is of the
    /// previous release, or to its thaw here when the move failed).
    pub pauses: Histogram,
    /// Gauge: replicas this member keeps for other members' children (as backup).
    pub replicas_held: AtomicU64,
    /// Gauge: tombstones (removed names not yet collected) in this member's registry.
    pub tombstones: AtomicU64,
    /// Messages from other members that did not decode, by kind (see
    /// [`crate::protocol::Undecodable`]); the kinds are this build's names, so the map is
    /// bounded.
    pub undecodable: std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>,
}

impl Counters {
    /// Counts a message of `kind` that did not decode; true for the first of its kind (the
    /// one to log).
    pub(crate) fn note_undecodable(&self, kind: &'static str) -> bool {
        let Ok(mut m) = self.undecodable.lock() else {
            return false;
        };
        let n = m.entry(kind).or_insert(0);
        *n += 1;
        *n == 1
    }

    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn record_pause(&self, pause: Duration) {
        self.pauses.observe(pause);
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let pauses = self.pauses.snapshot();
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
            replicas_held: get(&self.replicas_held),
            tombstones: get(&self.tombstones),
            last_handoff: Duration::from_micros(get(&self.last_handoff_us)),
            pause_p50: pauses.quantile(0.5),
            pause_p99: pauses.quantile(0.99),
            pause_max: (pauses.count > 0).then_some(pauses.max),
            pauses,
            undecodable: self
                .undecodable
                .lock()
                .map(|m| m.iter().map(|(k, n)| (*k, *n)).collect())
                .unwrap_or_default(),
        }
    }
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
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
    /// See [`Counters::replicas_held`].
    pub replicas_held: u64,
    /// See [`Counters::tombstones`].
    pub tombstones: u64,
    /// Duration of the last move batch.
    pub last_handoff: Duration,
    /// Median pause of moves since start, estimated from [`Stats::pauses`].
    pub pause_p50: Option<Duration>,
    /// 99th percentile pause of moves since start, estimated from [`Stats::pauses`].
    pub pause_p99: Option<Duration>,
    /// Longest pause of moves since start.
    pub pause_max: Option<Duration>,
    /// Every move's pause since start, by bucket (see [`Counters::pauses`]).
    pub pauses: HistogramSnapshot,
    /// See [`Counters::undecodable`]: (kind, count), by kind.
    pub undecodable: Vec<(&'static str, u64)>,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn an_observation_on_a_bound_counts_in_that_bucket_as_prometheus_le_does() {
        let h = Histogram::default();
        h.observe(ms(1));
        h.observe(Duration::from_micros(1001));
        h.observe(ms(11));
        h.observe(Duration::from_secs(60));
        let s = h.snapshot();
        let count_at = |bound: f64| s.buckets.iter().find(|(b, _)| *b == bound).map(|(_, n)| *n);
        assert_eq!(count_at(0.001), Some(1));
        assert_eq!(count_at(0.002), Some(1));
        assert_eq!(count_at(0.02), Some(1));
        assert_eq!(count_at(f64::INFINITY), Some(1));
        assert_eq!(s.buckets.len(), LATENCY_BUCKETS.len() + 1);
        assert_eq!(s.count, 4);
        assert_eq!(
            s.sum,
            ms(1) + Duration::from_micros(1001) + ms(11) + Duration::from_secs(60)
        );
        assert_eq!(s.max, Duration::from_secs(60));
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket_as_histogram_quantile_does() {
        let h = Histogram::default();
        // 100 pauses in (5 ms, 10 ms], 100 in (10 ms, 20 ms].
        for _ in 0..100 {
            h.observe(ms(8));
            h.observe(ms(15));
        }
        let s = h.snapshot();
        // Rank 100 of 200 ends the (5, 10] bucket: its upper bound.
        assert_eq!(s.quantile(0.5), Some(ms(10)));
        // Rank 50: halfway through (5, 10].
        assert_eq!(s.quantile(0.25), Some(Duration::from_micros(7500)));
        // Rank 198: 98 of 100 into (10, 20], capped at the longest seen (15 ms).
        assert_eq!(s.quantile(0.99), Some(ms(15)));
        assert_eq!(s.quantile(1.5), None);
        assert_eq!(Histogram::default().snapshot().quantile(0.5), None);
    }

    #[test]
    fn a_rank_beyond_the_last_bound_gives_the_last_bound() {
        let h = Histogram::default();
        h.observe(Duration::from_secs(30));
        assert_eq!(h.snapshot().quantile(0.99), Some(Duration::from_secs(10)));
    }
}
