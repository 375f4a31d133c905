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

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use discovery::NodeId;
use discovery::connector::link_table::LinkInput;
use horde::core::child::{
    Answer, Body, ChildEffect, ChildEnv, ChildInput, Envelope, ReplicaAnswer,
};
use horde::core::{ChildCmd, ChildReport, Core, CoreConfig, Effect, Input, Reply, Request, TICK};
use horde::protocol::{Protocols, Route, RouteBody, RouteReply, Wire, encoded_len, wire_len};
use horde::stats::{Counters, HordeEvent};
use horde::{MoveConfig, RebalanceConfig, Rendezvous, RestartPolicy};

mod connector;

use crate::check::Checker;
use crate::log::{self, Hosted, Log, LogMsg, LogReply};
use crate::rng::Rng;

/// Virtual time in microseconds since the start of the run.
pub type Time = u64;

/// Microseconds in a millisecond.
pub const MS: Time = 1_000;
/// Microseconds in a second.
pub const SEC: Time = 1_000_000;

/// Where an answer goes: a client's call, or an operation of the schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// A client's call.
    Call {
        /// The client.
        client: usize,
        /// Its call number.
        call: u64,
    },
    /// An operation (a start, a drain).
    Op(u64),
    /// A subscription's confirmation (its sink).
    Sub(u64),
}

/// A subscription a client made through a node: that node's sink gets the name's events.
#[derive(Debug, Clone)]
pub(crate) struct Sub {
    pub name: String,
    pub slot: usize,
    pub node: NodeId,
    /// The child answered it (from then on its subscriber list holds it, wherever it runs).
    pub confirmed: Option<Time>,
    /// Events its sink received.
    pub received: u64,
}

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

/// A message between two nodes on a session.
#[derive(Debug, Clone)]
pub enum NetMsg {
    /// To the member core.
    Member(Wire),
    /// To the router (a call when `reply` is set).
    Route {
        /// The routed message.
        route: Route,
        /// Where the answer goes.
        reply: Option<Token>,
    },
    /// A handle's stop request to the member the registry names.
    StopChild {
        /// The name.
        name: String,
        /// The operation waiting for the answer.
        op: u64,
    },
    /// A handle's start request to the member placement chose.
    StartChild {
        /// The name.
        name: String,
        /// The operation waiting for the answer.
        op: u64,
    },
    /// A heartbeat (the connector's beacon ping).
    Ping {
        /// Its number.
        ping: u64,
    },
    /// Its answer.
    Pong {
        /// The ping's number.
        ping: u64,
    },
    /// The session was closed by the sender's end.
    Fin,
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

/// A live node's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Life {
    /// Processing.
    Running,
    /// Frozen (SIGSTOP); its clock runs.
    Paused,
}

/// A running (or paused) node.
pub(crate) struct Node {
    pub slot: usize,
    pub id: NodeId,
    pub schema: u16,
    /// The protocol versions its build speaks: a node of schema 1 is of the previous release
    /// (protocol 2 only), one of schema 2 of this one.
    pub protocols: Protocols,
    pub life: Life,
    pub core: Core<Token>,
    /// What the router sees: name → (instance, pending).
    pub routes: BTreeMap<Arc<str>, (u64, bool)>,
    /// The latest running instance of each name (for commands).
    pub actors: BTreeMap<Arc<str>, u64>,
    /// Its connector's decisions (discovery's link table).
    table: discovery::connector::link_table::LinkTable<u64>,
    /// Links open at this end: link → (peer slot, peer run).
    links: BTreeMap<u64, (usize, u64)>,
    /// Heartbeats out: ping → (to whom, sent at).
    pings: BTreeMap<u64, (NodeId, Time)>,
    backlog: Vec<Ev>,
    /// Virtual time of this boot (moved on by a freeze, whose time the clock never saw).
    pub boot: Time,
    /// Paused with the clock stopped (a virtual machine suspended): the clock resumes where
    /// it stopped.
    frozen_clock: bool,
    /// Clock rate error (parts per million).
    drift_ppm: i64,
    /// Origin of this boot's monotonic clock.
    origin: Instant,
    /// Registry epochs seen in this run (monotone epochs, S3).
    pub epochs: BTreeMap<Arc<str>, u64>,
    /// Names this run saw removed (a tombstone in its registry), kept after the tombstone is
    /// collected (S6: none comes back).
    pub seen_removed: BTreeSet<Arc<str>>,
}

impl Node {
    /// This node's monotonic clock at virtual time `now`.
    pub(crate) fn local(&self, now: Time) -> Instant {
        let elapsed = now.saturating_sub(self.boot) as i128;
        let scaled = elapsed + elapsed * self.drift_ppm as i128 / 1_000_000;
        self.origin + Duration::from_micros(scaled.max(0) as u64)
    }
}

/// A hosted child instance.
pub(crate) struct Instance {
    pub slot: usize,
    pub inc: u64,
    pub name: Arc<str>,
    pub epoch: u64,
    pub core: Box<dyn Hosted>,
    pub alive: bool,
}

/// A client's call in flight.
#[derive(Debug, Clone)]
struct Inflight {
    call: u64,
    name: String,
    id: u64,
    /// The node the call went to (slot, incarnation): its connection closes if that node
    /// dies, and the client retries at once (no timeout to wait for).
    via: Option<(usize, u64)>,
}

#[derive(Debug, Default)]
struct Client {
    inflight: Option<Inflight>,
    next_id: u64,
    acked: u64,
    stopped: bool,
}

