//! The distributed supervisor's handle: what applications call. Starts children where
//! placement says, routes calls and casts to wherever a child lives (local fast path, no
//! encoding), subscribes to a child's events, drains, reports.
//!
//! Owns no state of its own beyond configuration: reads go to the published read side
//! (`view`), changes go to the member actor as requests.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use discovery::{Connector, NodeId};
use ractor::{Actor, RpcReplyPort};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::child::{Child, Handoff};
use crate::core::child_core::{Body, ChildInput, Envelope as ChildMsg};
use crate::core::{CoreConfig, DrainReport, MoveConfig, RebalanceConfig, Reply, Request};
use crate::errors::{CallError, HordeError, StartError};
use crate::hosted::decode_route_reply;
use crate::mailbox::{HostedMsg, LocalMsg, ReplyTo, Token};
use crate::member::{Member, service};
use crate::membership::{MemberInfo, MemberStatus};
use crate::placement::{Placement, Rendezvous};
use crate::protocol::{
    self, MemberMsg, Route, RouteBody, RouteReply, StartChild, StopChild, Subscriber, Wire,
};
use crate::registry::Registry;
use crate::router::{self, Router};
use crate::stats::{Counters, HordeEvent, Stats};
use crate::view::{ConflictHook, MemberRef, Published, RouterRef, Shared, Sinks};

/// Default wait for readiness when no peer shows up.
pub const DEFAULT_JOIN_TIMEOUT: Duration = Duration::from_secs(3);
/// Default quorum lease (see [`HordeConfig::lease`]).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(1);
/// Default of [`HordeConfig::tombstone_grace`].
pub const DEFAULT_TOMBSTONE_GRACE: Duration = Duration::from_secs(30);
/// How long [`Horde::stop_child`] looks for the child's owner.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// A stop that did not find the child where the registry said is tried again this often.
const STOP_RETRY: Duration = Duration::from_millis(50);
/// A child whose owner is down is waited for this often during a call.
const OWNER_RETRY: Duration = Duration::from_millis(10);
/// [`Horde::wait_ready`] looks at the published snapshot this often.
const READY_POLL: Duration = Duration::from_millis(10);
/// An event missing from a subscription's sequence is waited for this long before skipping it.
const EVENT_GAP_WAIT: Duration = Duration::from_millis(200);

/// How a horde runs.
#[derive(Clone)]
pub struct HordeConfig {
    /// Name of this horde (several may run on one node, one per child type).
    pub scope: String,
    /// This node's app version (placement prefers the newest while versions differ).
    pub version: String,
    /// Where children go.
    pub placement: Arc<dyn Placement>,
    /// Rebalance when a member joins (off by default).
    pub rebalance: Option<RebalanceConfig>,
    /// Become alive after this long even if no peer said hello.
    pub join_timeout: Duration,
    /// Move waves.
    pub moves: MoveConfig,
    /// Called when this node's copy of a name loses a conflict.
    pub on_conflict: Option<ConflictHook>,
    /// Called when a drain has nobody to move to (re-resolve peers now).
    pub need_peers: Option<Arc<dyn Fn() + Send + Sync>>,
    /// A child that panics more than this often within `restart_window` is removed (Horde:
    /// `max_restarts` 3 in `max_seconds` 5).
    pub max_restarts: u32,
    /// See `max_restarts`.
    pub restart_window: Duration,
    /// How long a quorum lease runs: a member cut off from the majority stops answering for
    /// its children within it, and the majority restarts them once it surely ran out (this
    /// plus a quarter second after the last grant). Keep it below the connector's failure
    /// timeout.
    pub lease: Duration,
    /// The most bytes one message between members may take (postcard): offers, replicas,
    /// handovers, registry syncs, deltas and repairs are cut into messages of at most this
    /// size, and a child whose state (or a spec) alone exceeds it is refused with an error
    /// where it would be sent (it does not move, is not backed up; nothing is lost, the
    /// child keeps running where it is). ractor_cluster closes a link on any frame over its
    /// limit, so keep this well under the connector's `max_frame_size` on every node:
    /// [`Horde::start`] lowers it to half that size when it is above.
    pub max_message_bytes: usize,
    /// At most this many children start on one member: placement skips members at the
    /// limit, and [`Horde::start_child`] answers [`StartError::Full`] when every member is.
    /// Moves (drains, rebalancing) and failover may exceed it, so a drain never fails for
    /// it. `None` (the default): no limit.
    pub max_children: Option<usize>,
    /// How long a tombstone (a stopped child's name) is kept at least, once every member
    /// acknowledged it, before it is collected: longer than any registry message may take
    /// to arrive. Default 30 s.
    pub tombstone_grace: Duration,
}

