//! The pure core of a horde member: every decision a node makes (membership, registry sync
//! and repair, placement of new children, moves in and out, drains, failover of a dead node's
//! children, conflicts after a partition) as a state machine with no I/O, no tasks, no locks
//! and no clock of its own.
//!
//! [`Core::on`] takes the time now and one [`Input`] (a peer's message, a node event, a local
//! request, a report from a hosted child, a tick) and returns the [`Effect`]s to carry out
//! (messages to send, children to spawn, commands to children, replies, events). The member
//! actor is a shell that runs effects; the deterministic simulator runs the same core with
//! virtual time and a simulated network. Children have a core of their own, [`child_core`], run by
//! the hosted actor (or the simulator) and talking to this one through [`ChildCmd`] and
//! [`ChildReport`].
//!
//! # Layout
//! - `input`: what goes in: inputs, the handle's requests, children's reports.
//! - `effect`: what comes out: effects, replies, commands to children.
//! - `published`: the read side it publishes ([`CoreView`]).
//! - this file: the state and the dispatch.
//! - `quorum`: leases, votes, the quorum set.
//! - `replicas`: backups of this member's children and replicas kept for others (handed over
//!   when it drains).
//! - `repair`: anti-entropy digests of the registry.
//! - `sync`: hellos, membership, registry sync, deltas and their acknowledgements, readiness.
//! - `moves`: waves of moves out (drain, rebalance) and offers in.
//! - `failover`: restarts of a dead node's children from the newest replica, crashes.
//! - `tombstones`: garbage collection of removed names' tombstones (the rule is there).
//! - [`planted`]: each safety rule switched off on demand (feature `planted`: the
//!   simulator's proof that it catches the bug the rule prevents).
//! - [`child_core`]: one hosted child's core (live, frozen, forwarding), apart from the
//!   application's contract ([`crate::child`]) and the actor that runs it (`hosted`).
//!
//! `T` is the reply token of a request: a oneshot or a ractor reply port in production, a
//! client id in the simulator. The core never looks inside it.

pub mod child_core;
mod effect;
mod failover;
mod input;
mod moves;
pub mod planted;
mod published;
mod quorum;
mod repair;
mod replicas;
mod sync;
mod tombstones;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use discovery::{DownReason, NodeId};
use tracing::info;

use crate::child::RestartPolicy;
use crate::membership::Incompatible;
use crate::membership::{MemberInfo, MemberStatus, Members, Version};
use crate::placement::{Candidate, Placement};
use crate::protocol::{
    MAX_HOPS, MemberWire, Protocols, RouteReply, StartRefusal, Subscriber, Unavailable, Wire,
};
use crate::registry::{Entry, Merged, Registry};
use crate::stats::{Counters, HordeEvent};

/// The old path of [`child_core`], kept so `horde::core::child::…` still resolves.
#[doc(hidden)]
pub use self::child_core as child;
pub use self::effect::{ChildCmd, ConflictReport, Effect, Init, Reply, SpawnError};
pub use self::input::{ChildReport, Frozen, Input, Request};
pub use self::moves::{DrainReport, MoveConfig, RebalanceConfig, plan_waves};
pub use self::published::CoreView;

/// How often the shell should feed [`Input::Tick`].
pub const TICK: Duration = Duration::from_millis(50);

/// What a core is configured with (never changes).
#[derive(Clone)]
pub struct CoreConfig {
    /// Become alive after this long even if no peer said hello.
    pub join_timeout: Duration,
    /// A child crashing more than this often within `restart_window` is removed.
    pub max_restarts: u32,
    /// See `max_restarts`.
    pub restart_window: Duration,
    /// What a crash of the child type does.
    pub restart_policy: RestartPolicy,
    /// Move waves.
    pub moves: MoveConfig,
    /// Rebalance when a member joins (off when `None`).
    pub rebalance: Option<RebalanceConfig>,
    /// Where children go.
    pub placement: Arc<dyn Placement>,
    /// How long a quorum lease runs from its request (a dead member's children restart once
    /// its lease surely ran out: this plus a drift margin after its last grant).
    pub lease: Duration,
    /// State schemas this build reads.
    pub reads: Vec<u16>,
    /// State schemas this build writes.
    pub writes: Vec<u16>,
    /// The most bytes one message to another member may take (see
    /// [`crate::protocol::DEFAULT_MAX_MESSAGE_BYTES`]): batches are cut to fit, and an item
    /// that alone exceeds it is refused with an error rather than sent.
    pub max_message_bytes: usize,
    /// At most this many children start here (moves and failover may exceed it); `None`:
    /// no limit.
    pub max_children: Option<usize>,
    /// A tombstone every member acknowledged is collected once it is this old (see
    /// `tombstones`).
    pub tombstone_grace: Duration,
    /// The protocol versions this member speaks ([`Protocols::THIS`]; the simulator runs
    /// members of the previous release's range beside current ones).
    pub protocols: Protocols,
}

