//! The member actor: one remotable actor per node and horde scope, through which all
//! cross-node horde traffic goes (hosted children stay local-typed: a remotable actor costs a
//! proxy on every peer).
//!
//! It owns membership (hello, status), the registry replica (sync on first contact, deltas
//! with acknowledgements), routing of messages for children it does not host, the receiving
//! side of moves (offers, pending copies, commit on the owner's registry change), failover of
//! a dead node's children (from replicated snapshots when the child opts in), and conflict
//! resolution after a partition. It never blocks on another node: every wait runs in a task
//! that reports back with a local message.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use discovery::{Connector, Envelope, NodeEvent, NodeId, PeerNode};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::child::{Child, Handoff, RestartPolicy};
use crate::hosted::{Args, Hosted, HostedMsg, Init, reply_remote};
use crate::membership::{MemberInfo, MemberStatus};
use crate::registry::{Entry, Merged};
use crate::router::{self, RouterRef};
use crate::stats::{Counters, HordeEvent};
use crate::supervisor::already_started;
use crate::view::{ConflictReport, MemberRef, PeerRefs, View};
use crate::wire::{
    MIN_PROTOCOL, MemberMsg, OfferItem, PROTOCOL, RouteReply, SnapshotItem, Wire, WireEntry,
    call_member,
};

/// Periodic work: snapshot flushes, acknowledgement deadlines, hello retries.
const TICK: Duration = Duration::from_millis(50);
/// Orphan sweeps (names whose owner is gone and nobody restarted) run this often.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// A start waits at most this long for every member to acknowledge the new name.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// A peer's member actor is looked for this many times (every tick) after its node is up.
const HELLO_ATTEMPTS: u32 = 100;
/// A pending incoming child whose move is never committed is dropped after this long.
const PENDING_TTL: Duration = Duration::from_secs(60);
/// Registry entries per sync message.
const SYNC_CHUNK: usize = 20_000;
/// Routed messages are forwarded at most this many times (stale registries during churn).
pub(crate) const MAX_HOPS: u8 = 4;
/// How long a failover target waits for peers' snapshots of a dead node's children.
const SNAPSHOT_FETCH_TIMEOUT: Duration = Duration::from_millis(500);

/// The member's service name for a horde scope (see `NodeId::actor_name`).
pub(crate) fn service(scope: &str) -> String {
    format!("horde-{scope}")
}

/// Who waits for a start to be acknowledged.
pub(crate) enum StartWaiter {
    Local(oneshot::Sender<Result<NodeId, String>>),
    Remote(RpcReplyPort<Vec<u8>>),
}

impl StartWaiter {
    fn finish(self, result: Result<NodeId, String>) {
        match self {
            StartWaiter::Local(tx) => {
                let _ = tx.send(result);
            }
            StartWaiter::Remote(port) => reply_remote(port, Wire::Started { result }),
        }
    }
}

/// Local messages of the member actor.
pub(crate) enum LocalMsg<C: Child> {
    /// A node event from the connector.
    Node(NodeEvent),
    /// Start a child here (placement chose this node).
    Start {
        /// The name.
        name: String,
        /// Spec bytes.
        spec: Vec<u8>,
        /// Answered once every member acknowledged the name.
        reply: oneshot::Sender<Result<NodeId, String>>,
    },
    /// A hosted child's snapshot, for its backup node.
    Snapshot(SnapshotItem),
    /// A hosted child stopped itself: remove the name.
    ChildStopped {
        /// The name.
        name: Arc<str>,
    },
    /// Stop a child hosted here and remove the name.
    StopChild {
        /// The name.
        name: String,
        /// Done.
        reply: oneshot::Sender<bool>,
    },
    /// A move batch was accepted by `target`: write the registry and broadcast it.
    Moved {
        /// The new owner.
        target: NodeId,
        /// Names with their new epochs.
        names: Vec<(String, u64)>,
        /// Done (the change is on the wire).
        reply: oneshot::Sender<()>,
    },
    /// Answer once every registry change sent so far is acknowledged by every member (or its
    /// acknowledgement timed out): a draining node waits for this before it exits, so no
    /// peer learns of its death before it learns where its children went.
    Barrier(oneshot::Sender<()>),
    /// Change this member's status (draining).
    SetStatus(MemberStatus),
    /// Discovery found no peers: become alive without waiting for any.
    NoPeersExpected,
    /// Restart a dead node's child here (after fetching snapshots).
    Restart {
        /// The name.
        name: String,
        /// Its last entry.
        entry: Entry,
        /// The newest snapshot found, if any.
        snapshot: Option<SnapshotItem>,
    },
    /// Registry changes are queued: send them.
    Flush,
    /// Periodic work.
    Tick,
    /// Phantom for the child type.
    #[doc(hidden)]
    _Child(std::marker::PhantomData<fn() -> C>),
}

/// What this node knows of a connected peer.
struct PeerLink<C: Child> {
    peer: PeerNode,
    member: Option<MemberRef<C>>,
    /// Its router, or its member actor seen as one when no router is visible.
    router: Option<RouterRef>,
    hello_sent: bool,
    sync_sent: bool,
    attempts: u32,
}

/// A child received in a move, not yet committed by its previous owner's registry change.
struct PendingIn<C: Child> {
    actor: ActorRef<HostedMsg<C>>,
    epoch: u64,
    from: NodeId,
    spec: Arc<[u8]>,
    since: Instant,
}

/// Registry changes sent in one batch and who has not acknowledged them yet.
struct AckWait {
    pending: HashSet<String>,
    waiters: Vec<StartWaiter>,
    deadline: Instant,
}

/// The member actor; `self` holds what never changes.
pub(crate) struct Member<C: Child> {
    pub view: Arc<View<C>>,
    /// Numbers this node's hellos (see `Wire::Hello::seq`).
    pub hello_seq: std::sync::atomic::AtomicU64,
    pub connector: Connector,
    pub scope: String,
    pub join_timeout: Duration,
    /// A child crashing more than this often within `restart_window` is removed.
    pub max_restarts: u32,
    pub restart_window: Duration,
}