impl std::fmt::Debug for HordeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HordeConfig")
            .field("scope", &self.scope)
            .field("version", &self.version)
            .field("rebalance", &self.rebalance)
            .field("join_timeout", &self.join_timeout)
            .field("moves", &self.moves)
            .finish_non_exhaustive()
    }
}

impl HordeConfig {
    /// Defaults: rendezvous placement, no rebalancing.
    pub fn new(scope: &str, version: &str) -> Self {
        Self {
            scope: scope.into(),
            version: version.into(),
            placement: Arc::new(Rendezvous),
            rebalance: None,
            join_timeout: DEFAULT_JOIN_TIMEOUT,
            moves: MoveConfig::default(),
            on_conflict: None,
            need_peers: None,
            max_restarts: 3,
            restart_window: Duration::from_secs(5),
            lease: DEFAULT_LEASE,
            max_message_bytes: crate::protocol::DEFAULT_MAX_MESSAGE_BYTES,
            max_children: None,
            tombstone_grace: DEFAULT_TOMBSTONE_GRACE,
        }
    }

    /// The core's part of this configuration, for child type `C`.
    pub fn core<C: Handoff>(&self) -> CoreConfig {
        CoreConfig {
            join_timeout: self.join_timeout,
            max_restarts: self.max_restarts,
            restart_window: self.restart_window,
            restart_policy: C::restart_policy(),
            moves: self.moves,
            rebalance: self.rebalance,
            placement: self.placement.clone(),
            lease: self.lease,
            reads: C::reads(),
            writes: C::writes(),
            max_message_bytes: self.max_message_bytes,
            max_children: self.max_children,
            tombstone_grace: self.tombstone_grace,
            protocols: crate::protocol::Protocols::THIS,
        }
    }
}

/// Handle of a running horde; cheap to clone.
pub struct Horde<C: Child> {
    shared: Arc<Shared<C>>,
    member: MemberRef,
    router: RouterRef,
    config: Arc<HordeConfig>,
}

impl<C: Child> Clone for Horde<C> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            member: self.member.clone(),
            router: self.router.clone(),
            config: self.config.clone(),
        }
    }
}

impl<C: Child> std::fmt::Debug for Horde<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Horde")
            .field("scope", &self.config.scope)
            .field("node", &self.shared.me)
            .finish_non_exhaustive()
    }
}

impl<C: Handoff> Horde<C> {
    /// Starts this node's member of the horde `config.scope` on `connector`'s node.
    pub async fn start(mut config: HordeConfig, connector: &Connector) -> Result<Self, HordeError> {
        let me = connector.node().clone();
        // Half the frame limit at most: the envelope and ractor_cluster's own fields fit in
        // the other half whatever the message.
        let frame_half = usize::try_from(connector.max_frame_size() / 2).unwrap_or(usize::MAX);
        if config.max_message_bytes > frame_half {
            tracing::info!(
                budget = config.max_message_bytes,
                frame = connector.max_frame_size(),
                "message budget lowered to half the connector's frame limit"
            );
            config.max_message_bytes = frame_half;
        }
        let (events, _) = broadcast::channel(4096);
        let counters = Arc::new(Counters::default());
        let clock = tokio::time::Instant::now().into_std();
        let initial = crate::core::Core::<()>::new(
            me.clone(),
            &config.version,
            config.core::<C>(),
            counters.clone(),
            clock,
        )
        .view();
        let shared = Arc::new(Shared {
            me: me.clone(),
            published: Published::empty(initial),
            sinks: Sinks::new(),
            counters,
            events,
            placement: config.placement.clone(),
            clock,
            on_conflict: config.on_conflict.clone(),
            max_message_bytes: config.max_message_bytes,
            refusal: tokio::sync::watch::Sender::new(None),
        });
        // The router first: it must be in the initial sync of every link the member sees.
        let (router, _) = Actor::spawn(
            Some(me.actor_name(&router::service(&config.scope))),
            Router {
                shared: shared.clone(),
            },
            (),
        )
        .await
        .map_err(|e| HordeError::Start(e.to_string()))?;
        let member = Member {
            shared: shared.clone(),
            connector: connector.clone(),
            scope: config.scope.clone(),
            version: config.version.clone(),
            config: config.core::<C>(),
            need_peers: config.need_peers.clone(),
        };
        let (member, _) = Actor::spawn(Some(me.actor_name(&service(&config.scope))), member, ())
            .await
            .map_err(|e| HordeError::Start(e.to_string()))?;
        Ok(Horde {
            shared,
            member,
            router,
            config: Arc::new(config),
        })
    }

