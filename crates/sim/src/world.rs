//! The simulated world: nodes running horde's member core and their children's cores, a
//! network of sessions between them, clients, and one event queue in virtual time.
//!
//! Everything happens as an event at a virtual time (microseconds), taken from a priority
//! queue in (time, sequence) order, so a seed replays exactly. Nodes talk over sessions (a
//! TCP link plus its ractor_cluster session): FIFO per direction with random delay, bound to
//! the session (messages of a closed or replaced session are dropped), held while a partition
//! blocks their direction and delivered in order after it heals. A node's links are decided
//! by discovery's own `LinkTable` (dials with backoff, the election between two links, a
//! stale incarnation refused, heartbeats and the failure timeout: see `world/connector.rs`),
//! driven as the production connector actor drives it; heartbeats are messages on the links
//! like any other (stalled, held by partitions). Inside a node, the
//! member core, the router and every child have their own mailboxes (FIFO per sender, small
//! random delays), so the races between actors are simulated too. A paused node keeps its
//! mailboxes and its clock runs; it processes nothing until it resumes. A node that dies
//! (SIGKILL, or exiting after its drain) loses, per peer, a random suffix of what it sent that
//! has not arrived: the part still in its own send queues.
//!
//! # Layout
//! - this file: the world's state, its configuration, the events and the queue that orders
//!   them, and the loop that dispatches them.
//! - `nodes`: a node's run (start, ticks) and its member shell (the member core's effects).
//! - `children`: the hosted children's shells (their cores' effects).
//! - `router`: each node's router and `Horde` handle (calls, routes, forwards).
//! - `network`: sessions between nodes (FIFO, delays, stalls, held by partitions, the codec).
//! - `connector`: each node's links, decided by discovery's `LinkTable`.
//! - `clients`: clients writing inputs with ids, their retries and subscriptions.
//! - `operations`: the schedule's start, stop and drain requests and their answers.
//! - `faults`: crashes, pauses, freezes, partitions, stalls and their healing.
//! - `checks`: the invariants checked as the world runs (S1, S3, S6 on answers and registries).
//! - `steps`: a schedule's steps carried out.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

use horde::core::Input;
use horde::core::child_core::ChildInput;
use horde::{MoveConfig, RebalanceConfig};

mod checks;
mod children;
mod clients;
mod connector;
mod faults;
mod network;
mod nodes;
mod operations;
mod router;
mod steps;

pub use crate::time::{MS, SEC, Time};
pub use crate::token::Token;
pub use network::NetMsg;
pub use nodes::Life;

pub(crate) use children::Instance;
pub(crate) use clients::Sub;
pub(crate) use nodes::Node;

use crate::check::Checker;
use crate::log::{LogMsg, LogReply};
use crate::rng::Rng;
use crate::step::Step;
use clients::Client;
use operations::Op;

/// Timing and sizing of the simulated cluster.
#[derive(Debug, Clone)]
pub struct Config {
    /// Heartbeat interval of the connector.
    pub heartbeat: Time,
    /// A peer silent this long is declared down.
    pub failure_timeout: Time,
    /// How long a client waits for an answer before retrying.
    pub client_timeout: Time,
    /// The drain deadline (`SHUTDOWN_TIMEOUT_MS`).
    pub drain_deadline: Time,
    /// Horde's join timeout.
    pub join_timeout: Time,
    /// Moves.
    pub moves: MoveConfig,
    /// The most bytes one message between members may take (horde's budget); a larger one
    /// on the network is a violation (S5).
    pub max_message_bytes: usize,
    /// Bytes of ballast in every child's state (its spec).
    pub state_padding: u32,
    /// Horde's quorum lease.
    pub lease: Duration,
    /// Horde's tombstone grace.
    pub tombstone_grace: Duration,
    /// The chance that a message on a running session stalls: it is held, with everything
    /// behind it in its direction, as TCP's retransmissions hold a connection (0.2, 0.4, 0.8
    /// s ... apart), while both ends run.
    pub stall_chance: f64,
    /// The longest stall.
    pub stall_max: Time,
    /// Each node's clock runs at a rate within this many parts per million of real time.
    pub drift_ppm: u64,
    /// A fault-free schedule: no input may wait for its client's retry (a timeout is a
    /// violation: a move, a drain or a join lost it and only the retry saved it).
    pub no_retries: bool,
    /// Horde's opt-in rebalancer (moves toward placement after a join), on every node.
    pub rebalance: Option<RebalanceConfig>,
}