/// Mutable state of the member actor.
pub(crate) struct MemberState<C: Child> {
    /// Connected peers by node name.
    peers: HashMap<String, PeerLink<C>>,
    /// Hellos received before the node's Up event (the two race).
    early_hellos: HashMap<String, Wire>,
    /// Newest hello number seen per member run.
    hello_seen: HashMap<NodeId, u64>,
    /// Peers whose full registry this node has received (readiness).
    synced: HashSet<String>,
    /// Children received in moves, waiting for their commit.
    pending_in: HashMap<Arc<str>, PendingIn<C>>,
    /// Registry changes to broadcast at the next flush.
    outbox: Vec<(Arc<str>, Entry)>,
    /// Starts waiting for the next flush's acknowledgements.
    next_flush_waiters: Vec<StartWaiter>,
    /// Last batch number.
    batch: u64,
    /// Batches waiting for acknowledgements.
    ack_waits: HashMap<u64, AckWait>,
    /// Waiting for `ack_waits` to empty.
    barriers: Vec<oneshot::Sender<()>>,
    /// Snapshots held for other nodes' children.
    snapshots: HashMap<String, SnapshotItem>,
    /// Snapshots of local children waiting to go to their backups, by backup node name.
    snapshot_out: HashMap<String, HashMap<String, SnapshotItem>>,
    /// Recent crashes per child (restart limit).
    crashes: HashMap<Arc<str>, std::collections::VecDeque<Instant>>,
    /// Names being restarted here (a snapshot fetch is in flight).
    restarting: HashSet<String>,
    /// Discovery found nobody to wait for.
    alone: bool,
    started: Instant,
    last_sweep: Instant,
}

impl<C: Handoff> Actor for Member<C> {
    type Msg = MemberMsg<LocalMsg<C>>;
    type State = MemberState<C>;
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        _: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut events = self.connector.subscribe().await?;
        let current = std::mem::take(&mut events.current);
        let me = myself.clone();
        tokio::spawn(async move {
            for peer in current {
                if me
                    .cast(MemberMsg::Local(LocalMsg::Node(NodeEvent::Up(peer))))
                    .is_err()
                {
                    return;
                }
            }
            while let Some(e) = events.events.recv().await {
                if me.cast(MemberMsg::Local(LocalMsg::Node(e))).is_err() {
                    return;
                }
            }
        });
        myself.send_interval(TICK, || MemberMsg::Local(LocalMsg::Tick));
        Ok(MemberState {
            peers: HashMap::new(),
            early_hellos: HashMap::new(),
            hello_seen: HashMap::new(),
            synced: HashSet::new(),
            pending_in: HashMap::new(),
            outbox: Vec::new(),
            next_flush_waiters: Vec::new(),
            batch: 0,
            ack_waits: HashMap::new(),
            barriers: Vec::new(),
            snapshots: HashMap::new(),
            snapshot_out: HashMap::new(),
            crashes: HashMap::new(),
            restarting: HashSet::new(),
            alone: false,
            started: Instant::now(),
            last_sweep: Instant::now(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            MemberMsg::Cast(env) => match env.decode::<Wire>() {
                Ok(w) => self.on_wire(&myself, state, w, None).await,
                Err(error) => warn!(%error, "undecodable horde message dropped"),
            },
            MemberMsg::Call(env, port) => match env.decode::<Wire>() {
                Ok(w) => self.on_wire(&myself, state, w, Some(port)).await,
                Err(error) => {
                    warn!(%error, "undecodable horde request dropped");
                    reply_remote(port, RouteReply::Unavailable(error.to_string()));
                }
            },
            MemberMsg::Local(local) => self.on_local(&myself, state, local).await,
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        evt: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Children stopping normally (moved, removed, forwarding pointers expiring) are no
        // news; only a panic calls for the restart policy.
        if let SupervisionEvent::ActorFailed(who, error) = evt {
            let id = who.get_id();
            let name = self.view.local.read().ok().and_then(|l| {
                l.iter()
                    .find(|(_, a)| a.get_id() == id)
                    .map(|(n, _)| n.clone())
            });
            if let Some(name) = name {
                self.on_child_crash(&myself, state, name, error.to_string())
                    .await;
            }
        }
        Ok(())
    }
}

/// Converts registry entries to their wire form with a node table.
fn to_wire<'a>(
    entries: impl Iterator<Item = (&'a Arc<str>, &'a Entry)>,
) -> (Vec<NodeId>, Vec<WireEntry>) {
    let mut nodes: Vec<NodeId> = Vec::new();
    let mut index: HashMap<NodeId, u32> = HashMap::new();
    let mut out = Vec::new();
    for (name, e) in entries {
        let owner = *index.entry((*e.owner).clone()).or_insert_with(|| {
            nodes.push((*e.owner).clone());
            (nodes.len() - 1) as u32
        });
        out.push(WireEntry {
            name: name.to_string(),
            owner,
            epoch: e.epoch,
            spec: e.spec.to_vec(),
            removed: e.removed,
        });
    }
    (nodes, out)
}

impl<C: Handoff> Member<C> {
    fn me(&self) -> &NodeId {
        &self.view.me
    }

    fn send(member: &MemberRef<C>, wire: &Wire) {
        match Envelope::encode(wire) {
            Ok(env) => {
                let _ = member.cast(MemberMsg::Cast(env));
            }
            Err(error) => warn!(%error, "cannot encode horde message"),
        }
    }