impl std::fmt::Debug for CoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoreConfig")
            .field("join_timeout", &self.join_timeout)
            .field("moves", &self.moves)
            .field("rebalance", &self.rebalance)
            .finish_non_exhaustive()
    }
}

/// Every member including this node, as placement sees them.
fn candidates(
    me: &NodeId,
    version: &Version,
    reads: &[u16],
    status: MemberStatus,
    members: &Members,
    registry: &Registry,
    wants_load: bool,
) -> Vec<Candidate> {
    // Counted as the registry changes: reading a load costs nothing per child.
    let load = |n: &NodeId| {
        if wants_load {
            registry.load_of(&n.name)
        } else {
            0
        }
    };
    let mut out = vec![Candidate {
        node: me.clone(),
        version: version.clone(),
        status,
        load: load(me),
        reads: reads.to_vec(),
    }];
    for m in members.iter() {
        out.push(Candidate {
            node: m.node.clone(),
            version: m.version.clone(),
            status: m.status,
            load: load(&m.node),
            reads: m.reads.clone(),
        });
    }
    out
}

/// A connected peer as the core sees it.
#[derive(Debug)]
struct Link {
    id: NodeId,
    /// Its member actor was found: messages can be sent.
    ready: bool,
    /// The shell gave up finding its member actor.
    unreachable: bool,
    hello_sent: bool,
    sync_sent: bool,
    /// The link was replaced (same run): messages in flight on the old one were lost.
    relinked: bool,
    /// Its member speaks no protocol version this cluster speaks: it is not a member, and
    /// nothing waits for it (readiness, introductions).
    refused: bool,
}

/// A child hosted here and serving.
#[derive(Debug, Clone)]
struct Local {
    /// The registry epoch it serves at.
    epoch: u64,
}

/// Why a spawn was asked for; decides what its outcome does.
#[derive(Debug)]
enum SpawnFor<T> {
    /// A new child placed here.
    Start {
        reply: T,
        spec: Arc<[u8]>,
        epoch: u64,
    },
    /// A child arriving in a move.
    Offer(moves::Arrival),
    /// A dead node's child restarting here.
    Restart {
        entry: Entry,
        epoch: u64,
        from_replica: bool,
    },
    /// A crashed child restarting in place.
    CrashRestart { entry: Entry },
}

/// Registry changes sent in one batch and who has not acknowledged them yet.
#[derive(Debug)]
struct AckWait<T> {
    pending: BTreeSet<String>,
    /// Some member that should hold the change may not: it was not connected when the batch
    /// went out, went down before acknowledging, or the wait timed out.
    lost: bool,
    waiters: Vec<(T, Reply)>,
    deadline: Instant,
}

