//! The distributed supervisor's handle: what applications call. Starts children where
//! placement says, routes calls and casts to wherever a child lives (local fast path, no
//! encoding), subscribes to a child's events, drains, reports.
//!
//! Owns no state of its own beyond configuration: reads go to the shared [`View`], changes go
//! to the member actor as messages.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use discovery::{Connector, Envelope, NodeId};
use ractor::{Actor, RpcReplyPort};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::child::{Child, Handoff};
use crate::handoff::{self, DrainReport, MoveConfig};
use crate::hosted::{CallError, HostedMsg, Reply, decode_reply};
use crate::member::{LocalMsg, Member, service};
use crate::membership::{MemberInfo, MemberStatus, Members, Version};
use crate::placement::{Placement, Rendezvous};
use crate::registry::Registry;
use crate::router::{self, Router, RouterRef};
use crate::stats::{Counters, HordeEvent, Stats};
use crate::view::{ConflictHook, MemberRef, View};
use crate::wire::{MemberMsg, RouteBody, Subscriber, Wire, call_member};

/// Default wait for readiness when no peer shows up.
pub const DEFAULT_JOIN_TIMEOUT: Duration = Duration::from_secs(3);
/// A child whose owner is down is waited for this often during a call.
const OWNER_RETRY: Duration = Duration::from_millis(10);

/// How a member's refusal of an existing name reads on the wire (`Wire::Started` carries
/// errors as text): `already_started` writes it, `start_child` reads the owner back.
const ALREADY_STARTED_ON: &str = " is already started on ";

/// The refusal `Wire::Started` carries for a name that already runs on `owner`.
pub(crate) fn already_started(name: &str, owner: &str) -> String {
    format!("`{name}`{ALREADY_STARTED_ON}{owner}")
}

/// The error for a member's refusal to start `name`.
fn start_refused(name: &str, reason: String) -> StartError {
    match reason.split_once(ALREADY_STARTED_ON) {
        Some((_, owner)) => StartError::AlreadyStarted {
            name: name.into(),
            owner: owner.into(),
        },
        None => StartError::Failed {
            name: name.into(),
            reason,
        },
    }
}
/// An event missing from a subscription's sequence is waited for this long before skipping it.
const EVENT_GAP_WAIT: Duration = Duration::from_millis(200);

/// Rebalancing on join (Horde's `process_redistribution: :active`).
#[derive(Debug, Clone, Copy)]
pub struct RebalanceConfig {
    /// Most children moved per second.
    pub rate_per_sec: usize,
}

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
        }
    }
}

/// Why a horde could not start.
#[derive(Debug, thiserror::Error)]
pub enum HordeError {
    /// The member actor did not start.
    #[error("cannot start the horde member: {0}")]
    Start(String),
}

/// Why a child could not be started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    /// The name runs already.
    #[error("`{name}` is already started on {owner}")]
    AlreadyStarted {
        /// The name.
        name: String,
        /// Where it runs.
        owner: String,
    },
    /// No member can take children (all joining or draining).
    #[error("no member can take children now (the cluster is starting or draining); retry")]
    NoMember,
    /// The chosen member refused or failed.
    #[error("starting `{name}` failed: {reason}")]
    Failed {
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
}

/// Handle of a running horde; cheap to clone.
pub struct Horde<C: Child> {
    view: Arc<View<C>>,
    member: MemberRef<C>,
    router: RouterRef,
    config: Arc<HordeConfig>,
}

