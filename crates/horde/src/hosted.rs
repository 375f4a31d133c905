//! The hosting actor: one local (never remotable) ractor actor per child, which runs the
//! application's [`Child`] callbacks, applies their effects, and carries out its own part of a
//! move.
//!
//! A move, seen from here: `Freeze` queues behind every message already in the mailbox, so
//! the state it captures includes everything accepted before it; from then on messages are
//! buffered, not applied. `Release` (the target took the child) forwards the buffer to the new
//! owner in arrival order and turns this actor into a forwarding pointer for stragglers;
//! `Thaw` (the move failed) applies the buffer here. So a message is applied exactly once,
//! either here or there. This module owns the child's state and its move state; it must not
//! touch the registry (the member does).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use discovery::{Envelope, NodeId};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::child::{Child, Ctx, Handoff, SnapshotPolicy};
use crate::member::LocalMsg;
use crate::router::RouterRef;
use crate::stats::{Counters, HordeEvent};
use crate::view::{MemberRef, View};
use crate::wire::{MemberMsg, RouteBody, RouteReply, SnapshotItem, Subscriber, Wire};

/// A forwarding pointer stops after this long; later stragglers are forwarded by the member
/// from the registry.
const FORWARD_GRACE: Duration = Duration::from_secs(30);
/// Longest wait for the reply of a forwarded call.
const FORWARD_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a call did not get an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No child of that name in the cluster.
    #[error("no child named `{0}`")]
    NotFound(String),
    /// The child exists but could not be reached; the message may or may not have been applied.
    #[error("child `{name}` is unavailable: {reason}")]
    Unavailable {
        /// The child.
        name: String,
        /// Why.
        reason: String,
    },
    /// No answer in time; the message may or may not have been applied.
    #[error("child `{0}` did not answer in time")]
    Timeout(String),
}

/// Where the answer to a message goes.
pub(crate) enum Reply<R> {
    /// Nowhere (a cast).
    None,
    /// A caller on this node.
    Local(oneshot::Sender<Result<R, CallError>>),
    /// A caller elsewhere: an envelope of [`RouteReply`].
    Remote(RpcReplyPort<Vec<u8>>),
}

/// A child's state with its schema version.
pub(crate) type SchemaState = (u16, Vec<u8>);

/// What a frozen child hands over.
#[derive(Debug)]
pub(crate) struct Frozen {
    pub schema: u16,
    pub state: Vec<u8>,
    pub subscribers: Vec<Subscriber>,
    pub event_seq: u64,
}

/// Messages of a hosting actor.
pub(crate) enum HostedMsg<C: Child> {
    /// A message from this node (the fast path: no encoding).
    Local {
        /// The message.
        msg: C::Msg,
        /// Where the answer goes.
        reply: Reply<C::Reply>,
    },
    /// A routed message (from another node, or forwarded).
    Routed {
        /// What to do.
        body: RouteBody,
        /// Forwarding hops so far.
        hops: u8,
        /// Where the answer goes, for a call.
        reply: Option<RpcReplyPort<Vec<u8>>>,
    },
    /// A timer fired.
    Timer {
        /// Only the latest timer counts.
        generation: u64,
    },
    /// Start a move: capture the state, buffer what follows.
    Freeze {
        /// The captured state, or `None` if not live here.
        reply: oneshot::Sender<Option<Frozen>>,
    },
    /// The move succeeded: forward the buffer to `to`, then forward everything.
    Release {
        /// The new owner's router.
        to: RouterRef,
        /// The new owner.
        target: NodeId,
    },
    /// The move failed: apply the buffer here and carry on.
    Thaw,
    /// Stop now (removed, or lost a conflict); `reply` gets the last state.
    Stop {
        /// The state before stopping.
        reply: Option<oneshot::Sender<Option<SchemaState>>>,
    },
}

impl<C: Child> std::fmt::Debug for HostedMsg<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HostedMsg::Local { .. } => "Local",
            HostedMsg::Routed { .. } => "Routed",
            HostedMsg::Timer { .. } => "Timer",
            HostedMsg::Freeze { .. } => "Freeze",
            HostedMsg::Release { .. } => "Release",
            HostedMsg::Thaw => "Thaw",
            HostedMsg::Stop { .. } => "Stop",
        })
    }
}

impl<C: Child> ractor::Message for HostedMsg<C> {}