/// The core of one horde member; see the module docs.
pub struct Core<T> {
    config: CoreConfig,
    me: NodeId,
    version: Version,
    status: MemberStatus,
    started: Instant,
    counters: Arc<Counters>,
    /// The registry replica.
    registry: Registry,
    /// Other members.
    members: Members,
    /// Earlier runs of a name that a newer run replaced (whatever their incarnation numbers:
    /// a restarted node's clock may be behind its previous run's).
    superseded: BTreeSet<NodeId>,
    /// Member runs that left and were forgotten here, and when: a member that missed their
    /// farewell may still list them (as dead) and must not bring them back. Kept a while,
    /// with what a sync tells a peer of them ([`protocol::Feature::DepartedInSync`]).
    departed: BTreeMap<NodeId, (Instant, MemberWire)>,
    /// Connected peers by node name.
    links: BTreeMap<String, Link>,
    /// Members that said hello (routing goes only to them), by node name.
    peers: BTreeMap<String, NodeId>,
    /// Hellos received before their link was ready (the two race).
    early_hellos: BTreeMap<String, crate::protocol::Hello>,
    /// Newest hello number seen per member run.
    hello_seen: BTreeMap<NodeId, u64>,
    /// Numbers this node's hellos.
    hello_seq: u64,
    /// Peers whose full registry this node has received (readiness).
    synced: BTreeSet<String>,
    /// When a joining member last said hello again to the peers it still waits for (a hello
    /// or a sync lost with a replaced link is asked for again, see `reintroduce`).
    last_reintroduce: Instant,
    /// Discovery found nobody to wait for.
    alone: bool,
    /// Children hosted and serving here.
    local: BTreeMap<Arc<str>, Local>,
    /// The backup each local or arriving child was last told.
    backups: BTreeMap<Arc<str>, Option<(NodeId, u16)>>,
    /// Children that left a draining backup without sending their state again, by that
    /// backup: if it dies rather than leaving, they send it (see `backups_peer_down`).
    lazy_from: BTreeMap<Arc<str>, NodeId>,
    /// Children whose backup is still good but placement now prefers another (a member
    /// joined): they switch a few per tick (`pace_backups`), so a join does not make every
    /// such child send its whole state in the same instant.
    deferred_backups: BTreeSet<Arc<str>>,
    /// When backups were last recomputed for a membership change (replicas are kept at least
    /// this long after it, while owners' paced switches run).
    backups_at: Option<Instant>,
    /// Spawns asked for and not answered yet.
    spawning: BTreeMap<Arc<str>, SpawnFor<T>>,
    /// Registry changes to broadcast at the end of this input.
    outbox: Vec<(Arc<str>, Entry)>,
    /// Starts waiting for the next flush's acknowledgements.
    next_flush_waiters: Vec<(T, Reply)>,
    /// Last delta batch number.
    batch: u64,
    /// Batches waiting for acknowledgements.
    ack_waits: BTreeMap<u64, AckWait<T>>,
    /// Recent crashes per child (restart limit).
    crashes: BTreeMap<Arc<str>, VecDeque<Instant>>,
    /// Losers of a conflict whose last state is on the way (for the conflict callback).
    conflict_waits: BTreeMap<Arc<str>, NodeId>,
    /// Leases and votes.
    quorum: quorum::Quorum,
    /// Replicas held for other members' children.
    replicas: replicas::Replicas,
    /// Failover: replica fetches, restarts.
    failover: failover::Failover,
    /// Moves in and out.
    moves: moves::Moves<T>,
    /// Anti-entropy of the registry.
    repair: repair::Repair,
    /// Tombstones and their collection.
    tombs: tombstones::Tombstones,
    /// Correlation ids of requests to other members (offers, fetches) and tickets.
    next_id: u64,
    last_sweep: Instant,
    /// Membership changed: recompute the children's backups.
    backups_stale: bool,
    /// Tell every child its backup, changed or not (a backup refused replicas).
    force_backups: bool,
    /// Backups that refused replicas from this node (they suspect it), and when.
    refusing: BTreeMap<NodeId, Instant>,
    /// The highest protocol version every member speaks, as last worked out (see
    /// `sync::protocol_in_use`): what this member sends.
    in_use: u16,
    /// This member found it cannot join the cluster (a member speaks no version it speaks): it
    /// never becomes alive, and the node refuses at the door.
    refusal: Option<Incompatible>,
    /// Messages from other members that did not decode (counted; while joining, many and no
    /// hello that does is a refusal).
    undecodable: u64,
    /// Members refused for their protocol, each logged once.
    refused: BTreeSet<NodeId>,
    /// Something the read side sees changed since the last [`Core::take_view`].
    dirty: bool,
}

impl<T> std::fmt::Debug for Core<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("me", &self.me)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// Periodic sweeps (orphans nobody restarted, dead members nobody references) run this often.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// A backup that refused this node's replicas is avoided this long.
const REFUSAL_MEMORY: Duration = Duration::from_millis(500);

