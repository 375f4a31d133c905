//! Waves out: freeze a wave's children, offer them, commit or thaw; the timers that end
//! waves whose answers do not come.

use super::*;
use crate::protocol::{Batches, Feature, batch_by_size, encoded_len};
use tracing::error;

impl<T> Core<T> {
    pub(super) fn start_run(&mut self, now: Instant, out: &mut Vec<Effect<T>>, kind: RunKind) {
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

    pub(super) fn start_wave(
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

    pub(in crate::core) fn on_frozen(
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
                    frozen_at: now,
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

    /// Every freeze of the wave answered (or timed out): offer what froze, in as many offers
    /// as it takes to keep each within the message budget (each further offer is a wave of
    /// its own, answered on its own). A child whose state alone exceeds the budget is not
    /// offered: it thaws here at its epoch, with an error (sending it would close the link).
    pub(super) fn offer_wave(&mut self, now: Instant, out: &mut Vec<Effect<T>>, wave_id: u64) {
        let Some(wave) = self.moves.waves.get_mut(&wave_id) else {
            return;
        };
        let WavePhase::Freezing { frozen, .. } = &mut wave.phase else {
            return;
        };
        let frozen = std::mem::take(frozen);
        let (kind, target, started) = (wave.run, wave.target.clone(), wave.started);
        if frozen.is_empty() {
            self.finish_wave(now, out, wave_id, kind, 0, 0);
            return;
        }
        // Each item with how long it has been frozen (sent only while every member reads it:
        // the target then records the pause, where the child resumes).
        let pause_at_target = self.uses(Feature::PauseAtTarget);
        let items = frozen.into_iter().map(|f| {
            let frozen_us = now.saturating_duration_since(f.frozen_at).as_micros() as u64;
            let item = OfferItem {
                name: f.name.to_string(),
                epoch: f.epoch,
                spec: f.spec.to_vec(),
                schema: f.frozen.schema,
                state: f.frozen.state,
                subscribers: f.frozen.subscribers,
                event_seq: f.frozen.event_seq,
            };
            // Batched with the appended time, so it counts towards the size.
            (item, pause_at_target.then_some(frozen_us))
        });
        let fixed = encoded_len(&Wire::Offer {
            from: self.me.clone(),
            id: u64::MAX,
            items: Vec::new(),
            frozen_us: Vec::new(),
        });
        let Batches { batches, too_large } =
            batch_by_size(items, fixed, self.config.max_message_bytes);
        for ((item, _), size) in &too_large {
            error!(
                child = %item.name,
                target = %target,
                bytes = size,
                budget = self.config.max_message_bytes,
                "child state too large to move (over the message budget); it stays here"
            );
            let name: Arc<str> = Arc::from(item.name.as_str());
            self.moves
                .unmovable
                .insert(name.clone(), now + UNMOVABLE_FOR);
            out.push(Effect::ToChild {
                name,
                cmd: ChildCmd::Thaw {
                    epoch: item.epoch - 1,
                },
            });
        }
        Counters::add(&self.counters.handoff_failures, too_large.len() as u64);
        if let Some(run) = self.moves.run_mut(kind) {
            run.failed += too_large.len();
        }
        if batches.is_empty() {
            self.finish_wave(now, out, wave_id, kind, 0, 0);
            return;
        }
        for (i, batch) in batches.into_iter().enumerate() {
            let (items, frozen_us): (Vec<OfferItem>, Vec<Option<u64>>) = batch.into_iter().unzip();
            let frozen_us: Vec<u64> = frozen_us.into_iter().flatten().collect();
            // The first batch is this wave's offer; the others, waves of their own.
            let id = if i == 0 {
                wave_id
            } else {
                let id = self.next_id();
                if let Some(run) = self.moves.run_mut(kind) {
                    run.in_flight.insert(id);
                }
                id
            };
            let offer = self.next_id();
            let children: Vec<(Arc<str>, u64)> = items
                .iter()
                .map(|f| (Arc::from(f.name.as_str()), f.epoch))
                .collect();
            out.push(Effect::Send {
                to: target.clone(),
                wire: Wire::Offer {
                    from: self.me.clone(),
                    id: offer,
                    items,
                    frozen_us,
                },
            });
            self.moves.waves.insert(
                id,
                Wave {
                    run: kind,
                    target: target.clone(),
                    started,
                    phase: WavePhase::Offered {
                        offer,
                        children,
                        deadline: now + self.config.moves.offer_timeout,
                        pause_at_target,
                    },
                },
            );
            self.moves.offers.insert(offer, id);
        }
    }

    pub(in crate::core) fn on_offer_reply(
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
        let WavePhase::Offered {
            children,
            pause_at_target,
            ..
        } = wave.phase
        else {
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
            // A replica of an older copy is dropped; one of the copy that arrived there (this
            // member may be its new backup: it acknowledged it before the target accepted)
            // is what makes the move durable, and stays.
            if self.replicas.get(name).is_some_and(|r| r.epoch < *epoch) {
                self.replicas.remove(name);
            }
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
                    record_pause: !pause_at_target,
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
        // One line per reason for the wave (a drain towards a member that drains too refuses
        // every child), each child at debug.
        let mut reasons: Vec<(&OfferRefusal, usize, &str)> = Vec::new();
        for (name, reason) in &refused {
            debug!(child = %name, target = %wave.target, %reason, "move refused");
            match reasons.iter_mut().find(|(r, _, _)| *r == reason) {
                Some((_, n, _)) => *n += 1,
                None => reasons.push((reason, 1, name)),
            }
        }
        for (reason, children, first) in reasons {
            warn!(target = %wave.target, %reason, children, first = %first, "moves refused");
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
    pub(super) fn fail_wave(&mut self, now: Instant, out: &mut Vec<Effect<T>>, wave_id: u64) {
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
    pub(super) fn abort_offered(
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
    pub(super) fn freeze_timeout(&mut self, now: Instant, out: &mut Vec<Effect<T>>, wave_id: u64) {
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

    pub(super) fn finish_wave(
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
    pub(in crate::core) fn moves_peer_down(
        &mut self,
        now: Instant,
        out: &mut Vec<Effect<T>>,
        id: &NodeId,
    ) {
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

    pub(in crate::core) fn moves_tick(&mut self, now: Instant, out: &mut Vec<Effect<T>>) {
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
}
