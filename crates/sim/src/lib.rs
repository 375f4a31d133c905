//! sim: a deterministic simulator for horde. It runs the member cores and child cores of 3 to
//! 7 nodes in one thread under virtual time, over a simulated network, with clients that
//! write inputs with ids to any node and retry, and injects faults: crashes (volatile state
//! lost) and restarts as a new incarnation (some with the wall clock behind), pauses,
//! symmetric and one-way partitions, session flaps that lose messages, joins, drains (SIGTERM
//! and the console's), and version mixes: nodes of the previous release (state schema v1,
//! horde protocol 2 only) beside nodes of this one (schema v2, protocols 2-3), every message
//! passing through the codec as its receiver's release reads it. It checks the invariants
//! S1-S7 after every step and at the end ([`check`]).
//!
//! One seed is one schedule, replayed exactly: `HORDE_SIM_SEED=<seed>` runs it again with a
//! readable trace. `cargo run -p sim --release -- --seeds N` runs many and reports schedules
//! per second; `cargo test -p sim` runs a fixed set.
//!
//! # Layout
//! Modules from the bottom up; each imports only those above it, so the graph has no cycle.
//! - [`time`]: virtual time (`Time`, `MS`, `SEC`). Imports nothing of the crate.
//! - [`token`]: where an answer goes (a client's call, an operation, a subscription).
//!   Imports nothing of the crate.
//! - [`rng`]: the seeded generator, the only randomness.
//! - [`step`]: one step of a schedule (a start, a crash, a partition ...).
//! - [`log`]: the child hosted in the simulation (a log of input ids, schemas v1 and v2).
//! - [`check`]: the invariants.
//! - [`world`]: nodes, the network, links, clients, faults, the event queue, split by
//!   concern under `world/` (see its docs); `world/connector.rs` drives each node's
//!   `discovery::connector::link_table::LinkTable`, `world/steps.rs` carries out a schedule's
//!   steps.
//! - [`schedule`]: random schedules and the named regression scenarios.
//!
//! The connector's decisions (dials with backoff, the election between two links to one
//! node, stale incarnations refused, heartbeats and the failure timeout) are discovery's own
//! `LinkTable`, the sans-IO core the production connector actor drives; the world only
//! carries out its effects. What it does not simulate: ractor_cluster's own link layer (the
//! handshake is one step after a round trip; turmoil and madsim cannot run it
//! deterministically, see `shared/research/durability.md`), and discovery's DNS (every node
//! knows every other's address from the start, as with static peers).

pub mod check;
pub mod log;
pub mod rng;
pub mod schedule;
pub mod step;
pub mod time;
pub mod token;
pub mod world;

use std::collections::BTreeMap;

use schedule::Schedule;
use time::{MS, SEC, Time};
use world::{Life, World};

