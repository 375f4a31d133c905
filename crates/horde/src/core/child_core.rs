//! The pure core of one hosted child: the application's [`Child`](crate::Child) plus its move
//! state and its replication window.
//!
//! Replication (for children that opt in): every change gets a sequence number; answers and
//! events caused by change `n` are held until the child's backup member acknowledged a replica
//! at `n` or later, then released in order (group commit: the child keeps applying messages
//! meanwhile, one replica is in flight at a time, the next carries every change since). An
//! answer is also released only while the node holds its quorum lease ([`ChildEnv::lease`]);
//! without it the child applies nothing and answers `Unavailable(NoLease)`. A backup that
//! refuses a replica because it knows a newer copy fences this one: it answers nothing more.
//!
//! A move, seen from here: `Freeze` queues behind every message already in the mailbox, so
//! the state it captures includes everything accepted before it; from then on messages are
//! buffered, not applied. `Release` (the target took the child, and its backup holds the
//! state) answers what was held, forwards the buffer to the new owner in arrival order and
//! turns this core into a forwarding pointer for stragglers; `Thaw` (the move failed) applies
//! the buffer here, at the epoch the member gives. So a message is applied exactly once,
//! either here or there. It must not touch the registry (the member's core does).
//!
//! `T` is the reply token of a message (a oneshot or a ractor reply port in production, a
//! client id in the simulator).
//!
//! # Layout
//! - `input`: what goes in ([`ChildInput`], [`Envelope`], [`ReplicaAnswer`], [`ChildEnv`]).
//! - `effect`: what comes out ([`ChildEffect`], [`Answer`]).
//! - `replication`: the backup, the answers and events held for it, replicas and their
//!   answers (group commit).
//! - this file: the state, start, messages, commands (freeze, release, thaw) and forwarding.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use discovery::NodeId;

mod effect;
mod input;
mod replication;

pub use self::effect::{Answer, ChildEffect};
pub use self::input::{Body, ChildEnv, ChildInput, Envelope, ReplicaAnswer};
use self::replication::{Backup, Held};
use super::planted::{self, Bug};
use super::{ChildCmd, ChildReport, Frozen, Init, SpawnError};
use crate::child::{Ctx, Handoff, Replication};
use crate::protocol::{Replica, ReplicaRefusal, RouteBody, Subscriber, Unavailable};

/// A forwarding pointer stops after this long; later stragglers are forwarded by the member
/// from the registry.
pub const FORWARD_GRACE: Duration = Duration::from_secs(30);

enum Mode<M, T> {
    /// Applying messages.
    Live,
    /// Buffering during a move.
    Frozen {
        buffer: VecDeque<ChildInput<M, T>>,
        since: Instant,
    },
    /// Moved: forwarding to the new owner.
    Forwarding { to: NodeId },
    /// A backup knows a newer copy: this one answers nothing until the member stops it.
    Superseded,
}

/// The core of one hosted child; see the module docs.
pub struct ChildCore<C: Handoff, T> {
    name: Arc<str>,
    me: NodeId,
    node: Arc<str>,
    /// Origin of `Ctx::now_ms` (the node's clock).
    origin: Instant,
    child: C,
    mode: Mode<C::Msg, T>,
    /// Who gets events; travels with the child.
    subscribers: Vec<Subscriber>,
    /// Sequence number of the last event; travels with the child so numbering has no gap.
    event_seq: u64,
    /// Generation of the current timer (stale timers are ignored).
    timer_generation: u64,
    /// Registry epoch of this copy (backups refuse an older one than they know).
    epoch: u64,
    /// Changes applied (the replication sequence).
    seq: u64,
    /// Replicated before answering.
    replicated: bool,
    backup: Backup,
    /// Highest change the current backup acknowledged at this epoch.
    acked: u64,
    /// The change a replica in flight to the current backup carries.
    inflight: Option<u64>,
    /// Answers and events waiting for the backup, in order.
    held: VecDeque<Held<C, T>>,
    /// Tell the member once the backup holds the state (a child arriving in a move).
    report_durable: bool,
}

impl<C: Handoff, T> std::fmt::Debug for ChildCore<C, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildCore")
            .field("name", &self.name)
            .field("epoch", &self.epoch)
            .field("seq", &self.seq)
            .field("acked", &self.acked)
            .finish_non_exhaustive()
    }
}

