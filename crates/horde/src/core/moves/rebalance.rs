//! Rebalance on join (opt-in): moves toward placement at a bounded rate.

use super::*;

impl<T> Core<T> {
    pub(super) fn rebalance_step(&mut self, now: Instant, out: &mut Vec<Effect<T>>) {
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
        // Never toward a member this one suspects: a majority may be failing its children
        // over, and a child moved there would be failed over again, and moved back, for ever
        // (found by the simulator with the rebalancer on: a member paused past the failure
        // timeout and back took a child every second). Nor toward one a majority voted dead
        // (this member may see it again already, but the voters fail over what it holds, and
        // it is granted a lease again only once it owns nothing: random faults seed 247, a
        // member back from a cut took a child every second, in a new term each time).
        candidates.retain(|c| {
            c.node == self.me
                || (c.reads.iter().any(|s| self.config.writes.contains(s))
                    && !self.quorum.suspects(&c.node)
                    && !self.dead_for_failover(&c.node, now))
        });
        let moves: Vec<(String, NodeId)> = self
            .local
            .keys()
            .filter(|n| self.moves.movable(n, now))
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
