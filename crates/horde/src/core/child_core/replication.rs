//! A child's replication window: the backup its replicas go to, the answers and events held
//! until the backup acknowledges the change that caused them (group commit), and the backup's
//! answers.

use super::*;

/// Where replicas go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Backup {
    /// Not told yet: answers wait.
    Unknown,
    /// No other member: answers go at once.
    Alone,
    /// This member, which reads this schema.
    Node(NodeId, u16),
}

/// Something caused by a change, waiting for the backup.
pub(super) enum Held<C: Handoff, T> {
    Reply {
        seq: u64,
        to: T,
        answer: Answer<C::Reply>,
    },
    Deliver {
        seq: u64,
        event_seq: u64,
        event: C::Event,
        to: Vec<Subscriber>,
    },
}

impl<C: Handoff, T> Held<C, T> {
    pub(super) fn seq(&self) -> u64 {
        match self {
            Held::Reply { seq, .. } | Held::Deliver { seq, .. } => *seq,
        }
    }
}

impl<C: Handoff, T> ChildCore<C, T> {
    pub(super) fn on_replica(
        &mut self,
        now: Instant,
        answer: ReplicaAnswer,
        out: &mut Vec<ChildEffect<C, T>>,
        env: &ChildEnv<'_>,
    ) {
        let Backup::Node(backup, _) = &self.backup else {
            return;
        };
        match answer {
            ReplicaAnswer::Ack { from, epoch, seq } => {
                if from != *backup || epoch != self.epoch {
                    return;
                }
                if self.inflight.is_some_and(|s| s <= seq) {
                    self.inflight = None;
                }
                self.acked = self.acked.max(seq);
                self.release(self.acked, out, env);
                if self.report_durable && self.acked >= self.seq {
                    self.report_durable = false;
                    out.push(ChildEffect::Report(ChildReport::Durable));
                }
                self.replicate(now, out, env);
            }
            ReplicaAnswer::Nack {
                from,
                epoch,
                why: ReplicaRefusal::Fenced | ReplicaRefusal::Leaving,
            } => {
                if from != *backup || epoch != self.epoch {
                    return;
                }
                // That backup takes nothing from this node for now (it suspects it): the
                // answers wait; the member picks another backup or this one comes round.
                self.inflight = None;
                out.push(ChildEffect::Report(ChildReport::BackupRefused {
                    backup: from,
                }));
            }
            ReplicaAnswer::Nack { from, epoch, why } => {
                if from != *backup || epoch != self.epoch {
                    return;
                }
                tracing::warn!(child = %self.name, backup = %from, ?why, "backup refused a replica: this copy is superseded");
                self.inflight = None;
                // Nothing held can be promised: a newer copy runs elsewhere.
                for h in std::mem::take(&mut self.held) {
                    if let Held::Reply { to, .. } = h {
                        out.push(ChildEffect::Reply {
                            to,
                            answer: Answer::Failed(Unavailable::Superseded),
                        });
                    }
                }
                if matches!(self.mode, Mode::Live) {
                    self.mode = Mode::Superseded;
                }
                out.push(ChildEffect::Report(ChildReport::Superseded));
            }
        }
    }

    /// Sends an answer or event now if nothing it depends on waits for the backup, else holds it.
    pub(super) fn hold(
        &mut self,
        h: Held<C, T>,
        out: &mut Vec<ChildEffect<C, T>>,
        env: &ChildEnv<'_>,
    ) {
        let now_ok = !self.replicated
            || self.backup == Backup::Alone
            || (self.held.is_empty() && h.seq() <= self.acked)
            || planted::on(Bug::AnswerBeforeBackup);
        if now_ok {
            self.emit(h, out, env);
        } else {
            self.held.push_back(h);
        }
    }

    /// Releases what waited for changes up to `upto`, in order.
    pub(super) fn release(
        &mut self,
        upto: u64,
        out: &mut Vec<ChildEffect<C, T>>,
        env: &ChildEnv<'_>,
    ) {
        while self.held.front().is_some_and(|h| h.seq() <= upto) {
            if let Some(h) = self.held.pop_front() {
                self.emit(h, out, env);
            }
        }
    }

    pub(super) fn emit(&self, h: Held<C, T>, out: &mut Vec<ChildEffect<C, T>>, env: &ChildEnv<'_>) {
        match h {
            Held::Reply { to, answer, .. } => {
                // The change is durable; whether this copy may still say so is the lease's.
                let answer = if env.lease || planted::on(Bug::IgnoreLease) {
                    answer
                } else {
                    Answer::Failed(Unavailable::NoLease)
                };
                out.push(ChildEffect::Reply { to, answer });
            }
            Held::Deliver {
                event_seq,
                event,
                to,
                ..
            } => {
                if env.lease || planted::on(Bug::EventsWithoutLease) {
                    out.push(ChildEffect::Deliver {
                        seq: event_seq,
                        event,
                        to,
                    });
                }
            }
        }
    }

    /// Sends the backup a replica when it lacks changes and none is in flight.
    pub(super) fn replicate(
        &mut self,
        now: Instant,
        out: &mut Vec<ChildEffect<C, T>>,
        env: &ChildEnv<'_>,
    ) {
        if !self.replicated || self.inflight.is_some() || self.acked >= self.seq {
            return;
        }
        if matches!(self.mode, Mode::Forwarding { .. } | Mode::Superseded) {
            return;
        }
        let Backup::Node(to, schema) = &self.backup else {
            return;
        };
        let ctx = self.ctx(now);
        let (schema, state) = match self.child.dehydrate_as(*schema, &ctx) {
            Some(state) => (*schema, state),
            None => (C::SCHEMA, self.child.dehydrate(&ctx)),
        };
        let replica = Replica {
            name: self.name.to_string(),
            owner: self.me.clone(),
            epoch: self.epoch,
            seq: self.seq,
            schema,
            state,
            subscribers: self.subscribers.clone(),
            event_seq: self.event_seq,
        };
        // `Wire::Replicate` adds its variant's tag, one byte.
        let bytes = crate::protocol::encoded_len(&replica) + 1;
        if bytes > env.max_message_bytes {
            // Sending it would close the link (a frame over the limit reads as a dead node).
            // Nothing answered is lost: the answers it holds wait until a later change makes
            // the state fit again (or the caller's deadline passes).
            tracing::error!(
                child = %self.name,
                bytes,
                budget = env.max_message_bytes,
                held = self.held.len(),
                "child state too large to back up (over the message budget); its answers wait"
            );
            return;
        }
        self.inflight = Some(self.seq);
        out.push(ChildEffect::Replicate {
            to: to.clone(),
            replica,
        });
    }
}