impl Default for Config {
    /// Horde's production defaults (lease, tombstone grace, join timeout, moves), the
    /// connector's (heartbeat, failure timeout), a kind network.
    fn default() -> Self {
        let horde = horde::HordeConfig::new("sim", "0.0.0");
        Self {
            heartbeat: 500 * MS,
            failure_timeout: 2 * SEC,
            client_timeout: 2 * SEC,
            drain_deadline: 8 * SEC,
            join_timeout: horde.join_timeout.as_micros() as Time,
            moves: horde.moves,
            max_message_bytes: horde.max_message_bytes,
            state_padding: 0,
            lease: horde.lease,
            tombstone_grace: horde.tombstone_grace,
            stall_chance: 0.0,
            stall_max: 0,
            drift_ppm: 100,
            no_retries: false,
            rebalance: horde.rebalance,
        }
    }
}

/// One event.
#[derive(Debug)]
pub(crate) enum Ev {
    /// A node's periodic work.
    Tick { slot: usize, inc: u64 },
    /// A message arrives on a session.
    Net {
        slot: usize,
        inc: u64,
        from: usize,
        session: u64,
        msg: NetMsg,
    },
    /// A link's handshake completes.
    Establish {
        a: usize,
        a_inc: u64,
        b: usize,
        b_inc: u64,
        link: u64,
    },
    /// A dial failed (refused, or no answer through a partition).
    DialFailed {
        slot: usize,
        inc: u64,
        addr: std::net::SocketAddr,
    },
    /// A heartbeat's deadline.
    PingTimeout { slot: usize, inc: u64, ping: u64 },
    /// An input for a node's member core (from its own children or its shell).
    Member {
        slot: usize,
        inc: u64,
        input: Input<Token>,
    },
    /// An input for a child.
    Child {
        slot: usize,
        inc: u64,
        instance: u64,
        input: ChildInput<LogMsg, Token>,
    },
    /// A client's call reaches a node's handle (or its retry while the owner is down).
    Call {
        slot: usize,
        inc: u64,
        client: usize,
        call: u64,
        name: String,
        id: u64,
        deadline: Time,
    },
    /// A client's next step.
    ClientNext { client: usize },
    /// A client's call timed out.
    ClientTimeout { client: usize, call: u64 },
    /// An answer reaches a client.
    ClientReply {
        client: usize,
        call: u64,
        result: Result<LogReply, String>,
    },
    /// A step of the schedule.
    Step(usize),
    /// A paused node resumes.
    Resume { slot: usize, inc: u64 },
    /// SIGKILL of one run of a node (a fault aimed at a moment, not a time).
    Kill { slot: usize, inc: u64 },
    /// A stalled direction delivers again.
    Unstall { from: usize, to: usize },
    /// A frozen node wakes, its clock behind by the freeze.
    Thaw {
        slot: usize,
        inc: u64,
        duration: Time,
    },
}