/// Decodes a spec.
pub fn decode_spec<C: Handoff>(spec: &[u8]) -> Result<C::Spec, SpawnError> {
    postcard::from_bytes(spec).map_err(|e| SpawnError::MalformedSpec(e.to_string()))
}

impl<C: Handoff, T> ChildCore<C, T> {
    /// Starts a child: from its spec or from handed-over state. With `durable`, the child
    /// reports [`ChildReport::Durable`] once its backup holds its first state.
    pub fn start(
        name: Arc<str>,
        me: NodeId,
        origin: Instant,
        now: Instant,
        init: Init,
        epoch: u64,
        durable: bool,
    ) -> Result<(Self, Vec<ChildEffect<C, T>>), SpawnError> {
        let node: Arc<str> = Arc::from(me.name.as_str());
        let mut ctx = Ctx::new(name.clone(), node.clone(), ms(origin, now));
        let (child, subscribers, event_seq) = match init {
            Init::Fresh { spec } => {
                let spec = decode_spec::<C>(&spec)?;
                (C::start(&name, spec, &mut ctx), Vec::new(), 0)
            }
            Init::Restore {
                schema,
                state,
                subscribers,
                event_seq,
            } => (
                C::rehydrate(&name, schema, &state, &mut ctx)
                    .map_err(|e| SpawnError::Rehydrate(e.to_string()))?,
                subscribers,
                event_seq,
            ),
        };
        let replicated = C::replication() == Replication::BeforeReply;
        let mut core = Self {
            name,
            me,
            node,
            origin,
            child,
            mode: Mode::Live,
            subscribers,
            event_seq,
            timer_generation: 0,
            epoch,
            // The first state is change 1: a backup must hold it too.
            seq: 1,
            replicated,
            backup: Backup::Unknown,
            acked: 0,
            inflight: None,
            held: VecDeque::new(),
            report_durable: durable && replicated,
        };
        let mut out = Vec::new();
        if durable && !replicated {
            out.push(ChildEffect::Report(ChildReport::Durable));
        }
        core.apply(ctx, &mut out, &ChildEnv::open());
        Ok((core, out))
    }

    /// The child's name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// The application's child (for inspection in tests and the simulator).
    pub fn child(&self) -> &C {
        &self.child
    }

    /// True while frozen for a move.
    pub fn is_frozen(&self) -> bool {
        matches!(self.mode, Mode::Frozen { .. })
    }

    /// True once moved away (forwarding only).
    pub fn is_forwarding(&self) -> bool {
        matches!(self.mode, Mode::Forwarding { .. })
    }

    /// The epoch this copy serves at.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Who gets its events.
    pub fn subscribers(&self) -> &[Subscriber] {
        &self.subscribers
    }

    /// Answers and events waiting for the backup.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Handles one input.
    pub fn on(
        &mut self,
        now: Instant,
        input: ChildInput<C::Msg, T>,
        env: &ChildEnv<'_>,
    ) -> Vec<ChildEffect<C, T>> {
        let mut out = Vec::new();
        match input {
            ChildInput::Cmd(cmd) => self.on_cmd(now, cmd, &mut out, env),
            ChildInput::Replica(answer) => self.on_replica(now, answer, &mut out, env),
            other => match &mut self.mode {
                Mode::Live => self.process(now, other, &mut out, env),
                Mode::Frozen { buffer, .. } => buffer.push_back(other),
                Mode::Forwarding { to } => {
                    let to = to.clone();
                    out.push(ChildEffect::Forwarded(1));
                    self.forward(&to, other, &mut out);
                }
                Mode::Superseded => refuse(other, Unavailable::Superseded, &mut out),
            },
        }
        out
    }

