//! The member actor: the shell around this node's [`Core`]. One remotable actor per node and
//! horde scope, through which all cross-node control traffic goes (hosted children stay
//! local-typed: a remotable actor costs a proxy on every peer).
//!
//! It turns mailbox messages (peers' wire messages, node events, handle requests, children's
//! reports, ticks) into core inputs, runs the effects the core returns (sends, spawns,
//! commands to children, replies), and publishes the read side after every change. It decides
//! nothing; finding a peer's actors among a link's proxies is its only work of its own.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use discovery::{Connector, Envelope, NodeEvent, PeerNode};
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use tracing::{debug, warn};

use crate::child::Handoff;
use crate::core::child_core::ChildCore;
use crate::core::{
    ChildReport, Core, CoreConfig, CoreView, Effect, Input, Reply, Request, SpawnError, TICK,
};
use crate::hosted::Hosted;
use crate::mailbox::{HostedMsg, LocalMsg, ReplyTo, Token};
use crate::protocol::{
    MemberMsg, RouteReply, Started, Stopped, Unavailable, Undecodable, Wire, decode_wire, reply_to,
};
use crate::router::{self};
use crate::stats::Counters;
use crate::view::{Hosting, MemberRef, PeerRefs, Published, RouterRef, Shared};

mod effects;

/// A peer's member actor is looked for this many times (every tick) after its node is up.
const LOOKUPS: u32 = 100;

/// The member's service name for a horde scope (see `NodeId::actor_name`).
pub(crate) fn service(scope: &str) -> String {
    format!("horde-{scope}")
}

/// A connected peer and its actors, once found among the link's proxies.
struct PeerLink {
    peer: PeerNode,
    member: Option<MemberRef>,
    router: Option<RouterRef>,
    lookups: u32,
}

/// The member actor; `self` holds what never changes.
pub(crate) struct Member<C: Handoff> {
    pub shared: Arc<Shared<C>>,
    pub connector: Connector,
    pub scope: String,
    pub version: String,
    pub config: CoreConfig,
    pub need_peers: Option<Arc<dyn Fn() + Send + Sync>>,
}

/// Mutable state of the member actor.
pub(crate) struct MemberState<C: Handoff> {
    core: Core<Token>,
    /// What the read side sees of the children.
    children: imbl::HashMap<Arc<str>, Hosting<C>>,
    /// Every hosting actor still running (also forwarding pointers), for commands.
    actors: HashMap<Arc<str>, ActorRef<HostedMsg<C>>>,
    /// The name each of those actors hosts, by actor id: a stop or a panic finds its child
    /// without walking every actor (a drain or a mass stop would cost the square).
    names_by_actor: HashMap<ActorId, Arc<str>>,
    links: HashMap<String, PeerLink>,
    /// The core's view last published.
    view: CoreView,
    /// Children or links changed since the last publish.
    dirty: bool,
}

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

impl<C: Handoff> Actor for Member<C> {
    type Msg = MemberMsg<LocalMsg>;
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
        let core = Core::new(
            self.shared.me.clone(),
            &self.version,
            self.config.clone(),
            self.shared.counters.clone(),
            now(),
        );
        let view = core.view();
        Ok(MemberState {
            core,
            children: imbl::HashMap::new(),
            actors: HashMap::new(),
            names_by_actor: HashMap::new(),
            links: HashMap::new(),
            view,
            dirty: true,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let input = match msg {
            MemberMsg::Cast(env) => match decode_wire(&env) {
                Ok(
                    w @ (Wire::Route(_)
                    | Wire::Event { .. }
                    | Wire::ReplicaAck { .. }
                    | Wire::ReplicaNack { .. }),
                ) => {
                    // A peer that could not see our router reaches it through us.
                    router::dispatch(&self.shared, w, None);
                    return Ok(());
                }
                Ok(w) => Input::Peer(w),
                Err(u) => {
                    self.count_undecodable(&u);
                    match u.hello {
                        Some(head) => Input::ForeignHello(head),
                        None => Input::Undecodable,
                    }
                }
            },
            MemberMsg::Call(env, port) => match decode_wire(&env) {
                Ok(Wire::StartChild(q)) => Input::Request(Request::Start {
                    name: q.name,
                    spec: q.spec,
                    reply: Token::Remote(port),
                }),
                Ok(Wire::StopChild(q)) => Input::Request(Request::Stop {
                    name: q.name,
                    reply: Token::Remote(port),
                }),
                Ok(w @ Wire::Route(_)) => {
                    router::dispatch(&self.shared, w, Some(port));
                    return Ok(());
                }
                Ok(other) => {
                    debug!(message = other.kind(), "a one-way message sent as a call");
                    reply_to(port, &RouteReply::Unavailable(Unavailable::NotRouted));
                    return Ok(());
                }
                Err(u) => {
                    self.count_undecodable(&u);
                    reply_to(
                        port,
                        &RouteReply::Unavailable(Unavailable::Malformed(u.error.to_string())),
                    );
                    return Ok(());
                }
            },
            MemberMsg::Local(LocalMsg::Node(NodeEvent::Up(peer))) => {
                let id = peer.id.clone();
                let name = id.name.clone();
                state.links.insert(
                    name.clone(),
                    PeerLink {
                        peer,
                        member: None,
                        router: None,
                        lookups: 0,
                    },
                );
                state.dirty = true;
                self.run(&myself, state, Input::NodeUp(id)).await;
                self.lookup(&myself, state, &name).await;
                return Ok(());
            }
            MemberMsg::Local(LocalMsg::Node(NodeEvent::Down { id, reason })) => {
                if state.links.get(&id.name).is_some_and(|l| l.peer.id == id) {
                    state.links.remove(&id.name);
                    state.dirty = true;
                }
                Input::NodeDown { id, reason }
            }
            MemberMsg::Local(LocalMsg::Request(r)) => Input::Request(r),
            MemberMsg::Local(LocalMsg::Child { name, report }) => Input::Child { name, report },
            MemberMsg::Local(LocalMsg::Tick) => {
                let waiting: Vec<String> = state
                    .links
                    .iter()
                    .filter(|(_, l)| l.member.is_none() && l.lookups < LOOKUPS)
                    .map(|(n, _)| n.clone())
                    .collect();
                for name in waiting {
                    self.lookup(&myself, state, &name).await;
                }
                Input::Tick
            }
        };
        self.run(&myself, state, input).await;
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        evt: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match evt {
            // A panic: the restart policy decides.
            SupervisionEvent::ActorFailed(who, error) => {
                if let Some(name) = state.forget_actor(who.get_id()) {
                    let report = ChildReport::Crashed {
                        error: error.to_string(),
                    };
                    self.run(&myself, state, Input::Child { name, report })
                        .await;
                }
            }
            // Children stopping normally (moved, removed, forwarding pointers expiring).
            SupervisionEvent::ActorTerminated(who, ..) => {
                state.forget_actor(who.get_id());
            }
            _ => {}
        }
        Ok(())
    }
}

impl<C: Handoff> MemberState<C> {
    /// Records `actor` as the one hosting `name` now.
    pub(crate) fn hosting(&mut self, name: Arc<str>, actor: ActorRef<HostedMsg<C>>) {
        self.names_by_actor.insert(actor.get_id(), name.clone());
        self.actors.insert(name, actor);
    }

