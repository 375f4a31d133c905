//! The pure core of one hosted child: the application's [`Child`] plus its move state.
//!
//! A move, seen from here: `Freeze` queues behind every message already in the mailbox, so
//! the state it captures includes everything accepted before it; from then on messages are
//! buffered, not applied. `Release` (the target took the child) forwards the buffer to the new
//! owner in arrival order and turns this core into a forwarding pointer for stragglers;
//! `Thaw` (the move failed) applies the buffer here. So a message is applied exactly once,
//! either here or there. It owns the child's state and its move state; it must not touch the
//! registry (the member's core does).
//!
//! `T` is the reply token of a message (a oneshot or a ractor reply port in production, a
//! client id in the simulator).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use discovery::NodeId;

use super::{ChildCmd, ChildReport, Frozen, Init, SpawnError};
use crate::child::{Ctx, Handoff, SnapshotPolicy};
use crate::protocol::{RouteBody, SnapshotItem, Subscriber, Unavailable};

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
}

/// The core of one hosted child; see the module docs.
pub struct ChildCore<C: Handoff, T> {
    name: Arc<str>,
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
    /// Registry epoch of this copy (for snapshots).
    epoch: u64,
    /// Messages handled (orders snapshots).
    handled: u64,
    /// Handled since the last snapshot.
    since_snapshot: u32,
}

impl<C: Handoff, T> std::fmt::Debug for ChildCore<C, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildCore")
            .field("name", &self.name)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

/// Decodes a spec.
pub fn decode_spec<C: Handoff>(spec: &[u8]) -> Result<C::Spec, SpawnError> {
    postcard::from_bytes(spec).map_err(|e| SpawnError::MalformedSpec(e.to_string()))
}

