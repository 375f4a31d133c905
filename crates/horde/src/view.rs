//! The read side: what the handle, the router and the hosted actors read without waiting for
//! the member actor (as Horde reads its ETS tables).
//!
//! One writer: the member actor publishes an immutable [`Published`] snapshot after every
//! change (the core's view, the children hosted here, how to reach the members that said
//! hello); readers load the newest one lock-free. The registry inside is a persistent map, so
//! a snapshot costs no copy. Local event sinks are the one other shared table: written by the
//! handle when an application subscribes, read when events arrive.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use discovery::NodeId;
use ractor::ActorRef;
use tokio::sync::{broadcast, mpsc};

use crate::child::Child;
use crate::core::{ConflictReport, CoreView};
use crate::mailbox::{HostedMsg, LocalMsg};
use crate::placement::Placement;
use crate::protocol::MemberMsg;
use crate::stats::{Counters, HordeEvent};

/// Reference to a member actor (local or a proxy).
pub(crate) type MemberRef = ActorRef<MemberMsg<LocalMsg>>;

/// Reference to a router (local, or a proxy). A peer whose router is not visible is reached
/// through its member actor, which speaks the same wire variants.
pub(crate) type RouterRef = ActorRef<MemberMsg<()>>;

/// Called when this node's copy of a name loses a conflict.
pub type ConflictHook = Arc<dyn Fn(ConflictReport) + Send + Sync>;

/// An event sink of a local subscriber.
pub(crate) type Sink<C> = mpsc::UnboundedSender<(u64, <C as Child>::Event)>;

/// How to reach another member.
#[derive(Clone)]
pub(crate) struct PeerRefs {
    /// Which run.
    pub node: NodeId,
    /// Its member actor (control plane).
    pub member: MemberRef,
    /// Its router (data plane).
    pub router: RouterRef,
}

/// A child hosted here.
pub(crate) struct Hosting<C: Child> {
    /// Its actor.
    pub actor: ActorRef<HostedMsg<C>>,
    /// Arriving in a move, not committed yet: only its previous owner forwards to it.
    pub pending: bool,
}

impl<C: Child> Clone for Hosting<C> {
    fn clone(&self) -> Self {
        Self {
            actor: self.actor.clone(),
            pending: self.pending,
        }
    }
}

/// One immutable snapshot of the read side.
pub(crate) struct Published<C: Child> {
    /// The core's view: status, registry, members.
    pub core: CoreView,
    /// Children hosted (or arriving) here.
    pub children: imbl::HashMap<Arc<str>, Hosting<C>>,
    /// Members that said hello, by node name.
    pub peers: HashMap<String, PeerRefs>,
}

impl<C: Child> Published<C> {
    /// The actor of a child serving here.
    pub fn local(&self, name: &str) -> Option<&ActorRef<HostedMsg<C>>> {
        self.children
            .get(name)
            .filter(|h| !h.pending)
            .map(|h| &h.actor)
    }

    /// The peer running exactly this incarnation of `node`.
    pub fn peer_of(&self, node: &NodeId) -> Option<&PeerRefs> {
        self.peers.get(&node.name).filter(|p| p.node == *node)
    }

    /// Names of the children serving here.
    pub fn local_names(&self) -> Vec<String> {
        self.children
            .iter()
            .filter(|(_, h)| !h.pending)
            .map(|(n, _)| n.to_string())
            .collect()
    }
}

/// Local event sinks by id (written by the handle, read by the router and hosted actors).
pub(crate) struct Sinks<C: Child>(Mutex<HashMap<u64, Sink<C>>>);

impl<C: Child> Sinks<C> {
    pub fn new() -> Self {
        Self(Mutex::new(HashMap::new()))
    }

    pub fn insert(&self, id: u64, sink: Sink<C>) {
        if let Ok(mut s) = self.0.lock() {
            s.insert(id, sink);
        }
    }

    pub fn remove(&self, id: u64) {
        if let Ok(mut s) = self.0.lock() {
            s.remove(&id);
        }
    }

    /// Sends to a sink; false when it is gone.
    pub fn send(&self, id: u64, seq: u64, event: C::Event) -> bool {
        self.0
            .lock()
            .ok()
            .and_then(|s| s.get(&id).map(|tx| tx.send((seq, event)).is_ok()))
            .unwrap_or(false)
    }
}

/// What every actor of a node and the handle share; see the module docs.
pub(crate) struct Shared<C: Child> {
    /// This node.
    pub me: NodeId,
    /// The newest snapshot.
    pub published: ArcSwap<Published<C>>,
    /// Local event sinks.
    pub sinks: Sinks<C>,
    /// Counters.
    pub counters: Arc<Counters>,
    /// Event stream.
    pub events: broadcast::Sender<HordeEvent>,
    /// Where children go.
    pub placement: Arc<dyn Placement>,
    /// Origin of `Ctx::now_ms` and of the cores' clocks.
    pub clock: Instant,
    /// Conflict callback.
    pub on_conflict: Option<ConflictHook>,
    /// The most bytes one message to another member may take (hosted children check their
    /// replicas against it).
    pub max_message_bytes: usize,
    /// Set once this node found it cannot join the cluster (written by the member actor when
    /// its core says so; the handle waits on it).
    pub refusal: tokio::sync::watch::Sender<Option<crate::membership::Incompatible>>,
}

impl<C: Child> std::fmt::Debug for Shared<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

impl<C: Child> Shared<C> {
    /// The newest snapshot.
    pub fn load(&self) -> arc_swap::Guard<Arc<Published<C>>> {
        self.published.load()
    }

    /// True when `node` (that incarnation) is a live member or this node.
    pub fn is_live(&self, node: &NodeId) -> bool {
        *node == self.me || {
            let p = self.load();
            p.core.members.get(&node.name).is_some_and(|m| {
                m.node == *node && m.status != crate::membership::MemberStatus::Dead
            })
        }
    }

    pub fn emit(&self, event: HordeEvent) {
        let _ = self.events.send(event);
    }
}

impl<C: Child> Published<C> {
    /// What readers see before the member first publishes.
    pub fn empty(view: CoreView) -> ArcSwap<Published<C>> {
        ArcSwap::from_pointee(Published {
            core: view,
            children: imbl::HashMap::new(),
            peers: HashMap::new(),
        })
    }
}