    /// Forgets the stopped actor `id`; the name it hosted when it still is that name's
    /// actor (not one replaced since, whose name now has another).
    fn forget_actor(&mut self, id: ActorId) -> Option<Arc<str>> {
        let name = self.names_by_actor.remove(&id)?;
        if self.actors.get(&name).is_some_and(|a| a.get_id() == id) {
            self.actors.remove(&name);
            Some(name)
        } else {
            None
        }
    }
}

impl<C: Handoff> Member<C> {
    /// Counts a message that did not decode (and logs the first of its kind).
    fn count_undecodable(&self, u: &Undecodable) {
        count_undecodable(&self.shared.counters, u);
    }

    /// Looks the peer's member actor up through its current link; once found, tells the core.
    async fn lookup(
        &self,
        myself: &ActorRef<MemberMsg<LocalMsg>>,
        state: &mut MemberState<C>,
        name: &str,
    ) {
        let Some(link) = state.links.get_mut(name) else {
            return;
        };
        if link.member.is_some() {
            return;
        }
        link.lookups += 1;
        link.member = link.peer.remote_actor(&service(&self.scope));
        let id = link.peer.id.clone();
        let Some(m) = link.member.clone() else {
            if link.lookups >= LOOKUPS {
                self.run(myself, state, Input::PeerUnreachable(id)).await;
            }
            return;
        };
        link.router = Some(
            link.peer
                .remote_actor::<MemberMsg<()>>(&router::service(&self.scope))
                .unwrap_or_else(|| ActorRef::from(m.get_cell())),
        );
        state.dirty = true;
        self.run(myself, state, Input::PeerReady(id)).await;
    }

    /// Feeds one input to the core and runs its effects (and the inputs they produce).
    async fn run(
        &self,
        myself: &ActorRef<MemberMsg<LocalMsg>>,
        state: &mut MemberState<C>,
        input: Input<Token>,
    ) {
        let mut queue = VecDeque::from([input]);
        while let Some(input) = queue.pop_front() {
            let effects = state.core.on(now(), input);
            // Readers see the change before anyone is answered or told of it.
            self.publish(state);
            self.execute(myself, state, effects, &mut queue).await;
        }
        self.publish(state);
    }

    fn publish(&self, state: &mut MemberState<C>) {
        let changed_view = state.core.take_view();
        if changed_view.is_none() && !state.dirty {
            return;
        }
        if let Some(v) = changed_view {
            if v.refusal.is_some() && self.shared.refusal.borrow().is_none() {
                self.shared.refusal.send_replace(v.refusal.clone());
            }
            state.view = v;
        }
        state.dirty = false;
        let peers = state
            .view
            .peers
            .values()
            .filter_map(|id| {
                let link = state.links.get(&id.name).filter(|l| l.peer.id == *id)?;
                Some((
                    id.name.clone(),
                    PeerRefs {
                        node: id.clone(),
                        member: link.member.clone()?,
                        router: link.router.clone()?,
                    },
                ))
            })
            .collect::<HashMap<_, _>>();
        self.shared.published.store(Arc::new(Published {
            core: state.view.clone(),
            children: state.children.clone(),
            peers,
        }));
    }
}

/// Counts a message from another member that did not decode, and logs the first of each kind
/// (a member of another release sends them as long as it runs: one line, then the metric).
pub(crate) fn count_undecodable(counters: &Counters, u: &Undecodable) {
    if counters.note_undecodable(u.kind) {
        match &u.hello {
            Some(h) => {
                warn!(kind = u.kind, error = %u.error, from = %h.node, version = %h.version, protocol = h.protocol, "undecodable horde message dropped (the first of its kind; the others are counted in minotaur_undecodable_messages_total): the sender runs another release")
            }
            None => {
                warn!(kind = u.kind, error = %u.error, "undecodable horde message dropped (the first of its kind; the others are counted in minotaur_undecodable_messages_total): is a node of another release in the cluster?")
            }
        }
    }
}