/// What one run found.
#[derive(Debug)]
pub struct Outcome {
    /// The seed.
    pub seed: u64,
    /// The schedule's name.
    pub schedule: String,
    /// Invariant violations, first one first (empty: the run passed).
    pub violations: Vec<String>,
    /// Inputs answered to clients.
    pub acked: u64,
    /// Children restarted from their spec (state lost).
    pub restarts_from_spec: u64,
    /// The largest message between nodes (postcard bytes) and its kind.
    pub largest_message: (usize, &'static str),
    /// The trace, when asked for.
    pub trace: Option<Vec<String>>,
}

impl Outcome {
    /// True when every invariant held.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Runs `schedule` with `seed`'s timings; with `trace`, keeps a readable trace.
pub fn run(seed: u64, schedule: &Schedule, trace: bool) -> Outcome {
    let mut w = World::new(seed, schedule.config.clone(), trace);
    let c = &schedule.config;
    w.log(|| {
        format!(
            "config: failure timeout {} ms, lease {:?}, tombstone grace {:?}, rebalance {:?}, drift ±{} ppm",
            c.failure_timeout / MS,
            c.lease,
            c.tombstone_grace,
            c.rebalance.map(|r| r.rate_per_sec),
            c.drift_ppm
        )
    });
    w.steps = schedule.steps.iter().map(|(_, s)| s.clone()).collect();
    let plan: Vec<(Time, usize)> = schedule
        .steps
        .iter()
        .enumerate()
        .map(|(i, (t, _))| (*t, i))
        .collect();
    w.plan(&plan);
    w.run_until(schedule.end);
    // Faults stop: partitions heal, links stop stalling, clients finish what they started.
    w.heal();
    w.config.stall_chance = 0.0;
    w.stop_clients();
    w.run_until(schedule.end + schedule.quiet);
    final_checks(&mut w);
    Outcome {
        seed,
        schedule: schedule.name.clone(),
        violations: std::mem::take(&mut w.check.violations),
        acked: w.acked_count(),
        restarts_from_spec: w.restarts_from_spec,
        largest_message: w.check.largest_message,
        trace: w.trace_lines().map(|t| t.to_vec()),
    }
}

/// A replica's live entries: name → (owner, epoch).
type Live = BTreeMap<String, (String, u64)>;

/// S2 (final), S4 and S5 after the quiet period.
fn final_checks(w: &mut World) {
    let mut violations = Vec::new();
    // What every node thinks of the members, in the trace (a failed run's last lines).
    let views: Vec<String> = w
        .nodes
        .iter()
        .flatten()
        .map(|n| {
            let v = n.core.view();
            let members: Vec<String> = v
                .members
                .iter()
                .map(|m| format!("{}:{}", m.node, m.status))
                .collect();
            format!("{} ({}) sees {}", n.id, v.status, members.join(" "))
        })
        .collect();
    for line in views {
        w.log(|| line);
    }
    // S4: every replica agrees.
    let mut replicas: Vec<(String, Live)> = Vec::new();
    for n in w.nodes.iter().flatten() {
        if n.life != Life::Running {
            continue;
        }
        let live: Live = n
            .core
            .registry()
            .iter()
            .filter(|(_, e)| !e.removed)
            .map(|(k, e)| (k.to_string(), (e.owner.to_string(), e.epoch)))
            .collect();
        replicas.push((n.id.to_string(), live));
    }
    if let Some((first, reference)) = replicas.first() {
        for (node, r) in &replicas[1..] {
            if r != reference {
                let diff: Vec<String> = reference
                    .iter()
                    .filter(|(k, v)| r.get(*k) != Some(v))
                    .map(|(k, v)| format!("{k}: {v:?} vs {:?}", r.get(k)))
                    .chain(
                        r.keys()
                            .filter(|k| !reference.contains_key(*k))
                            .map(|k| format!("{k}: only on {node}")),
                    )
                    .take(5)
                    .collect();
                violations.push(format!(
                    "S4: the registries of {first} and {node} differ after the quiet period: {}",
                    diff.join("; ")
                ));
            }
        }
    }
    // S4: every running member that has not left joined and holds its lease (a member
    // stuck joining, or never granted, would answer nothing for ever).
    for n in w.nodes.iter().flatten() {
        if n.life != Life::Running {
            continue;
        }
        match n.core.status() {
            horde::MemberStatus::Joining => violations.push(format!(
                "S4: {} is still joining after the quiet period",
                n.id
            )),
            horde::MemberStatus::Alive if !n.core.lease_valid(n.local(w.now)) => {
                violations.push(format!(
                    "S4: {} is alive but holds no quorum lease after the quiet period",
                    n.id
                ))
            }
            _ => {}
        }
    }
    // S4: every live name served by exactly one copy, at its owner.
    let reference = replicas.first().map(|(_, r)| r.clone()).unwrap_or_default();
    let mut servers: BTreeMap<String, Vec<(String, u64)>> = BTreeMap::new();
    for n in w.nodes.iter().flatten() {
        for (name, (instance, pending)) in &n.routes {
            let live = w
                .instances
                .get(instance)
                .is_some_and(|i| i.alive && !i.core.is_forwarding());
            if !pending && live {
                servers
                    .entry(name.to_string())
                    .or_default()
                    .push((n.id.to_string(), *instance));
            }
        }
    }
    for (name, (owner, _)) in &reference {
        match servers.get(name).map(Vec::as_slice) {
            Some([(node, _)]) if node == owner => {}
            other => violations.push(format!(
                "S4: `{name}` (owner {owner}) is served by {other:?} after the quiet period"
            )),
        }
    }
    for (name, copies) in &servers {
        if !reference.contains_key(name) {
            violations.push(format!(
                "S4: `{name}` runs on {copies:?} but no registry has it"
            ));
        }
    }
    // Liveness: every input in flight was answered.
    for (name, id) in w.inflight() {
        violations.push(format!(
            "S4: input {id} to `{name}` still unanswered after the quiet period"
        ));
    }
    // S6: a removed name never comes back, and every tombstone is collected once the
    // cluster is quiet.
    for n in w.nodes.iter().flatten() {
        if n.life != Life::Running {
            continue;
        }
        for name in w.removed.keys() {
            if n.core.registry().get(name).is_some() {
                violations.push(format!(
                    "S6: `{name}` was removed but is live again in the registry of {}",
                    n.id
                ));
            }
        }
        let tombstones = n.core.registry().len() - n.core.registry().live();
        // A node killed for good blocks collection for longer than a run (the dead wait).
        if tombstones > 0 && w.killed.is_empty() {
            let which: Vec<String> = n
                .core
                .registry()
                .iter()
                .filter(|(_, e)| e.removed)
                .take(3)
                .map(|(k, e)| format!("{k}@{} by {}", e.epoch, e.owner))
                .collect();
            violations.push(format!(
                "S6: {} still keeps {tombstones} tombstones after the quiet period ({})",
                n.id,
                which.join(", ")
            ));
        }
    }
    for name in w.removed.keys() {
        if let Some(copies) = servers.get(name) {
            violations.push(format!("S6: `{name}` was removed but runs on {copies:?}"));
        }
    }
    // S2: every answered input is in its log, once (a log that is not replicated keeps
    // nothing across a crash, by design); E2: every event told is in it too.
    for (name, ids) in &w.check.client_acked {
        if w.stop_asked.contains(name) && !reference.contains_key(name) {
            continue;
        }
        if log::unreplicated(name) {
            continue;
        }
        let Some((owner, _)) = reference.get(name) else {
            violations.push(format!(
                "S2: `{name}` is gone but {} of its inputs were answered",
                ids.len()
            ));
            continue;
        };
        let Some(instance) = servers
            .get(name)
            .and_then(|s| s.iter().find(|(n, _)| n == owner))
            .map(|(_, i)| *i)
        else {
            continue;
        };
        let applied = w.instances[&instance].core.applied();
        let missing: Vec<&u64> = ids.iter().filter(|id| !applied.contains(id)).collect();
        if !missing.is_empty() {
            violations.push(format!(
                "S2: `{name}` lacks {} answered inputs (e.g. {:?})",
                missing.len(),
                missing.iter().take(3).collect::<Vec<_>>()
            ));
        }
        let moved: Vec<String> = w
            .check
            .positions
            .get(name)
            .into_iter()
            .flatten()
            .filter(|(id, at)| *at == 0 || applied.get(*at as usize - 1) != Some(id))
            .map(|(id, at)| {
                let now = applied.iter().position(|x| x == id).map(|p| p + 1);
                format!("input {id} answered at {at}, now at {now:?}")
            })
            .collect();
        if let Some(first) = moved.first() {
            violations.push(format!(
                "S2: `{name}`: {} answered states were rewritten ({first})",
                moved.len()
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(twice) = applied.iter().find(|id| !seen.insert(**id)) {
            violations.push(format!("S2: `{name}` applied input {twice} twice"));
        }
        let phantoms = w.check.phantom_events(name, applied);
        if let Some((seq, e)) = phantoms.first() {
            violations.push(format!(
                "E2: `{name}` told its subscribers of {} changes it does not hold (e.g. event {seq}: {e:?})",
                phantoms.len()
            ));
        }
    }
    // E3 (schedules without faults): a confirmed subscription whose node still runs is in
    // the subscriber list of the copy that serves its name, whatever moved meanwhile (a
    // fault may legitimately drop one: its node voted dead, as a WebSocket's node).
    if w.config.no_retries {
        for (sink, sub) in &w.subs {
            let running = w.node_running(sub.slot, sub.node.incarnation);
            if sub.confirmed.is_none() || !running || w.stop_asked.contains(&sub.name) {
                continue;
            }
            let Some(instance) = servers
                .get(&sub.name)
                .and_then(|s| s.first())
                .map(|(_, i)| *i)
            else {
                continue;
            };
            let held = w.instances[&instance]
                .core
                .subscribers()
                .iter()
                .any(|s| s.sink == *sink && s.node == sub.node);
            if !held {
                violations.push(format!(
                    "E3: `{}`: the subscription of sink {sink} on {} (confirmed) is gone from the copy that serves it (#{instance}); its sink had {} events",
                    sub.name, sub.node, sub.received
                ));
            }
        }
    }
    // S5: drains end by their deadline (plus the registry barrier's 500 ms), nothing frozen.
    for (slot, took) in &w.drains {
        if *took > w.config.drain_deadline + SEC {
            violations.push(format!(
                "S5: the drain of {} took {} ms (deadline {} ms)",
                w.names[*slot],
                took / 1000,
                w.config.drain_deadline / 1000
            ));
        }
    }
    for i in w.instances.values() {
        let running = w.nodes[i.slot]
            .as_ref()
            .is_some_and(|n| n.id.incarnation == i.inc);
        if i.alive && running && i.core.is_frozen() {
            violations.push(format!(
                "S5: `{}` is still frozen on {} after the quiet period",
                i.name, w.names[i.slot]
            ));
        }
    }
    for v in violations {
        w.check.violate(v);
    }
}

/// The seed to replay, from `HORDE_SIM_SEED`.
pub fn seed_from_env() -> Option<u64> {
    std::env::var("HORDE_SIM_SEED").ok()?.parse().ok()
}

/// Formats a failing outcome: the violations, how to replay, the trace's tail.
pub fn report(o: &Outcome) -> String {
    let mut s = format!(
        "schedule {} with seed {} broke an invariant:\n",
        o.schedule, o.seed
    );
    for v in &o.violations {
        s.push_str(&format!("  {v}\n"));
    }
    s.push_str(&format!(
        "replay: HORDE_SIM_SEED={} cargo run -p sim --release -- --schedule {} --trace\n",
        o.seed, o.schedule
    ));
    if let Some(t) = &o.trace {
        let from = t
            .len()
            .saturating_sub(if std::env::var("HORDE_SIM_FULL").is_ok() {
                usize::MAX
            } else {
                200
            });
        s.push_str(&format!(
            "trace (last {} of {} lines):\n",
            t.len() - from,
            t.len()
        ));
        for line in &t[from..] {
            s.push_str(line);
            s.push('\n');
        }
    }
    s
}

/// A schedule by name: a scenario, or `random-planned` / `random-faults` (drawn from `seed`).
pub fn schedule_named(name: &str, seed: u64) -> Option<Schedule> {
    match name {
        "random-planned" => Some(schedule::random(seed, schedule::Profile::Planned)),
        "random-faults" => Some(schedule::random(seed, schedule::Profile::Faults)),
        n if n.starts_with("random-planned-") => {
            Some(schedule::random(seed, schedule::Profile::Planned))
        }
        n if n.starts_with("random-faults-") => {
            Some(schedule::random(seed, schedule::Profile::Faults))
        }
        n => schedule::scenario(n, seed),
    }
}