/// How a hosted child begins.
pub(crate) enum Init<C: Child> {
    /// From its spec.
    Fresh(C::Spec),
    /// From moved or snapshotted state.
    Restore {
        schema: u16,
        state: Vec<u8>,
        subscribers: Vec<Subscriber>,
        event_seq: u64,
    },
}

/// Start-up arguments.
pub(crate) struct Args<C: Child> {
    pub init: Init<C>,
    pub epoch: u64,
}

/// The hosting actor; `self` is what never changes.
pub(crate) struct Hosted<C: Child> {
    pub name: Arc<str>,
    pub view: Arc<View<C>>,
    pub member: MemberRef<C>,
}

enum Mode<C: Child> {
    /// Applying messages.
    Live,
    /// Buffering during a move.
    Frozen {
        buffer: VecDeque<HostedMsg<C>>,
        since: Instant,
    },
    /// Moved: forwarding to the new owner's router.
    Forwarding { to: RouterRef },
}

/// Mutable state of a hosting actor.
pub(crate) struct HostedState<C: Child> {
    /// The application's child.
    child: C,
    /// Live, frozen or forwarding.
    mode: Mode<C>,
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

impl<C: Handoff> Actor for Hosted<C> {
    type Msg = HostedMsg<C>;
    type State = HostedState<C>;
    type Arguments = Args<C>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Args<C>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut ctx = self.ctx();
        let (child, subscribers, event_seq) = match args.init {
            Init::Fresh(spec) => (C::start(&self.name, spec, &mut ctx), Vec::new(), 0),
            Init::Restore {
                schema,
                state,
                subscribers,
                event_seq,
            } => (
                C::rehydrate(&self.name, schema, &state, &mut ctx)?,
                subscribers,
                event_seq,
            ),
        };
        let mut state = HostedState {
            child,
            mode: Mode::Live,
            subscribers,
            event_seq,
            timer_generation: 0,
            epoch: args.epoch,
            handled: 0,
            since_snapshot: 0,
        };
        self.apply(&myself, &mut state, ctx);
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            HostedMsg::Freeze { reply } => {
                let frozen = match state.mode {
                    Mode::Live => {
                        let ctx = self.ctx();
                        let frozen = Frozen {
                            schema: C::SCHEMA,
                            state: state.child.dehydrate(&ctx),
                            subscribers: state.subscribers.clone(),
                            event_seq: state.event_seq,
                        };
                        state.mode = Mode::Frozen {
                            buffer: VecDeque::new(),
                            since: Instant::now(),
                        };
                        Some(frozen)
                    }
                    _ => None,
                };
                let _ = reply.send(frozen);
            }
            HostedMsg::Release { to, target } => {
                if let Mode::Frozen { buffer, since } =
                    std::mem::replace(&mut state.mode, Mode::Forwarding { to: to.clone() })
                {
                    let pause = since.elapsed();
                    self.view.counters.record_pause(pause);
                    Counters::add(&self.view.counters.forwarded, buffer.len() as u64);
                    for m in buffer {
                        self.forward(&to, m);
                    }
                    self.view.emit(HordeEvent::HandedOff {
                        name: self.name.to_string(),
                        to: target,
                        pause,
                    });
                    myself.send_after(FORWARD_GRACE, || HostedMsg::Stop { reply: None });
                }
            }
            HostedMsg::Thaw => {
                if let Mode::Frozen { buffer, since } =
                    std::mem::replace(&mut state.mode, Mode::Live)
                {
                    self.view.counters.record_pause(since.elapsed());
                    for m in buffer {
                        self.process(&myself, state, m);
                    }
                }
            }
            HostedMsg::Stop { reply } => {
                if let Some(r) = reply {
                    let ctx = self.ctx();
                    let _ = r.send(Some((C::SCHEMA, state.child.dehydrate(&ctx))));
                }
                myself.stop(None);
            }
            other => match &mut state.mode {
                Mode::Live => self.process(&myself, state, other),
                Mode::Frozen { buffer, .. } => buffer.push_back(other),
                Mode::Forwarding { to } => {
                    let to = to.clone();
                    Counters::add(&self.view.counters.forwarded, 1);
                    self.forward(&to, other);
                }
            },
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        myself: ActorRef<Self::Msg>,
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Ok(mut local) = self.view.local.write()
            && local
                .get(&self.name)
                .is_some_and(|a| a.get_id() == myself.get_id())
        {
            local.remove(&self.name);
        }
        Ok(())
    }
}

