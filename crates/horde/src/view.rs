//! The read side of a member's state, shared with the handle and the hosted actors so that
//! lookups and routing never wait for the member actor (as Horde reads its ETS tables).
//!
//! Only the member actor writes `registry`, `members`, `peers` and `status`; `local` is
//! written by the member and, on stop, by a hosted actor removing itself; `sinks` by the
//! handle (subscribe/unsubscribe). Every lock is held for a map operation, never across an
//! await.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use discovery::NodeId;
use ractor::ActorRef;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

use crate::child::Child;
use crate::hosted::HostedMsg;
use crate::member::LocalMsg;
use crate::membership::{MemberInfo, MemberStatus, Members, Version};
use crate::placement::{Candidate, Placement};
use crate::registry::{Entry, Registry};
use crate::router::RouterRef;
use crate::stats::{Counters, HordeEvent};
use crate::wire::MemberMsg;

/// Reference to a member actor (local or a proxy).
pub(crate) type MemberRef<C> = ActorRef<MemberMsg<LocalMsg<C>>>;

/// How to reach another member.
pub(crate) struct PeerRefs<C: Child> {
    /// Which run.
    pub node: NodeId,
    /// Its member actor (control plane).
    pub member: MemberRef<C>,
    /// Its router (data plane).
    pub router: RouterRef,
}

impl<C: Child> Clone for PeerRefs<C> {
    fn clone(&self) -> Self {
        Self {
            node: self.node.clone(),
            member: self.member.clone(),
            router: self.router.clone(),
        }
    }
}

/// What a conflict callback receives: the losing copy's state before it stopped.
#[derive(Debug, Clone)]
pub struct ConflictReport {
    /// The name.
    pub name: String,
    /// The surviving owner.
    pub winner: NodeId,
    /// The loser's schema and state, when the child could be dehydrated.
    pub loser_state: Option<(u16, Vec<u8>)>,
}

/// Called when this node's copy of a name loses a conflict.
pub type ConflictHook = Arc<dyn Fn(ConflictReport) + Send + Sync>;

/// An event sink of a local subscriber.
pub(crate) type Sink<C> = mpsc::UnboundedSender<(u64, <C as Child>::Event)>;

/// Shared state; see the module docs.
pub(crate) struct View<C: Child> {
    /// This node.
    pub me: NodeId,
    /// This node's name, shared with every callback context.
    pub node_name: Arc<str>,
    /// This node's app version.
    pub version: Version,
    /// This member's own status (not in `members`).
    pub status: RwLock<MemberStatus>,
    /// The registry replica.
    pub registry: RwLock<Registry>,
    /// Children hosted and serving here.
    pub local: RwLock<HashMap<Arc<str>, ActorRef<HostedMsg<C>>>>,
    /// Other members.
    pub members: RwLock<Members>,
    /// Member and router actors of other nodes, by node name (members that said hello).
    pub peers: RwLock<HashMap<String, PeerRefs<C>>>,
    /// Children arriving here in a move, not committed yet (only their previous owner
    /// forwards to them).
    pub pending: RwLock<HashMap<Arc<str>, ActorRef<HostedMsg<C>>>>,
    /// Local event sinks by id.
    pub sinks: Mutex<HashMap<u64, Sink<C>>>,
    /// Counters.
    pub counters: Counters,
    /// Event stream.
    pub events: broadcast::Sender<HordeEvent>,
    /// Where children go.
    pub placement: Arc<dyn Placement>,
    /// Origin of `Ctx::now_ms`.
    pub clock: Instant,
    /// Conflict callback.
    pub on_conflict: Option<ConflictHook>,
}

impl<C: Child> std::fmt::Debug for View<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

impl<C: Child> View<C> {
    pub(crate) fn now_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    pub(crate) fn my_status(&self) -> MemberStatus {
        self.status.read().map(|s| *s).unwrap_or(MemberStatus::Dead)
    }

    pub(crate) fn local(&self, name: &str) -> Option<ActorRef<HostedMsg<C>>> {
        self.local.read().ok()?.get(name).cloned()
    }

    pub(crate) fn peer(&self, node_name: &str) -> Option<PeerRefs<C>> {
        self.peers.read().ok()?.get(node_name).cloned()
    }

