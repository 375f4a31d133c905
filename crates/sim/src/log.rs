//! The child the simulator hosts: a log of applied input ids, in order, with duplicates
//! refused (what a game does with `input_id`). Its state is everything the checker needs: an
//! acknowledged id must be in the final log exactly once.
//!
//! A game recognises a retry only among its last 1,024 applied inputs (`game::INPUT_WINDOW`);
//! this log remembers every id, because the checker reads them all. The two agree in every
//! schedule: a client has one input in flight and retries it until answered, and a run has at
//! most a few clients, so a retry never comes anywhere near 1,024 inputs after the
//! first attempt.
//!
//! Two schema versions, as a rolling update meets them: v1 writes and reads v1; v2 writes v2
//! (v1 plus a move count) and reads both. Two kinds: replicated before every answer (`R`, the
//! kind every durability promise is about) and not replicated (a crash loses its state, by
//! design: only the one-owner promise and the quorum lease keep it safe). Every applied input
//! emits an event (the input and the log's length after it) to the log's subscribers.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use discovery::NodeId;
use horde::core::child_core::{ChildCore, ChildEffect, ChildEnv, ChildInput};
use horde::core::{Init, SpawnError};
use horde::{Child, Ctx, Handoff, HandoffError, Replication};
use serde::{Deserialize, Serialize};

use crate::token::Token;

/// A message to a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogMsg {
    /// Apply input `id` (once).
    Input {
        /// The input's id.
        id: u64,
    },
}

/// The answer to an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogReply {
    /// The input's id.
    pub id: u64,
    /// Inputs applied so far.
    pub len: u64,
    /// The id had been applied before (a retry).
    pub dup: bool,
}

/// Schema v1 of the state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct StateV1 {
    applied: Vec<u64>,
    /// Ballast: makes the state as large as the spec asks (messages must stay within the
    /// budget whatever the states weigh).
    padding: Vec<u8>,
}

/// Schema v2: v1 plus how many times it moved.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct StateV2 {
    applied: Vec<u64>,
    padding: Vec<u8>,
    moves: u64,
}

/// The high bit marks a timer's tick in a log (with its position below): never a client's
/// input id.
pub const TICK: u64 = 1 << 63;

/// What a log tells its subscribers: an input it applied, and its length after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEvent {
    /// The input's id.
    pub id: u64,
    /// Inputs applied so far, this one included.
    pub len: u64,
}

/// A log of schema `V` (1 or 2), replicated before its answers when `R`.
#[derive(Debug, Clone, Default)]
pub struct Log<const V: u16, const R: bool = true> {
    applied: Vec<u64>,
    seen: BTreeSet<u64>,
    moves: u64,
    /// Bytes of ballast its state carries (its spec).
    padding: u32,
}

impl<const V: u16, const R: bool> Log<V, R> {
    fn from_applied(applied: Vec<u64>, moves: u64, padding: usize) -> Self {
        let seen = applied.iter().copied().collect();
        Self {
            applied,
            seen,
            moves,
            padding: u32::try_from(padding).unwrap_or(u32::MAX),
        }
    }

    fn ballast(&self) -> Vec<u8> {
        vec![0xa5; self.padding as usize]
    }
}

impl<const V: u16, const R: bool> Child for Log<V, R> {
    /// Bytes of ballast in its state.
    type Spec = u32;
    type Msg = LogMsg;
    type Reply = LogReply;
    type Event = LogEvent;

    fn start(_name: &str, padding: u32, _ctx: &mut Ctx<Self>) -> Self {
        Self {
            padding,
            ..Self::default()
        }
    }

    fn handle(&mut self, msg: LogMsg, ctx: &mut Ctx<Self>) -> LogReply {
        let LogMsg::Input { id } = msg;
        let dup = !self.seen.insert(id);
        if dup {
            ctx.unchanged();
        } else {
            self.applied.push(id);
            ctx.emit(LogEvent {
                id,
                len: self.applied.len() as u64,
            });
            // Every third input sets a timer: its tick is a change of the child's own, made
            // where it runs, replicated as any other, and made durable by the next answer.
            if id % 3 == 0 {
                ctx.set_timer(std::time::Duration::from_millis(150));
            }
        }
        LogReply {
            id,
            len: self.applied.len() as u64,
            dup,
        }
    }

    fn timer(&mut self, _ctx: &mut Ctx<Self>) {
        let tick = TICK | self.applied.len() as u64;
        self.seen.insert(tick);
        self.applied.push(tick);
    }

    fn replication() -> Replication {
        if R {
            Replication::BeforeReply
        } else {
            Replication::None
        }
    }
}

impl<const V: u16, const R: bool> Handoff for Log<V, R> {
    const SCHEMA: u16 = V;

    fn dehydrate(&self, _ctx: &Ctx<Self>) -> Vec<u8> {
        let bytes = if V == 1 {
            postcard::to_stdvec(&StateV1 {
                applied: self.applied.clone(),
                padding: self.ballast(),
            })
        } else {
            postcard::to_stdvec(&StateV2 {
                applied: self.applied.clone(),
                padding: self.ballast(),
                moves: self.moves,
            })
        };
        bytes.unwrap_or_default()
    }

    fn writes() -> Vec<u16> {
        if V == 1 { vec![1] } else { vec![2, 1] }
    }

    fn dehydrate_as(&self, schema: u16, ctx: &Ctx<Self>) -> Option<Vec<u8>> {
        match schema {
            s if s == V => Some(self.dehydrate(ctx)),
            1 => postcard::to_stdvec(&StateV1 {
                applied: self.applied.clone(),
                padding: self.ballast(),
            })
            .ok(),
            _ => None,
        }
    }

