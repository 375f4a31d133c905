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

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use discovery::NodeId;

use super::planted::{self, Bug};
use super::{ChildCmd, ChildReport, Frozen, Init, SpawnError};
use crate::child::{Ctx, Handoff, Replication};
use crate::protocol::{Replica, ReplicaRefusal, RouteBody, Subscriber, Unavailable};

/// A forwarding pointer stops after this long; later stragglers are forwarded by the member
/// from the registry.
pub const FORWARD_GRACE: Duration = Duration::from_secs(30);

/// What a message asks of the child.
#[derive(Debug)]
pub enum Body<M> {
    /// An application message from this node (no encoding).
    Typed(M),
    /// A routed message (from another node, or forwarded).
    Routed(RouteBody),
}

/// A message with where its answer goes.
#[derive(Debug)]
pub struct Envelope<M, T> {
    /// What it asks.
    pub body: Body<M>,
    /// Forwarding hops so far.
    pub hops: u8,
    /// Where the answer goes (`None` for a cast).
    pub reply: Option<T>,
}

/// The answer to a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer<R> {
    /// The child's reply.
    Reply(R),
    /// A subscription change was applied.
    Done,
    /// No answer from the child.
    Failed(Unavailable),
}

/// What the backup said of a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaAnswer {
    /// Stored.
    Ack {
        /// The backup.
        from: NodeId,
        /// The replica's epoch.
        epoch: u64,
        /// The replica's sequence number.
        seq: u64,
    },
    /// Refused.
    Nack {
        /// The backup.
        from: NodeId,
        /// The replica's epoch.
        epoch: u64,
        /// Why.
        why: ReplicaRefusal,
    },
}

/// One input of a child's core.
#[derive(Debug)]
pub enum ChildInput<M, T> {
    /// A message.
    Message(Envelope<M, T>),
    /// A timer set by the child fired.
    Timer {
        /// Only the latest timer counts.
        generation: u64,
    },
    /// A command from the member's core.
    Cmd(ChildCmd),
    /// The backup's answer to a replica.
    Replica(ReplicaAnswer),
}

/// What the hosting shell tells the core of its node with every input.
pub struct ChildEnv<'a> {
    /// The node holds its quorum lease: it may apply messages and answer.
    pub lease: bool,
    /// True when a subscriber's node is still a live member.
    pub is_live: &'a dyn Fn(&NodeId) -> bool,
    /// The most bytes a message to another member may take: a replica larger than this is
    /// not sent (it would close the link); the answers it holds wait, with an error logged.
    pub max_message_bytes: usize,
}

impl std::fmt::Debug for ChildEnv<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildEnv")
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl ChildEnv<'static> {
    /// A node with its lease whose members are all live (tests, single nodes).
    pub fn open() -> Self {
        ChildEnv {
            lease: true,
            is_live: &|_| true,
            max_message_bytes: crate::protocol::DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}

/// One thing for the hosting shell to do.
#[derive(Debug)]
pub enum ChildEffect<C: Handoff, T> {
    /// Answer a message.
    Reply {
        /// Where.
        to: T,
        /// What.
        answer: Answer<C::Reply>,
    },
    /// Send a message on to the child's new owner, keeping its reply path.
    Forward {
        /// The new owner.
        to: NodeId,
        /// The message (hops already counted).
        msg: Envelope<C::Msg, T>,
    },
    /// Fire [`ChildInput::Timer`] after `after`.
    SetTimer {
        /// When.
        after: Duration,
        /// Its generation.
        generation: u64,
    },
    /// Send an event to these subscribers.
    Deliver {
        /// Its sequence number.
        seq: u64,
        /// The event.
        event: C::Event,
        /// Who gets it.
        to: Vec<Subscriber>,
    },
    /// Send a replica to the backup member (its answer comes back as [`ChildInput::Replica`]).
    Replicate {
        /// The backup.
        to: NodeId,
        /// The replica.
        replica: Replica,
    },
    /// Tell the member's core.
    Report(ChildReport),
    /// A move's pause ended (for the pause statistics).
    Paused(Duration),
    /// Messages were forwarded (for the counters).
    Forwarded(u64),
    /// The child moved to `to` after a pause.
    HandedOff {
        /// The new owner.
        to: NodeId,
        /// How long it could not process messages.
        pause: Duration,
    },
    /// Stop the hosting actor now.
    Stop,
    /// Stop the hosting actor after this long (a forwarding pointer's grace).
    StopAfter(Duration),
}

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

/// Where replicas go.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Backup {
    /// Not told yet: answers wait.
    Unknown,
    /// No other member: answers go at once.
    Alone,
    /// This member, which reads this schema.
    Node(NodeId, u16),
}

/// Something caused by a change, waiting for the backup.
enum Held<C: Handoff, T> {
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
    fn seq(&self) -> u64 {
        match self {
            Held::Reply { seq, .. } | Held::Deliver { seq, .. } => *seq,
        }
    }
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

    fn on_replica(
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

    /// Sends an answer or event now if nothing it depends on waits for the backup, else holds it.
    fn hold(&mut self, h: Held<C, T>, out: &mut Vec<ChildEffect<C, T>>, env: &ChildEnv<'_>) {
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
    fn release(&mut self, upto: u64, out: &mut Vec<ChildEffect<C, T>>, env: &ChildEnv<'_>) {
        while self.held.front().is_some_and(|h| h.seq() <= upto) {
            if let Some(h) = self.held.pop_front() {
                self.emit(h, out, env);
            }
        }
    }

    fn emit(&self, h: Held<C, T>, out: &mut Vec<ChildEffect<C, T>>, env: &ChildEnv<'_>) {
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
    fn replicate(&mut self, now: Instant, out: &mut Vec<ChildEffect<C, T>>, env: &ChildEnv<'_>) {
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
