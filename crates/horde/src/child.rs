//! What an application implements to be hosted by a horde: [`Child`] (start, handle messages,
//! timers, events) and [`Handoff`] (state to bytes and back, with a schema version, so a live
//! child can move to another node, and v1 state can reach v2 code).
//!
//! Callbacks are synchronous and get a [`Ctx`] through which they ask for effects (a timer, an
//! event to subscribers, stopping); the hosting actor applies them after the callback returns.
//! This keeps application code free of actor plumbing and easy to test. Owns the contract
//! only; running it is [`crate::core::child_core`]'s job.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Whether a child's state is kept on a second member, for restarts after a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replication {
    /// No copy: after a crash the child restarts from its spec.
    None,
    /// Every change reaches the child's backup member before the answers and events it caused
    /// leave (group commit: answers are held and released in order as the backup
    /// acknowledges, the child never blocks). An answer then survives the crash of any one
    /// member; it costs one round trip to the backup.
    BeforeReply,
}

/// What happens when a child's callback panics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Restart it in place from its spec (its state since the start is lost), up to the
    /// horde's restart limit; beyond that its name is removed.
    Permanent,
    /// Remove its name.
    Temporary,
}

/// An actor a horde can place, route to and restart.
pub trait Child: Sized + Send + 'static {
    /// How to start it from scratch (stored in the registry for restarts).
    type Spec: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// The messages it handles (they cross nodes, so they serialize; a call looks its child
    /// up again with a copy while the child cannot answer yet).
    type Msg: Serialize + DeserializeOwned + Clone + Send + 'static;
    /// Its answers to calls.
    type Reply: Serialize + DeserializeOwned + Send + 'static;
    /// What it pushes to subscribers.
    type Event: Serialize + DeserializeOwned + Send + Clone + 'static;

    /// A fresh child.
    fn start(name: &str, spec: Self::Spec, ctx: &mut Ctx<Self>) -> Self;

    /// Handles one message. For a cast the reply is dropped.
    fn handle(&mut self, msg: Self::Msg, ctx: &mut Ctx<Self>) -> Self::Reply;

    /// A timer set with [`Ctx::set_timer`] fired.
    fn timer(&mut self, _ctx: &mut Ctx<Self>) {}

    /// The event a new subscriber gets first (typically the current state).
    fn subscribed(&self, _ctx: &Ctx<Self>) -> Option<Self::Event> {
        None
    }

    /// What to do when a callback panics.
    fn restart_policy() -> RestartPolicy {
        RestartPolicy::Permanent
    }

    /// Replication for crash restarts (opt-in).
    fn replication() -> Replication {
        Replication::None
    }
}

/// Why state could not be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandoffError {
    /// The bytes are of a schema this build does not read.
    #[error("state schema v{got} is not supported (this build reads {supported})")]
    UnknownSchema {
        /// The schema of the bytes.
        got: u16,
        /// What this build reads, e.g. `v1, v2`.
        supported: String,
    },
    /// The bytes do not decode.
    #[error("state does not decode: {0}")]
    Corrupt(String),
}

/// A child whose live state can move between nodes.
pub trait Handoff: Child {
    /// The schema version of what [`Handoff::dehydrate`] writes.
    const SCHEMA: u16;

    /// The state as bytes of schema [`Handoff::SCHEMA`]. Timers are not kept: store what they
    /// mean (e.g. the time left) in the state and set them again in `rehydrate`.
    fn dehydrate(&self, ctx: &Ctx<Self>) -> Vec<u8>;

    /// The child from bytes of schema `schema`: must accept [`Handoff::SCHEMA`] and the one
    /// before it, so a node of the next version takes over state from this one.
    fn rehydrate(
        name: &str,
        schema: u16,
        state: &[u8],
        ctx: &mut Ctx<Self>,
    ) -> Result<Self, HandoffError>;

    /// The schemas [`Handoff::rehydrate`] accepts (by default this one and the one before).
    fn reads() -> Vec<u16> {
        let mut v = vec![Self::SCHEMA];
        if Self::SCHEMA > 1 {
            v.insert(0, Self::SCHEMA - 1);
        }
        v
    }

    /// The state in an older schema, for a member that does not read [`Handoff::SCHEMA`] (a
    /// rollback to the previous version); `None` when this build cannot write `schema`. By
    /// default only [`Handoff::SCHEMA`] is written.
    fn dehydrate_as(&self, schema: u16, ctx: &Ctx<Self>) -> Option<Vec<u8>> {
        (schema == Self::SCHEMA).then(|| self.dehydrate(ctx))
    }

    /// The schemas this build can write (by default only [`Handoff::SCHEMA`]).
    fn writes() -> Vec<u16> {
        vec![Self::SCHEMA]
    }
}

/// What a callback may ask of the hosting actor.
#[derive(Debug)]
pub struct Ctx<C: Child> {
    name: std::sync::Arc<str>,
    node: std::sync::Arc<str>,
    now_ms: u64,
    pub(crate) timer: Option<Duration>,
    pub(crate) events: Vec<C::Event>,
    pub(crate) stop: bool,
    pub(crate) changed: bool,
}

impl<C: Child> Ctx<C> {
    pub(crate) fn new(name: std::sync::Arc<str>, node: std::sync::Arc<str>, now_ms: u64) -> Self {
        Self {
            name,
            node,
            now_ms,
            timer: None,
            events: Vec::new(),
            stop: false,
            changed: true,
        }
    }

    /// A context for unit tests of a child, at time `now_ms`.
    pub fn for_test(name: &str, now_ms: u64) -> Self {
        Self::new(
            std::sync::Arc::from(name),
            std::sync::Arc::from("test@127.0.0.1"),
            now_ms,
        )
    }

    /// The name of the node hosting the child now (changes when it moves).
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The child's registered name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Milliseconds on this node's monotonic clock. Not comparable across nodes: to carry a
    /// deadline through a move, store the time left.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Fires [`Child::timer`] after `after`, replacing any earlier timer.
    pub fn set_timer(&mut self, after: Duration) {
        self.timer = Some(after);
    }

    /// Sends `event` to every subscriber, in order.
    pub fn emit(&mut self, event: C::Event) {
        self.events.push(event);
    }

    /// Stops the child and removes its name once this callback returns.
    pub fn stop(&mut self) {
        self.stop = true;
    }

    /// This callback changed nothing (a read, a refused input): nothing to replicate, and its
    /// answer waits only for changes made before it.
    pub fn unchanged(&mut self) {
        self.changed = false;
    }

    /// True unless [`Ctx::unchanged`] was called (for tests of a child).
    pub fn is_changed(&self) -> bool {
        self.changed
    }

    /// True when [`Ctx::stop`] was called (for tests of a child).
    pub fn is_stopping(&self) -> bool {
        self.stop
    }

    /// Events emitted so far in this callback (for tests of a child).
    pub fn emitted(&self) -> &[C::Event] {
        &self.events
    }

    /// The timer asked for so far in this callback (for tests of a child).
    pub fn timer_requested(&self) -> Option<Duration> {
        self.timer
    }
}