impl<C: Handoff> Hosted<C> {
    /// The context the child's callbacks get: its name, this node, the clock now.
    fn ctx(&self) -> Ctx<C> {
        Ctx::new(
            self.name.clone(),
            self.view.node_name.clone(),
            self.view.now_ms(),
        )
    }

    /// Applies one message to the live child.
    fn process(
        &self,
        myself: &ActorRef<HostedMsg<C>>,
        state: &mut HostedState<C>,
        msg: HostedMsg<C>,
    ) {
        let mut ctx = self.ctx();
        match msg {
            HostedMsg::Local { msg, reply } => {
                let answer = state.child.handle(msg, &mut ctx);
                state.handled += 1;
                state.since_snapshot += 1;
                match reply {
                    Reply::None => {}
                    Reply::Local(tx) => {
                        let _ = tx.send(Ok(answer));
                    }
                    Reply::Remote(port) => reply_remote(port, encode_reply(&answer)),
                }
            }
            HostedMsg::Routed { body, reply, .. } => match body {
                RouteBody::User(bytes) => match postcard::from_bytes::<C::Msg>(&bytes) {
                    Ok(msg) => {
                        let answer = state.child.handle(msg, &mut ctx);
                        state.handled += 1;
                        state.since_snapshot += 1;
                        if let Some(port) = reply {
                            reply_remote(port, encode_reply(&answer));
                        }
                    }
                    Err(e) => {
                        warn!(child = %self.name, error = %e, "undecodable message dropped");
                        if let Some(port) = reply {
                            reply_remote(
                                port,
                                RouteReply::Unavailable(format!("malformed message: {e}")),
                            );
                        }
                    }
                },
                RouteBody::Subscribe(sub) => {
                    if !state.subscribers.contains(&sub) {
                        if let Some(first) = state.child.subscribed(&ctx) {
                            self.deliver(state.event_seq, &first, std::slice::from_ref(&sub));
                        }
                        state.subscribers.push(sub);
                    }
                    if let Some(port) = reply {
                        reply_remote(port, RouteReply::Ok(Vec::new()));
                    }
                }
                RouteBody::Unsubscribe(sub) => {
                    state.subscribers.retain(|s| *s != sub);
                    if let Some(port) = reply {
                        reply_remote(port, RouteReply::Ok(Vec::new()));
                    }
                }
            },
            HostedMsg::Timer { generation } => {
                if generation != state.timer_generation {
                    return;
                }
                state.child.timer(&mut ctx);
                state.since_snapshot += 1;
            }
            _ => return,
        }
        self.apply(myself, state, ctx);
    }

    /// Carries out what a callback asked for.
    fn apply(&self, myself: &ActorRef<HostedMsg<C>>, state: &mut HostedState<C>, ctx: Ctx<C>) {
        if let Some(after) = ctx.timer {
            state.timer_generation += 1;
            let generation = state.timer_generation;
            myself.send_after(after, move || HostedMsg::Timer { generation });
        }
        for event in &ctx.events {
            state.event_seq += 1;
            self.deliver(state.event_seq, event, &state.subscribers);
        }
        // Drop subscribers whose node is gone.
        if !ctx.events.is_empty() {
            state.subscribers.retain(|s| self.view.is_live(&s.node));
        }
        if let SnapshotPolicy::Every(n) = C::snapshot_policy()
            && state.since_snapshot >= n.max(1)
        {
            state.since_snapshot = 0;
            let item = SnapshotItem {
                name: self.name.to_string(),
                epoch: state.epoch,
                handled: state.handled,
                schema: C::SCHEMA,
                state: state.child.dehydrate(&ctx),
            };
            let _ = self.member.cast(MemberMsg::Local(LocalMsg::Snapshot(item)));
        }
        if ctx.stop {
            let _ = self.member.cast(MemberMsg::Local(LocalMsg::ChildStopped {
                name: self.name.clone(),
            }));
            myself.stop(None);
        }
    }

    /// Sends one event to subscribers.
    fn deliver(&self, seq: u64, event: &C::Event, to: &[Subscriber]) {
        let mut encoded: Option<Vec<u8>> = None;
        for sub in to {
            if sub.node == self.view.me {
                if let Ok(sinks) = self.view.sinks.lock()
                    && let Some(sink) = sinks.get(&sub.sink)
                {
                    let _ = sink.send((seq, event.clone()));
                }
                continue;
            }
            let Some(peer) = self.view.peer_of(&sub.node) else {
                continue;
            };
            let member = peer.router;
            let bytes = match &encoded {
                Some(b) => b.clone(),
                None => match postcard::to_stdvec(event) {
                    Ok(b) => {
                        encoded = Some(b.clone());
                        b
                    }
                    Err(e) => {
                        warn!(child = %self.name, error = %e, "cannot encode event");
                        return;
                    }
                },
            };
            let wire = Wire::Event {
                sink: sub.sink,
                name: self.name.to_string(),
                seq,
                event: bytes,
            };
            if let Ok(env) = Envelope::encode(&wire) {
                let _ = member.cast(MemberMsg::Cast(env));
            }
        }
    }