    fn rehydrate(
        _name: &str,
        schema: u16,
        state: &[u8],
        _ctx: &mut Ctx<Self>,
    ) -> Result<Self, HandoffError> {
        let corrupt = |e: postcard::Error| HandoffError::Corrupt(e.to_string());
        match (V, schema) {
            (_, 1) => {
                let s: StateV1 = postcard::from_bytes(state).map_err(corrupt)?;
                Ok(Self::from_applied(s.applied, 0, s.padding.len()))
            }
            (2, 2) => {
                let s: StateV2 = postcard::from_bytes(state).map_err(corrupt)?;
                Ok(Self::from_applied(s.applied, s.moves + 1, s.padding.len()))
            }
            (_, got) => Err(HandoffError::UnknownSchema {
                got,
                supported: if V == 1 { "v1".into() } else { "v1, v2".into() },
            }),
        }
    }
}

/// What the world needs of a hosted log, whatever its schema.
pub trait Hosted {
    /// Runs one input through the child's core.
    fn on(
        &mut self,
        now: Instant,
        input: ChildInput<LogMsg, Token>,
        env: &ChildEnv<'_>,
    ) -> Vec<ChildEffect<Log<1>, Token>>;
    /// The ids applied, in order.
    fn applied(&self) -> &[u64];
    /// True when `id` was applied.
    fn has(&self, id: u64) -> bool;
    /// Frozen for a move.
    fn is_frozen(&self) -> bool;
    /// Moved away.
    fn is_forwarding(&self) -> bool;
    /// Who gets its events.
    fn subscribers(&self) -> &[horde::protocol::Subscriber];
}

/// Effects of any log in the replicated v1 log's type (the types they carry are the same).
fn convert<const V: u16, const R: bool>(
    e: ChildEffect<Log<V, R>, Token>,
) -> ChildEffect<Log<1>, Token> {
    match e {
        ChildEffect::Reply { to, answer } => ChildEffect::Reply { to, answer },
        ChildEffect::Forward { to, msg } => ChildEffect::Forward { to, msg },
        ChildEffect::SetTimer { after, generation } => ChildEffect::SetTimer { after, generation },
        ChildEffect::Deliver { seq, event, to } => ChildEffect::Deliver { seq, event, to },
        ChildEffect::Replicate { to, replica } => ChildEffect::Replicate { to, replica },
        ChildEffect::Report(r) => ChildEffect::Report(r),
        ChildEffect::Paused(d) => ChildEffect::Paused(d),
        ChildEffect::Forwarded(n) => ChildEffect::Forwarded(n),
        ChildEffect::HandedOff { to, pause } => ChildEffect::HandedOff { to, pause },
        ChildEffect::Stop => ChildEffect::Stop,
        ChildEffect::StopAfter(d) => ChildEffect::StopAfter(d),
    }
}

impl<const V: u16, const R: bool> Hosted for ChildCore<Log<V, R>, Token> {
    fn on(
        &mut self,
        now: Instant,
        input: ChildInput<LogMsg, Token>,
        env: &ChildEnv<'_>,
    ) -> Vec<ChildEffect<Log<1>, Token>> {
        ChildCore::on(self, now, input, env)
            .into_iter()
            .map(convert)
            .collect()
    }
    fn applied(&self) -> &[u64] {
        &self.child().applied
    }
    fn subscribers(&self) -> &[horde::protocol::Subscriber] {
        ChildCore::subscribers(self)
    }
    fn has(&self, id: u64) -> bool {
        self.child().seen.contains(&id)
    }
    fn is_frozen(&self) -> bool {
        ChildCore::is_frozen(self)
    }
    fn is_forwarding(&self) -> bool {
        ChildCore::is_forwarding(self)
    }
}

/// A started child and its first effects.
pub type Started = (Box<dyn Hosted>, Vec<ChildEffect<Log<1>, Token>>);

/// True for the name of a log that is not replicated (`u…`; the others are `g…`).
pub fn unreplicated(name: &str) -> bool {
    name.starts_with('u')
}

/// Starts a child of schema `schema` (1 or 2), replicated unless its name says otherwise.
#[allow(clippy::too_many_arguments)]
pub fn start(
    schema: u16,
    name: Arc<str>,
    node: NodeId,
    origin: Instant,
    now: Instant,
    init: Init,
    epoch: u64,
    durable: bool,
) -> Result<Started, SpawnError> {
    fn go<const V: u16, const R: bool>(
        name: Arc<str>,
        node: NodeId,
        origin: Instant,
        now: Instant,
        init: Init,
        epoch: u64,
        durable: bool,
    ) -> Result<Started, SpawnError>
    where
        ChildCore<Log<V, R>, Token>: Hosted,
    {
        let (core, first) =
            ChildCore::<Log<V, R>, Token>::start(name, node, origin, now, init, epoch, durable)?;
        Ok((Box::new(core), first.into_iter().map(convert).collect()))
    }
    match (schema, unreplicated(&name)) {
        (1, false) => go::<1, true>(name, node, origin, now, init, epoch, durable),
        (1, true) => go::<1, false>(name, node, origin, now, init, epoch, durable),
        (_, false) => go::<2, true>(name, node, origin, now, init, epoch, durable),
        (_, true) => go::<2, false>(name, node, origin, now, init, epoch, durable),
    }
}
