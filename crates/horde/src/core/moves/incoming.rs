//! Offers coming in: a target spawns the offered children as pending, accepts them once its
//! backup holds their state, and commits them when the source's registry change arrives.

use super::*;
use crate::core::planted::{self, Bug};

impl<T> Core<T> {
    pub(in crate::core) fn on_offer(
        &mut self,
        now: Instant,
        out: &mut Vec<Effect<T>>,
        from: NodeId,
        offer: u64,
        items: Vec<OfferItem>,
        frozen_us: Vec<u64>,
    ) {
        let id = self.next_id();
        // How long each item had been frozen, when the offer says (one per item or none).
        let mut frozen_us = frozen_us.into_iter();
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
            let frozen_before = frozen_us.next().map(Duration::from_micros);
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
                SpawnFor::Offer(Arrival {
                    incoming: id,
                    epoch: item.epoch,
                    from: from.clone(),
                    spec: Arc::from(item.spec),
                    frozen_before,
                }),
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
    pub(in crate::core) fn on_durable(
        &mut self,
        _now: Instant,
        out: &mut Vec<Effect<T>>,
        name: Arc<str>,
    ) {
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

    pub(super) fn maybe_answer(&mut self, out: &mut Vec<Effect<T>>, id: u64) {
        let done = self
            .moves
            .incoming
            .get(&id)
            .is_some_and(|inc| inc.waiting.is_empty() && inc.durable.is_empty());
        if done && let Some(inc) = self.moves.incoming.remove(&id) {
            self.answer_offer(out, inc);
        }
    }

    pub(super) fn answer_offer(&self, out: &mut Vec<Effect<T>>, incoming: Incoming) {
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

    /// An arriving child spawned (or not).
    pub(in crate::core) fn offer_spawned(
        &mut self,
        now: Instant,
        out: &mut Vec<Effect<T>>,
        name: Arc<str>,
        arrival: Arrival,
        result: Result<(), SpawnError>,
    ) {
        let Arrival {
            incoming,
            epoch,
            from,
            spec,
            frozen_before,
        } = arrival;
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
                        frozen_before,
                    },
                );
                // Accepted once its backup holds it (`on_durable`).
                if planted::on(Bug::AcceptMoveBeforeBackup) {
                    inc.accepted.push(name.to_string());
                } else {
                    inc.durable.insert(name.clone());
                }
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

    pub(in crate::core) fn on_abort(
        &mut self,
        out: &mut Vec<Effect<T>>,
        names: Vec<(String, u64)>,
    ) {
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

    pub(in crate::core) fn commit_pending(
        &mut self,
        now: Instant,
        out: &mut Vec<Effect<T>>,
        name: Arc<str>,
        pending: PendingIn,
        publish: bool,
    ) {
        // Where the child resumes, its whole pause: frozen at the source until offered, then
        // here until now (the offer's time on the wire is not counted).
        if let Some(before) = pending.frozen_before {
            let pause = before + now.saturating_duration_since(pending.since);
            self.counters.record_pause(pause);
        }
        self.local.insert(
            name.clone(),
            Local {
                epoch: pending.epoch,
            },
        );
        // Its backup was told when it spawned here (`tell_backup`); only one that somehow has
        // none is told now (recomputing every child's backup per arrival made a drain of n
        // children cost n² placements).
        if !self.backups.contains_key(&name) {
            self.tell_backup(out, &name);
        }
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
}