impl<C: Child> Clone for Horde<C> {
    fn clone(&self) -> Self {
        Self {
            view: self.view.clone(),
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
            .field("node", &self.view.me)
            .finish_non_exhaustive()
    }
}

impl<C: Child> Horde<C> {
    /// The router that reaches `owner`'s children: this node's own, or that incarnation's.
    fn router_for(&self, owner: &NodeId) -> Option<RouterRef> {
        if *owner == self.view.me {
            Some(self.router.clone())
        } else {
            router::router_of(&self.view, owner)
        }
    }
}

impl<C: Handoff> Horde<C> {
    /// Starts this node's member of the horde `config.scope` on `connector`'s node.
    pub async fn start(config: HordeConfig, connector: &Connector) -> Result<Self, HordeError> {
        let me = connector.node().clone();
        let (events, _) = broadcast::channel(4096);
        let view = Arc::new(View {
            node_name: Arc::from(me.name.as_str()),
            me: me.clone(),
            version: Version::parse(&config.version),
            status: std::sync::RwLock::new(MemberStatus::Joining),
            registry: std::sync::RwLock::new(Registry::new()),
            local: std::sync::RwLock::new(Default::default()),
            members: std::sync::RwLock::new(Members::new()),
            peers: std::sync::RwLock::new(Default::default()),
            sinks: std::sync::Mutex::new(Default::default()),
            pending: std::sync::RwLock::new(Default::default()),
            counters: Counters::default(),
            events,
            placement: config.placement.clone(),
            clock: Instant::now(),
            on_conflict: config.on_conflict.clone(),
        });
        let member = Member {
            view: view.clone(),
            hello_seq: std::sync::atomic::AtomicU64::new(0),
            connector: connector.clone(),
            scope: config.scope.clone(),
            join_timeout: config.join_timeout,
            max_restarts: config.max_restarts,
            restart_window: config.restart_window,
        };
        // The router first: it must be in the initial sync of every link the member sees.
        let (router, _) = Actor::spawn(
            Some(me.actor_name(&router::service(&config.scope))),
            Router { view: view.clone() },
            (),
        )
        .await
        .map_err(|e| HordeError::Start(e.to_string()))?;
        let (member, _) = Actor::spawn(Some(me.actor_name(&service(&config.scope))), member, ())
            .await
            .map_err(|e| HordeError::Start(e.to_string()))?;
        let horde = Horde {
            view,
            member,
            router,
            config: Arc::new(config),
        };
        if let Some(rb) = horde.config.rebalance {
            let h = horde.clone();
            tokio::spawn(async move { h.rebalance_loop(rb).await });
        }
        Ok(horde)
    }

    /// Discovery found no peers: do not wait for any before becoming alive.
    pub fn no_peers_expected(&self) {
        let _ = self
            .member
            .cast(MemberMsg::Local(LocalMsg::NoPeersExpected));
    }

    /// Starts `name` from `spec` on the member placement chooses. Returns once every member
    /// knows the name (so a next request may go to any node).
    pub async fn start_child(&self, name: &str, spec: &C::Spec) -> Result<NodeId, StartError> {
        if let Some(e) = self.view.entry(name) {
            return Err(StartError::AlreadyStarted {
                name: name.into(),
                owner: e.owner.name.clone(),
            });
        }
        let spec = postcard::to_stdvec(spec).map_err(|e| StartError::Failed {
            name: name.into(),
            reason: format!("cannot encode spec: {e}"),
        })?;
        let target = self.view.place(name).ok_or(StartError::NoMember)?;
        let result = if target == self.view.me {
            let (tx, rx) = oneshot::channel();
            let _ = self.member.cast(MemberMsg::Local(LocalMsg::Start {
                name: name.into(),
                spec,
                reply: tx,
            }));
            rx.await.unwrap_or_else(|_| Err("member stopped".into()))
        } else {
            let Some(member) = self.view.peer(&target.name).map(|p| p.member) else {
                return Err(StartError::NoMember);
            };
            let wire = Wire::StartChild {
                name: name.into(),
                spec,
            };
            match call_member(&member, &wire, Duration::from_secs(10))
                .await
                .map(|e| e.decode::<Wire>())
            {
                Some(Ok(Wire::Started { result })) => result,
                _ => Err(format!("{} did not answer", target.name)),
            }
        };
        result.map_err(|reason| start_refused(name, reason))
    }