/// An operation of the schedule waiting for its answer.
#[derive(Debug)]
pub(crate) enum Op {
    Start {
        name: String,
    },
    Stop {
        name: String,
    },
    Drain {
        slot: usize,
        inc: u64,
        started: Time,
        exit: bool,
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
    pub(crate) steps: Vec<crate::schedule::Step>,
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

    /// A fresh child name.
    /// Every fourth is a log that is not replicated (`u…`): only the one-owner promise holds
    /// for it.
    pub(crate) fn new_child_name(&mut self) -> String {
        self.next_child += 1;
        let kind = if self.next_child.is_multiple_of(4) {
            "u"
        } else {
            "g"
        };
        format!("{kind}{}", self.next_child)
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

    /// A slot for node `name` (existing or new).
    pub(crate) fn slot_of(&mut self, name: &str) -> usize {
        if let Some(i) = self.names.iter().position(|n| n == name) {
            return i;
        }
        self.names.push(name.into());
        self.nodes.push(None);
        self.last_inc.push(0);
        self.wall_skew.push(0);
        self.names.len() - 1
    }

    /// Running (or paused) slots.
    /// True while run `inc` of node `slot` runs (not crashed, not replaced).
    pub(crate) fn node_running(&self, slot: usize, inc: u64) -> bool {
        self.node(slot, inc)
            .is_some_and(|n| n.life == Life::Running)
    }

    /// A panic in one running child (a bug in its callbacks): its actor is gone, its node's
    /// core restarts it in place, from its spec (horde's restart policy: what it had is
    /// lost by design, and so is not counted against S2).
    pub(crate) fn crash_child(&mut self) {
        let serving: Vec<u64> = self
            .instances
            .iter()
            .filter(|(i, x)| {
                x.alive
                    && !x.core.is_frozen()
                    && !x.core.is_forwarding()
                    && self
                        .node(x.slot, x.inc)
                        .is_some_and(|n| n.routes.get(&*x.name) == Some(&(**i, false)))
            })
            .map(|(i, _)| *i)
            .collect();
        let Some(instance) = self.rng.pick(&serving).copied() else {
            return;
        };
        let Some(inst) = self.instances.get_mut(&instance) else {
            return;
        };
        inst.alive = false;
        let (slot, inc, name) = (inst.slot, inst.inc, inst.name.clone());
        let applied = inst.core.applied().to_vec();
        self.check.child_crashed(&name, &applied);
        let node = self.names[slot].clone();
        self.log(|| {
            format!(
                "{name}#{instance} on {node} panics ({} changes lost by design)",
                applied.len()
            )
        });
        self.run_member(
            slot,
            inc,
            Input::Child {
                name,
                report: ChildReport::Crashed {
                    error: "a planted panic".into(),
                },
            },
        );
    }

    pub(crate) fn up_slots(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|s| self.nodes[*s].is_some())
            .collect()
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

    // === nodes ===

    /// Starts node `name` (a new incarnation if it ran before) running schema `schema`.
    pub(crate) fn start_node(&mut self, name: &str, schema: u16) -> usize {
        let slot = self.slot_of(name);
        let wall = (WALL0 + self.now) as i64 + self.wall_skew[slot];
        let inc = wall.max(1) as u64;
        self.last_inc[slot] = inc;
        let id = NodeId {
            name: connector::node_name(name, slot),
            incarnation: inc,
        };
        let version = if schema == 1 { "1.0.0" } else { "2.0.0" };
        // A node of schema 1 is of the previous release: it speaks its protocol only.
        let protocols = if schema == 1 {
            Protocols::new(Protocols::THIS.min, Protocols::THIS.min)
        } else {
            Protocols::THIS
        };
        let config = CoreConfig {
            join_timeout: Duration::from_micros(self.config.join_timeout),
            max_restarts: 3,
            restart_window: Duration::from_secs(5),
            restart_policy: RestartPolicy::Permanent,
            moves: self.config.moves,
            rebalance: self.config.rebalance,
            placement: Arc::new(Rendezvous),
            lease: self.config.lease,
            reads: if schema == 1 { vec![1] } else { vec![1, 2] },
            writes: if schema == 1 { vec![1] } else { vec![2, 1] },
            max_message_bytes: self.config.max_message_bytes,
            max_children: None,
            tombstone_grace: self.config.tombstone_grace,
            protocols,
        };
        let origin = self.base + Duration::from_secs(1000 * (slot as u64 + 1) + inc % 1000);
        let spread = self.config.drift_ppm;
        let drift_ppm = self.rng.range(0, 2 * spread + 1) as i64 - spread as i64;
        let node = Node {
            slot,
            id: id.clone(),
            schema,
            protocols,
            life: Life::Running,
            core: Core::new(
                id.clone(),
                version,
                config,
                Arc::new(Counters::default()),
                origin,
            ),
            routes: BTreeMap::new(),
            actors: BTreeMap::new(),
            table: connector::table_for(
                &id,
                slot,
                self.config.heartbeat,
                self.config.failure_timeout,
                self.rng.range(0, u64::MAX),
            ),
            links: BTreeMap::new(),
            pings: BTreeMap::new(),
            backlog: Vec::new(),
            frozen_clock: false,
            boot: self.now,
            drift_ppm,
            origin,
            epochs: BTreeMap::new(),
            seen_removed: BTreeSet::new(),
        };
        self.nodes[slot] = Some(node);
        self.log(|| format!("{id} starts (schema v{schema})"));
        // Every node knows every name's address (static discovery).
        self.publish_peers();
        let first = self.rng.range(0, 50 * MS);
        self.at(self.now + first, Ev::Tick { slot, inc });
        slot
    }

    /// SIGKILL: the process is gone; the OS closes its sockets.
    pub(crate) fn crash(&mut self, slot: usize) {
        let Some(node) = self.nodes[slot].take() else {
            return;
        };
        self.log(|| format!("{} crashes", node.id));
        self.lose_unsent(slot);
        // Its clients' connections close: each retries elsewhere.
        let inc = node.id.incarnation;
        let closed: Vec<(usize, u64)> = self
            .clients
            .iter()
            .enumerate()
            .filter_map(|(c, cl)| {
                let inf = cl.inflight.as_ref()?;
                (inf.via == Some((slot, inc)) && inf.call != 0).then_some((c, inf.call))
            })
            .collect();
        for (client, call) in closed {
            self.reply_client(client, call, Err("connection closed".into()));
        }
        for inst in self.instances.values_mut() {
            if inst.slot == slot && inst.inc == node.id.incarnation {
                inst.alive = false;
            }
        }
        for (link, (peer, peer_inc)) in &node.links {
            self.send_on(slot, *peer, *link, *peer_inc, NetMsg::Fin);
        }
    }

    /// What a process that dies had sent and was not delivered yet: some of it was still in
    /// its own send queues (a ractor session writes to its socket asynchronously), so per
    /// peer a random suffix of it is lost; what reached the socket before arrives.
    fn lose_unsent(&mut self, slot: usize) {
        let mut by_peer: BTreeMap<usize, Vec<(Time, u64)>> = BTreeMap::new();
        for Reverse(q) in self.queue.iter() {
            if let Ev::Net { from, slot: to, .. } = &q.ev
                && *from == slot
            {
                by_peer.entry(*to).or_default().push((q.at, q.seq));
            }
        }
        let mut lost: BTreeSet<u64> = BTreeSet::new();
        for (_, mut sent) in by_peer {
            sent.sort();
            let keep = self.rng.range(0, sent.len() as u64 + 1) as usize;
            lost.extend(sent[keep..].iter().map(|(_, seq)| *seq));
        }
        if lost.is_empty() {
            return;
        }
        let n = lost.len();
        self.log(|| format!("slot {slot}: {n} messages it sent are lost with it"));
        let queue = std::mem::take(&mut self.queue);
        self.queue = queue
            .into_iter()
            .filter(|Reverse(q)| !lost.contains(&q.seq))
            .collect();
    }

    /// SIGSTOP for `duration`.
    pub(crate) fn pause(&mut self, slot: usize, duration: Time) {
        let now = self.now;
        let Some(node) = self.nodes[slot].as_mut() else {
            return;
        };
        if node.life == Life::Paused {
            return;
        }
        node.life = Life::Paused;
        let (id, inc) = (node.id.clone(), node.id.incarnation);
        self.log(|| format!("{id} paused for {} ms", duration / MS));
        self.at(now + duration, Ev::Resume { slot, inc });
    }

    /// A freeze for `duration`: paused, and its monotonic clock stops too (a suspended virtual
    /// machine; Linux's CLOCK_MONOTONIC does not count a suspend), so on waking the node
    /// believes no time passed: a lease it held looks valid still.
    pub(crate) fn freeze(&mut self, slot: usize, duration: Time) {
        let now = self.now;
        let Some(node) = self.nodes[slot].as_mut() else {
            return;
        };
        if node.life == Life::Paused {
            return;
        }
        node.life = Life::Paused;
        node.frozen_clock = true;
        let (id, inc) = (node.id.clone(), node.id.incarnation);
        self.clock_stopped.insert((slot, inc));
        self.log(|| format!("{id} frozen for {} ms (its clock stops)", duration / MS));
        self.at(
            now + duration,
            Ev::Thaw {
                slot,
                inc,
                duration,
            },
        );
    }

    fn thaw(&mut self, slot: usize, inc: u64, duration: Time) {
        if let Some(node) = self.node_mut(slot, inc)
            && std::mem::take(&mut node.frozen_clock)
        {
            node.boot += duration;
        }
        self.resume(slot, inc);
    }

    fn resume(&mut self, slot: usize, inc: u64) {
        let Some(node) = self.node_mut(slot, inc) else {
            return;
        };
        node.life = Life::Running;
        let backlog = std::mem::take(&mut node.backlog);
        let id = node.id.clone();
        self.log(|| format!("{id} resumes ({} queued)", backlog.len()));
        // On waking, the timers may fire before what arrived is read, or after.
        if self.rng.chance(0.5) {
            self.link_input(slot, inc, LinkInput::Tick);
        }
        for ev in backlog {
            self.dispatch(ev);
        }
    }

    /// Cuts `slot` off from every other node (both ways, or only its outgoing side).
    pub(crate) fn partition(&mut self, slot: usize, one_way: bool) {
        self.log(|| format!("partition of slot {slot} (one way: {one_way})"));
        for other in 0..self.names.len() {
            if other != slot {
                self.blocked.insert((slot, other));
                if !one_way {
                    self.blocked.insert((other, slot));
                }
            }
        }
    }

    /// Holds what `from` sends `to` for `dur`, then delivers it in order.
    pub(crate) fn stall(&mut self, from: usize, to: usize, dur: Time) {
        self.log(|| format!("s{from} -> s{to}: stalls {} ms", dur / MS));
        self.blocked.insert((from, to));
        self.at(self.now + dur, Ev::Unstall { from, to });
    }

    fn unstall(&mut self, from: usize, to: usize) {
        self.blocked.remove(&(from, to));
        let held = self.held.remove(&(from, to)).unwrap_or_default();
        for (session, msg) in held {
            let inc = self.nodes[to]
                .as_ref()
                .map(|n| n.id.incarnation)
                .unwrap_or(0);
            self.send_on(from, to, session, inc, msg);
        }
    }

    /// Ends every partition; held messages go out in order.
    pub(crate) fn heal(&mut self) {
        self.log(|| "partitions heal".into());
        self.blocked.clear();
        let held = std::mem::take(&mut self.held);
        for ((from, to), msgs) in held {
            for (session, msg) in msgs {
                let inc = self.nodes[to]
                    .as_ref()
                    .map(|n| n.id.incarnation)
                    .unwrap_or(0);
                self.send_on(from, to, session, inc, msg);
            }
        }
    }

    // === operations ===

    /// Asks `slot` to start `name` (the handle's placement decides where).
    pub(crate) fn op_start(&mut self, slot: usize, name: &str) {
        self.next_op += 1;
        let op = self.next_op;
        self.ops.insert(op, Op::Start { name: name.into() });
        let Some(node) = self.nodes[slot].as_ref() else {
            return;
        };
        let view = node.core.view();
        let target = horde::Placement::place(&Rendezvous, name, &view.candidates(false));
        let inc = node.id.incarnation;
        match target {
            Some(t) if t == node.id => self.run_member(
                slot,
                inc,
                Input::Request(Request::Start {
                    name: name.into(),
                    spec: postcard::to_stdvec(&self.config.state_padding).unwrap_or_default(),
                    reply: Token::Op(op),
                }),
            ),
            Some(t) => {
                self.send_net(
                    slot,
                    &t,
                    NetMsg::StartChild {
                        name: name.into(),
                        op,
                    },
                );
            }
            None => {
                self.log(|| format!("start of {name} at slot {slot}: no member"));
            }
        }
    }

    /// Asks `slot` to stop `name` (the handle sends it to the owner its registry names).
    pub(crate) fn op_stop(&mut self, slot: usize, name: &str) {
        let Some(node) = self.nodes[slot].as_ref() else {
            return;
        };
        let Some(owner) = node.core.registry().get(name).map(|e| (*e.owner).clone()) else {
            return;
        };
        self.next_op += 1;
        let op = self.next_op;
        self.ops.insert(op, Op::Stop { name: name.into() });
        self.stop_asked.insert(name.into());
        let (inc, me) = (node.id.incarnation, node.id.clone());
        self.log(|| format!("stop of {name} asked at slot {slot} (owner {owner})"));
        if owner == me {
            self.run_member(
                slot,
                inc,
                Input::Request(Request::Stop {
                    name: name.into(),
                    reply: Token::Op(op),
                }),
            );
        } else {
            let name = name.into();
            self.send_net(slot, &owner, NetMsg::StopChild { name, op });
        }
    }

    /// Drains `slot` (SIGTERM when `exit`, the console's `drain` otherwise).
    pub(crate) fn op_drain(&mut self, slot: usize, exit: bool) {
        let Some(node) = self.nodes[slot].as_ref() else {
            return;
        };
        let inc = node.id.incarnation;
        self.next_op += 1;
        let op = self.next_op;
        self.ops.insert(
            op,
            Op::Drain {
                slot,
                inc,
                started: self.now,
                exit,
            },
        );
        let deadline = Duration::from_micros(self.config.drain_deadline);
        self.log(|| format!("slot {slot} drains (exit: {exit})"));
        self.run_member(
            slot,
            inc,
            Input::Request(Request::Drain {
                deadline,
                leave: exit,
                reply: Token::Op(op),
            }),
        );
    }

    fn op_reply(&mut self, op: u64, reply: Reply) {
        let Some(o) = self.ops.remove(&op) else {
            return;
        };
        match (o, reply) {
            (Op::Start { name }, Reply::Started(r)) => {
                self.log(|| format!("start of {name}: {r:?}"));
                if r.is_ok() && !self.live_names.contains(&name) {
                    self.live_names.push(name);
                }
            }
            (Op::Stop { name }, Reply::Stopped(found)) => {
                self.log(|| format!("stop of {name}: {found}"));
                if found {
                    self.live_names.retain(|n| *n != name);
                    self.removed.entry(name).or_insert(self.now);
                }
            }
            (
                Op::Drain {
                    slot,
                    inc,
                    started,
                    exit,
                },
                Reply::Drained(report),
            ) => {
                let took = self.now - started;
                self.log(|| format!("slot {slot} drained in {} ms: {report:?}", took / MS));
                self.drains.push((slot, took));
                if exit && self.node(slot, inc).is_some() {
                    // The process exits: its sockets close.
                    self.crash(slot);
                }
            }
            _ => {}
        }
    }

    // === the connector model ===

    fn on_tick(&mut self, slot: usize, inc: u64) {
        let Some(node) = self.node(slot, inc) else {
            return;
        };
        if node.life == Life::Paused {
            // No ticks while paused: the next one after it resumes.
            self.at(self.now + TICK.as_micros() as Time, Ev::Tick { slot, inc });
            return;
        }
        self.link_input(slot, inc, LinkInput::Tick);
        self.run_member(slot, inc, Input::Tick);
        let jitter = self.rng.range(0, 2 * MS);
        self.at(
            self.now + TICK.as_micros() as Time + jitter,
            Ev::Tick { slot, inc },
        );
    }

    /// Sends on a given session, held while a partition blocks the direction.
    fn send_on(&mut self, from: usize, to: usize, session: u64, to_inc: u64, msg: NetMsg) {
        self.check_size(from, to, &msg);
        if self.blocked.contains(&(from, to)) {
            self.held
                .entry((from, to))
                .or_default()
                .push_back((session, msg));
            return;
        }
        let delay = if self.config.stall_chance > 0.0 && self.rng.chance(self.config.stall_chance) {
            // A stall: retransmissions back off 200 ms, 400 ms, 800 ms ...; what follows in
            // this direction waits behind it (the channel is FIFO).
            let tries = self.rng.range(1, 6) as u32;
            let stall = (200 * MS * ((1 << tries) - 1)).min(self.config.stall_max);
            let stall = self.rng.range(stall / 2, stall + 1);
            self.log(|| format!("s{from} -> s{to}: stalls {} ms", stall / MS));
            stall
        } else if self.rng.chance(0.05) {
            self.rng.range(MS, 20 * MS)
        } else {
            self.rng.range(100, 800)
        };
        self.fifo_at(
            chan(from as u64, (1 << 32) | to as u64),
            delay,
            Ev::Net {
                slot: to,
                inc: to_inc,
                from,
                session,
                msg,
            },
        );
    }

    /// S5: a message over the budget would close the link in production (ractor_cluster
    /// refuses frames over its limit, and the budget is kept well under it).
    fn check_size(&mut self, from: usize, to: usize, msg: &NetMsg) {
        let (bytes, kind) = match msg {
            NetMsg::Member(w) => (wire_len(w), w.kind()),
            // `Wire::Route` adds its variant's tag, one byte.
            NetMsg::Route { route, .. } => (encoded_len(route) + 1, "Route"),
            _ => return,
        };
        if bytes > self.check.largest_message.0 {
            self.check.largest_message = (bytes, kind);
        }
        if bytes > self.config.max_message_bytes {
            let v = format!(
                "S5: s{from} sent s{to} a {kind} of {bytes} bytes, over the {}-byte message budget (the link would close)",
                self.config.max_message_bytes
            );
            self.check.violate(v);
        }
    }

    /// Sends to a node (that incarnation) over the current session, if there is one.
    fn send_net(&mut self, from: usize, to: &NodeId, msg: NetMsg) -> bool {
        let Some(node) = self.nodes[from].as_ref() else {
            return false;
        };
        let Some((peer, session)) = self.link_to(from, to) else {
            return false;
        };
        let accepts = matches!(&msg, NetMsg::Member(Wire::OfferReply { accepted, .. }) if !accepted.is_empty());
        let inc = node.id.incarnation;
        self.send_on(from, peer, session, to.incarnation, msg);
        if accepts && std::mem::take(&mut self.crash_on_accept) {
            let d = self.rng.range(0, 5 * MS);
            self.log(|| format!("s{from} accepted children: it crashes in {d} us"));
            self.at(self.now + d, Ev::Kill { slot: from, inc });
        }
        true
    }

    fn on_net(&mut self, slot: usize, inc: u64, from: usize, session: u64, msg: NetMsg) {
        let Some(node) = self.node_mut(slot, inc) else {
            return;
        };
        if !node.links.contains_key(&session) {
            // A closed link: its bytes go nowhere.
            return;
        }
        if self.on_link_msg(slot, inc, from, session, &msg) {
            return;
        }
        let Some(node) = self.node_mut(slot, inc) else {
            return;
        };
        match msg {
            NetMsg::Ping { .. } | NetMsg::Pong { .. } | NetMsg::Fin => {}
            NetMsg::Member(Wire::ReplicaAck {
                from,
                name,
                epoch,
                seq,
            }) => self.answer_child(slot, inc, &name, ReplicaAnswer::Ack { from, epoch, seq }),
            NetMsg::Member(Wire::ReplicaNack {
                from,
                name,
                epoch,
                why,
            }) => self.answer_child(slot, inc, &name, ReplicaAnswer::Nack { from, epoch, why }),
            NetMsg::Member(wire) => {
                let speaks = node.protocols;
                if wire.needs() > speaks.max {
                    let v = format!(
                        "S7: s{from} sent s{slot} (protocol {speaks}) a {} that needs protocol {}",
                        wire.kind(),
                        wire.needs()
                    );
                    self.check.violate(v);
                }
                // Through the codec, as the receiver's release decodes it: the fields a newer
                // protocol appended are not read by an older one.
                let kind = wire.kind();
                let decoded = horde::protocol::encode_wire(&wire)
                    .map_err(|e| e.to_string())
                    .and_then(|env| {
                        horde::protocol::decode_wire(&env).map_err(|u| u.error.to_string())
                    });
                match decoded {
                    Ok(back) if back == wire => {
                        self.run_member(slot, inc, Input::Peer(read_as(back, speaks)))
                    }
                    other => {
                        let v = format!(
                            "codec: a {kind} from s{from} does not decode as sent: {other:?}"
                        );
                        self.check.violate(v);
                    }
                }
            }
            NetMsg::Route { route, reply } => self.route(slot, inc, route, reply),
            NetMsg::StopChild { name, op } => self.run_member(
                slot,
                inc,
                Input::Request(Request::Stop {
                    name,
                    reply: Token::Op(op),
                }),
            ),
            NetMsg::StartChild { name, op } => self.run_member(
                slot,
                inc,
                Input::Request(Request::Start {
                    name,
                    spec: postcard::to_stdvec(&self.config.state_padding).unwrap_or_default(),
                    reply: Token::Op(op),
                }),
            ),
        }
    }

    // === the member shell ===

    pub(crate) fn run_member(&mut self, slot: usize, inc: u64, input: Input<Token>) {
        let mut queue = VecDeque::from([input]);
        while let Some(input) = queue.pop_front() {
            let now = self.now;
            let Some(node) = self.node_mut(slot, inc) else {
                return;
            };
            let t = node.local(now);
            let effects = node.core.on(t, input);
            // S3 and S6 on every change of the registry, not on a tick.
            self.check_registry(slot, inc);
            for e in effects {
                self.member_effect(slot, inc, e, &mut queue);
            }
        }
    }

    fn member_effect(
        &mut self,
        slot: usize,
        inc: u64,
        effect: Effect<Token>,
        queue: &mut VecDeque<Input<Token>>,
    ) {
        match effect {
            Effect::Send { to, wire } => {
                let me = slot;
                if !chatty(&wire) {
                    self.log(|| format!("s{me} → {} {}", to.name, describe(&wire)));
                }
                self.send_net(slot, &to, NetMsg::Member(wire));
            }
            Effect::Broadcast { to, wire } => {
                let me = slot;
                if !chatty(&wire) {
                    self.log(|| format!("s{me} → {} nodes {}", to.len(), describe(&wire)));
                }
                for n in to {
                    self.send_net(slot, &n, NetMsg::Member(wire.clone()));
                }
            }
            Effect::Spawn {
                name,
                init,
                epoch,
                pending,
            } => {
                let Some(node) = self.node(slot, inc) else {
                    return;
                };
                let (schema, me, origin) = (node.schema, node.id.clone(), node.origin);
                let t = node.local(self.now);
                match log::start(schema, name.clone(), me, origin, t, init, epoch, pending) {
                    Ok((core, first)) => {
                        self.next_instance += 1;
                        let instance = self.next_instance;
                        self.instances.insert(
                            instance,
                            Instance {
                                slot,
                                inc,
                                name: name.clone(),
                                epoch,
                                core,
                                alive: true,
                            },
                        );
                        if let Some(node) = self.node_mut(slot, inc) {
                            node.routes.insert(name.clone(), (instance, pending));
                            node.actors.insert(name.clone(), instance);
                        }
                        self.log(|| {
                            format!("s{slot} spawns {name}#{instance} at epoch {epoch} (pending: {pending})")
                        });
                        for e in first {
                            self.child_effect(slot, inc, instance, e);
                        }
                        queue.push_back(Input::Spawned {
                            name,
                            result: Ok(()),
                        });
                    }
                    Err(e) => {
                        self.log(|| format!("s{slot} cannot spawn {name}: {e}"));
                        queue.push_back(Input::Spawned {
                            name,
                            result: Err(e),
                        });
                    }
                }
            }
            Effect::Serve { name } => {
                if let Some(node) = self.node_mut(slot, inc)
                    && let Some(r) = node.routes.get_mut(&name)
                {
                    r.1 = false;
                }
            }
            Effect::Forget { name } => {
                if let Some(node) = self.node_mut(slot, inc) {
                    node.routes.remove(&name);
                }
            }
            Effect::ToChild { name, cmd } => {
                let instance = self
                    .node(slot, inc)
                    .and_then(|n| n.actors.get(&name).copied());
                if let Some(instance) = instance {
                    let d = self.rng.range(1, 60);
                    self.fifo_at(
                        chan(slot as u64, (2 << 32) | instance),
                        d,
                        Ev::Child {
                            slot,
                            inc,
                            instance,
                            input: ChildInput::Cmd(cmd),
                        },
                    );
                }
            }
            Effect::Reply { to, reply } => match to {
                Token::Op(op) => self.op_reply(op, reply),
                Token::Call { .. } | Token::Sub(_) => {}
            },
            Effect::Conflict(report) => {
                self.log(|| {
                    format!(
                        "s{slot} conflict: {} lost to {}",
                        report.name, report.winner
                    )
                });
            }
            Effect::Event(e) => {
                if let HordeEvent::Restarted {
                    from_snapshot: false,
                    ref name,
                    ..
                } = e
                {
                    self.restarts_from_spec += 1;
                    let name = name.clone();
                    self.log(|| format!("s{slot} restarts {name} from its spec"));
                }
            }
            Effect::NeedPeers => {}
        }
    }

    // === children ===

    fn run_child(
        &mut self,
        slot: usize,
        inc: u64,
        instance: u64,
        input: ChildInput<LogMsg, Token>,
    ) {
        let (t, lease) = match self.node(slot, inc) {
            Some(n) => {
                let t = n.local(self.now);
                (t, n.core.lease_valid(t))
            }
            None => return,
        };
        let Some(inst) = self.instances.get_mut(&instance) else {
            return;
        };
        if !inst.alive {
            return;
        }
        let env = ChildEnv {
            lease,
            is_live: &|_| true,
            max_message_bytes: self.config.max_message_bytes,
        };
        let effects = inst.core.on(t, input, &env);
        for e in effects {
            self.child_effect(slot, inc, instance, e);
        }
    }

    fn child_effect(
        &mut self,
        slot: usize,
        inc: u64,
        instance: u64,
        effect: ChildEffect<Log<1>, Token>,
    ) {
        match effect {
            ChildEffect::Reply { to, answer } => {
                if let (Token::Sub(sink), Answer::Done) = (&to, &answer)
                    && let Some(s) = self.subs.get_mut(sink)
                {
                    s.confirmed.get_or_insert(self.now);
                    return;
                }
                let Token::Call { client, call } = to else {
                    return;
                };
                let result = match answer {
                    Answer::Reply(r) => {
                        self.on_ack(slot, instance, r);
                        Ok(r)
                    }
                    Answer::Done => Err("no reply".into()),
                    Answer::Failed(why) => Err(why.to_string()),
                };
                self.reply_client(client, call, result);
            }
            ChildEffect::Forward { to, msg } => {
                let Some(name) = self.instances.get(&instance).map(|i| i.name.to_string()) else {
                    return;
                };
                let body = match msg.body {
                    Body::Typed(m) => RouteBody::User(postcard::to_stdvec(&m).unwrap_or_default()),
                    Body::Routed(b) => b,
                };
                let route = Route {
                    name,
                    hops: msg.hops,
                    body,
                };
                if !self.send_net(
                    slot,
                    &to,
                    NetMsg::Route {
                        route,
                        reply: msg.reply.clone(),
                    },
                ) && let Some(Token::Call { client, call }) = msg.reply
                {
                    self.reply_client(client, call, Err("new owner unreachable".into()));
                }
            }
            ChildEffect::SetTimer { after, generation } => {
                self.log(|| format!("#{instance} sets timer {generation} in {after:?}"));
                self.at(
                    self.now + after.as_micros() as Time,
                    Ev::Child {
                        slot,
                        inc,
                        instance,
                        input: ChildInput::Timer { generation },
                    },
                );
            }
            ChildEffect::Deliver { seq, event, to } => {
                for sub in &to {
                    let running = self
                        .names
                        .iter()
                        .position(|n| n == connector::short(&sub.node.name))
                        .and_then(|slot| self.node(slot, sub.node.incarnation))
                        .is_some();
                    if let Some(s) = self.subs.get_mut(&sub.sink)
                        && running
                    {
                        s.received += 1;
                    }
                }
                if let Some(inst) = self.instances.get(&instance) {
                    let name = inst.name.clone();
                    let node = self.names.get(slot).cloned().unwrap_or_default();
                    self.log(|| {
                        format!(
                            "{name}#{instance} on {node} emits event {seq} ({}, {})",
                            event.id, event.len
                        )
                    });
                    self.check.event(&name, instance, seq, event);
                }
            }
            ChildEffect::Replicate { to, replica } => {
                self.send_net(slot, &to, NetMsg::Member(Wire::Replicate(replica)));
            }
            ChildEffect::Report(report) => {
                let Some(name) = self.instances.get(&instance).map(|i| i.name.clone()) else {
                    return;
                };
                let d = self.rng.range(1, 60);
                self.fifo_at(
                    chan((3 << 32) | instance, slot as u64),
                    d,
                    Ev::Member {
                        slot,
                        inc,
                        input: Input::Child { name, report },
                    },
                );
            }
            ChildEffect::Paused(_) | ChildEffect::Forwarded(_) | ChildEffect::HandedOff { .. } => {}
            ChildEffect::Stop => {
                if let Some(inst) = self.instances.get_mut(&instance) {
                    inst.alive = false;
                    let name = inst.name.clone();
                    if let Some(node) = self.node_mut(slot, inc)
                        && node.actors.get(&name) == Some(&instance)
                    {
                        node.actors.remove(&name);
                    }
                }
            }
            ChildEffect::StopAfter(d) => {
                self.at(
                    self.now + d.as_micros() as Time,
                    Ev::Child {
                        slot,
                        inc,
                        instance,
                        input: ChildInput::Cmd(ChildCmd::Stop { report: false }),
                    },
                );
            }
        }
    }

    // === the router and the handle ===

    /// A backup's answer, for the child it is about (serving or arriving).
    fn answer_child(&mut self, slot: usize, inc: u64, name: &str, answer: ReplicaAnswer) {
        let Some(instance) = self
            .node(slot, inc)
            .and_then(|n| n.routes.get(name).map(|(i, _)| *i))
        else {
            return;
        };
        let d = self.rng.range(1, 60);
        self.fifo_at(
            chan((4 << 32) | slot as u64, instance),
            d,
            Ev::Child {
                slot,
                inc,
                instance,
                input: ChildInput::Replica(answer),
            },
        );
    }

    /// A message for a child of node `slot` (run `inc`), delivered in order on the node's
    /// `lane` towards that child after a random delay.
    fn message_to_child(
        &mut self,
        lane: u64,
        slot: usize,
        inc: u64,
        instance: u64,
        envelope: Envelope<LogMsg, Token>,
    ) {
        let d = self.rng.range(1, 60);
        self.fifo_at(
            chan((lane << 32) | slot as u64, instance),
            d,
            Ev::Child {
                slot,
                inc,
                instance,
                input: ChildInput::Message(envelope),
            },
        );
    }

    fn route(&mut self, slot: usize, inc: u64, route: Route, reply: Option<Token>) {
        let Some(node) = self.node(slot, inc) else {
            return;
        };
        let target = node.routes.get(route.name.as_str()).map(|(i, _)| *i);
        if let Some(instance) = target
            && self.instances.get(&instance).is_some_and(|i| i.alive)
        {
            let envelope = Envelope {
                body: Body::Routed(route.body),
                hops: route.hops,
                reply,
            };
            self.message_to_child(4, slot, inc, instance, envelope);
            return;
        }
        let decision = node.core.view().forward_to(&route.name, route.hops);
        match decision {
            Ok(owner) => {
                let fwd = Route {
                    name: route.name,
                    hops: route.hops + 1,
                    body: route.body,
                };
                if !self.send_net(
                    slot,
                    &owner,
                    NetMsg::Route {
                        route: fwd,
                        reply: reply.clone(),
                    },
                ) && let Some(Token::Call { client, call }) = reply
                {
                    self.reply_client(client, call, Err("owner unreachable".into()));
                }
            }
            Err(answer) => {
                if let Some(Token::Call { client, call }) = reply {
                    let why = match answer {
                        RouteReply::NotFound => "not found".to_string(),
                        RouteReply::Unavailable(u) => u.to_string(),
                        RouteReply::Ok(_) => "ok".into(),
                    };
                    self.reply_client(client, call, Err(why));
                }
            }
        }
    }

    /// What `Horde::call` does on node `slot`.
    #[allow(clippy::too_many_arguments)]
    fn handle_call(
        &mut self,
        slot: usize,
        inc: u64,
        client: usize,
        call: u64,
        name: String,
        id: u64,
        deadline: Time,
    ) {
        let Some(node) = self.node(slot, inc) else {
            return;
        };
        let msg = LogMsg::Input { id };
        let token = Token::Call { client, call };
        let Some(entry) = node.core.registry().get(&name).cloned() else {
            return self.reply_client(client, call, Err("not found".into()));
        };
        if *entry.owner == node.id {
            let local = node
                .routes
                .get(name.as_str())
                .filter(|(_, pending)| !pending)
                .map(|(i, _)| *i)
                .filter(|i| self.instances.get(i).is_some_and(|x| x.alive));
            match local {
                Some(instance) => {
                    let envelope = Envelope {
                        body: Body::Typed(msg),
                        hops: 0,
                        reply: Some(token),
                    };
                    self.message_to_child(5, slot, inc, instance, envelope);
                }
                None => {
                    let route = Route {
                        name,
                        hops: 0,
                        body: RouteBody::User(postcard::to_stdvec(&msg).unwrap_or_default()),
                    };
                    self.route(slot, inc, route, Some(token));
                }
            }
            return;
        }
        if node.core.view().is_peer(&entry.owner) {
            let route = Route {
                name,
                hops: 0,
                body: RouteBody::User(postcard::to_stdvec(&msg).unwrap_or_default()),
            };
            self.send_net(
                slot,
                &entry.owner,
                NetMsg::Route {
                    route,
                    reply: Some(token),
                },
            );
            return;
        }
        // The owner is down and nobody restarted it yet: look again shortly.
        if self.now + 10 * MS >= deadline {
            return self.reply_client(client, call, Err("owner down, not restarted".into()));
        }
        self.at(
            self.now + 10 * MS,
            Ev::Call {
                slot,
                inc,
                client,
                call,
                name,
                id,
                deadline,
            },
        );
    }

    // === clients ===

    /// Adds `count` clients that write to the started names until [`World::stop_clients`].
    pub(crate) fn add_clients(&mut self, count: usize) {
        for _ in 0..count {
            let c = self.clients.len();
            self.clients.push(Client {
                next_id: (c as u64 + 1) << 32,
                ..Client::default()
            });
            let d = self.rng.range(0, 100 * MS);
            self.at(self.now + d, Ev::ClientNext { client: c });
        }
    }

    /// Clients stop starting new inputs (those in flight are retried until answered).
    pub(crate) fn stop_clients(&mut self) {
        for c in &mut self.clients {
            c.stopped = true;
        }
    }

    /// Inputs still unanswered.
    pub(crate) fn inflight(&self) -> Vec<(String, u64)> {
        self.clients
            .iter()
            .filter_map(|c| c.inflight.as_ref().map(|i| (i.name.clone(), i.id)))
            .collect()
    }

    /// Inputs answered.
    pub(crate) fn acked_count(&self) -> u64 {
        self.clients.iter().map(|c| c.acked).sum()
    }

    fn client_next(&mut self, client: usize) {
        if client >= self.clients.len() || self.client_resend_if_due(client) {
            return;
        }
        let c = &self.clients[client];
        if c.inflight.is_some() {
            return;
        }
        if c.stopped || self.live_names.is_empty() {
            if !c.stopped {
                self.at(self.now + 100 * MS, Ev::ClientNext { client });
            }
            return;
        }
        // Now and then a name whose stop was asked: it must answer "not found" once the stop
        // was confirmed, never an input (S6, checked on every answer).
        let stopped: Vec<String> = if self.rng.chance(0.03) {
            self.stop_asked.iter().cloned().collect()
        } else {
            Vec::new()
        };
        let name = match self
            .rng
            .pick(&stopped)
            .or_else(|| self.rng.pick(&self.live_names))
        {
            Some(n) => n.clone(),
            None => return,
        };
        // Now and then the client subscribes to the name through a node (a WebSocket): the
        // node's sink gets its events, wherever the child moves.
        if self.rng.chance(0.02) {
            let slots = self.up_slots();
            if let Some(slot) = self.rng.pick(&slots).copied() {
                self.subscribe(slot, name.clone());
            }
        }
        let c = &mut self.clients[client];
        c.next_id += 1;
        let id = c.next_id;
        c.inflight = Some(Inflight {
            call: 0,
            name,
            id,
            via: None,
        });
        self.client_send(client);
    }

    /// A subscription to `name` through node `slot`.
    fn subscribe(&mut self, slot: usize, name: String) {
        let Some(node) = self.nodes.get(slot).and_then(Option::as_ref) else {
            return;
        };
        let (id, inc) = (node.id.clone(), node.id.incarnation);
        let sink = self.subs.len() as u64 + 1;
        self.log(|| format!("{id} subscribes sink {sink} to {name}"));
        self.subs.insert(
            sink,
            Sub {
                name: name.clone(),
                slot,
                node: id.clone(),
                confirmed: None,
                received: 0,
            },
        );
        let route = Route {
            name,
            hops: 0,
            body: RouteBody::Subscribe(horde::protocol::Subscriber { node: id, sink }),
        };
        self.route(slot, inc, route, Some(Token::Sub(sink)));
    }

    fn client_send(&mut self, client: usize) {
        let slots = self.up_slots();
        let slot = self.rng.pick(&slots).copied();
        let call = self.rng.next_u64();
        let Some(inf) = self.clients[client].inflight.as_mut() else {
            return;
        };
        inf.call = call;
        let (name, id) = (inf.name.clone(), inf.id);
        let timeout = self.config.client_timeout;
        self.at(self.now + timeout, Ev::ClientTimeout { client, call });
        let Some(slot) = slot else {
            return;
        };
        let inc = self.nodes[slot]
            .as_ref()
            .map(|n| n.id.incarnation)
            .unwrap_or(0);
        if let Some(inf) = self.clients[client].inflight.as_mut() {
            inf.via = Some((slot, inc));
        }
        let d = self.rng.range(100, 400);
        let deadline = self.now + timeout;
        self.at(
            self.now + d,
            Ev::Call {
                slot,
                inc,
                client,
                call,
                name,
                id,
                deadline,
            },
        );
    }

    fn reply_client(&mut self, client: usize, call: u64, result: Result<LogReply, String>) {
        let d = self.rng.range(100, 400);
        self.at(
            self.now + d,
            Ev::ClientReply {
                client,
                call,
                result,
            },
        );
    }

    fn client_result(&mut self, client: usize, call: u64, result: Result<LogReply, String>) {
        let Some(c) = self.clients.get_mut(client) else {
            return;
        };
        let Some(inf) = c.inflight.as_ref().filter(|i| i.call == call) else {
            return;
        };
        match result {
            Ok(r) => {
                let (name, id) = (inf.name.clone(), inf.id);
                c.inflight = None;
                c.acked += 1;
                debug_assert_eq!(r.id, id);
                self.check
                    .client_acked(&name, id, (!r.dup).then_some(r.len));
                let think = self.rng.range(5 * MS, 150 * MS);
                self.at(self.now + think, Ev::ClientNext { client });
            }
            Err(why) if why == "not found" && self.stop_asked.contains(&inf.name) => {
                // Its name was removed: nothing will answer it (not an input to keep).
                c.inflight = None;
                let think = self.rng.range(5 * MS, 150 * MS);
                self.at(self.now + think, Ev::ClientNext { client });
            }
            Err(_) => {
                // Same id, to a node picked again, after a pause: `ClientNext` resends an
                // input whose call number was cleared.
                if let Some(inf) = c.inflight.as_mut() {
                    inf.call = 0;
                }
                let pause = self.rng.range(20 * MS, 80 * MS);
                self.at(self.now + pause, Ev::ClientNext { client });
            }
        }
    }

    // === checks ===

    fn on_ack(&mut self, slot: usize, instance: u64, r: LogReply) {
        let Some(inst) = self.instances.get(&instance) else {
            return;
        };
        let (name, epoch) = (inst.name.clone(), inst.epoch);
        let node = self.names.get(slot).cloned().unwrap_or_default();
        let now = self.now;
        self.log(|| {
            format!(
                "{name}#{instance} on {node} (epoch {epoch}) answers input {}",
                r.id
            )
        });
        if self.removed.get(name.as_ref()).is_some_and(|at| *at < now) {
            self.check.violate(format!(
                "S6: `{name}`: copy #{instance} on {node} (epoch {epoch}) answered input {} after the name was removed",
                r.id
            ));
        }
        let inst_ref = &self.instances[&instance];
        let clock_stopped = self.clock_stopped.contains(&(slot, inst_ref.inc));
        // S1, in overlapping time: once a newer copy runs, an older one may still answer an
        // input it applied before the newer copy's state was taken (a move's source, its
        // backup's acknowledgement arriving after the handover), never one the newer copy
        // lacks: that is two copies answering at once, whether or not the newer one has
        // answered anything yet. A newer copy still pending (spawned for a move not yet
        // handed over, which its source may still abort) does not run: its router does not
        // serve it.
        if !clock_stopped {
            // The copies that run are the ones the routers serve (one per node at most).
            let newer = self.nodes.iter().flatten().find_map(|n| {
                let (i, pending) = *n.routes.get(&name)?;
                let x = self.instances.get(&i)?;
                (i != instance
                    && !pending
                    && x.alive
                    && x.inc == n.id.incarnation
                    && x.epoch > epoch
                    && !x.core.has(r.id))
                .then_some((i, x))
            });
            if let Some((i, x)) = newer {
                let other = self.names.get(x.slot).cloned().unwrap_or_default();
                self.check.violate(format!(
                    "S1: `{name}`: copy #{instance} on {node} (epoch {epoch}) answered input {} while copy #{i} on {other} (epoch {}) already ran without it",
                    r.id, x.epoch
                ));
            }
        }
        if let Err(v) = self.check.ack(
            now,
            &name,
            instance,
            &node,
            epoch,
            r.id,
            &|id| inst_ref.core.has(id),
            clock_stopped,
        ) {
            self.check.violate(v);
        }
    }

    /// S3 (no epoch goes back in a replica) and S6 (a name whose stop was confirmed is never
    /// live again in any replica), after every input of a member.
    fn check_registry(&mut self, slot: usize, inc: u64) {
        let now = self.now;
        let Some(node) = self.nodes[slot]
            .as_mut()
            .filter(|n| n.id.incarnation == inc)
        else {
            return;
        };
        let mut bad = Vec::new();
        // A member cut off while a name was stopped may still hold it live (it never heard);
        // one that held its tombstone must never hold it live again.
        let registry = node.core.registry();
        for (name, at) in &self.removed {
            let key = name.as_str();
            match registry.get_any(key) {
                Some(e) if e.removed && !node.seen_removed.contains(key) => {
                    node.seen_removed.insert(Arc::from(key));
                }
                Some(e) if e.removed => {}
                Some(_) if *at < now && node.seen_removed.contains(key) => bad.push(format!(
                    "S6: `{name}` was removed but is live again in the registry of {}",
                    node.id
                )),
                _ => {}
            }
        }
        // A collected tombstone leaves no record: the name starts over.
        let registry = node.core.registry();
        node.epochs
            .retain(|name, _| registry.get_any(name).is_some());
        for (name, e) in node.core.registry().iter() {
            let seen = node.epochs.entry(name.clone()).or_insert(0);
            if e.epoch < *seen {
                bad.push(format!(
                    "S3: {} saw the epoch of `{name}` go back from {} to {}",
                    node.id, *seen, e.epoch
                ));
            }
            *seen = (*seen).max(e.epoch);
        }
        for v in bad {
            self.check.violate(v);
        }
    }

    /// Schedules the steps of a schedule at their times.
    pub(crate) fn plan(&mut self, steps: &[(Time, usize)]) {
        for (t, i) in steps {
            self.at(*t, Ev::Step(*i));
        }
    }

    fn step(&mut self, i: usize) {
        crate::schedule::run_step(self, i);
    }
}

impl World {
    /// Resends an input whose last attempt failed (its call number was cleared).
    pub(crate) fn client_resend_if_due(&mut self, client: usize) -> bool {
        let due = self.clients[client]
            .inflight
            .as_ref()
            .is_some_and(|i| i.call == 0);
        if due {
            self.client_send(client);
        }
        due
    }
}

/// Periodic messages that say nothing new (left out of the trace).
fn chatty(w: &Wire) -> bool {
    match w {
        Wire::Lease { votes, .. } => votes.is_empty(),
        Wire::LeaseGrant { .. } | Wire::Digest { .. } | Wire::DeltaAck { .. } => true,
        _ => false,
    }
}

/// A short description of a member message for the trace.
fn describe(w: &Wire) -> String {
    match w {
        Wire::Hello(h) => format!("Hello({}, {})", h.status, h.seq),
        Wire::Reintroduce(h) => format!("Reintroduce({}, {})", h.status, h.seq),
        Wire::Sync { entries, done, .. } => {
            format!("Sync({} entries, done: {done})", entries.len())
        }
        Wire::Deltas { batch, entries, .. } => format!(
            "Deltas#{batch}({})",
            entries
                .iter()
                .map(|e| format!("{}@{}{}", e.name, e.epoch, if e.removed { "†" } else { "" }))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Wire::DeltaAck { batch, .. } => format!("DeltaAck#{batch}"),
        Wire::FetchReplicas { id, names, .. } => format!("FetchReplicas#{id}({})", names.join(" ")),
        Wire::Handover { items, .. } | Wire::ReplicasFound { items, .. } => format!(
            "{}({})",
            w.kind(),
            items
                .iter()
                .map(|r| format!("{}@{}/{}", r.name, r.epoch, r.seq))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Wire::Collect { entries, .. } | Wire::Entries { entries, .. } => format!(
            "{}({})",
            w.kind(),
            entries
                .iter()
                .map(|e| format!("{}@{}{}", e.name, e.epoch, if e.removed { "†" } else { "" }))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Wire::Offer { id, items, .. } => format!(
            "Offer#{id}({})",
            items
                .iter()
                .map(|i| format!("{}@{}", i.name, i.epoch))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Wire::OfferReply {
            id,
            accepted,
            refused,
            ..
        } => format!("OfferReply#{id}(+{} -{})", accepted.len(), refused.len()),
        Wire::Abort { names } => format!("Abort({})", names.len()),
        Wire::Replicate(r) => format!("Replicate({}@{}/{})", r.name, r.epoch, r.seq),
        Wire::ReplicaAck {
            name, epoch, seq, ..
        } => format!("ReplicaAck({name}@{epoch}/{seq})"),
        Wire::ReplicaNack {
            name, epoch, why, ..
        } => format!("ReplicaNack({name}@{epoch} {why:?})"),
        Wire::Lease { round, votes, .. } => format!("Lease#{round}(votes {votes:?})"),
        other => other.kind().to_string(),
    }
}

/// `wire` as a member speaking `speaks` reads it: what a newer protocol appended after a
/// message is invisible to a reader of an older one.
fn read_as(mut wire: Wire, speaks: Protocols) -> Wire {
    if speaks.max >= horde::protocol::PROTOCOL {
        return wire;
    }
    match &mut wire {
        Wire::Hello(h) | Wire::Reintroduce(h) => h.max_protocol = None,
        Wire::Offer { frozen_us, .. } => frozen_us.clear(),
        Wire::ReplicasFound { members, .. } => *members = None,
        _ => {}
    }
    wire
}
