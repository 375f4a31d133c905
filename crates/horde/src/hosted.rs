//! The hosting actor: one local (never remotable) ractor actor per child, the shell around the
//! child's [`ChildCore`]. It feeds the core its mailbox (messages, timers, the member's
//! commands) and carries out what the core returns: replies, forwards to a new owner, events
//! to subscribers, timers, reports to the member. It decides nothing.

use std::sync::Arc;

use discovery::NodeId;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::oneshot;
use tracing::{debug, warn};

use crate::child::Handoff;
use crate::core::ChildCmd;
use crate::core::child_core::{Answer, Body, ChildCore, ChildEffect, ChildEnv, ChildInput};
use crate::errors::CallError;
use crate::mailbox::{FirstEffects, HostedMsg, LocalMsg, ReplyTo};
use crate::protocol::{MemberMsg, Route, RouteReply, Unavailable, Wire, decode_reply, reply_to};
use crate::stats::{Counters, HordeEvent};
use crate::view::{MemberRef, Shared};

/// Longest wait for the reply of a forwarded call.
const FORWARD_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The hosting actor; `self` is what never changes.
pub(crate) struct Hosted<C: Handoff> {
    pub name: Arc<str>,
    pub shared: Arc<Shared<C>>,
    pub member: MemberRef,
}

/// A pending timer of the child: aborted when another replaces it and when the actor stops, so
/// neither a child that resets its timer on every input nor one that stopped leaves a sleeping
/// task behind (each holds the actor's cell, mailbox included, until it fires).
type Timer = tokio::task::JoinHandle<()>;

/// What the hosting actor holds: the child's core and its pending timers.
pub(crate) struct HostedState<C: Handoff> {
    core: ChildCore<C, ReplyTo<C>>,
    timers: Timers,
}

/// The child's timer and its delayed stop (each at most one).
#[derive(Default)]
pub(crate) struct Timers {
    timer: Option<Timer>,
    stop: Option<Timer>,
}

impl Timers {
    fn replace(slot: &mut Option<Timer>, new: Timer) {
        if let Some(old) = slot.replace(new) {
            old.abort();
        }
    }

    fn abort_all(&mut self) {
        for t in [self.timer.take(), self.stop.take()].into_iter().flatten() {
            t.abort();
        }
    }
}

/// Sends `msg()` to `to` after `after`, as a task the caller can abort.
fn send_after<C: Handoff>(
    to: &ActorRef<HostedMsg<C>>,
    after: std::time::Duration,
    msg: impl FnOnce() -> HostedMsg<C> + Send + 'static,
) -> Timer {
    let to = to.clone();
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        let _ = to.cast(msg());
    })
}

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

impl<C: Handoff> Actor for Hosted<C> {
    type Msg = HostedMsg<C>;
    type State = HostedState<C>;
    type Arguments = (ChildCore<C, ReplyTo<C>>, FirstEffects<C>);

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        (core, first): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut timers = Timers::default();
        self.execute(&myself, first, &mut timers);
        Ok(HostedState { core, timers })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.timers.abort_all();
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let shared = &self.shared;
        let t = now();
        let env = ChildEnv {
            lease: shared.load().core.lease_valid(t),
            is_live: &|n: &NodeId| shared.is_live(n),
            max_message_bytes: shared.max_message_bytes,
        };
        let effects = state.core.on(t, msg.0, &env);
        self.execute(&myself, effects, &mut state.timers);
        Ok(())
    }
}

impl<C: Handoff> Hosted<C> {
    fn execute(
        &self,
        myself: &ActorRef<HostedMsg<C>>,
        effects: Vec<ChildEffect<C, ReplyTo<C>>>,
        timers: &mut Timers,
    ) {
        for effect in effects {
            match effect {
                ChildEffect::Reply { to, answer } => self.answer(to, answer),
                ChildEffect::Forward { to, msg } => {
                    self.forward(&to, msg.body, msg.hops, msg.reply)
                }
                ChildEffect::SetTimer { after, generation } => Timers::replace(
                    &mut timers.timer,
                    send_after(myself, after, move || {
                        HostedMsg(ChildInput::Timer { generation })
                    }),
                ),
                ChildEffect::Deliver { seq, event, to } => self.deliver(seq, &event, &to),
                ChildEffect::Replicate { to, replica } => {
                    // Straight to the backup's member; its answer comes back through our router.
                    let member = self.shared.load().peer_of(&to).map(|p| p.member.clone());
                    if let (Some(m), Ok(env)) = (
                        member,
                        crate::protocol::encode_wire(&Wire::Replicate(replica)),
                    ) {
                        let _ = m.cast(MemberMsg::Cast(env));
                    }
                }
                ChildEffect::Report(report) => {
                    let _ = self.member.cast(MemberMsg::Local(LocalMsg::Child {
                        name: self.name.clone(),
                        report,
                    }));
                }
                ChildEffect::Paused(d) => self.shared.counters.record_pause(d),
                ChildEffect::Forwarded(n) => Counters::add(&self.shared.counters.forwarded, n),
                ChildEffect::HandedOff { to, pause } => self.shared.emit(HordeEvent::HandedOff {
                    name: self.name.to_string(),
                    to,
                    pause,
                }),
                ChildEffect::Stop => myself.stop(None),
                ChildEffect::StopAfter(d) => Timers::replace(
                    &mut timers.stop,
                    send_after(myself, d, || {
                        HostedMsg(ChildInput::Cmd(ChildCmd::Stop { report: false }))
                    }),
                ),
            }
        }
    }