struct Queued {
    at: Time,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// A run with more events than this is stuck in a livelock.
const MAX_EVENTS: u64 = 3_000_000;

/// The wall clock of the simulated machines at the start (µs since the Unix epoch).
const WALL0: u64 = 1_800_000_000_000_000;

/// The world.
pub struct World {
    pub(crate) config: Config,
    pub(crate) rng: Rng,
    pub(crate) now: Time,
    seq: u64,
    queue: BinaryHeap<Reverse<Queued>>,
    /// Node slots: a slot is one node name; `None` while not running.
    pub(crate) nodes: Vec<Option<Node>>,
    /// Names of the slots.
    pub(crate) names: Vec<String>,
    /// Last incarnation used per slot.
    pub(crate) last_inc: Vec<u64>,
    /// Wall-clock offset per slot (a restart with the clock behind).
    pub(crate) wall_skew: Vec<i64>,
    pub(crate) instances: BTreeMap<u64, Instance>,
    next_instance: u64,
    next_session: u64,
    next_op: u64,
    pub(crate) ops: BTreeMap<u64, Op>,
    /// Blocked directions (from, to).
    blocked: BTreeSet<(usize, usize)>,
    /// Messages held by a partition, per direction.
    held: BTreeMap<(usize, usize), VecDeque<(u64, NetMsg)>>,
    /// Last delivery time per FIFO channel.
    fifo: BTreeMap<(u64, u64), Time>,
    clients: Vec<Client>,
    /// Names started successfully (clients write to them).
    pub(crate) live_names: Vec<String>,
    /// Names whose stop was confirmed, and when: they must never come back (S6).
    pub(crate) removed: BTreeMap<String, Time>,
    /// Names a stop was asked for, whatever the answer (an unconfirmed stop, cut off from
    /// some member, may still remove the name once they meet).
    pub(crate) stop_asked: BTreeSet<String>,
    /// The next node to accept an offered child crashes right after its acceptance leaves.
    pub(crate) crash_on_accept: bool,
    /// Subscriptions, by sink.
    pub(crate) subs: BTreeMap<u64, Sub>,
    /// Nodes killed and not started again under their name (their runs block the collection
    /// of tombstones for the dead wait, longer than a run).
    pub(crate) killed: BTreeSet<String>,
    /// Node runs (slot, incarnation) whose clock stopped during a freeze.
    clock_stopped: BTreeSet<(usize, u64)>,
    pub(crate) check: Checker,
    trace: Option<Vec<String>>,
    base: Instant,
    /// Drains answered: (slot, duration, deadline).
    pub(crate) drains: Vec<(usize, Time)>,
    /// Horde events seen (restarts from spec count as state lost).
    pub(crate) restarts_from_spec: u64,
    /// The schedule's steps (events name them by index).
    pub(crate) steps: Vec<Step>,
    next_child: u64,
    events: u64,
}

fn chan(a: u64, b: u64) -> (u64, u64) {
    (a, b)
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("now", &self.now)
            .field("nodes", &self.names)
            .finish_non_exhaustive()
    }
}

impl World {
    /// An empty world.
    pub fn new(seed: u64, config: Config, trace: bool) -> Self {
        Self {
            config,
            rng: Rng::new(seed),
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes: Vec::new(),
            names: Vec::new(),
            last_inc: Vec::new(),
            wall_skew: Vec::new(),
            instances: BTreeMap::new(),
            next_instance: 0,
            next_session: 0,
            next_op: 0,
            ops: BTreeMap::new(),
            blocked: BTreeSet::new(),
            held: BTreeMap::new(),
            fifo: BTreeMap::new(),
            clients: Vec::new(),
            live_names: Vec::new(),
            removed: BTreeMap::new(),
            stop_asked: BTreeSet::new(),
            crash_on_accept: false,
            subs: BTreeMap::new(),
            killed: BTreeSet::new(),
            clock_stopped: BTreeSet::new(),
            check: Checker::default(),
            trace: trace.then(Vec::new),
            base: Instant::now(),
            drains: Vec::new(),
            restarts_from_spec: 0,
            steps: Vec::new(),
            next_child: 0,
            events: 0,
        }
    }

    /// The trace, when tracing.
    pub fn trace_lines(&self) -> Option<&[String]> {
        self.trace.as_deref()
    }

    pub(crate) fn log(&mut self, line: impl FnOnce() -> String) {
        let now = self.now;
        if let Some(t) = &mut self.trace {
            t.push(format!("[{:>4}.{:06}] {}", now / SEC, now % SEC, line()));
        }
    }

