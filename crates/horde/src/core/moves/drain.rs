//! The drain: rounds of waves until nothing is left or the deadline passes, then the barrier
//! (registry changes acknowledged, replicas handed over) and the report.

use super::*;
use crate::core::planted::{self, Bug};

impl<T> Core<T> {
    pub(in crate::core) fn start_drain(
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
    pub(in crate::core) fn drain_step(&mut self, now: Instant, out: &mut Vec<Effect<T>>) {
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
                DrainNext::Answer => {
                    if let Some(d) = self.moves.drain.take() {
                        out.push(Effect::Reply {
                            to: d.reply,
                            reply: Reply::Drained(d.report),
                        });
                    }
                    return;
                }
            }
        }
    }

    /// Ends a wave without waiting for it: thaws what it froze, aborts what it offered.
    pub(super) fn give_up_wave(&mut self, out: &mut Vec<Effect<T>>, wave_id: u64) {
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

    pub(super) fn settle(&mut self) {
        if let Some(d) = self.moves.drain.as_mut() {
            d.phase = DrainPhase::Barrier;
        }
    }

    /// Decides the drain's next step (and records what needs no other part of the core).
    pub(super) fn drain_next(&mut self, now: Instant, out: &mut Vec<Effect<T>>) -> DrainNext {
        let others = self.move_targets();
        // (Called after every wave: nothing here may walk every child but a new round.)
        let local = &self.local;
        let acked = self.all_acked() && self.replicas.handover_done();
        // Children this member accepted before its drain began and that have not arrived
        // yet: they must arrive and move on, or their move be dropped, before it leaves (it
        // would otherwise leave with the only live copy).
        let arriving = !self.moves.pending_in.is_empty() || !self.moves.incoming.is_empty();
        self.moves.unmovable.retain(|_, until| *until > now);
        let unmovable = &self.moves.unmovable;
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
                        // The waves that landed in this round count as moved too.
                        drain.report.moved += r.moved;
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
                // Children whose state exceeds the message budget cannot move (each was
                // logged): they stay, as at the deadline.
                let movable = local.keys().filter(|n| !unmovable.contains_key(*n));
                if now >= end {
                    return DrainNext::Settle;
                }
                if movable.clone().next().is_none() {
                    return if arriving {
                        DrainNext::Wait
                    } else {
                        DrainNext::Settle
                    };
                }
                if not_before.is_some_and(|t| now < t) {
                    return DrainNext::Wait;
                }
                let moves: Vec<(String, NodeId)> = movable
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
                                children = local.len(),
                                "drain: no other member yet; looking for peers until the deadline"
                            );
                        } else {
                            debug!(children = local.len(), "drain: still no other member");
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
            DrainPhase::Farewell { waiting, until, .. } => {
                if waiting.is_empty() || now >= *until {
                    if !waiting.is_empty() {
                        warn!(
                            silent = ?waiting,
                            "drain: members did not answer this member's leaving in time; \
                             they will count it dead rather than left"
                        );
                    }
                    return DrainNext::Answer;
                }
                DrainNext::Wait
            }
        }
    }

    /// A peer said hello (`went`: its link went down): one fewer to wait for before a leaving
    /// drain answers, unless farewells need their receipt (then only a link that went down
    /// counts here; see [`Core::farewell_acked`]).
    pub(in crate::core) fn farewell_heard(
        &mut self,
        now: Instant,
        out: &mut Vec<Effect<T>>,
        name: &str,
        went: bool,
    ) {
        if let Some(Drain {
            phase: DrainPhase::Farewell {
                waiting, receipt, ..
            },
            ..
        }) = self.moves.drain.as_mut()
            && (went || receipt.is_none() || planted::on(Bug::FarewellAnyHello))
            && waiting.remove(name)
        {
            self.drain_step(now, out);
        }
    }

    /// A member acknowledged this member's `Left` hello (protocol 3).
    pub(in crate::core) fn farewell_acked(
        &mut self,
        now: Instant,
        out: &mut Vec<Effect<T>>,
        from: &NodeId,
        seq: u64,
    ) {
        if let Some(Drain {
            phase: DrainPhase::Farewell {
                waiting, receipt, ..
            },
            ..
        }) = self.moves.drain.as_mut()
            && receipt.is_none_or(|r| seq >= r)
            && waiting.remove(&from.name)
        {
            self.drain_step(now, out);
        }
    }

    /// Members a child may move to: alive ones that read a schema this build writes.
    pub(super) fn move_targets(&self) -> Vec<crate::placement::Candidate> {
        let mut c = self.others();
        c.retain(|c| c.reads.iter().any(|s| self.config.writes.contains(s)));
        c
    }

    pub(super) fn finish_drain(&mut self, now: Instant, out: &mut Vec<Effect<T>>, mut d: Drain<T>) {
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
        if r.fallback > 0 {
            // Only about those with a backup: a lone node's children have none.
            warn!(
                moved = r.moved,
                left = r.fallback,
                "drain deadline passed: the children left keep running here (their backups hold \
                 their state: if this node exits, they restart elsewhere from it)"
            );
            Counters::add(&self.counters.drain_fallbacks, r.fallback as u64);
        }
        if r.fallback + r.stranded == 0 {
            info!(
                moved = r.moved,
                ms = r.duration.as_millis() as u64,
                "drain complete"
            );
            if d.leave && self.replicas.handover_done() {
                // Nothing left here, what it kept for others handed over, and about to exit:
                // no longer counted toward the majority (and its peers need not send their
                // children's state again when it goes). Told as a hello each peer answers:
                // the drain answers (and the node exits) once every peer heard it.
                self.status = MemberStatus::Left;
                self.dirty = true;
                info!(node = %self.me, status = %self.status, "member status");
                let hello = self.next_hello();
                let mut waiting = BTreeSet::new();
                for l in self.links.values_mut().filter(|l| l.ready) {
                    l.hello_sent = true;
                    waiting.insert(l.id.name.clone());
                    out.push(Effect::Send {
                        to: l.id.clone(),
                        wire: Wire::Reintroduce(hello.clone()),
                    });
                }
                let strict = self.uses(crate::protocol::Feature::FarewellReceipt);
                if strict {
                    // Every member that may count this one (in its quorum set), connected
                    // now or not (one whose link is down may only be slow; it gets a `Left`
                    // hello when it connects again), until the drain's deadline; not one a
                    // majority voted dead.
                    let set = self.quorum_set();
                    for m in set.members() {
                        if *m != self.me && !self.dead_for_failover(m, now) {
                            waiting.insert(m.name.clone());
                        }
                    }
                }
                if !waiting.is_empty() {
                    d.phase = DrainPhase::Farewell {
                        waiting,
                        until: if strict {
                            d.end.max(now + FAREWELL_WAIT)
                        } else {
                            now + FAREWELL_WAIT
                        },
                        receipt: strict.then_some(hello.seq),
                    };
                    self.moves.drain = Some(d);
                    return;
                }
            }
        }
        out.push(Effect::Reply {
            to: d.reply,
            reply: Reply::Drained(d.report),
        });
    }
}