    fn request(&self, request: Request<Token>) {
        let _ = self
            .member
            .cast(MemberMsg::Local(LocalMsg::Request(request)));
    }

    /// Asks the member and waits for its answer.
    async fn ask(&self, make: impl FnOnce(Token) -> Request<Token>) -> Option<Reply> {
        let (tx, rx) = oneshot::channel();
        self.request(make(Token::Local(tx)));
        rx.await.ok()
    }

    /// Discovery found no peers: do not wait for any before becoming alive.
    pub fn no_peers_expected(&self) {
        self.request(Request::NoPeersExpected);
    }

    /// Starts `name` from `spec` on the member placement chooses. Returns once every member
    /// knows the name (so a next request may go to any node).
    pub async fn start_child(&self, name: &str, spec: &C::Spec) -> Result<NodeId, StartError> {
        let published = self.shared.load();
        if let Some(e) = published.core.entry(name) {
            return Err(StartError::AlreadyStarted {
                name: name.into(),
                owner: e.owner.name.clone(),
            });
        }
        let spec = postcard::to_stdvec(spec).map_err(|e| StartError::Failed {
            name: name.into(),
            reason: format!("cannot encode spec: {e}"),
        })?;
        let limit = self.config.max_children;
        let mut candidates = published
            .core
            .candidates(self.shared.placement.wants_load() || limit.is_some());
        if let Some(limit) = limit {
            // Placement skips members at the limit; when only full ones could take it, the
            // cluster is full (not starting or draining).
            let before = self.shared.placement.place(name, &candidates);
            candidates.retain(|c| c.load < limit);
            if before.is_some() && self.shared.placement.place(name, &candidates).is_none() {
                return Err(StartError::Full { limit });
            }
        }
        let target = self
            .shared
            .placement
            .place(name, &candidates)
            .ok_or(StartError::NoMember)?;
        let result = if target == self.shared.me {
            let name = name.to_string();
            match self.ask(|reply| Request::Start { name, spec, reply }).await {
                Some(Reply::Started(r)) => r,
                _ => {
                    return Err(StartError::Failed {
                        name: self.shared.me.name.clone(),
                        reason: "member stopped".into(),
                    });
                }
            }
        } else {
            let Some(member) = published.peer_of(&target).map(|p| p.member.clone()) else {
                return Err(StartError::NoMember);
            };
            let q = StartChild {
                name: name.into(),
                spec,
            };
            match protocol::call(&member, q, Duration::from_secs(10)).await {
                Ok(started) => started.result,
                Err(e) => {
                    return Err(StartError::Failed {
                        name: name.into(),
                        reason: format!("{} did not answer: {e}", target.name),
                    });
                }
            }
        };
        result.map_err(|refusal| StartError::refused(name, refusal))
    }