    /// The peer running exactly this incarnation of `node`.
    pub(crate) fn peer_of(&self, node: &NodeId) -> Option<PeerRefs<C>> {
        self.peer(&node.name).filter(|p| p.node == *node)
    }

    pub(crate) fn pending(&self, name: &str) -> Option<ActorRef<HostedMsg<C>>> {
        self.pending.read().ok()?.get(name).cloned()
    }

    /// Names hosted (and serving) on this node.
    pub(crate) fn local_names(&self) -> Vec<String> {
        self.local
            .read()
            .map(|l| l.keys().map(|k| k.to_string()).collect())
            .unwrap_or_default()
    }

    /// The live registry entry of `name`.
    pub(crate) fn entry(&self, name: &str) -> Option<Entry> {
        self.registry.read().ok()?.get(name).cloned()
    }

    /// The registry entry of `name`, a removal included.
    pub(crate) fn entry_any(&self, name: &str) -> Option<Entry> {
        self.registry.read().ok()?.get_any(name).cloned()
    }

    /// Every member including this node, as placement sees them.
    pub(crate) fn candidates(&self) -> Vec<Candidate> {
        let loads: HashMap<String, usize> = {
            let mut m = HashMap::new();
            if self.placement.wants_load()
                && let Ok(r) = self.registry.read()
            {
                for (_, e) in r.iter().filter(|(_, e)| !e.removed) {
                    *m.entry(e.owner.name.clone()).or_insert(0) += 1;
                }
            }
            m
        };
        let mut out = vec![Candidate {
            node: self.me.clone(),
            version: self.version.clone(),
            status: self.my_status(),
            load: loads.get(&self.me.name).copied().unwrap_or(0),
        }];
        if let Ok(members) = self.members.read() {
            for m in members.iter() {
                out.push(Candidate {
                    node: m.node.clone(),
                    version: m.version.clone(),
                    status: m.status,
                    load: loads.get(&m.node.name).copied().unwrap_or(0),
                });
            }
        }
        out
    }

    /// Where `name` should live now.
    pub(crate) fn place(&self, name: &str) -> Option<NodeId> {
        self.placement.place(name, &self.candidates())
    }

    /// Where `name` should live if this node were not a candidate (its drain target, its
    /// backup for snapshots).
    pub(crate) fn place_elsewhere(&self, name: &str) -> Option<NodeId> {
        self.placement.place(name, &self.others())
    }

    /// Every member but this node, as placement sees them.
    pub(crate) fn others(&self) -> Vec<Candidate> {
        let mut candidates = self.candidates();
        candidates.retain(|c| c.node != self.me);
        candidates
    }

    /// True when `node` (that incarnation) is a live member or this node.
    pub(crate) fn is_live(&self, node: &NodeId) -> bool {
        if *node == self.me {
            return true;
        }
        self.members.read().is_ok_and(|m| {
            m.get(&node.name)
                .is_some_and(|m| m.node == *node && m.status != MemberStatus::Dead)
        })
    }

    /// True when `node` (that incarnation) is known to be gone: marked dead, or replaced by a
    /// newer incarnation. An owner this node has not heard of yet (a member that just joined)
    /// is not dead: its children are not orphans.
    pub(crate) fn is_dead(&self, node: &NodeId) -> bool {
        if *node == self.me {
            return false;
        }
        if node.name == self.me.name {
            return node.incarnation < self.me.incarnation;
        }
        self.members.read().is_ok_and(|m| {
            m.get(&node.name).is_some_and(|m| {
                m.node.incarnation > node.incarnation
                    || (m.node == *node && m.status == MemberStatus::Dead)
            })
        })
    }

    /// The member list with this node first.
    pub(crate) fn member_list(&self) -> Vec<MemberInfo> {
        let mut out = vec![MemberInfo {
            node: self.me.clone(),
            status: self.my_status(),
            version: self.version.clone(),
        }];
        if let Ok(m) = self.members.read() {
            out.extend(m.iter().cloned());
        }
        out
    }

    pub(crate) fn emit(&self, event: HordeEvent) {
        let _ = self.events.send(event);
    }
}