impl<C: Handoff, T> ChildCore<C, T> {
    /// Starts a child: from its spec or from handed-over state.
    pub fn start(
        name: Arc<str>,
        node: Arc<str>,
        origin: Instant,
        now: Instant,
        init: Init,
        epoch: u64,
    ) -> Result<(Self, Vec<ChildEffect<C, T>>), SpawnError> {
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
        let mut core = Self {
            name,
            node,
            origin,
            child,
            mode: Mode::Live,
            subscribers,
            event_seq,
            timer_generation: 0,
            epoch,
            handled: 0,
            since_snapshot: 0,
        };
        let mut out = Vec::new();
        core.apply(ctx, &mut out, &|_| true);
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

    /// Handles one input. `is_live` tells whether a subscriber's node is still a member.
    pub fn on(
        &mut self,
        now: Instant,
        input: ChildInput<C::Msg, T>,
        is_live: &dyn Fn(&NodeId) -> bool,
    ) -> Vec<ChildEffect<C, T>> {
        let mut out = Vec::new();
        match input {
            ChildInput::Cmd(cmd) => self.on_cmd(now, cmd, &mut out, is_live),
            other => match &mut self.mode {
                Mode::Live => self.process(now, other, &mut out, is_live),
                Mode::Frozen { buffer, .. } => buffer.push_back(other),
                Mode::Forwarding { to } => {
                    let to = to.clone();
                    out.push(ChildEffect::Forwarded(1));
                    self.forward(&to, other, &mut out);
                }
            },
        }
        out
    }

    fn on_cmd(
        &mut self,
        now: Instant,
        cmd: ChildCmd,
        out: &mut Vec<ChildEffect<C, T>>,
        is_live: &dyn Fn(&NodeId) -> bool,
    ) {
        match cmd {
            ChildCmd::Freeze { ticket } => {
                let frozen = match self.mode {
                    Mode::Live => {
                        let ctx = self.ctx(now);
                        let frozen = Frozen {
                            schema: C::SCHEMA,
                            state: self.child.dehydrate(&ctx),
                            subscribers: self.subscribers.clone(),
                            event_seq: self.event_seq,
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
            ChildCmd::Release { to } => {
                if let Mode::Frozen { .. } = self.mode {
                    let Mode::Frozen { buffer, since } =
                        std::mem::replace(&mut self.mode, Mode::Forwarding { to: to.clone() })
                    else {
                        return;
                    };
                    let pause = now.saturating_duration_since(since);
                    out.push(ChildEffect::Paused(pause));
                    out.push(ChildEffect::Forwarded(buffer.len() as u64));
                    for m in buffer {
                        self.forward(&to, m, out);
                    }
                    out.push(ChildEffect::HandedOff { to, pause });
                    out.push(ChildEffect::StopAfter(FORWARD_GRACE));
                }
            }
            ChildCmd::Thaw => {
                if let Mode::Frozen { .. } = self.mode {
                    let Mode::Frozen { buffer, since } =
                        std::mem::replace(&mut self.mode, Mode::Live)
                    else {
                        return;
                    };
                    out.push(ChildEffect::Paused(now.saturating_duration_since(since)));
                    for m in buffer {
                        self.process(now, m, out, is_live);
                    }
                }
            }
            ChildCmd::Stop { report } => {
                if report {
                    let ctx = self.ctx(now);
                    out.push(ChildEffect::Report(ChildReport::Stopped {
                        state: Some((C::SCHEMA, self.child.dehydrate(&ctx))),
                    }));
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
        is_live: &dyn Fn(&NodeId) -> bool,
    ) {
        let mut ctx = self.ctx(now);
        match input {
            ChildInput::Message(Envelope { body, reply, .. }) => match body {
                Body::Typed(msg) => {
                    let answer = self.child.handle(msg, &mut ctx);
                    self.handled += 1;
                    self.since_snapshot += 1;
                    if let Some(to) = reply {
                        out.push(ChildEffect::Reply {
                            to,
                            answer: Answer::Reply(answer),
                        });
                    }
                }
                Body::Routed(RouteBody::User(bytes)) => {
                    match postcard::from_bytes::<C::Msg>(&bytes) {
                        Ok(msg) => {
                            let answer = self.child.handle(msg, &mut ctx);
                            self.handled += 1;
                            self.since_snapshot += 1;
                            if let Some(to) = reply {
                                out.push(ChildEffect::Reply {
                                    to,
                                    answer: Answer::Reply(answer),
                                });
                            }
                        }
                        Err(e) => {
                            tracing::warn!(child = %self.name, error = %e, "undecodable message dropped");
                            if let Some(to) = reply {
                                out.push(ChildEffect::Reply {
                                    to,
                                    answer: Answer::Failed(Unavailable::Malformed(e.to_string())),
                                });
                            }
                        }
                    }
                }
                Body::Routed(RouteBody::Subscribe(sub)) => {
                    if !self.subscribers.contains(&sub) {
                        if let Some(first) = self.child.subscribed(&ctx) {
                            out.push(ChildEffect::Deliver {
                                seq: self.event_seq,
                                event: first,
                                to: vec![sub.clone()],
                            });
                        }
                        self.subscribers.push(sub);
                    }
                    if let Some(to) = reply {
                        out.push(ChildEffect::Reply {
                            to,
                            answer: Answer::Done,
                        });
                    }
                }
                Body::Routed(RouteBody::Unsubscribe(sub)) => {
                    self.subscribers.retain(|s| *s != sub);
                    if let Some(to) = reply {
                        out.push(ChildEffect::Reply {
                            to,
                            answer: Answer::Done,
                        });
                    }
                }
            },
            ChildInput::Timer { generation } => {
                if generation != self.timer_generation {
                    return;
                }
                self.child.timer(&mut ctx);
                self.since_snapshot += 1;
            }
            ChildInput::Cmd(_) => return,
        }
        self.apply(ctx, out, is_live);
    }

    /// Carries out what a callback asked for.
    fn apply(
        &mut self,
        ctx: Ctx<C>,
        out: &mut Vec<ChildEffect<C, T>>,
        is_live: &dyn Fn(&NodeId) -> bool,
    ) {
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
            out.push(ChildEffect::Deliver {
                seq: self.event_seq,
                event: event.clone(),
                to: self.subscribers.clone(),
            });
        }
        // Drop subscribers whose node is gone.
        if had_events {
            self.subscribers.retain(|s| is_live(&s.node));
        }
        if let SnapshotPolicy::Every(n) = C::snapshot_policy()
            && self.since_snapshot >= n.max(1)
        {
            self.since_snapshot = 0;
            let item = SnapshotItem {
                name: self.name.to_string(),
                epoch: self.epoch,
                handled: self.handled,
                schema: C::SCHEMA,
                state: self.child.dehydrate(&ctx),
            };
            out.push(ChildEffect::Report(ChildReport::Snapshot(item)));
        }
        if ctx.stop {
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

fn ms(origin: Instant, now: Instant) -> u64 {
    now.saturating_duration_since(origin).as_millis() as u64
}