    /// Stops `name` wherever it runs (the request goes to its owner) and removes it: a
    /// tombstone every member learns, and its backup drops its state. Returns true once it
    /// was stopped; false when there is no such child (or it was removed meanwhile), or its
    /// owner could not be reached within 10 s (it is moving or restarting all that time).
    pub async fn stop_child(&self, name: &str) -> bool {
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            let published = self.shared.load();
            let Some(entry) = published.core.entry(name) else {
                return false;
            };
            let owner = (*entry.owner).clone();
            let found = if owner == self.shared.me {
                drop(published);
                let name = name.to_string();
                matches!(
                    self.ask(|reply| Request::Stop { name, reply }).await,
                    Some(Reply::Stopped(true))
                )
            } else if let Some(member) = published.peer_of(&owner).map(|p| p.member.clone()) {
                drop(published);
                let q = StopChild { name: name.into() };
                let left = deadline.saturating_duration_since(Instant::now());
                match protocol::call(&member, q, left).await {
                    Ok(stopped) => stopped.found,
                    Err(e) => {
                        debug!(child = %name, owner = %owner.name, error = %e, "stop not answered");
                        false
                    }
                }
            } else {
                false
            };
            if found {
                return true;
            }
            // Not hosted where the registry said (moving, restarting, its node down): look
            // again until the deadline.
            if Instant::now() + STOP_RETRY >= deadline {
                return false;
            }
            tokio::time::sleep(STOP_RETRY).await;
        }
    }

    /// Sends `msg` to `name` and waits for its reply, wherever it lives, also while it moves.
    /// After `Timeout` or `Unavailable` the message may or may not have been applied: retry
    /// only idempotent messages. `NoQuorum` means it was not applied: its node is cut off
    /// from the majority (or has not got its lease yet).
    pub async fn call(
        &self,
        name: &str,
        msg: C::Msg,
        timeout: Duration,
    ) -> Result<C::Reply, CallError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.call_once(name, msg.clone(), left).await {
                // Not applied: a lease on the way (a member that just joined), or a failover
                // about to serve the child elsewhere. Looked up again until the deadline.
                Err(CallError::NoQuorum(_)) if Instant::now() + OWNER_RETRY < deadline => {
                    tokio::time::sleep(OWNER_RETRY).await;
                }
                other => return other,
            }
        }
    }

    async fn call_once(
        &self,
        name: &str,
        msg: C::Msg,
        timeout: Duration,
    ) -> Result<C::Reply, CallError> {
        let deadline = Instant::now() + timeout;
        let mut msg = msg;
        loop {
            let published = self.shared.load();
            let Some(entry) = published.core.entry(name) else {
                return Err(CallError::NotFound(name.into()));
            };
            if *entry.owner == self.shared.me {
                if let Some(actor) = published.local(name) {
                    let (tx, rx) = oneshot::channel();
                    let m = HostedMsg::<C>(ChildInput::Message(ChildMsg {
                        body: Body::Typed(msg),
                        hops: 0,
                        reply: Some(ReplyTo::Local(tx)),
                    }));
                    match actor.cast(m) {
                        Ok(()) => {
                            return match tokio::time::timeout_at(deadline, rx).await {
                                Ok(Ok(r)) => r,
                                Ok(Err(_)) => {
                                    Err(CallError::unavailable(name, "the child stopped"))
                                }
                                Err(_) => Err(CallError::Timeout(name.into())),
                            };
                        }
                        Err(ractor::MessagingErr::SendErr(HostedMsg(ChildInput::Message(
                            ChildMsg {
                                body: Body::Typed(m),
                                ..
                            },
                        )))) => {
                            // Stopped (moved away) between the lookup and the send: look again.
                            msg = m;
                        }
                        Err(_) => return Err(CallError::NotFound(name.into())),
                    }
                } else {
                    // Arriving or restarting here: the router knows.
                    return self.route_call(&self.router, name, msg, deadline).await;
                }
            } else if let Some(router) = published.peer_of(&entry.owner).map(|p| p.router.clone()) {
                Counters::add(&self.shared.counters.routed, 1);
                return self.route_call(&router, name, msg, deadline).await;
            } else {
                // The owner is down and the failover target has not registered the restart yet.
                if Instant::now() + OWNER_RETRY >= deadline {
                    return Err(CallError::unavailable(
                        name,
                        format!(
                            "its node {} is down and it has not restarted yet",
                            entry.owner.name
                        ),
                    ));
                }
                drop(published);
                tokio::time::sleep(OWNER_RETRY).await;
            }
        }
    }

    async fn route_call(
        &self,
        router: &RouterRef,
        name: &str,
        msg: C::Msg,
        deadline: Instant,
    ) -> Result<C::Reply, CallError> {
        let bytes = postcard::to_stdvec(&msg)
            .map_err(|e| CallError::unavailable(name, format!("cannot encode message: {e}")))?;
        let wire = Wire::Route(Route {
            name: name.into(),
            hops: 0,
            body: RouteBody::User(bytes),
        });
        let env =
            crate::protocol::encode_wire(&wire).map_err(|e| CallError::unavailable(name, e))?;
        crate::protocol::check_size("the message", env.len(), self.shared.max_message_bytes)
            .map_err(|e| CallError::unavailable(name, e))?;
        let (tx, rx) = oneshot::channel();
        let timeout = deadline.saturating_duration_since(Instant::now());
        let port: RpcReplyPort<Vec<u8>> = (tx, timeout).into();
        if router.cast(MemberMsg::Call(env, port)).is_err() {
            return Err(CallError::unavailable(name, "owner unreachable"));
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(bytes)) => decode_route_reply::<C>(name, bytes),
            Ok(Err(_)) => Err(CallError::unavailable(name, "the link to its node closed")),
            Err(_) => Err(CallError::Timeout(name.into())),
        }
    }

    /// Sends `msg` to `name` without waiting.
    pub fn cast(&self, name: &str, msg: C::Msg) -> Result<(), CallError> {
        let published = self.shared.load();
        let entry = published
            .core
            .entry(name)
            .ok_or_else(|| CallError::NotFound(name.into()))?;
        let mut msg = msg;
        if *entry.owner == self.shared.me
            && let Some(actor) = published.local(name)
        {
            let m = HostedMsg::<C>(ChildInput::Message(ChildMsg {
                body: Body::Typed(msg),
                hops: 0,
                reply: None,
            }));
            match actor.cast(m) {
                Ok(()) => return Ok(()),
                Err(ractor::MessagingErr::SendErr(HostedMsg(ChildInput::Message(ChildMsg {
                    body: Body::Typed(m),
                    ..
                })))) => msg = m,
                Err(_) => return Err(CallError::NotFound(name.into())),
            }
        }
        let router = self
            .router_for(&entry.owner)
            .ok_or_else(|| CallError::unavailable(name, "its node is down"))?;
        let bytes = postcard::to_stdvec(&msg).map_err(|e| CallError::unavailable(name, e))?;
        crate::protocol::check_size("the message", bytes.len(), self.shared.max_message_bytes)
            .map_err(|e| CallError::unavailable(name, e))?;
        if router::send_route(&router, name.into(), 0, RouteBody::User(bytes), None) {
            Ok(())
        } else {
            Err(CallError::unavailable(name, "owner unreachable"))
        }
    }

    /// Subscribes to the events `name` emits, in order, across its moves.
    pub async fn subscribe(&self, name: &str) -> Result<Subscription<C>, CallError> {
        let sink = rand::random::<u64>();
        let (tx, rx) = mpsc::unbounded_channel();
        self.shared.sinks.insert(sink, tx);
        let sub = Subscriber {
            node: self.shared.me.clone(),
            sink,
        };
        let subscription = Subscription {
            horde: self.clone(),
            name: name.into(),
            sub: sub.clone(),
            rx,
            next: None,
            held: BTreeMap::new(),
            gap_since: None,
        };
        self.system_call(name, RouteBody::Subscribe(sub), Duration::from_secs(5))
            .await?;
        Ok(subscription)
    }

    async fn system_call(
        &self,
        name: &str,
        body: RouteBody,
        timeout: Duration,
    ) -> Result<(), CallError> {
        let deadline = Instant::now() + timeout;
        loop {
            let owner = {
                let published = self.shared.load();
                let entry = published
                    .core
                    .entry(name)
                    .ok_or_else(|| CallError::NotFound(name.into()))?;
                (*entry.owner).clone()
            };
            if let Some(router) = self.router_for(&owner) {
                let q = Route {
                    name: name.into(),
                    hops: 0,
                    body,
                };
                let timeout = deadline.saturating_duration_since(Instant::now());
                return match protocol::call(&router, q, timeout).await {
                    Ok(RouteReply::Ok(_)) => Ok(()),
                    Ok(RouteReply::NotFound) => Err(CallError::NotFound(name.into())),
                    Ok(RouteReply::Unavailable(why)) => Err(CallError::from_unavailable(name, why)),
                    Err(protocol::CallFailed::Timeout(_)) => Err(CallError::Timeout(name.into())),
                    Err(e) => Err(CallError::unavailable(name, e)),
                };
            }
            if Instant::now() >= deadline {
                return Err(CallError::Timeout(name.into()));
            }
            tokio::time::sleep(OWNER_RETRY).await;
        }
    }

    /// Moves every child off this node (no new ones arrive) within `deadline`; this node stays
    /// a member, with no children (the console's `drain`). Children that could not move
    /// keep running here: nothing stays frozen.
    pub async fn drain(&self, deadline: Duration) -> DrainReport {
        self.drain_with(deadline, false).await
    }

    /// Moves every child off this node within `deadline`, then leaves the quorum set if
    /// nothing is left: what SIGTERM does before the process exits. Children that could not
    /// move restart elsewhere from their backups once this node is gone.
    pub async fn drain_and_leave(&self, deadline: Duration) -> DrainReport {
        self.drain_with(deadline, true).await
    }

    async fn drain_with(&self, deadline: Duration, leave: bool) -> DrainReport {
        match self
            .ask(|reply| Request::Drain {
                deadline,
                leave,
                reply,
            })
            .await
        {
            Some(Reply::Drained(report)) => report,
            _ => DrainReport::default(),
        }
    }
}