    /// Sends a message on to the new owner, keeping its reply path.
    fn forward(&self, to: &RouterRef, msg: HostedMsg<C>) {
        let (body, hops, reply) = match msg {
            HostedMsg::Local { msg, reply } => match postcard::to_stdvec(&msg) {
                Ok(bytes) => (RouteBody::User(bytes), 0, reply),
                Err(e) => {
                    warn!(child = %self.name, error = %e, "cannot encode message to forward");
                    return;
                }
            },
            HostedMsg::Routed { body, hops, reply } => (
                body,
                hops,
                match reply {
                    Some(p) => Reply::Remote(p),
                    None => Reply::None,
                },
            ),
            // Timers are re-armed by the new owner from the state.
            _ => return,
        };
        let wire = Wire::Route {
            name: self.name.to_string(),
            hops: hops.saturating_add(1),
            body,
        };
        let env = match Envelope::encode(&wire) {
            Ok(e) => e,
            Err(e) => {
                warn!(child = %self.name, error = %e, "cannot encode forwarded message");
                return;
            }
        };
        match reply {
            Reply::None => {
                let _ = to.cast(MemberMsg::Cast(env));
            }
            Reply::Remote(port) => {
                let _ = to.cast(MemberMsg::Call(env, port));
            }
            Reply::Local(tx) => {
                // Sent now, in order; only the wait for the answer runs in a task.
                let (port_tx, port_rx) = oneshot::channel();
                let port: RpcReplyPort<Vec<u8>> = (port_tx, FORWARD_CALL_TIMEOUT).into();
                if to.cast(MemberMsg::Call(env, port)).is_err() {
                    let _ = tx.send(Err(CallError::Unavailable {
                        name: self.name.to_string(),
                        reason: "new owner unreachable".into(),
                    }));
                    return;
                }
                let name = self.name.to_string();
                tokio::spawn(async move {
                    let result = match tokio::time::timeout(FORWARD_CALL_TIMEOUT, port_rx).await {
                        Ok(Ok(bytes)) => decode_reply::<C>(&name, &bytes),
                        Ok(Err(_)) => Err(CallError::Unavailable {
                            name: name.clone(),
                            reason: "link to the new owner closed".into(),
                        }),
                        Err(_) => Err(CallError::Timeout(name.clone())),
                    };
                    let _ = tx.send(result);
                });
            }
        }
        debug!(child = %self.name, "forwarded");
    }
}

fn encode_reply<R: serde::Serialize>(answer: &R) -> RouteReply {
    match postcard::to_stdvec(answer) {
        Ok(b) => RouteReply::Ok(b),
        Err(e) => RouteReply::Unavailable(format!("cannot encode reply: {e}")),
    }
}

pub(crate) fn reply_remote<T: serde::Serialize>(port: RpcReplyPort<Vec<u8>>, reply: T) {
    if let Ok(env) = Envelope::encode(&reply) {
        let _ = port.send(ractor::BytesConvertable::into_bytes(env));
    }
}

/// Decodes a routed call's answer.
pub(crate) fn decode_reply<C: Child>(name: &str, bytes: &[u8]) -> Result<C::Reply, CallError> {
    let env = <Envelope as ractor::BytesConvertable>::from_bytes(bytes.to_vec());
    match env.decode::<RouteReply>() {
        Ok(RouteReply::Ok(b)) => postcard::from_bytes(&b).map_err(|e| CallError::Unavailable {
            name: name.to_string(),
            reason: format!("malformed reply: {e}"),
        }),
        Ok(RouteReply::NotFound) => Err(CallError::NotFound(name.to_string())),
        Ok(RouteReply::Unavailable(reason)) => Err(CallError::Unavailable {
            name: name.to_string(),
            reason,
        }),
        Err(e) => Err(CallError::Unavailable {
            name: name.to_string(),
            reason: format!("malformed reply: {e}"),
        }),
    }
}