    pub(crate) fn at(&mut self, at: Time, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse(Queued {
            at: at.max(self.now),
            seq: self.seq,
            ev,
        }));
    }

    /// Schedules `ev` after `delay`, in FIFO order on `channel`.
    fn fifo_at(&mut self, channel: (u64, u64), delay: Time, ev: Ev) {
        let t = (self.now + delay).max(self.fifo.get(&channel).copied().unwrap_or(0));
        self.fifo.insert(channel, t);
        self.at(t, ev);
    }

    /// Runs events until `until` (or the queue empties, or a livelock is found).
    pub fn run_until(&mut self, until: Time) {
        while let Some(Reverse(q)) = self.queue.peek() {
            if q.at > until {
                break;
            }
            self.events += 1;
            if self.events > MAX_EVENTS {
                let now = self.now;
                self.check.violate(format!(
                    "S5: more than {MAX_EVENTS} events by {} ms: a livelock",
                    now / MS
                ));
                self.queue.clear();
                break;
            }
            let Some(Reverse(q)) = self.queue.pop() else {
                break;
            };
            self.now = q.at;
            self.check.now = q.at;
            self.dispatch(q.ev);
        }
        self.now = self.now.max(until);
    }

    fn node(&self, slot: usize, inc: u64) -> Option<&Node> {
        self.nodes
            .get(slot)?
            .as_ref()
            .filter(|n| n.id.incarnation == inc)
    }

    fn node_mut(&mut self, slot: usize, inc: u64) -> Option<&mut Node> {
        self.nodes
            .get_mut(slot)?
            .as_mut()
            .filter(|n| n.id.incarnation == inc)
    }

    fn dispatch(&mut self, ev: Ev) {
        // A paused node keeps what arrives for it.
        let target = match &ev {
            Ev::Net { slot, inc, .. }
            | Ev::Member { slot, inc, .. }
            | Ev::Child { slot, inc, .. }
            | Ev::Call { slot, inc, .. } => Some((*slot, *inc)),
            _ => None,
        };
        if let Some((slot, inc)) = target {
            match self.node_mut(slot, inc) {
                None => {
                    if let Ev::Call { client, call, .. } = ev {
                        self.reply_client(client, call, Err("connection refused".into()));
                    }
                    return;
                }
                Some(n) if n.life == Life::Paused => {
                    n.backlog.push(ev);
                    return;
                }
                Some(_) => {}
            }
        }
        match ev {
            Ev::Tick { slot, inc } => self.on_tick(slot, inc),
            Ev::Net {
                slot,
                inc,
                from,
                session,
                msg,
            } => self.on_net(slot, inc, from, session, msg),
            Ev::Establish {
                a,
                a_inc,
                b,
                b_inc,
                link,
            } => self.on_establish(a, a_inc, b, b_inc, link),
            Ev::DialFailed { slot, inc, addr } => self.dial_failed(slot, inc, addr),
            Ev::PingTimeout { slot, inc, ping } => self.ping_timeout(slot, inc, ping),
            Ev::Member { slot, inc, input } => self.run_member(slot, inc, input),
            Ev::Child {
                slot,
                inc,
                instance,
                input,
            } => self.run_child(slot, inc, instance, input),
            Ev::Call {
                slot,
                inc,
                client,
                call,
                name,
                id,
                deadline,
            } => self.handle_call(slot, inc, client, call, name, id, deadline),
            Ev::ClientNext { client } => self.client_next(client),
            Ev::ClientTimeout { client, call } => {
                if self.config.no_retries
                    && let Some(inf) = self.clients.get(client).and_then(|c| c.inflight.as_ref())
                    && inf.call == call
                {
                    let v = format!(
                        "S8: input {} to `{}` got no answer within {} ms in a schedule without faults (only its retry would save it)",
                        inf.id,
                        inf.name,
                        self.config.client_timeout / MS
                    );
                    self.check.violate(v);
                }
                self.client_result(client, call, Err("timeout".into()))
            }
            Ev::ClientReply {
                client,
                call,
                result,
            } => self.client_result(client, call, result),
            Ev::Step(i) => self.step(i),
            Ev::Resume { slot, inc } => self.resume(slot, inc),
            Ev::Kill { slot, inc } => {
                if self.node(slot, inc).is_some() {
                    let name = self.names[slot].clone();
                    self.crash(slot);
                    self.killed.insert(name);
                }
            }
            Ev::Unstall { from, to } => self.unstall(from, to),
            Ev::Thaw {
                slot,
                inc,
                duration,
            } => self.thaw(slot, inc, duration),
        }
    }

    /// Schedules the steps of a schedule at their times.
    pub(crate) fn plan(&mut self, steps: &[(Time, usize)]) {
        for (t, i) in steps {
            self.at(*t, Ev::Step(*i));
        }
    }

    fn step(&mut self, i: usize) {
        steps::run_step(self, i);
    }
}