impl<C: Child> Horde<C> {
    /// The router that reaches `owner`'s children: this node's own, or that incarnation's.
    fn router_for(&self, owner: &NodeId) -> Option<RouterRef> {
        if *owner == self.shared.me {
            Some(self.router.clone())
        } else {
            self.shared.load().peer_of(owner).map(|p| p.router.clone())
        }
    }

    /// The node hosting `name` now.
    pub fn whereis(&self, name: &str) -> Option<NodeId> {
        self.shared
            .load()
            .core
            .entry(name)
            .map(|e| (*e.owner).clone())
    }

    /// Every live name and its node.
    pub fn names(&self) -> Vec<(String, NodeId)> {
        self.shared
            .load()
            .core
            .registry
            .iter()
            .filter(|(_, e)| !e.removed)
            .map(|(n, e)| (n.to_string(), (*e.owner).clone()))
            .collect()
    }

    /// How many live names the node called `node` holds (any run of it), as this member's
    /// registry says: a count kept as the registry changes, not a walk over the names.
    pub fn names_held_by(&self, node: &str) -> usize {
        self.shared.load().core.registry.load_of(node)
    }

    /// Names hosted (and serving) on this node.
    pub fn local_names(&self) -> Vec<String> {
        self.shared.load().local_names()
    }