    /// Stops `name` if it runs on this node and removes it from the registry.
    pub async fn stop_child(&self, name: &str) -> bool {
        let (tx, rx) = oneshot::channel();
        let _ = self.member.cast(MemberMsg::Local(LocalMsg::StopChild {
            name: name.into(),
            reply: tx,
        }));
        rx.await.unwrap_or(false)
    }

    /// Sends `msg` to `name` and waits for its reply, wherever it lives, also while it moves.
    /// After `Timeout` or `Unavailable` the message may or may not have been applied: retry
    /// only idempotent messages.
    pub async fn call(
        &self,
        name: &str,
        msg: C::Msg,
        timeout: Duration,
    ) -> Result<C::Reply, CallError> {
        let deadline = Instant::now() + timeout;
        let mut msg = msg;
        loop {
            let entry = self.view.entry(name);
            let Some(entry) = entry else {
                return Err(CallError::NotFound(name.into()));
            };
            if *entry.owner == self.view.me {
                if let Some(actor) = self.view.local(name) {
                    let (tx, rx) = oneshot::channel();
                    match actor.cast(HostedMsg::Local {
                        msg,
                        reply: Reply::Local(tx),
                    }) {
                        Ok(()) => {
                            return match tokio::time::timeout_at(deadline, rx).await {
                                Ok(Ok(r)) => r,
                                Ok(Err(_)) => Err(CallError::Unavailable {
                                    name: name.into(),
                                    reason: "the child stopped".into(),
                                }),
                                Err(_) => Err(CallError::Timeout(name.into())),
                            };
                        }
                        Err(ractor::MessagingErr::SendErr(HostedMsg::Local { msg: m, .. })) => {
                            // Stopped (moved away) between the lookup and the send: look again.
                            msg = m;
                        }
                        Err(_) => return Err(CallError::NotFound(name.into())),
                    }
                } else {
                    // Arriving or restarting here: the member knows.
                    return self.route_call(&self.router, name, msg, deadline).await;
                }
            } else if let Some(router) = router::router_of(&self.view, &entry.owner) {
                Counters::add(&self.view.counters.routed, 1);
                return self.route_call(&router, name, msg, deadline).await;
            }
            // The owner is down and the failover target has not registered the restart yet.
            if Instant::now() + OWNER_RETRY >= deadline {
                return Err(CallError::Unavailable {
                    name: name.into(),
                    reason: format!(
                        "its node {} is down and it has not restarted yet",
                        entry.owner.name
                    ),
                });
            }
            tokio::time::sleep(OWNER_RETRY).await;
        }
    }

    async fn route_call(
        &self,
        router: &RouterRef,
        name: &str,
        msg: C::Msg,
        deadline: Instant,
    ) -> Result<C::Reply, CallError> {
        let bytes = postcard::to_stdvec(&msg).map_err(|e| CallError::Unavailable {
            name: name.into(),
            reason: format!("cannot encode message: {e}"),
        })?;
        let wire = Wire::Route {
            name: name.into(),
            hops: 0,
            body: RouteBody::User(bytes),
        };
        let env = Envelope::encode(&wire).map_err(|e| CallError::Unavailable {
            name: name.into(),
            reason: e.to_string(),
        })?;
        let (tx, rx) = oneshot::channel();
        let timeout = deadline.saturating_duration_since(Instant::now());
        let port: RpcReplyPort<Vec<u8>> = (tx, timeout).into();
        if router.cast(MemberMsg::Call(env, port)).is_err() {
            return Err(CallError::Unavailable {
                name: name.into(),
                reason: "owner unreachable".into(),
            });
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(bytes)) => decode_reply::<C>(name, &bytes),
            Ok(Err(_)) => Err(CallError::Unavailable {
                name: name.into(),
                reason: "the link to its node closed".into(),
            }),
            Err(_) => Err(CallError::Timeout(name.into())),
        }
    }