    /// Sends to every member that said hello.
    fn broadcast(&self, wire: &Wire) -> Vec<String> {
        let Ok(env) = Envelope::encode(wire) else {
            return Vec::new();
        };
        let peers: Vec<(String, MemberRef<C>)> = self
            .view
            .peers
            .read()
            .map(|p| {
                p.iter()
                    .map(|(n, r)| (n.clone(), r.member.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let mut sent = Vec::new();
        for (name, m) in peers {
            if m.cast(MemberMsg::Cast(env.clone())).is_ok() {
                sent.push(name);
            }
        }
        sent
    }

    fn hello(&self) -> Wire {
        Wire::Hello {
            node: self.me().clone(),
            protocol: PROTOCOL,
            version: self.view.version.0.clone(),
            status: self.view.my_status(),
            seq: self
                .hello_seq
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// A hosted child panicked: restart it in place from its spec, or remove it.
    async fn on_child_crash(
        &self,
        myself: &ActorRef<MemberMsg<LocalMsg<C>>>,
        state: &mut MemberState<C>,
        name: Arc<str>,
        error: String,
    ) {
        if let Ok(mut l) = self.view.local.write() {
            l.remove(&name);
        }
        let now = Instant::now();
        let recent = state.crashes.entry(name.clone()).or_default();
        recent.retain(|t| now.duration_since(*t) < self.restart_window);
        recent.push_back(now);
        let allowed = C::restart_policy() == RestartPolicy::Permanent
            && recent.len() as u32 <= self.max_restarts;
        let entry = self.view.entry(&name);
        let Some(entry) = entry.filter(|e| *e.owner == *self.me()) else {
            return;
        };
        if !allowed {
            error!(child = %name, %error, "child crashed too often (or is temporary); removing it");
            state.crashes.remove(&name);
            self.remove_name(myself, state, &name);
            return;
        }
        warn!(child = %name, %error, "child crashed; restarting it from its spec");
        let spec = match postcard::from_bytes::<C::Spec>(&entry.spec) {
            Ok(s) => s,
            Err(e) => {
                error!(child = %name, error = %e, "cannot restart: malformed spec; removing it");
                self.remove_name(myself, state, &name);
                return;
            }
        };
        let epoch = entry.epoch + 1;
        match self
            .spawn_child(myself, &name, Init::Fresh(spec), epoch)
            .await
        {
            Ok(actor) => {
                if let Ok(mut l) = self.view.local.write() {
                    l.insert(name.clone(), actor);
                }
                Counters::add(&self.view.counters.crashes, 1);
                self.publish(
                    myself,
                    state,
                    name,
                    Entry {
                        owner: entry.owner.clone(),
                        epoch,
                        spec: entry.spec.clone(),
                        removed: false,
                    },
                );
            }
            Err(e) => {
                error!(child = %name, error = %e, "restart failed; removing it");
                self.remove_name(myself, state, &name);
            }
        }
    }

    /// Removes a pending incoming child (from the state and from the shared view).
    fn take_pending(&self, state: &mut MemberState<C>, name: &str) -> Option<PendingIn<C>> {
        if let Ok(mut p) = self.view.pending.write() {
            p.remove(name);
        }
        state.pending_in.remove(name)
    }

    /// Tells every connected peer this member's current status: a hello, to every link whose
    /// member actor is known (whether or not that peer said hello yet, so no peer is left
    /// with an older status). Hellos are numbered, so a stale one arriving late is ignored.
    fn announce(&self, state: &mut MemberState<C>) {
        let hello = self.hello();
        for link in state.peers.values_mut() {
            if let Some(m) = &link.member {
                Self::send(m, &hello);
                link.hello_sent = true;
            }
        }
    }

    /// Queues a registry change for the next flush.
    fn publish(
        &self,
        myself: &ActorRef<MemberMsg<LocalMsg<C>>>,
        state: &mut MemberState<C>,
        name: Arc<str>,
        entry: Entry,
    ) {
        if let Ok(mut r) = self.view.registry.write() {
            r.merge(&name, entry.clone());
        }
        if state.outbox.is_empty() {
            let _ = myself.cast(MemberMsg::Local(LocalMsg::Flush));
        }
        state.outbox.push((name, entry));
    }

    /// Answers starts whose registry change every member acknowledged (or that timed out):
    /// the child runs here.
    fn started(&self, waiters: Vec<StartWaiter>) {
        for w in waiters {
            w.finish(Ok(self.me().clone()));
        }
    }

    fn flush(&self, state: &mut MemberState<C>) {
        let waiters = std::mem::take(&mut state.next_flush_waiters);
        if state.outbox.is_empty() {
            self.started(waiters);
            return;
        }
        let entries = std::mem::take(&mut state.outbox);
        state.batch += 1;
        let batch = state.batch;
        let (nodes, wire_entries) = to_wire(entries.iter().map(|(n, e)| (n, e)));
        let sent = self.broadcast(&Wire::Deltas {
            from: self.me().clone(),
            batch,
            nodes,
            entries: wire_entries,
        });
        if sent.is_empty() {
            self.started(waiters);
            return;
        }
        state.ack_waits.insert(
            batch,
            AckWait {
                pending: sent.into_iter().collect(),
                waiters,
                deadline: Instant::now() + ACK_TIMEOUT,
            },
        );
    }

    fn on_ack(&self, state: &mut MemberState<C>, node: &str, batch: u64) {
        let done = match state.ack_waits.get_mut(&batch) {
            Some(w) => {
                w.pending.remove(node);
                w.pending.is_empty()
            }
            None => false,
        };
        if done && let Some(w) = state.ack_waits.remove(&batch) {
            self.started(w.waiters);
        }
        Self::release_barriers(state);
    }

    fn release_barriers(state: &mut MemberState<C>) {
        if state.ack_waits.is_empty() {
            for b in state.barriers.drain(..) {
                let _ = b.send(());
            }
        }
    }

    /// Spawns a hosting actor for `name`.
    async fn spawn_child(
        &self,
        myself: &ActorRef<MemberMsg<LocalMsg<C>>>,
        name: &str,
        init: Init<C>,
        epoch: u64,
    ) -> Result<ActorRef<HostedMsg<C>>, String> {
        let hosted = Hosted {
            name: Arc::from(name),
            view: self.view.clone(),
            member: myself.clone(),
        };
        // Linked: a panicking child is this actor's to restart (see `handle_supervisor_evt`).
        Actor::spawn_linked(None, hosted, Args { init, epoch }, myself.get_cell())
            .await
            .map(|(a, _)| a)
            .map_err(|e| e.to_string())
    }

    /// Starts `name` here at the next epoch, unless it already runs somewhere.
    async fn start_here(
        &self,
        myself: &ActorRef<MemberMsg<LocalMsg<C>>>,
        state: &mut MemberState<C>,
        name: String,
        spec: Vec<u8>,
        waiter: StartWaiter,
    ) {
        let prev_epoch = match self.view.entry_any(&name) {
            Some(e) if !e.removed => {
                waiter.finish(Err(already_started(&name, &e.owner.name)));
                return;
            }
            Some(e) => e.epoch,
            None => 0,
        };
        if matches!(
            self.view.my_status(),
            MemberStatus::Draining | MemberStatus::Dead
        ) {
            waiter.finish(Err("this node is draining; try again".into()));
            return;
        }
        let parsed: C::Spec = match postcard::from_bytes(&spec) {
            Ok(s) => s,
            Err(e) => {
                waiter.finish(Err(format!("malformed spec: {e}")));
                return;
            }
        };
        let epoch = prev_epoch + 1;
        match self
            .spawn_child(myself, &name, Init::Fresh(parsed), epoch)
            .await
        {
            Ok(actor) => {
                let key: Arc<str> = Arc::from(name.as_str());
                if let Ok(mut l) = self.view.local.write() {
                    l.insert(key.clone(), actor);
                }
                let entry = Entry {
                    owner: Arc::new(self.me().clone()),
                    epoch,
                    spec: Arc::from(spec),
                    removed: false,
                };
                self.publish(myself, state, key, entry);
                state.next_flush_waiters.push(waiter);
            }
            Err(e) => waiter.finish(Err(format!("child failed to start: {e}"))),
        }
    }

    async fn on_local(
        &self,
        myself: &ActorRef<MemberMsg<LocalMsg<C>>>,
        state: &mut MemberState<C>,
        msg: LocalMsg<C>,
    ) {
        match msg {
            LocalMsg::Node(NodeEvent::Up(peer)) => self.on_up(myself, state, peer),
            LocalMsg::Node(NodeEvent::Down { id, reason }) => {
                debug!(node = %id, ?reason, "member node down");
                self.on_down(myself, state, &id).await;
            }
            LocalMsg::Start { name, spec, reply } => {
                self.start_here(myself, state, name, spec, StartWaiter::Local(reply))
                    .await;
            }
            LocalMsg::Snapshot(item) => {
                if let Some(backup) = self.view.place_elsewhere(&item.name) {
                    state
                        .snapshot_out
                        .entry(backup.name)
                        .or_default()
                        .insert(item.name.clone(), item);
                }
            }
            LocalMsg::ChildStopped { name } => self.remove_name(myself, state, &name),
            LocalMsg::StopChild { name, reply } => {
                let actor = self.view.local(&name);
                let found = actor.is_some();
                if let Some(a) = actor {
                    let _ = a.cast(HostedMsg::Stop { reply: None });
                    self.remove_name(myself, state, &name);
                }
                let _ = reply.send(found);
            }
            LocalMsg::Moved {
                target,
                names,
                reply,
            } => {
                let owner = Arc::new(target);
                for (name, epoch) in names {
                    let key: Arc<str> = Arc::from(name.as_str());
                    let spec = self
                        .view
                        .registry
                        .read()
                        .ok()
                        .and_then(|r| r.get_any(&name).map(|e| e.spec.clone()))
                        .unwrap_or_else(|| Arc::from(Vec::new()));
                    if let Ok(mut l) = self.view.local.write() {
                        l.remove(&key);
                    }
                    state.snapshots.remove(&name);
                    self.publish(
                        myself,
                        state,
                        key,
                        Entry {
                            owner: owner.clone(),
                            epoch,
                            spec,
                            removed: false,
                        },
                    );
                    Counters::add(&self.view.counters.handoffs_out, 1);
                }
                // On the wire before the children forward their buffers to the new owner.
                self.flush(state);
                let _ = reply.send(());
            }
            LocalMsg::Barrier(reply) => {
                self.flush(state);
                if state.ack_waits.is_empty() {
                    let _ = reply.send(());
                } else {
                    state.barriers.push(reply);
                }
            }
            LocalMsg::SetStatus(status) => {
                if let Ok(mut s) = self.view.status.write() {
                    *s = status;
                }
                info!(node = %self.me(), %status, "member status");
                self.announce(state);
            }
            LocalMsg::NoPeersExpected => {
                state.alone = true;
                self.check_ready(state);
            }
            LocalMsg::Restart {
                name,
                entry,
                snapshot,
            } => {
                self.restart(myself, state, name, entry, snapshot).await;
            }
            LocalMsg::Flush => self.flush(state),
            LocalMsg::Tick => self.on_tick(myself, state).await,
            LocalMsg::_Child(_) => {}
        }
    }

    fn remove_name(
        &self,
        myself: &ActorRef<MemberMsg<LocalMsg<C>>>,
        state: &mut MemberState<C>,
        name: &str,
    ) {
        let current = self.view.entry(name);
        if let Some(e) = current
            && *e.owner == *self.me()
        {
            if let Ok(mut l) = self.view.local.write() {
                l.remove(name);
            }
            self.publish(
                myself,
                state,
                Arc::from(name),
                Entry {
                    owner: e.owner.clone(),
                    epoch: e.epoch + 1,
                    spec: e.spec.clone(),
                    removed: true,
                },
            );
        }
    }

    fn on_up(
        &self,
        myself: &ActorRef<MemberMsg<LocalMsg<C>>>,
        state: &mut MemberState<C>,
        peer: PeerNode,
    ) {
        let name = peer.id.name.clone();
        let fresh = state.peers.get(&name).is_none_or(|l| l.peer.id != peer.id);
        let link = state.peers.entry(name.clone()).or_insert_with(|| PeerLink {
            peer: peer.clone(),
            member: None,
            router: None,
            hello_sent: false,
            sync_sent: false,
            attempts: 0,
        });
        if fresh {
            link.hello_sent = false;
            link.sync_sent = false;
        }
        // A new link (or a replaced one): its proxies are new; look the member actor up again.
        link.peer = peer;
        link.member = None;
        link.router = None;
        link.attempts = 0;
        self.link_ready(myself, state, &name);
    }

    /// Looks the peer's member actor up through its current link; once found, points
    /// `view.peers` at it, sends our hello if not sent yet, and handles a hello that arrived
    /// before it could be answered.
    fn link_ready(
        &self,
        myself: &ActorRef<MemberMsg<LocalMsg<C>>>,
        state: &mut MemberState<C>,
        name: &str,
    ) {
        let hello = self.hello();
        let Some(link) = state.peers.get_mut(name) else {
            return;
        };
        if link.member.is_none() {
            link.attempts += 1;
            link.member = link.peer.remote_actor(&service(&self.scope));
        }
        let Some(m) = link.member.clone() else {
            return;
        };
        let r = link
            .peer
            .remote_actor::<MemberMsg<()>>(&router::service(&self.scope))
            .unwrap_or_else(|| ActorRef::from(m.get_cell()));
        link.router = Some(r.clone());
        if let Ok(mut p) = self.view.peers.write()
            && let Some(entry) = p.get_mut(name)
            && entry.node == link.peer.id
        {
            entry.member = m.clone();
            entry.router = r;
        }
        if !link.hello_sent {
            Self::send(&m, &hello);
            link.hello_sent = true;
        }
        if let Some(h) = state.early_hellos.remove(name)
            && let Ok(env) = Envelope::encode(&h)
        {
            let _ = myself.cast(MemberMsg::Cast(env));
        }
    }

    async fn on_down(
        &self,
        myself: &ActorRef<MemberMsg<LocalMsg<C>>>,
        state: &mut MemberState<C>,
        id: &NodeId,
    ) {
        if state.peers.get(&id.name).is_some_and(|l| l.peer.id == *id) {
            state.peers.remove(&id.name);
        }
        if let Ok(mut p) = self.view.peers.write()
            && p.get(&id.name).is_some_and(|r| r.node == *id)
        {
            p.remove(&id.name);
        }
        state.synced.remove(&id.name);
        let changed = self
            .view
            .members
            .write()
            .map(|mut m| m.mark_dead(id))
            .unwrap_or(false);
        if changed {
            info!(member = %id, "member dead");
            self.view.emit(HordeEvent::Member(MemberInfo {
                node: id.clone(),
                status: MemberStatus::Dead,
                version: self
                    .view
                    .members
                    .read()
                    .ok()
                    .and_then(|m| m.get(&id.name).map(|i| i.version.clone()))
                    .unwrap_or_else(|| crate::membership::Version::parse("")),
            }));
        }
        // Nobody waits for its acknowledgements any more.
        let batches: Vec<u64> = state.ack_waits.keys().copied().collect();
        for b in batches {
            self.on_ack(state, &id.name, b);
        }
        // Children it was moving here: this node holds the newest state; take them.
        let from_dead: Vec<Arc<str>> = state
            .pending_in
            .iter()
            .filter(|(_, p)| p.from == *id)
            .map(|(n, _)| n.clone())
            .collect();
        for name in from_dead {
            if let Some(p) = self.take_pending(state, &name) {
                info!(child = %name, from = %id, "previous owner died mid-move; taking the child over");
                self.commit_pending(myself, state, name, p, true);
            }
        }
        self.failover(myself, state);
        self.check_ready(state);
    }

    /// Drops dead members that no longer own any name (their children moved or restarted),
    /// so a long series of rolling updates does not accumulate them.
    fn forget_gone_members(&self, state: &mut MemberState<C>) {
        let any_dead = self
            .view
            .members
            .read()
            .is_ok_and(|m| m.iter().any(|i| i.status == MemberStatus::Dead));
        if !any_dead {
            return;
        }
        let owners: HashSet<NodeId> = match self.view.registry.read() {
            Ok(r) => r
                .iter()
                .filter(|(_, e)| !e.removed)
                .map(|(_, e)| (*e.owner).clone())
                .collect(),
            Err(_) => return,
        };
        if let Ok(mut m) = self.view.members.write() {
            let gone: Vec<NodeId> = m
                .iter()
                .filter(|i| i.status == MemberStatus::Dead && !owners.contains(&i.node))
                .map(|i| i.node.clone())
                .collect();
            for node in gone {
                m.forget(&node);
                state.hello_seen.remove(&node);
            }
        }
    }

    /// Restarts, here, the children of dead owners that placement gives to this node.
    fn failover(&self, myself: &ActorRef<MemberMsg<LocalMsg<C>>>, state: &mut MemberState<C>) {
        if self.view.my_status() != MemberStatus::Alive {
            return;
        }
        let orphans: Vec<(String, Entry)> = match self.view.registry.read() {
            Ok(r) => r
                .iter()
                .filter(|(_, e)| !e.removed && self.view.is_dead(&e.owner))
                .map(|(n, e)| (n.to_string(), e.clone()))
                .collect(),
            Err(_) => return,
        };
        if orphans.is_empty() {
            return;
        }
        // Nothing below changes the registry or the members before the loop ends.
        let candidates = self.view.candidates();
        for (name, entry) in orphans {
            if state.restarting.contains(&name)
                || self.view.placement.place(&name, &candidates).as_ref() != Some(self.me())
            {
                continue;
            }
            state.restarting.insert(name.clone());
            let local = state
                .snapshots
                .get(&name)
                .filter(|s| s.epoch >= entry.epoch)
                .cloned();
            if local.is_some() {
                let _ = myself.cast(MemberMsg::Local(LocalMsg::Restart {
                    name,
                    entry,
                    snapshot: local,
                }));
                continue;
            }
            // Ask the other members for a newer snapshot, briefly.
            let peers: Vec<MemberRef<C>> = self
                .view
                .peers
                .read()
                .map(|p| p.values().map(|r| r.member.clone()).collect())
                .unwrap_or_default();
            let me = myself.clone();
            tokio::spawn(async move {
                let snapshot = fetch_snapshot(&peers, &name, entry.epoch).await;
                let _ = me.cast(MemberMsg::Local(LocalMsg::Restart {
                    name,
                    entry,
                    snapshot,
                }));
            });
        }
    }

    async fn restart(
        &self,
        myself: &ActorRef<MemberMsg<LocalMsg<C>>>,
        state: &mut MemberState<C>,
        name: String,
        entry: Entry,
        snapshot: Option<SnapshotItem>,
    ) {
        state.restarting.remove(&name);
        // Still orphaned, still ours?
        let current = self.view.entry(&name);
        if current
            .as_ref()
            .is_none_or(|c| c.epoch != entry.epoch || !self.view.is_dead(&c.owner))
        {
            return;
        }
        let from_snapshot = snapshot.is_some();
        let init = match snapshot {
            Some(s) => Init::Restore {
                schema: s.schema,
                state: s.state,
                subscribers: Vec::new(),
                event_seq: 0,
            },
            None => match postcard::from_bytes::<C::Spec>(&entry.spec) {
                Ok(spec) => Init::Fresh(spec),
                Err(e) => {
                    warn!(child = %name, error = %e, "cannot restart: malformed spec");
                    return;
                }
            },
        };
        let epoch = entry.epoch + 1;
        match self.spawn_child(myself, &name, init, epoch).await {
            Ok(actor) => {
                let key: Arc<str> = Arc::from(name.as_str());
                if let Ok(mut l) = self.view.local.write() {
                    l.insert(key.clone(), actor);
                }
                state.snapshots.remove(&name);
                if from_snapshot {
                    Counters::add(&self.view.counters.restarts_from_snapshot, 1);
                } else {
                    Counters::add(&self.view.counters.restarts_from_spec, 1);
                    warn!(child = %name, previous = %entry.owner, "restarted from its spec: state since the start is lost");
                }
                self.view.emit(HordeEvent::Restarted {
                    name: name.clone(),
                    previous: (*entry.owner).clone(),
                    from_snapshot,
                });
                self.publish(
                    myself,
                    state,
                    key,
                    Entry {
                        owner: Arc::new(self.me().clone()),
                        epoch,
                        spec: entry.spec.clone(),
                        removed: false,
                    },
                );
            }
            Err(e) => warn!(child = %name, error = %e, "restart failed"),
        }
    }

    fn commit_pending(
        &self,
        myself: &ActorRef<MemberMsg<LocalMsg<C>>>,
        state: &mut MemberState<C>,
        name: Arc<str>,
        pending: PendingIn<C>,
        publish: bool,
    ) {
        if let Ok(mut l) = self.view.local.write() {
            l.insert(name.clone(), pending.actor);
        }
        Counters::add(&self.view.counters.handoffs_in, 1);
        self.view.emit(HordeEvent::TookOver {
            name: name.to_string(),
            from: pending.from.clone(),
        });
        if publish {
            self.publish(
                myself,
                state,
                name,
                Entry {
                    owner: Arc::new(self.me().clone()),
                    epoch: pending.epoch,
                    spec: pending.spec,
                    removed: false,
                },
            );
        }
    }

    fn check_ready(&self, state: &mut MemberState<C>) {
        if self.view.my_status() != MemberStatus::Joining {
            return;
        }
        let said_hello: Vec<String> = self
            .view
            .peers
            .read()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        let waiting_for_proxy = state
            .peers
            .values()
            .any(|l| l.member.is_none() && l.attempts < HELLO_ATTEMPTS);
        let synced_all = said_hello.iter().all(|n| state.synced.contains(n));
        let someone = !said_hello.is_empty();
        let timed_out = state.started.elapsed() >= self.join_timeout;
        if synced_all && !waiting_for_proxy && (someone || state.alone || timed_out) {
            if let Ok(mut s) = self.view.status.write() {
                *s = MemberStatus::Alive;
            }
            info!(node = %self.me(), peers = said_hello.len(), registry = self.view.registry.read().map(|r| r.live()).unwrap_or(0), "member alive (registry synced)");
            self.announce(state);
        }
    }

    async fn on_tick(&self, myself: &ActorRef<MemberMsg<LocalMsg<C>>>, state: &mut MemberState<C>) {
        let now = Instant::now();
        // Peers whose member actor was not among the link's proxies yet.
        let waiting: Vec<String> = state
            .peers
            .iter()
            .filter(|(_, l)| l.member.is_none() && l.attempts < HELLO_ATTEMPTS)
            .map(|(n, _)| n.clone())
            .collect();
        for name in waiting {
            self.link_ready(myself, state, &name);
        }
        // Snapshots to their backups.
        for (node, items) in std::mem::take(&mut state.snapshot_out) {
            if let Some(m) = self.view.peer(&node).map(|p| p.member) {
                Self::send(
                    &m,
                    &Wire::Snapshots {
                        items: items.into_values().collect(),
                    },
                );
            }
        }
        // Acknowledgements that will not come.
        let expired: Vec<u64> = state
            .ack_waits
            .iter()
            .filter(|(_, w)| w.deadline <= now)
            .map(|(b, _)| *b)
            .collect();
        for b in expired {
            if let Some(w) = state.ack_waits.remove(&b) {
                warn!(batch = b, missing = ?w.pending, "registry change not acknowledged in time");
                self.started(w.waiters);
            }
        }
        Self::release_barriers(state);
        // Moves never committed.
        let stale: Vec<Arc<str>> = state
            .pending_in
            .iter()
            .filter(|(_, p)| now.duration_since(p.since) > PENDING_TTL)
            .map(|(n, _)| n.clone())
            .collect();
        for n in stale {
            if let Some(p) = self.take_pending(state, &n) {
                warn!(child = %n, from = %p.from, "incoming move never committed; dropped");
                let _ = p.actor.cast(HostedMsg::Stop { reply: None });
            }
        }
        if now.duration_since(state.last_sweep) >= SWEEP_EVERY {
            state.last_sweep = now;
            self.failover(myself, state);
            self.forget_gone_members(state);
        }
        self.check_ready(state);
    }

    async fn on_wire(
        &self,
        myself: &ActorRef<MemberMsg<LocalMsg<C>>>,
        state: &mut MemberState<C>,
        wire: Wire,
        port: Option<RpcReplyPort<Vec<u8>>>,
    ) {
        match wire {
            Wire::Hello {
                node,
                protocol,
                version,
                status,
                seq,
            } => {
                if !(MIN_PROTOCOL..=PROTOCOL).contains(&protocol) {
                    warn!(member = %node, protocol, supported = ?(MIN_PROTOCOL..=PROTOCOL), "refusing member: incompatible horde protocol (upgrade the older node)");
                    return;
                }
                let proxy = state
                    .peers
                    .get(&node.name)
                    .filter(|l| l.peer.id == node)
                    .and_then(|l| l.member.clone());
                let Some(member) = proxy else {
                    // Its Up event, or its member actor's proxy, has not arrived yet: keep
                    // the newest hello until `link_ready` can answer it.
                    let newer = match state.early_hellos.get(&node.name) {
                        Some(Wire::Hello {
                            node: n, seq: s, ..
                        }) => (n.incarnation, *s) < (node.incarnation, seq),
                        _ => true,
                    };
                    if newer {
                        state.early_hellos.insert(
                            node.name.clone(),
                            Wire::Hello {
                                node,
                                protocol,
                                version,
                                status,
                                seq,
                            },
                        );
                    }
                    return;
                };
                let Some(link) = state.peers.get_mut(&node.name) else {
                    return;
                };
                if !link.hello_sent {
                    Self::send(&member, &self.hello());
                    link.hello_sent = true;
                }
                let send_sync = !link.sync_sent;
                link.sync_sent = true;
                let info = MemberInfo {
                    node: node.clone(),
                    status,
                    version: crate::membership::Version::parse(&version),
                };
                let fresh_info = state.hello_seen.get(&node).is_none_or(|last| seq > *last);
                let changed = fresh_info
                    && self
                        .view
                        .members
                        .write()
                        .map(|mut m| m.upsert(info.clone()).is_some())
                        .unwrap_or(false);
                if fresh_info {
                    state
                        .hello_seen
                        .retain(|n, _| n.name != node.name || n.incarnation >= node.incarnation);
                    state.hello_seen.insert(node.clone(), seq);
                }
                if let Ok(mut p) = self.view.peers.write() {
                    let router = state
                        .peers
                        .get(&node.name)
                        .and_then(|l| l.router.clone())
                        .unwrap_or_else(|| ActorRef::from(member.get_cell()));
                    p.insert(
                        node.name.clone(),
                        PeerRefs {
                            node: node.clone(),
                            member: member.clone(),
                            router,
                        },
                    );
                }
                if changed {
                    info!(member = %node, %status, version = %version, "member");
                    self.view.emit(HordeEvent::Member(info));
                }
                if send_sync {
                    self.send_sync(&member);
                }
                if changed && status == MemberStatus::Alive {
                    // It may be the failover target some orphans wait for.
                    self.failover(myself, state);
                }
            }
            // Reserved: no build sends it (a status change travels in `Hello`).
            Wire::Status { .. } => {}
            Wire::Sync {
                from,
                nodes,
                entries,
                done,
            } => {
                self.merge_entries(myself, state, &nodes, entries).await;
                if done {
                    state.synced.insert(from.name);
                    self.check_ready(state);
                }
            }
            Wire::Deltas {
                from,
                batch,
                nodes,
                entries,
            } => {
                self.merge_entries(myself, state, &nodes, entries).await;
                // Acknowledged through the sender's member actor, known from its hello or, if
                // its hello is still on the way, straight from the link's proxies.
                let sender = self.view.peer_of(&from).map(|p| p.member).or_else(|| {
                    state
                        .peers
                        .get(&from.name)
                        .filter(|l| l.peer.id == from)
                        .and_then(|l| l.member.clone())
                });
                if let Some(m) = sender {
                    Self::send(
                        &m,
                        &Wire::DeltaAck {
                            node: self.me().clone(),
                            batch,
                        },
                    );
                }
            }
            Wire::DeltaAck { node, batch } => self.on_ack(state, &node.name, batch),
            w @ (Wire::Route { .. } | Wire::Event { .. }) => router::dispatch(&self.view, w, port),
            Wire::Offer { from, items } => {
                let reply = self.on_offer(myself, state, from, items).await;
                if let Some(port) = port {
                    reply_remote(port, reply);
                }
            }
            Wire::Abort { names } => {
                for (name, epoch) in names {
                    if state
                        .pending_in
                        .get(name.as_str())
                        .is_some_and(|p| p.epoch == epoch)
                        && let Some(p) = self.take_pending(state, name.as_str())
                    {
                        debug!(child = %name, "move aborted by its owner");
                        let _ = p.actor.cast(HostedMsg::Stop { reply: None });
                    }
                }
            }
            Wire::StartChild { name, spec } => {
                let Some(port) = port else { return };
                self.start_here(myself, state, name, spec, StartWaiter::Remote(port))
                    .await;
            }
            Wire::Snapshots { items } => {
                if let Some(port) = port {
                    // An answer arriving as a call is a protocol error; ignore politely.
                    reply_remote(port, RouteReply::Unavailable("unexpected".into()));
                }
                for item in items {
                    let newer = state
                        .snapshots
                        .get(&item.name)
                        .is_none_or(|s| (item.epoch, item.handled) > (s.epoch, s.handled));
                    if newer {
                        state.snapshots.insert(item.name.clone(), item);
                    }
                }
            }
            Wire::FetchSnapshots { names } => {
                let items: Vec<SnapshotItem> = names
                    .iter()
                    .filter_map(|n| state.snapshots.get(n).cloned())
                    .collect();
                if let Some(port) = port {
                    reply_remote(port, Wire::Snapshots { items });
                }
            }
            Wire::OfferReply { .. } | Wire::Started { .. } => {
                debug!("stray reply dropped");
            }
        }
    }

    fn send_sync(&self, member: &MemberRef<C>) {
        let entries: Vec<(Arc<str>, Entry)> = match self.view.registry.read() {
            Ok(r) => r.iter().map(|(n, e)| (n.clone(), e.clone())).collect(),
            Err(_) => return,
        };
        let chunks: Vec<&[(Arc<str>, Entry)]> = if entries.is_empty() {
            vec![&[]]
        } else {
            entries.chunks(SYNC_CHUNK).collect()
        };
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            let (nodes, wire) = to_wire(chunk.iter().map(|(n, e)| (n, e)));
            Self::send(
                member,
                &Wire::Sync {
                    from: self.me().clone(),
                    nodes,
                    entries: wire,
                    done: i == last,
                },
            );
        }
    }

    /// Merges entries from another member; settles conflicts and commits incoming moves.
    async fn merge_entries(
        &self,
        myself: &ActorRef<MemberMsg<LocalMsg<C>>>,
        state: &mut MemberState<C>,
        nodes: &[NodeId],
        entries: Vec<WireEntry>,
    ) {
        let owners: Vec<Arc<NodeId>> = nodes.iter().cloned().map(Arc::new).collect();
        let mut losers: Vec<(String, NodeId)> = Vec::new();
        let mut commits: Vec<Arc<str>> = Vec::new();
        {
            let Ok(mut registry) = self.view.registry.write() else {
                return;
            };
            for e in entries {
                let Some(owner) = owners.get(e.owner as usize).cloned() else {
                    warn!(child = %e.name, "registry entry with a bad owner index dropped");
                    continue;
                };
                let entry = Entry {
                    owner,
                    epoch: e.epoch,
                    spec: Arc::from(e.spec),
                    removed: e.removed,
                };
                let mine = *entry.owner == *self.me();
                let epoch = entry.epoch;
                let name = e.name;
                match registry.merge(&name, entry) {
                    Merged::Replaced(old) if *old.owner == *self.me() && !mine => {
                        if let Some(new) = registry.get_any(&name) {
                            losers.push((name.clone(), (*new.owner).clone()));
                        }
                    }
                    Merged::Inserted | Merged::Replaced(_)
                        if mine
                            && state
                                .pending_in
                                .get(name.as_str())
                                .is_some_and(|p| p.epoch == epoch) =>
                    {
                        commits.push(Arc::from(name.as_str()));
                    }
                    _ => {}
                }
            }
        }
        for name in commits {
            if let Some(p) = self.take_pending(state, &name) {
                self.commit_pending(myself, state, name, p, false);
            }
        }
        for (name, winner) in losers {
            let Some(actor) = self.view.local(&name) else {
                continue;
            };
            if let Ok(mut l) = self.view.local.write() {
                l.remove(name.as_str());
            }
            Counters::add(&self.view.counters.conflicts, 1);
            warn!(child = %name, %winner, "name conflict after a partition: this copy lost and stops");
            self.view.emit(HordeEvent::Conflict {
                name: name.clone(),
                winner: winner.clone(),
            });
            let (tx, rx) = oneshot::channel();
            let _ = actor.cast(HostedMsg::Stop { reply: Some(tx) });
            if let Some(hook) = self.view.on_conflict.clone() {
                tokio::spawn(async move {
                    let loser_state = rx.await.ok().flatten();
                    hook(ConflictReport {
                        name,
                        winner,
                        loser_state,
                    });
                });
            }
        }
    }

    async fn on_offer(
        &self,
        myself: &ActorRef<MemberMsg<LocalMsg<C>>>,
        state: &mut MemberState<C>,
        from: NodeId,
        items: Vec<OfferItem>,
    ) -> Wire {
        let mut accepted = Vec::new();
        let mut refused = Vec::new();
        let status = self.view.my_status();
        let mut takes = Vec::new();
        for item in items {
            if status != MemberStatus::Alive {
                refused.push((item.name, format!("this node is {status}")));
                continue;
            }
            if self.view.local(&item.name).is_some()
                || state.pending_in.contains_key(item.name.as_str())
            {
                refused.push((item.name, "already here".into()));
                continue;
            }
            let current = self
                .view
                .registry
                .read()
                .ok()
                .and_then(|r| r.get_any(&item.name).map(|e| e.epoch));
            if current.is_some_and(|e| e >= item.epoch) {
                refused.push((item.name, "stale offer".into()));
                continue;
            }
            takes.push(item);
        }
        // Rehydrate the whole batch at once: each start is a task switch, not CPU work.
        let spawned = futures::future::join_all(takes.into_iter().map(|item| async move {
            let init = Init::Restore {
                schema: item.schema,
                state: item.state,
                subscribers: item.subscribers,
                event_seq: item.event_seq,
            };
            let result = self.spawn_child(myself, &item.name, init, item.epoch).await;
            (item.name, item.epoch, item.spec, result)
        }))
        .await;
        for (name, epoch, spec, result) in spawned {
            match result {
                Ok(actor) => {
                    if let Ok(mut p) = self.view.pending.write() {
                        p.insert(Arc::from(name.as_str()), actor.clone());
                    }
                    state.pending_in.insert(
                        Arc::from(name.as_str()),
                        PendingIn {
                            actor,
                            epoch,
                            from: from.clone(),
                            spec: Arc::from(spec),
                            since: Instant::now(),
                        },
                    );
                    accepted.push(name);
                }
                Err(e) => {
                    warn!(child = %name, error = %e, "cannot take over child");
                    refused.push((name, e));
                }
            }
        }
        Wire::OfferReply { accepted, refused }
    }
}

/// Asks every peer for its snapshot of `name`; the newest at `epoch` or later wins.
async fn fetch_snapshot<C: Child>(
    peers: &[MemberRef<C>],
    name: &str,
    epoch: u64,
) -> Option<SnapshotItem> {
    let ask = Wire::FetchSnapshots {
        names: vec![name.to_string()],
    };
    let asks = peers.iter().map(|m| async {
        match call_member(m, &ask, SNAPSHOT_FETCH_TIMEOUT)
            .await?
            .decode::<Wire>()
        {
            Ok(Wire::Snapshots { items }) => Some(items),
            _ => None,
        }
    });
    futures::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .flatten()
        .filter(|s| s.name == name && s.epoch >= epoch)
        .max_by_key(|s| (s.epoch, s.handled))
}