    /// Live names in the registry.
    pub fn registry_len(&self) -> usize {
        self.shared.load().core.registry.live()
    }

    /// A copy of the registry replica (for comparing replicas in tests and tools).
    pub fn registry_snapshot(&self) -> Registry {
        self.shared.load().core.registry.clone()
    }

    /// Members, this node first.
    pub fn members(&self) -> Vec<MemberInfo> {
        self.shared.load().core.member_list()
    }

    /// This member's status.
    pub fn status(&self) -> MemberStatus {
        self.shared.load().core.status
    }

    /// Joined, synced (or alone) and holding its quorum lease: may take children and answer,
    /// counts as ready.
    pub fn is_ready(&self) -> bool {
        self.status() == MemberStatus::Alive && self.has_quorum()
    }

    /// Waits until this member is ready ([`Horde::is_ready`]) and sees at least `members`
    /// members alive, itself included; what an application does after starting its nodes and
    /// before its first [`Horde::start_child`]. A single node that expects no peers calls
    /// [`Horde::no_peers_expected`] first, or waits for [`HordeConfig::join_timeout`].
    ///
    /// Fails with [`HordeError::NotReady`] (saying what was missing) after `timeout`.
    pub async fn wait_ready(&self, members: usize, timeout: Duration) -> Result<(), HordeError> {
        let deadline = Instant::now() + timeout;
        loop {
            let alive = self
                .members()
                .iter()
                .filter(|m| m.status == MemberStatus::Alive)
                .count();
            if alive >= members && self.is_ready() {
                return Ok(());
            }
            if let Some(refusal) = self.refusal() {
                return Err(HordeError::Incompatible(refusal));
            }
            if Instant::now() >= deadline {
                return Err(HordeError::NotReady {
                    node: self.shared.me.name.clone(),
                    waited: timeout,
                    want: members,
                    alive,
                    status: self.status(),
                    quorum: self.has_quorum(),
                });
            }
            // Readiness is read from the published snapshot, which has no change signal (the
            // lease runs out without an event): look again shortly.
            tokio::time::sleep(READY_POLL).await;
        }
    }

    /// Why this node cannot join the cluster it found, once it knows (see
    /// [`crate::membership::Incompatible`]): it never becomes ready, holds nothing, and no
    /// member counts it; the application should stop it and say why (`minotaur start` exits
    /// 3).
    pub fn refusal(&self) -> Option<crate::membership::Incompatible> {
        self.shared.refusal.borrow().clone()
    }