    /// Sends `msg` to `name` without waiting.
    pub fn cast(&self, name: &str, msg: C::Msg) -> Result<(), CallError> {
        let entry = self
            .view
            .entry(name)
            .ok_or_else(|| CallError::NotFound(name.into()))?;
        let mut msg = msg;
        if *entry.owner == self.view.me
            && let Some(actor) = self.view.local(name)
        {
            match actor.cast(HostedMsg::Local {
                msg,
                reply: Reply::None,
            }) {
                Ok(()) => return Ok(()),
                Err(ractor::MessagingErr::SendErr(HostedMsg::Local { msg: m, .. })) => msg = m,
                Err(_) => return Err(CallError::NotFound(name.into())),
            }
        }
        let member = self
            .router_for(&entry.owner)
            .ok_or_else(|| CallError::Unavailable {
                name: name.into(),
                reason: "its node is down".into(),
            })?;
        let bytes = postcard::to_stdvec(&msg).map_err(|e| CallError::Unavailable {
            name: name.into(),
            reason: e.to_string(),
        })?;
        let env = Envelope::encode(&Wire::Route {
            name: name.into(),
            hops: 0,
            body: RouteBody::User(bytes),
        })
        .map_err(|e| CallError::Unavailable {
            name: name.into(),
            reason: e.to_string(),
        })?;
        member
            .cast(MemberMsg::Cast(env))
            .map_err(|_| CallError::Unavailable {
                name: name.into(),
                reason: "owner unreachable".into(),
            })
    }

    /// Subscribes to the events `name` emits, in order, across its moves.
    pub async fn subscribe(&self, name: &str) -> Result<Subscription<C>, CallError> {
        let sink = rand::random::<u64>();
        let (tx, rx) = mpsc::unbounded_channel();
        if let Ok(mut s) = self.view.sinks.lock() {
            s.insert(sink, tx);
        }
        let sub = Subscriber {
            node: self.view.me.clone(),
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
            let entry = self
                .view
                .entry(name)
                .ok_or_else(|| CallError::NotFound(name.into()))?;
            if let Some(member) = self.router_for(&entry.owner) {
                let wire = Wire::Route {
                    name: name.into(),
                    hops: 0,
                    body,
                };
                let answer = call_member(
                    &member,
                    &wire,
                    deadline.saturating_duration_since(Instant::now()),
                )
                .await;
                return match answer.map(|e| e.decode::<crate::wire::RouteReply>()) {
                    Some(Ok(crate::wire::RouteReply::Ok(_))) => Ok(()),
                    Some(Ok(crate::wire::RouteReply::NotFound)) => {
                        Err(CallError::NotFound(name.into()))
                    }
                    Some(Ok(crate::wire::RouteReply::Unavailable(reason))) => {
                        Err(CallError::Unavailable {
                            name: name.into(),
                            reason,
                        })
                    }
                    Some(Err(e)) => Err(CallError::Unavailable {
                        name: name.into(),
                        reason: e.to_string(),
                    }),
                    None => Err(CallError::Timeout(name.into())),
                };
            }
            if Instant::now() >= deadline {
                return Err(CallError::Timeout(name.into()));
            }
            tokio::time::sleep(OWNER_RETRY).await;
        }
    }

    /// The node hosting `name` now.
    pub fn whereis(&self, name: &str) -> Option<NodeId> {
        self.view
            .registry
            .read()
            .ok()?
            .get(name)
            .map(|e| (*e.owner).clone())
    }

