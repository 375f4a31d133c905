//! A node's run: its start (a new incarnation, its clock and its core), its ticks, and its
//! member shell, which carries out what the member core decides.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use discovery::NodeId;
use discovery::connector::link_table::LinkInput;
use horde::core::child_core::ChildInput;
use horde::core::{Core, CoreConfig, Effect, Input, TICK};
use horde::protocol::Protocols;
use horde::stats::{Counters, HordeEvent};
use horde::{Rendezvous, RestartPolicy};

use super::network::{chatty, describe};
use super::{Ev, Instance, MS, NetMsg, Time, Token, WALL0, World, chan, connector};
use crate::log;

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
    pub(super) table: discovery::connector::link_table::LinkTable<u64>,
    /// Links open at this end: link → (peer slot, peer run).
    pub(super) links: BTreeMap<u64, (usize, u64)>,
    /// Heartbeats out: ping → (to whom, sent at).
    pub(super) pings: BTreeMap<u64, (NodeId, Time)>,
    pub(super) backlog: Vec<Ev>,
    /// Virtual time of this boot (moved on by a freeze, whose time the clock never saw).
    pub boot: Time,
    /// Paused with the clock stopped (a virtual machine suspended): the clock resumes where
    /// it stopped.
    pub(super) frozen_clock: bool,
    /// Clock rate error (parts per million).
    pub(super) drift_ppm: i64,
    /// Origin of this boot's monotonic clock.
    pub(super) origin: Instant,
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

impl World {
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

    pub(crate) fn up_slots(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|s| self.nodes[*s].is_some())
            .collect()
    }

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

    pub(super) fn on_tick(&mut self, slot: usize, inc: u64) {
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

    pub(super) fn member_effect(
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
}