impl<T> Core<T> {
    /// A joining member.
    pub fn new(
        me: NodeId,
        version: &str,
        config: CoreConfig,
        counters: Arc<Counters>,
        now: Instant,
    ) -> Self {
        let lease = config.lease;
        let in_use = config.protocols.max;
        Self {
            config,
            me,
            version: Version::parse(version),
            status: MemberStatus::Joining,
            started: now,
            counters,
            registry: Registry::new(),
            members: Members::new(),
            superseded: BTreeSet::new(),
            departed: BTreeMap::new(),
            links: BTreeMap::new(),
            peers: BTreeMap::new(),
            early_hellos: BTreeMap::new(),
            hello_seen: BTreeMap::new(),
            hello_seq: 0,
            synced: BTreeSet::new(),
            last_reintroduce: now,
            alone: false,
            local: BTreeMap::new(),
            backups: BTreeMap::new(),
            lazy_from: BTreeMap::new(),
            deferred_backups: BTreeSet::new(),
            backups_at: None,
            spawning: BTreeMap::new(),
            outbox: Vec::new(),
            next_flush_waiters: Vec::new(),
            batch: 0,
            ack_waits: BTreeMap::new(),
            crashes: BTreeMap::new(),
            conflict_waits: BTreeMap::new(),
            quorum: quorum::Quorum::new(lease),
            replicas: replicas::Replicas::default(),
            failover: failover::Failover::default(),
            moves: moves::Moves::default(),
            repair: repair::Repair::default(),
            tombs: tombstones::Tombstones::default(),
            next_id: 0,
            last_sweep: now,
            backups_stale: false,
            force_backups: false,
            refusing: BTreeMap::new(),
            in_use,
            refusal: None,
            undecodable: 0,
            refused: BTreeSet::new(),
            dirty: true,
        }
    }

    /// This node.
    pub fn me(&self) -> &NodeId {
        &self.me
    }

    /// This member's status.
    pub fn status(&self) -> MemberStatus {
        self.status
    }

    /// The registry replica.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Names of the children serving here.
    pub fn local_names(&self) -> impl Iterator<Item = &Arc<str>> {
        self.local.keys()
    }

    /// The epoch a child serving here serves at.
    pub fn local_epoch(&self, name: &str) -> Option<u64> {
        self.local.get(name).map(|l| l.epoch)
    }

    /// True while this member holds its quorum lease.
    pub fn lease_valid(&self, now: Instant) -> bool {
        self.quorum.valid(now)
    }

    /// A copy of what readers see, when it changed since the last call.
    pub fn take_view(&mut self) -> Option<CoreView> {
        if !std::mem::take(&mut self.dirty) {
            return None;
        }
        Some(self.view())
    }

    /// A copy of what readers see.
    pub fn view(&self) -> CoreView {
        CoreView {
            me: self.me.clone(),
            version: self.version.clone(),
            status: self.status,
            registry: self.registry.clone(),
            members: self.members.clone(),
            peers: self.peers.clone(),
            lease_until: self.quorum.until(),
            reads: self.config.reads.clone(),
            protocols: self.config.protocols,
            protocol_in_use: self.in_use,
            refusal: self.refusal.clone(),
        }
    }

    /// Handles one input; returns what to do, in order.
    pub fn on(&mut self, now: Instant, input: Input<T>) -> Vec<Effect<T>> {
        let mut out = Vec::new();
        self.note_round_voters();
        match input {
            Input::NodeUp(id) => {
                self.on_up(id);
                self.backups_stale = true;
            }
            Input::PeerReady(id) => self.on_peer_ready(now, &mut out, id),
            Input::PeerUnreachable(id) => {
                if let Some(l) = self.links.get_mut(&id.name).filter(|l| l.id == id) {
                    l.unreachable = true;
                }
                self.check_ready(now, &mut out);
            }
            Input::NodeDown { id, reason } => {
                tracing::debug!(node = %id, ?reason, "member node down");
                self.on_down(now, &mut out, &id);
            }
            Input::Peer(wire) => self.on_wire(now, &mut out, wire),
            Input::ForeignHello(head) => self.on_foreign_hello(now, &mut out, head),
            Input::Undecodable => self.on_undecodable(now, &mut out),
            Input::Request(request) => self.on_request(now, &mut out, request),
            Input::Spawned { name, result } => self.on_spawned(now, &mut out, name, result),
            Input::Child { name, report } => self.on_child(now, &mut out, name, report),
            Input::Tick => self.on_tick(now, &mut out),
        }
        if std::mem::take(&mut self.backups_stale) {
            let force = std::mem::take(&mut self.force_backups);
            self.backups_at = Some(now);
            self.assign_backups(&mut out, force);
        }
        if !self.outbox.is_empty() || !self.next_flush_waiters.is_empty() {
            self.flush(now, &mut out);
        }
        self.note_protocol_in_use();
        let gauges = &self.counters;
        let held = self.replicas.len() as u64;
        gauges
            .replicas_held
            .store(held, std::sync::atomic::Ordering::Relaxed);
        let tombs = self.tombs.len() as u64;
        gauges
            .tombstones
            .store(tombs, std::sync::atomic::Ordering::Relaxed);
        out
    }