    /// Every live name and its node.
    pub fn names(&self) -> Vec<(String, NodeId)> {
        self.view
            .registry
            .read()
            .map(|r| {
                r.iter()
                    .filter(|(_, e)| !e.removed)
                    .map(|(n, e)| (n.to_string(), (*e.owner).clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Names hosted (and serving) on this node.
    pub fn local_names(&self) -> Vec<String> {
        self.view.local_names()
    }

    /// Live names in the registry.
    pub fn registry_len(&self) -> usize {
        self.view.registry.read().map(|r| r.live()).unwrap_or(0)
    }

    /// A copy of the registry replica (for comparing replicas in tests and tools).
    pub fn registry_snapshot(&self) -> Registry {
        self.view
            .registry
            .read()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Members, this node first.
    pub fn members(&self) -> Vec<MemberInfo> {
        self.view.member_list()
    }

    /// This member's status.
    pub fn status(&self) -> MemberStatus {
        self.view.my_status()
    }

    /// Joined and synced (or alone): may take children, counts as ready.
    pub fn is_ready(&self) -> bool {
        self.view.my_status() == MemberStatus::Alive
    }

    /// This node.
    pub fn node(&self) -> &NodeId {
        &self.view.me
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.view.counters.snapshot()
    }

    /// The event stream.
    pub fn events(&self) -> broadcast::Receiver<HordeEvent> {
        self.view.events.subscribe()
    }

    /// Moves every child off this node (no new ones arrive); after `deadline`, what is left
    /// falls back to restart-from-snapshot elsewhere. This is what SIGTERM does.
    pub async fn drain(&self, deadline: Duration) -> DrainReport {
        let need = self.config.need_peers.clone();
        handoff::drain(
            &self.view,
            &self.member,
            deadline,
            self.config.moves,
            need.as_deref(),
        )
        .await
    }

    /// Stops the member actor (children stop with the process).
    pub async fn shutdown(&self) {
        let _ = self
            .member
            .stop_and_wait(None, Some(Duration::from_secs(2)))
            .await;
    }

    async fn rebalance_loop(self, rb: RebalanceConfig) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            if self.member.get_status() != ractor::ActorStatus::Running {
                return;
            }
            if self.view.my_status() != MemberStatus::Alive {
                continue;
            }
            // Versions differ when any live member runs another version than this node (two
            // members that differ from each other cannot both match it).
            let (versions_differ, settling) = self
                .view
                .members
                .read()
                .map(|m| {
                    (
                        m.live().any(|i| i.version != self.view.version),
                        m.live().any(|i| i.status != MemberStatus::Alive),
                    )
                })
                .unwrap_or((true, true));
            if versions_differ || settling {
                continue;
            }
            let candidates = self.view.candidates();
            let moves: Vec<(String, NodeId)> = self
                .local_names()
                .into_iter()
                .filter_map(|n| {
                    let target = self.view.placement.place(&n, &candidates)?;
                    (target != self.view.me).then_some((n, target))
                })
                .take(rb.rate_per_sec.max(1))
                .collect();
            if moves.is_empty() {
                continue;
            }
            info!(children = moves.len(), "rebalancing");
            let (moved, failed) =
                handoff::move_children(&self.view, &self.member, moves, self.config.moves).await;
            if failed > 0 {
                warn!(moved, failed, "rebalance moves failed");
            }
        }
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
        if let Ok(mut s) = self.horde.view.sinks.lock() {
            s.remove(&self.sub.sink);
        }
        // Best effort: the child also drops subscribers whose sink is gone on its next event.
        let Some(entry) = self.horde.view.entry(&self.name) else {
            return;
        };
        if let Some(router) = self.horde.router_for(&entry.owner) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remote_refusal_names_the_owner_once() {
        let err = start_refused("g", already_started("g", "a@10.0.0.1"));
        assert!(
            matches!(&err, StartError::AlreadyStarted { name, owner } if name == "g" && owner == "a@10.0.0.1"),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "`g` is already started on a@10.0.0.1");
        let err = start_refused("g", "this node is draining; try again".into());
        assert!(
            matches!(&err, StartError::Failed { reason, .. } if reason == "this node is draining; try again"),
            "{err:?}"
        );
    }
}