    fn on_cmd(
        &mut self,
        now: Instant,
        cmd: ChildCmd,
        out: &mut Vec<ChildEffect<C, T>>,
        env: &ChildEnv<'_>,
    ) {
        match cmd {
            ChildCmd::Freeze { ticket, schema } => {
                let frozen = match self.mode {
                    Mode::Live => {
                        let ctx = self.ctx(now);
                        let (schema, state) = match self.child.dehydrate_as(schema, &ctx) {
                            Some(state) => (schema, state),
                            None => (C::SCHEMA, self.child.dehydrate(&ctx)),
                        };
                        let frozen = Frozen {
                            schema,
                            state,
                            subscribers: self.subscribers.clone(),
                            event_seq: self.event_seq,
                            seq: self.seq,
                        };
                        self.mode = Mode::Frozen {
                            buffer: VecDeque::new(),
                            since: now,
                        };
                        Some(frozen)
                    }
                    _ => None,
                };
                out.push(ChildEffect::Report(ChildReport::Frozen { ticket, frozen }));
            }
            ChildCmd::Release { to, record_pause } => {
                if let Mode::Frozen { .. } = self.mode {
                    let Mode::Frozen { buffer, since } =
                        std::mem::replace(&mut self.mode, Mode::Forwarding { to: to.clone() })
                    else {
                        return;
                    };
                    // The target's backup holds every change made here: what waited for this
                    // node's backup may go.
                    self.release(u64::MAX, out, env);
                    let pause = now.saturating_duration_since(since);
                    if record_pause {
                        out.push(ChildEffect::Paused(pause));
                    }
                    out.push(ChildEffect::Forwarded(buffer.len() as u64));
                    for m in buffer {
                        if planted::on(Bug::DropBufferedOnMove) {
                            continue;
                        }
                        self.forward(&to, m, out);
                    }
                    out.push(ChildEffect::HandedOff { to, pause });
                    out.push(ChildEffect::StopAfter(FORWARD_GRACE));
                }
            }
            ChildCmd::Thaw { epoch } => {
                if epoch > self.epoch {
                    // Serving on at a higher epoch: backups take nothing older from now on.
                    self.epoch = epoch;
                    self.acked = 0;
                    self.inflight = None;
                }
                if let Mode::Frozen { .. } = self.mode {
                    let Mode::Frozen { buffer, since } =
                        std::mem::replace(&mut self.mode, Mode::Live)
                    else {
                        return;
                    };
                    out.push(ChildEffect::Paused(now.saturating_duration_since(since)));
                    for m in buffer {
                        match &self.mode {
                            Mode::Live => self.process(now, m, out, env),
                            _ => refuse(m, Unavailable::Superseded, out),
                        }
                    }
                }
                self.replicate(now, out, env);
            }
            ChildCmd::Backup { node, lazy } => {
                let next = match node {
                    None => Backup::Alone,
                    Some((id, schema)) => Backup::Node(id, schema),
                };
                let same_node = matches!((&self.backup, &next),
                    (Backup::Node(a, _), Backup::Node(b, _)) if a == b);
                if !same_node && !lazy {
                    // The new backup holds nothing yet: the whole state goes to it now.
                    self.acked = 0;
                }
                // Told again (a relink lost what was in flight, or a refusal): the replica
                // goes out again below.
                self.inflight = None;
                self.backup = next;
                if self.backup == Backup::Alone {
                    self.release(u64::MAX, out, env);
                    if self.report_durable {
                        self.report_durable = false;
                        out.push(ChildEffect::Report(ChildReport::Durable));
                    }
                }
                self.replicate(now, out, env);
            }
            ChildCmd::Stop { report } => {
                if report {
                    let ctx = self.ctx(now);
                    out.push(ChildEffect::Report(ChildReport::Stopped {
                        state: Some((C::SCHEMA, self.child.dehydrate(&ctx))),
                    }));
                }
                // Answers still waiting for the backup go out as errors, at once: their
                // callers learn the child stopped (a stop raced their input, or this copy
                // lost to another, where their retry lands) instead of waiting out their
                // timeout.
                for held in std::mem::take(&mut self.held) {
                    if let Held::Reply { to, .. } = held {
                        out.push(ChildEffect::Reply {
                            to,
                            answer: Answer::Failed(Unavailable::Stopped),
                        });
                    }
                }
                out.push(ChildEffect::Stop);
            }
        }
    }

    fn ctx(&self, now: Instant) -> Ctx<C> {
        Ctx::new(self.name.clone(), self.node.clone(), ms(self.origin, now))
    }