    fn on_request(&mut self, now: Instant, out: &mut Vec<Effect<T>>, request: Request<T>) {
        match request {
            Request::Start { name, spec, reply } => self.start_here(out, name, spec, reply),
            Request::Stop { name, reply } => {
                // Only with the lease: cut off from the majority, the majority may be
                // restarting it elsewhere, and a removal here would not hold.
                let found = self.local.contains_key(name.as_str()) && self.quorum.valid(now);
                if found {
                    let key: Arc<str> = Arc::from(name.as_str());
                    out.push(Effect::ToChild {
                        name: key,
                        cmd: ChildCmd::Stop { report: false },
                    });
                    self.remove_name(out, &name);
                    // Answered once every member acknowledged the tombstone (as a start).
                    self.next_flush_waiters.push((reply, Reply::Stopped(true)));
                } else {
                    out.push(Effect::Reply {
                        to: reply,
                        reply: Reply::Stopped(false),
                    });
                }
            }
            Request::Drain {
                deadline,
                leave,
                reply,
            } => self.start_drain(now, out, deadline, leave, reply),
            Request::NoPeersExpected => {
                self.alone = true;
                self.check_ready(now, out);
            }
        }
    }

    fn on_wire(&mut self, now: Instant, out: &mut Vec<Effect<T>>, wire: Wire) {
        match wire {
            Wire::Hello(hello) => {
                let from = hello.node.name.clone();
                self.on_hello(now, out, hello);
                self.farewell_heard(now, out, &from, false);
            }
            Wire::Reintroduce(hello) => self.on_reintroduce(now, out, hello),
            Wire::Sync {
                from,
                members,
                nodes,
                entries,
                done,
            } => {
                self.learn_members(now, members);
                self.merge_entries(now, out, &from, &nodes, entries);
                if done {
                    self.synced.insert(from.name);
                    self.check_ready(now, out);
                }
            }
            Wire::Deltas {
                from,
                batch,
                nodes,
                entries,
            } => {
                self.merge_entries(now, out, &from, &nodes, entries);
                out.push(Effect::Send {
                    to: from,
                    wire: Wire::DeltaAck {
                        node: self.me.clone(),
                        batch,
                    },
                });
            }
            Wire::Entries {
                from,
                nodes,
                entries,
            } => self.merge_entries(now, out, &from, &nodes, entries),
            Wire::DeltaAck { node, batch } => {
                self.tombstones_acked(&node, batch);
                self.on_ack(out, &node.name, batch)
            }
            Wire::Collect { nodes, entries, .. } => self.on_collect(now, &nodes, entries),
            Wire::FarewellAck { from, seq } => self.farewell_acked(now, out, &from, seq),
            Wire::Offer {
                from,
                id,
                items,
                frozen_us,
            } => self.on_offer(now, out, from, id, items, frozen_us),
            Wire::OfferReply {
                from,
                id,
                accepted,
                refused,
            } => self.on_offer_reply(now, out, from, id, accepted, refused),
            Wire::Abort { names } => self.on_abort(out, names),
            Wire::Replicate(replica) => self.on_replicate(now, out, replica),
            Wire::FetchReplicas { from, id, names } => {
                self.fence_fetched(now, &names);
                // One answer per fetch: what fits the budget (a fetch names one child).
                // A build of protocol 2 only (0.1.0, as the simulator runs it) names none.
                let members = (self.config.protocols.max
                    >= crate::protocol::Feature::FetchNamesMembers.since())
                .then(|| self.fetch_members(now));
                let fixed = crate::protocol::wire_len(&Wire::ReplicasFound {
                    from: self.me.clone(),
                    id,
                    items: Vec::new(),
                    members: members.clone(),
                });
                let budget = self.config.max_message_bytes;
                let crate::protocol::Batches { batches, too_large } =
                    crate::protocol::batch_by_size(self.replicas_of(&names), fixed, budget);
                for (r, bytes) in &too_large {
                    tracing::error!(child = %r.name, to = %from, bytes, budget, "replica too large to send (over the message budget); not given to the failover");
                }
                let items = batches.into_iter().next().unwrap_or_default();
                out.push(Effect::Send {
                    to: from,
                    wire: Wire::ReplicasFound {
                        from: self.me.clone(),
                        id,
                        items,
                        members,
                    },
                });
            }
            Wire::ReplicasFound {
                from,
                id,
                items,
                members,
            } => self.on_replicas_found(now, out, from, id, items, members),
            Wire::Handover { from, id, items } => self.on_handover(now, out, from, id, items),
            Wire::HandoverAck { from, id } => {
                self.replicas.handed(&from, id);
                self.drain_step(now, out);
            }
            Wire::Lease { from, round, votes } => self.on_lease(now, out, from, round, votes),
            Wire::LeaseGrant { from, round } => {
                self.quorum.grant_received(from, round);
                self.refresh_lease(now);
            }
            Wire::LeaseAnswer {
                from,
                round,
                granted,
                votes,
            } => {
                if granted {
                    self.quorum.grant_received(from.clone(), round);
                }
                self.quorum.answer_received(from, round, votes);
                self.refresh_lease(now);
            }
            Wire::Digest { from, buckets } => self.on_digest(out, from, buckets),
            Wire::Repair { from, buckets } => self.on_repair(out, from, buckets),
            Wire::StartChild(_)
            | Wire::StopChild(_)
            | Wire::Route(_)
            | Wire::Event { .. }
            | Wire::ReplicaAck { .. }
            | Wire::ReplicaNack { .. } => {
                // Calls and data-plane messages are the shell's; nothing to decide here.
                tracing::debug!("a call or routed message reached the core");
            }
        }
    }