    fn answer(&self, to: ReplyTo<C>, answer: Answer<C::Reply>) {
        match to {
            ReplyTo::Local(tx) => {
                let result = match answer {
                    Answer::Reply(r) => Ok(r),
                    Answer::Done => Err(CallError::unavailable(&self.name, "no reply to give")),
                    Answer::Failed(why) => Err(CallError::from_unavailable(&self.name, why)),
                };
                let _ = tx.send(result);
            }
            ReplyTo::Remote(port) => reply_to(
                port,
                &route_reply::<C>(answer, self.shared.max_message_bytes),
            ),
        }
    }

    /// Sends one event to subscribers: local sinks directly, others through their router.
    fn deliver(&self, seq: u64, event: &C::Event, to: &[crate::protocol::Subscriber]) {
        let mut encoded: Option<Vec<u8>> = None;
        let published = self.shared.load();
        for sub in to {
            if sub.node == self.shared.me {
                self.shared.sinks.send(sub.sink, seq, event.clone());
                continue;
            }
            let Some(peer) = published.peer_of(&sub.node) else {
                continue;
            };
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
            if let Err(e) =
                crate::protocol::check_size("the event", bytes.len(), self.shared.max_message_bytes)
            {
                warn!(child = %self.name, error = %e, "event not delivered to a subscriber on another node");
                continue;
            }
            let wire = Wire::Event {
                sink: sub.sink,
                name: self.name.to_string(),
                seq,
                event: bytes,
            };
            if let Ok(env) = crate::protocol::encode_wire(&wire) {
                let _ = peer.router.cast(MemberMsg::Cast(env));
            }
        }
    }

    /// Sends a message on to the new owner's router, keeping its reply path.
    fn forward(&self, to: &NodeId, body: Body<C::Msg>, hops: u8, reply: Option<ReplyTo<C>>) {
        let fail = |reply: Option<ReplyTo<C>>, why: Unavailable| {
            if let Some(r) = reply {
                self.answer(r, Answer::Failed(why));
            }
        };
        let router = self.shared.load().peer_of(to).map(|p| p.router.clone());
        let Some(router) = router else {
            return fail(
                reply,
                Unavailable::OwnerUnreachable {
                    owner: to.name.clone(),
                },
            );
        };
        let body = match body {
            Body::Typed(msg) => match postcard::to_stdvec(&msg) {
                Ok(bytes) => crate::protocol::RouteBody::User(bytes),
                Err(e) => return fail(reply, Unavailable::Malformed(e.to_string())),
            },
            Body::Routed(b) => b,
        };
        let wire = Wire::Route(Route {
            name: self.name.to_string(),
            hops,
            body,
        });
        let env = match crate::protocol::encode_wire(&wire) {
            Ok(e) => e,
            Err(e) => return fail(reply, Unavailable::Malformed(e.to_string())),
        };
        if let Err(e) =
            crate::protocol::check_size("the message", env.len(), self.shared.max_message_bytes)
        {
            return fail(reply, Unavailable::Malformed(e));
        }
        match reply {
            None => {
                let _ = router.cast(MemberMsg::Cast(env));
            }
            Some(ReplyTo::Remote(port)) => {
                let _ = router.cast(MemberMsg::Call(env, port));
            }
            Some(ReplyTo::Local(tx)) => {
                // Sent now, in order; only the wait for the answer runs in a task.
                let (port_tx, port_rx) = oneshot::channel();
                let port: RpcReplyPort<Vec<u8>> = (port_tx, FORWARD_CALL_TIMEOUT).into();
                if router.cast(MemberMsg::Call(env, port)).is_err() {
                    let _ = tx.send(Err(CallError::unavailable(
                        &self.name,
                        "new owner unreachable",
                    )));
                    return;
                }
                let name = self.name.to_string();
                tokio::spawn(async move {
                    let result = match tokio::time::timeout(FORWARD_CALL_TIMEOUT, port_rx).await {
                        Ok(Ok(bytes)) => decode_route_reply::<C>(&name, bytes),
                        Ok(Err(_)) => Err(CallError::unavailable(
                            &name,
                            "link to the new owner closed",
                        )),
                        Err(_) => Err(CallError::Timeout(name.clone())),
                    };
                    let _ = tx.send(result);
                });
            }
        }
        debug!(child = %self.name, "forwarded");
    }
}

/// A child's answer as a routed call's reply.
fn route_reply<C: Handoff>(answer: Answer<C::Reply>, budget: usize) -> RouteReply {
    match answer {
        Answer::Reply(r) => match postcard::to_stdvec(&r) {
            Ok(b) => match crate::protocol::check_size("the reply", b.len(), budget) {
                Ok(()) => RouteReply::Ok(b),
                Err(e) => RouteReply::Unavailable(Unavailable::Malformed(e)),
            },
            Err(e) => {
                RouteReply::Unavailable(Unavailable::Malformed(format!("cannot encode reply: {e}")))
            }
        },
        Answer::Done => RouteReply::Ok(Vec::new()),
        Answer::Failed(why) => RouteReply::Unavailable(why),
    }
}

/// Decodes a routed call's answer.
pub(crate) fn decode_route_reply<C: Handoff>(
    name: &str,
    bytes: Vec<u8>,
) -> Result<C::Reply, CallError> {
    match decode_reply::<RouteReply>(bytes) {
        Ok(RouteReply::Ok(b)) => postcard::from_bytes(&b)
            .map_err(|e| CallError::unavailable(name, format!("malformed reply: {e}"))),
        Ok(RouteReply::NotFound) => Err(CallError::NotFound(name.to_string())),
        Ok(RouteReply::Unavailable(why)) => Err(CallError::from_unavailable(name, why)),
        Err(e) => Err(CallError::unavailable(
            name,
            format!("malformed reply: {e}"),
        )),
    }
}