    /// Applies one message or timer to the live child.
    fn process(
        &mut self,
        now: Instant,
        input: ChildInput<C::Msg, T>,
        out: &mut Vec<ChildEffect<C, T>>,
        env: &ChildEnv<'_>,
    ) {
        let mut ctx = self.ctx(now);
        let mut answer: Option<(T, Answer<C::Reply>)> = None;
        match input {
            ChildInput::Message(Envelope { body, reply, .. }) => {
                // Without the lease nothing is applied: another copy may be taking over.
                let needs_lease = !matches!(body, Body::Routed(RouteBody::Unsubscribe(_)));
                if needs_lease && !env.lease && !planted::on(Bug::IgnoreLease) {
                    if let Some(to) = reply {
                        out.push(ChildEffect::Reply {
                            to,
                            answer: Answer::Failed(Unavailable::NoLease),
                        });
                    }
                    return;
                }
                match body {
                    Body::Typed(msg) => {
                        let r = self.child.handle(msg, &mut ctx);
                        answer = reply.map(|to| (to, Answer::Reply(r)));
                    }
                    Body::Routed(RouteBody::User(bytes)) => {
                        match postcard::from_bytes::<C::Msg>(&bytes) {
                            Ok(msg) => {
                                let r = self.child.handle(msg, &mut ctx);
                                answer = reply.map(|to| (to, Answer::Reply(r)));
                            }
                            Err(e) => {
                                tracing::warn!(child = %self.name, error = %e, "undecodable message dropped");
                                if let Some(to) = reply {
                                    out.push(ChildEffect::Reply {
                                        to,
                                        answer: Answer::Failed(Unavailable::Malformed(
                                            e.to_string(),
                                        )),
                                    });
                                }
                                return;
                            }
                        }
                    }
                    Body::Routed(RouteBody::Subscribe(sub)) => {
                        if self.subscribers.contains(&sub) {
                            ctx.unchanged();
                        } else {
                            if let Some(first) = self.child.subscribed(&ctx) {
                                // Its first event, numbered as the last one sent: held like
                                // every event until the state it shows is durable.
                                self.hold(
                                    Held::Deliver {
                                        seq: self.seq,
                                        event_seq: self.event_seq,
                                        event: first,
                                        to: vec![sub.clone()],
                                    },
                                    out,
                                    env,
                                );
                            }
                            self.subscribers.push(sub);
                        }
                        answer = reply.map(|to| (to, Answer::Done));
                    }
                    Body::Routed(RouteBody::Unsubscribe(sub)) => {
                        let before = self.subscribers.len();
                        self.subscribers.retain(|s| *s != sub);
                        if self.subscribers.len() == before {
                            ctx.unchanged();
                        }
                        answer = reply.map(|to| (to, Answer::Done));
                    }
                }
            }
            ChildInput::Timer { generation } => {
                if generation != self.timer_generation {
                    return;
                }
                if !env.lease {
                    // Fired again later: a timer's change needs the lease as much as a message.
                    let generation = self.timer_generation;
                    out.push(ChildEffect::SetTimer {
                        after: Duration::from_millis(100),
                        generation,
                    });
                    return;
                }
                self.child.timer(&mut ctx);
            }
            ChildInput::Cmd(_) | ChildInput::Replica(_) => return,
        }
        if ctx.changed {
            self.seq += 1;
        }
        if let Some((to, a)) = answer {
            self.hold(
                Held::Reply {
                    seq: self.seq,
                    to,
                    answer: a,
                },
                out,
                env,
            );
        }
        let stops = ctx.stop;
        self.apply(ctx, out, env);
        if !stops {
            self.replicate(now, out, env);
        }
    }

    /// Carries out what a callback asked for (its events wait like its answer).
    fn apply(&mut self, ctx: Ctx<C>, out: &mut Vec<ChildEffect<C, T>>, env: &ChildEnv<'_>) {
        if let Some(after) = ctx.timer {
            self.timer_generation += 1;
            out.push(ChildEffect::SetTimer {
                after,
                generation: self.timer_generation,
            });
        }
        let had_events = !ctx.events.is_empty();
        for event in ctx.events.iter() {
            self.event_seq += 1;
            self.hold(
                Held::Deliver {
                    seq: self.seq,
                    event_seq: self.event_seq,
                    event: event.clone(),
                    to: self.subscribers.clone(),
                },
                out,
                env,
            );
        }
        // Drop subscribers whose node is gone.
        if had_events {
            self.subscribers.retain(|s| (env.is_live)(&s.node));
        }
        if ctx.stop {
            // Its name is removed: nothing waits for its backup any more (which drops its
            // state), so what was held leaves now, this callback's answer included.
            self.release(u64::MAX, out, env);
            out.push(ChildEffect::Report(ChildReport::StopRequested));
            out.push(ChildEffect::Stop);
        }
    }

    /// Sends a message on to the new owner, keeping its reply path; timers are re-armed by the
    /// new owner from the state.
    fn forward(&self, to: &NodeId, input: ChildInput<C::Msg, T>, out: &mut Vec<ChildEffect<C, T>>) {
        if let ChildInput::Message(mut msg) = input {
            msg.hops = msg.hops.saturating_add(1);
            out.push(ChildEffect::Forward {
                to: to.clone(),
                msg,
            });
        }
    }
}