    fn on_spawned(
        &mut self,
        now: Instant,
        out: &mut Vec<Effect<T>>,
        name: Arc<str>,
        result: Result<(), SpawnError>,
    ) {
        let Some(purpose) = self.spawning.remove(&name) else {
            return;
        };
        match purpose {
            SpawnFor::Start { reply, spec, epoch } => match result {
                Ok(()) => {
                    self.local.insert(name.clone(), Local { epoch });
                    self.tell_backup(out, &name);
                    let entry = Entry {
                        owner: Arc::new(self.me.clone()),
                        epoch,
                        spec,
                        removed: false,
                    };
                    self.publish(name, entry);
                    let started = Reply::Started(Ok(self.me.clone()));
                    self.next_flush_waiters.push((reply, started));
                }
                Err(e) => {
                    let refusal = match e {
                        SpawnError::MalformedSpec(e) => StartRefusal::MalformedSpec(e),
                        other => StartRefusal::Failed(other.to_string()),
                    };
                    out.push(Effect::Reply {
                        to: reply,
                        reply: Reply::Started(Err(refusal)),
                    });
                }
            },
            SpawnFor::Offer(arrival) => self.offer_spawned(now, out, name, arrival, result),
            SpawnFor::Restart {
                entry,
                epoch,
                from_replica,
            } => self.restart_spawned(out, name, entry, epoch, from_replica, result),
            SpawnFor::CrashRestart { entry } => {
                self.crash_restart_spawned(out, name, entry, result)
            }
        }
    }

    fn on_child(
        &mut self,
        now: Instant,
        out: &mut Vec<Effect<T>>,
        name: Arc<str>,
        report: ChildReport,
    ) {
        match report {
            ChildReport::Frozen { ticket, frozen } => {
                self.on_frozen(now, out, ticket, name, frozen)
            }
            ChildReport::Durable => self.on_durable(now, out, name),
            ChildReport::BackupRefused { backup } => {
                // Avoid it for a while: children move to another backup if there is one; the
                // others try it again once the while is over (see `on_tick`).
                self.refusing.entry(backup).or_insert(now);
                self.backups_stale = true;
            }
            ChildReport::Superseded => {
                // A backup knows a newer copy: the registry will say where; until then this
                // copy answers nothing.
                tracing::info!(child = %name, "this copy was superseded");
            }
            ChildReport::StopRequested => {
                out.push(Effect::Forget { name: name.clone() });
                self.remove_name(out, &name);
            }
            ChildReport::Crashed { error } => self.on_child_crash(now, out, name, error),
            ChildReport::Stopped { state } => {
                if let Some(winner) = self.conflict_waits.remove(&name) {
                    out.push(Effect::Conflict(ConflictReport {
                        name: name.to_string(),
                        winner,
                        loser_state: state,
                    }));
                }
            }
        }
    }