    /// Waits until this node finds it cannot join the cluster (forever, if it can).
    pub async fn refused(&self) -> crate::membership::Incompatible {
        let mut rx = self.shared.refusal.subscribe();
        loop {
            if let Some(r) = rx.borrow_and_update().clone() {
                return r;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// The protocol versions this node speaks, and the highest every member speaks (the one
    /// in use).
    pub fn protocols(&self) -> (crate::protocol::Protocols, u16) {
        let p = self.shared.load();
        (p.core.protocols, p.core.protocol_in_use)
    }

    /// True while this member holds its quorum lease: it is on the majority side and its
    /// children may answer. A member cut off from the majority loses it within the lease.
    pub fn has_quorum(&self) -> bool {
        self.shared
            .load()
            .core
            .lease_valid(tokio::time::Instant::now().into_std())
    }

    /// This node.
    pub fn node(&self) -> &NodeId {
        &self.shared.me
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }

    /// The event stream.
    pub fn events(&self) -> broadcast::Receiver<HordeEvent> {
        self.shared.events.subscribe()
    }

    /// Stops this node's horde at once, without a drain: its children stop where they are
    /// and nothing is handed off, as in a crash; the other members restart them from their
    /// backups once they see this node down. For fencing a misbehaving node, and for tests
    /// that need a crash inside one process.
    pub fn abort(&self) {
        let cell = self.member.get_cell();
        cell.stop_children(Some("aborted".into()));
        cell.kill();
        self.router.get_cell().kill();
    }

    /// Stops the member actor (children stop with the process).
    pub async fn shutdown(&self) {
        let _ = self
            .member
            .stop_and_wait(None, Some(Duration::from_secs(2)))
            .await;
    }
}

/// Events of one child, in order and without repeats, across its moves. Dropping it
/// unsubscribes.
pub struct Subscription<C: Child> {
    horde: Horde<C>,
    name: String,
    sub: Subscriber,
    rx: mpsc::UnboundedReceiver<(u64, C::Event)>,
    /// Next sequence number expected (unknown until the first event).
    next: Option<u64>,
    /// Events that arrived ahead of a missing one (they travel on different links around a move).
    held: BTreeMap<u64, C::Event>,
    /// Since when the next expected event is missing.
    gap_since: Option<Instant>,
}

impl<C: Child> std::fmt::Debug for Subscription<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<C: Handoff> Subscription<C> {
    /// The next event with its sequence number; `None` when the horde stopped.
    pub async fn next(&mut self) -> Option<(u64, C::Event)> {
        loop {
            if let Some(next) = self.next
                && let Some(ev) = self.held.remove(&next)
            {
                self.next = Some(next + 1);
                self.gap_since = None;
                return Some((next, ev));
            }
            if let Some(next) = self.next
                && let Some((&first, _)) = self.held.iter().next()
            {
                // A gap: wait a little for the missing event, then skip it.
                let since = *self.gap_since.get_or_insert_with(Instant::now);
                let wait = EVENT_GAP_WAIT.saturating_sub(since.elapsed());
                match tokio::time::timeout(wait, self.rx.recv()).await {
                    Ok(Some((seq, ev))) => self.accept(seq, ev),
                    Ok(None) => return None,
                    Err(_) => {
                        warn!(child = %self.name, missing = next, resumed_at = first, "event gap; skipping");
                        self.next = Some(first);
                    }
                }
                continue;
            }
            let (seq, ev) = self.rx.recv().await?;
            match self.next {
                None => {
                    self.next = Some(seq + 1);
                    return Some((seq, ev));
                }
                Some(_) => self.accept(seq, ev),
            }
        }
    }

    fn accept(&mut self, seq: u64, ev: C::Event) {
        if self.next.is_some_and(|n| seq >= n) {
            self.held.insert(seq, ev);
        }
    }
}

impl<C: Child> Drop for Subscription<C> {
    fn drop(&mut self) {
        self.horde.shared.sinks.remove(self.sub.sink);
        // Best effort: the child also drops subscribers whose sink is gone on its next event.
        let Some(owner) = self.horde.whereis(&self.name) else {
            return;
        };
        if let Some(router) = self.horde.router_for(&owner) {
            router::send_route(
                &router,
                self.name.clone(),
                0,
                RouteBody::Unsubscribe(self.sub.clone()),
                None,
            );
        }
    }
}