/// Answers a message this copy will not apply.
fn refuse<C: Handoff, T>(
    input: ChildInput<C::Msg, T>,
    why: Unavailable,
    out: &mut Vec<ChildEffect<C, T>>,
) {
    if let ChildInput::Message(Envelope {
        reply: Some(to), ..
    }) = input
    {
        out.push(ChildEffect::Reply {
            to,
            answer: Answer::Failed(why),
        });
    }
}

fn ms(origin: Instant, now: Instant) -> u64 {
    now.saturating_duration_since(origin).as_millis() as u64
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::child::HandoffError;
    use serde::{Deserialize, Serialize};

    /// A child whose state is as many bytes as its last message asked for.
    #[derive(Debug, Serialize, Deserialize)]
    struct Blob(Vec<u8>);

    impl crate::Child for Blob {
        type Spec = ();
        type Msg = usize;
        type Reply = usize;
        type Event = ();

        fn start(_name: &str, _spec: (), _ctx: &mut Ctx<Self>) -> Self {
            Blob(Vec::new())
        }

        fn handle(&mut self, len: usize, _ctx: &mut Ctx<Self>) -> usize {
            self.0 = vec![1; len];
            len
        }

        fn replication() -> Replication {
            Replication::BeforeReply
        }
    }

    impl Handoff for Blob {
        const SCHEMA: u16 = 1;

        fn dehydrate(&self, _ctx: &Ctx<Self>) -> Vec<u8> {
            self.0.clone()
        }

        fn rehydrate(
            _name: &str,
            _schema: u16,
            state: &[u8],
            _ctx: &mut Ctx<Self>,
        ) -> Result<Self, HandoffError> {
            Ok(Blob(state.to_vec()))
        }
    }

    fn node(name: &str) -> NodeId {
        NodeId {
            name: name.into(),
            incarnation: 1,
        }
    }

    /// (replica seqs sent, tokens answered).
    fn sort(effects: Vec<ChildEffect<Blob, u32>>) -> (Vec<u64>, Vec<u32>) {
        let (mut replicas, mut answered) = (Vec::new(), Vec::new());
        for effect in effects {
            match effect {
                ChildEffect::Replicate { replica, .. } => replicas.push(replica.seq),
                ChildEffect::Reply { to, .. } => answered.push(to),
                _ => {}
            }
        }
        (replicas, answered)
    }

    #[test]
    fn a_state_over_the_message_budget_is_not_sent_and_its_answers_wait_until_one_fits() {
        let now = Instant::now();
        let env = ChildEnv {
            max_message_bytes: 1024,
            ..ChildEnv::open()
        };
        let init = Init::Fresh {
            spec: postcard::to_stdvec(&()).unwrap().into(),
        };
        let (mut core, _) =
            ChildCore::<Blob, u32>::start("b".into(), node("a"), now, now, init, 1, false).unwrap();
        let backup = ChildCmd::Backup {
            node: Some((node("b"), 1)),
            lazy: false,
        };
        assert_eq!(
            sort(core.on(now, ChildInput::Cmd(backup), &env)),
            (vec![1], vec![])
        );
        let ack = |seq| {
            ChildInput::Replica(ReplicaAnswer::Ack {
                from: node("b"),
                epoch: 1,
                seq,
            })
        };
        core.on(now, ack(1), &env);
        let call = |len: usize, token: u32| {
            ChildInput::Message(Envelope {
                body: Body::Typed(len),
                hops: 0,
                reply: Some(token),
            })
        };
        // Within the budget: replicated, answered once acknowledged.
        assert_eq!(sort(core.on(now, call(500, 1), &env)), (vec![2], vec![]));
        assert_eq!(sort(core.on(now, ack(2), &env)), (vec![], vec![1]));
        // Over it: no replica (it would close the link), and the answer waits: it was not
        // made durable, so it is not given.
        assert_eq!(sort(core.on(now, call(5000, 2), &env)), (vec![], vec![]));
        assert_eq!(core.held(), 1);
        // A later change that fits sends the newest state; both answers follow its ack.
        assert_eq!(sort(core.on(now, call(10, 3), &env)), (vec![4], vec![]));
        assert_eq!(sort(core.on(now, ack(4), &env)), (vec![], vec![2, 3]));
        assert_eq!(core.held(), 0);
    }
}