    fn on_tick(&mut self, now: Instant, out: &mut Vec<Effect<T>>) {
        let before = self.refusing.len();
        self.refusing
            .retain(|_, at| now.saturating_duration_since(*at) < REFUSAL_MEMORY);
        if self.refusing.len() != before {
            // A refusing backup may take replicas again: children whose replicas wait try.
            self.backups_stale = true;
            self.force_backups = true;
        }
        self.lease_tick(now, out);
        self.pace_backups(out);
        self.expire_acks(now, out);
        self.moves_tick(now, out);
        self.fetches_tick(now, out);
        self.repair_tick(now, out);
        self.reintroduce(now, out);
        if now.duration_since(self.last_sweep) >= SWEEP_EVERY {
            self.last_sweep = now;
            self.failover(now, out);
            // Before members are forgotten: a waiting member seen leaving is crossed off.
            self.tombstones_sweep(now, out);
            self.forget_gone_members(now);
            self.replicas_gc(now);
        }
        self.check_ready(now, out);
    }

    // === shared helpers ===

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Records a registry change made here and queues it for the flush at the end of this
    /// input.
    fn publish(&mut self, name: Arc<str>, entry: Entry) {
        self.merge_one(&name, entry.clone());
        self.outbox.push((name, entry));
        self.dirty = true;
    }

    /// Merges one entry into the replica, keeping the anti-entropy digests current.
    fn merge_one(&mut self, name: &str, entry: Entry) -> Merged {
        let new = repair::entry_hash(name, &entry);
        let removed = entry.removed;
        let merged = self.registry.merge(name, entry);
        if !matches!(merged, Merged::Kept) {
            if let Some(e) = self.registry.get_any(name) {
                self.tombs.noted(name, e);
            }
            if removed {
                // Backups drop a removed child's state.
                self.replicas.remove(name);
            }
        }
        match &merged {
            Merged::Inserted => self.repair.changed(name, None, Some(new)),
            Merged::Replaced(old) => {
                let old = repair::entry_hash(name, old);
                self.repair.changed(name, Some(old), Some(new));
            }
            Merged::Kept => {}
        }
        merged
    }

    fn set_status(&mut self, out: &mut Vec<Effect<T>>, status: MemberStatus) {
        self.status = status;
        self.dirty = true;
        info!(node = %self.me, %status, "member status");
        self.announce(out);
    }

    /// True when `node` (that run) is known to be gone: marked dead, or replaced by another
    /// run of the same name. An owner this node has not heard of yet (a member that just
    /// joined) is not dead: its children are not orphans.
    fn is_dead(&self, node: &NodeId) -> bool {
        if *node == self.me {
            return false;
        }
        if node.name == self.me.name || self.superseded.contains(node) {
            return true;
        }
        self.members.get(&node.name).is_some_and(|m| {
            m.node == *node
                && (m.status == MemberStatus::Dead
                    || (m.status == MemberStatus::Left && !self.peers.contains_key(&node.name)))
        })
    }

    fn candidates(&self) -> Vec<Candidate> {
        candidates(
            &self.me,
            &self.version,
            &self.config.reads,
            self.status,
            &self.members,
            &self.registry,
            self.config.placement.wants_load(),
        )
    }

    /// Every member but this node, as placement sees them.
    fn others(&self) -> Vec<Candidate> {
        let mut c = self.candidates();
        c.retain(|c| c.node != self.me);
        c
    }

    /// Removes `name` (a tombstone at the next epoch) when this node owns it.
    fn remove_name(&mut self, out: &mut Vec<Effect<T>>, name: &str) {
        let Some(e) = self.registry.get(name).cloned() else {
            return;
        };
        if *e.owner != self.me {
            return;
        }
        if self.local.remove(name).is_some() {
            self.backups.remove(name);
            out.push(Effect::Forget {
                name: Arc::from(name),
            });
        }
        self.publish(
            Arc::from(name),
            Entry {
                owner: e.owner.clone(),
                epoch: e.epoch + 1,
                spec: e.spec.clone(),
                removed: true,
            },
        );
    }

    fn emit(&self, out: &mut Vec<Effect<T>>, event: HordeEvent) {
        out.push(Effect::Event(event));
    }
}
