//! Schedules: what happens to the simulated cluster and when. Random schedules drawn from a
//! seed (the planned path only, or every kind of fault, one at a time), and the named
//! regression scenarios, whose shape is fixed and whose timings come from the seed.

use crate::rng::Rng;
use std::time::Duration;

use horde::RebalanceConfig;

pub use crate::step::Step;
use crate::time::{MS, SEC, Time};
use crate::world::Config;

/// A schedule: steps at times, then a quiet period in which faults stop (partitions heal,
/// clients finish what they started) before the final checks.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// What it is (for reports).
    pub name: String,
    /// The steps, by time.
    pub steps: Vec<(Time, Step)>,
    /// When faults stop.
    pub end: Time,
    /// How long the cluster then has to settle.
    pub quiet: Time,
    /// The simulated cluster's timings and sizes.
    pub config: Config,
}

/// What random schedules may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Joins, rolling updates (v1 → v2), drains: the planned path.
    Planned,
    /// The planned path plus crashes, restarts (some with the clock behind), pauses,
    /// partitions (symmetric and one-way), session flaps and rollbacks, one fault at a time.
    Faults,
}

struct Gen {
    r: Rng,
    steps: Vec<(Time, Step)>,
    up: Vec<(String, u16)>,
    next_node: usize,
    t: Time,
}

impl Gen {
    fn push(&mut self, at: Time, step: Step) {
        self.steps.push((at, step));
    }

    fn new_name(&mut self) -> String {
        self.next_node += 1;
        format!("n{}", self.next_node)
    }

    fn pick_up(&mut self) -> Option<(String, u16)> {
        let i = self.r.range(0, self.up.len() as u64) as usize;
        self.up.get(i).cloned()
    }
}

/// A random schedule of 3 to 7 nodes.
pub fn random(seed: u64, profile: Profile) -> Schedule {
    let mut g = Gen {
        r: Rng::new(seed ^ 0x5eed_5eed_5eed_5eed),
        steps: Vec::new(),
        up: Vec::new(),
        next_node: 0,
        t: 0,
    };
    let nodes = g.r.range(3, 8) as usize;
    // Half the schedules begin on the previous release (schema 1, protocol 2), half on this
    // one: rolling updates then mix the two (and roll back, in fault schedules).
    let first = if g.r.chance(0.5) { 2 } else { 1 };
    for _ in 0..nodes {
        let name = g.new_name();
        let at = g.r.range(0, 300 * MS);
        g.push(
            at,
            Step::Start {
                node: name.clone(),
                schema: first,
            },
        );
        g.up.push((name, first));
    }
    let names = g.r.range(5, 25) as usize;
    g.push(3500 * MS, Step::Create { count: names });
    let clients = g.r.range(2, 5) as usize;
    g.push(4500 * MS, Step::Clients(clients));
    g.t = 6 * SEC;
    let end = g.t + g.r.range(20, 40) * SEC;
    // The connector's failure timeout, shorter and longer than the lease: with a short one,
    // a member is suspected before its lease ran out, and only the lease wait keeps its
    // children from being restarted early.
    let ft = [600 * MS, 1200 * MS, 2 * SEC, 3500 * MS][g.r.range(0, 4) as usize];
    // Faults come one at a time: the next one only once the last was dealt with (its node
    // seen down, voted dead after its lease, its children restarted).
    let settle = ft.max(2 * SEC);
    while g.t < end {
        let roll = g.r.range(0, 100);
        let t = g.t;
        let gap = match (profile, roll) {
            // A rolling update step, start-first: the new node joins, then the old one drains.
            (_, 0..=24) if g.up.len() >= 2 => {
                let Some((old, schema)) = g.pick_up() else {
                    break;
                };
                let newest = g.up.iter().map(|(_, s)| *s).max().unwrap_or(1);
                let oldest = g.up.iter().map(|(_, s)| *s).min().unwrap_or(1);
                if profile == Profile::Planned && schema > oldest {
                    // The planned path only rolls forward: a v2 node leaves while v1 nodes
                    // remain only in a rollback (a fault schedule).
                    g.t += SEC;
                    continue;
                }
                let new_schema = if profile == Profile::Planned {
                    if g.r.chance(0.5) { 2 } else { newest }
                } else if g.r.chance(0.5) {
                    3 - schema
                } else {
                    schema
                };
                let new = if g.r.chance(0.5) {
                    old.clone()
                } else {
                    g.new_name()
                };
                if new == old {
                    // The same name can only come back after the old run exited.
                    g.push(
                        t,
                        Step::Drain {
                            node: old.clone(),
                            exit: true,
                        },
                    );
                    g.push(
                        t + 9 * SEC,
                        Step::Start {
                            node: new.clone(),
                            schema: new_schema,
                        },
                    );
                } else {
                    g.push(
                        t,
                        Step::Start {
                            node: new.clone(),
                            schema: new_schema,
                        },
                    );
                    g.push(
                        t + 4 * SEC,
                        Step::Drain {
                            node: old.clone(),
                            exit: true,
                        },
                    );
                }
                g.up.retain(|(n, _)| *n != old);
                g.up.push((new, new_schema));
                13 * SEC
            }
            // A join.
            (_, 25..=34) if g.up.len() < 7 => {
                let new = g.new_name();
                let schema = g.up.iter().map(|(_, s)| *s).max().unwrap_or(1);
                g.push(
                    t,
                    Step::Start {
                        node: new.clone(),
                        schema,
                    },
                );
                g.up.push((new, schema));
                4 * SEC
            }
            // More children.
            // A child's callback panics: its node restarts it in place, from its spec.
            (Profile::Faults, 35..=37) => {
                g.push(t, Step::ChildCrash);
                2 * SEC
            }
            (_, 35..=39) => {
                let n = g.r.range(1, 6) as usize;
                g.push(t, Step::Create { count: n });
                SEC
            }
            (Profile::Faults, 40..=54) if g.up.len() >= 3 => {
                let Some((victim, schema)) = g.pick_up() else {
                    break;
                };
                g.push(t, Step::Crash(victim.clone()));
                g.up.retain(|(n, _)| *n != victim);
                if g.r.chance(0.3) {
                    // Replaced by a node of another name (a container with a new address),
                    // while the dead one still counts.
                    let back = g.r.range(50 * MS, 2 * SEC);
                    let new = g.new_name();
                    g.push(
                        t + back,
                        Step::Start {
                            node: new.clone(),
                            schema,
                        },
                    );
                    g.up.push((new, schema));
                    back + settle + 3 * SEC
                } else if g.r.chance(0.7) {
                    let back = g.r.range(500 * MS, 5 * SEC);
                    let step = if g.r.chance(0.15) {
                        Step::RestartBehind {
                            node: victim.clone(),
                            schema,
                        }
                    } else {
                        Step::Start {
                            node: victim.clone(),
                            schema,
                        }
                    };
                    g.push(t + back, step);
                    g.up.push((victim, schema));
                    back + settle + 3 * SEC
                } else {
                    settle + 3 * SEC
                }
            }
            (Profile::Faults, 55..=69) => {
                let Some((node, _)) = g.pick_up() else { break };
                let dur = g.r.range(200 * MS, 6 * SEC);
                if g.r.chance(0.3) {
                    // A suspended virtual machine: its clock stops too.
                    g.push(t, Step::Freeze { node, dur });
                } else {
                    g.push(t, Step::Pause { node, dur });
                }
                dur + settle + 2 * SEC
            }
            (Profile::Faults, 70..=79) if g.up.len() >= 3 => {
                let Some((node, _)) = g.pick_up() else { break };
                let dur = g.r.range(500 * MS, 10 * SEC);
                let one_way = g.r.chance(0.3);
                g.push(t, Step::Partition { node, one_way });
                g.push(t + dur, Step::Heal);
                dur + settle + 3 * SEC
            }
            (Profile::Faults, 80..=84) if g.up.len() >= 2 => {
                let Some((a, _)) = g.pick_up() else { break };
                let Some((b, _)) = g.pick_up() else { break };
                if a == b {
                    SEC
                } else {
                    // Retransmissions: 0.2, 0.6, 1.4, 3, 6.2 s after the first.
                    let tries = g.r.range(1, 6) as u32;
                    let dur = g.r.range(100 * MS, 200 * MS * ((1 << tries) - 1) + 1);
                    g.push(
                        t,
                        Step::Stall {
                            from: a,
                            to: b,
                            dur,
                        },
                    );
                    dur + settle + 3 * SEC
                }
            }
            (Profile::Faults, 85..=94) if g.up.len() >= 2 => {
                let Some((a, _)) = g.pick_up() else { break };
                let Some((b, _)) = g.pick_up() else { break };
                if a != b {
                    g.push(t, Step::Flap { a, b });
                }
                SEC
            }
            // Some children stopped (removed names must never come back).
            (_, 95..=99) => {
                let n = g.r.range(1, 4) as usize;
                g.push(t, Step::Remove { count: n });
                SEC
            }
            _ => g.r.range(500 * MS, 3 * SEC),
        };
        g.t += gap;
    }
    let end = g.t.max(end);
    g.steps.sort_by_key(|(t, _)| *t);
    let faults = profile == Profile::Faults;
    let config = Config {
        // States of 2 KiB under a 16 KiB budget: a wave of 16 goes as three offers, a
        // handover or a sync in several parts, under every fault the schedule injects.
        max_message_bytes: 16 * 1024,
        state_padding: 2 * 1024,
        failure_timeout: ft,
        heartbeat: ft / 4,
        // Now and then a message held a while, with what follows it on its link (faults
        // only: a planned update must never make an input wait for a retry); longer stalls
        // are faults of their own (`Step::Stall`).
        stall_chance: if faults { 0.000_05 } else { 0.0 },
        stall_max: 1400 * MS,
        // Clock rates 1% apart at most.
        drift_ppm: 10_000,
        // Without faults, every input is answered without its client having to retry.
        no_retries: !faults,
        // Half the schedules run horde's rebalancer: children move toward their placement
        // after every join, under the same faults.
        rebalance: g
            .r
            .chance(0.5)
            .then_some(RebalanceConfig { rate_per_sec: 50 }),
        ..Config::default()
    };
    Schedule {
        name: format!("random-{profile:?}-{seed}").to_lowercase(),
        steps: g.steps,
        end,
        quiet: quiet(&config),
        config,
    }
}

/// The named regression scenarios: the faults the first build showed (ISSUE 9, (a)-(f)).
pub const SCENARIOS: &[&str] = &[
    "drain-then-crash",
    "ack-then-crash",
    "paused-target",
    "lost-delta",
    "drain-deadline",
    "clock-behind",
    "relink-at-join",
    "large-states",
    "removals",
    "cut-off-owner",
    "frozen-owner",
    "frozen-half-seen",
    "cut-off-mover",
    "join-behind-stall",
    "removals-cut-off",
    "move-then-crash",
    "membership-churn",
];

/// A failure timeout shorter than the lease (600 ms) or longer (2 s), drawn from `r`, with a
/// heartbeat of a quarter of it.
fn timeout_either_side_of_the_lease(config: &mut Config, r: &mut Rng) {
    config.failure_timeout = [600 * MS, 2 * SEC][r.range(0, 2) as usize];
    config.heartbeat = config.failure_timeout / 4;
}

fn base(r: &mut Rng, nodes: usize, names: usize, schema: u16) -> Vec<(Time, Step)> {
    let mut steps = Vec::new();
    for i in 1..=nodes {
        steps.push((
            r.range(0, 300 * MS),
            Step::Start {
                node: format!("n{i}"),
                schema,
            },
        ));
    }
    steps.push((3500 * MS, Step::Create { count: names }));
    steps.push((4500 * MS, Step::Clients(3)));
    steps
}

/// A named scenario with timings from `seed`; `None` for an unknown name.
pub fn scenario(name: &str, seed: u64) -> Option<Schedule> {
    let mut r = Rng::new(seed ^ 0xfa17_fa17);
    let mut steps;
    let end;
    let mut config = Config::default();
    // Odd seeds run this release (protocol 3), even ones the previous release's protocol
    // (a mixed cluster's rules); the scenarios aimed at this release's rules run it always.
    let schema: u16 = if seed % 2 == 1 { 2 } else { 1 };
    match name {
        // (a) a rolling update step (n4 joins, n1 drains and exits) moves games to the others,
        // then one of them crashes before any of those games gets an input.
        "drain-then-crash" => {
            steps = base(&mut r, 3, 30, schema);
            let t = 7 * SEC + r.range(0, 2 * SEC);
            steps.push((
                t - 3 * SEC,
                Step::Start {
                    node: "n4".into(),
                    schema,
                },
            ));
            steps.push((t, Step::StopClients));
            steps.push((
                t + 200 * MS,
                Step::Drain {
                    node: "n1".into(),
                    exit: true,
                },
            ));
            let victim = format!("n{}", r.range(2, 5));
            steps.push((
                t + 200 * MS + r.range(10 * MS, 3 * SEC),
                Step::Crash(victim),
            ));
            end = t + 10 * SEC;
        }
        // Children stopped while others drain, a member crashes and one is cut off: a
        // removed name never comes back, and its tombstone is collected everywhere.
        "removals" => {
            // One fault at a time (three nodes after the drain tolerate one).
            steps = base(&mut r, 4, 30, schema);
            let t = 6 * SEC + r.range(0, 2 * SEC);
            steps.push((t, Step::Remove { count: 5 }));
            steps.push((
                t + r.range(0, 500 * MS),
                Step::Drain {
                    node: "n1".into(),
                    exit: true,
                },
            ));
            steps.push((t + r.range(0, SEC), Step::Remove { count: 4 }));
            steps.push((t + 2 * SEC + r.range(0, SEC), Step::Crash("n2".into())));
            steps.push((t + 3 * SEC + r.range(0, SEC), Step::Remove { count: 4 }));
            steps.push((
                t + 5 * SEC + r.range(0, 2 * SEC),
                Step::Start {
                    node: "n2".into(),
                    schema,
                },
            ));
            steps.push((
                t + 12 * SEC,
                Step::Partition {
                    node: "n3".into(),
                    one_way: false,
                },
            ));
            steps.push((
                t + 12 * SEC + r.range(0, 2 * SEC),
                Step::Remove { count: 4 },
            ));
            steps.push((t + 15 * SEC, Step::Heal));
            steps.push((t + 15 * SEC + r.range(0, SEC), Step::Remove { count: 3 }));
            end = t + 20 * SEC;
        }
        // (b) an owner crashes right after answering.
        "ack-then-crash" => {
            steps = base(&mut r, 3, 20, schema);
            let t = 6 * SEC + r.range(0, 3 * SEC);
            let victim = format!("n{}", r.range(1, 4));
            steps.push((t, Step::Crash(victim)));
            end = t + 8 * SEC;
        }
        // (c) a rolling update step (n4 joins, n1 drains) while n2 is paused past the offer
        // timeout: n2 wakes after its children were restarted elsewhere, from the replicas
        // n1 held for them if it backed them up.
        "paused-target" => {
            steps = base(&mut r, 3, 30, schema);
            let t = 6 * SEC + r.range(0, SEC);
            let dur = r.range(3 * SEC, 5 * SEC);
            steps.push((
                t - r.range(500 * MS, 2 * SEC),
                Step::Start {
                    node: "n4".into(),
                    schema,
                },
            ));
            steps.push((
                t,
                Step::Pause {
                    node: "n2".into(),
                    dur,
                },
            ));
            steps.push((
                t + r.range(0, 300 * MS),
                Step::Drain {
                    node: "n1".into(),
                    exit: r.chance(0.5),
                },
            ));
            end = t + dur + 6 * SEC;
        }
        // (d) a registry delta between two members is lost: their session is replaced (a
        // relink, no Down) while n1 publishes new names.
        "lost-delta" => {
            steps = base(&mut r, 3, 10, schema);
            let t = 6 * SEC + r.range(0, SEC);
            steps.push((
                t,
                Step::CreateAt {
                    node: "n1".into(),
                    count: 20,
                },
            ));
            let mut at = t;
            for _ in 0..10 {
                steps.push((
                    at,
                    Step::Flap {
                        a: "n1".into(),
                        b: "n2".into(),
                    },
                ));
                at += r.range(100, 3 * MS);
            }
            end = t + 10 * SEC;
        }
        // (g) a node joins and its sessions are replaced right away, again and again (both
        // sides dialled at once: ractor_cluster closes one of the two links), so the hellos
        // and registries in flight are lost; it must still join and be granted its lease.
        "relink-at-join" => {
            steps = base(&mut r, 3, 20, schema);
            let t = 6 * SEC + r.range(0, SEC);
            steps.push((
                t,
                Step::Start {
                    node: "n4".into(),
                    schema,
                },
            ));
            for peer in ["n1", "n2", "n3"] {
                // The sessions come up about 5 ms after the start: replace them while the
                // hellos and registries cross.
                let mut at = t + r.range(3 * MS, 15 * MS);
                for _ in 0..r.range(1, 4) {
                    steps.push((
                        at,
                        Step::Flap {
                            a: "n4".into(),
                            b: peer.into(),
                        },
                    ));
                    at += r.range(MS / 10, 10 * MS);
                }
            }
            end = t + 8 * SEC;
        }
        // (e) a console drain's deadline passes mid-wave (its target is slow to answer); the
        // node keeps running.
        "drain-deadline" => {
            steps = base(&mut r, 3, 30, schema);
            let t = 6 * SEC + r.range(0, SEC);
            steps.push((t, Step::DrainDeadline(r.range(20 * MS, 200 * MS))));
            steps.push((
                t,
                Step::Pause {
                    node: "n2".into(),
                    dur: r.range(500 * MS, 1500 * MS),
                },
            ));
            steps.push((
                t + r.range(0, 5 * MS),
                Step::Drain {
                    node: "n1".into(),
                    exit: false,
                },
            ));
            end = t + 8 * SEC;
        }
        // (f) a node restarts with its wall clock behind its previous run (its incarnation is
        // older), takes new children, then crashes again. Clients pause around each crash, so
        // no answered input is at stake there: what breaks is this fault's.
        "clock-behind" => {
            steps = base(&mut r, 3, 10, schema);
            let t = 6 * SEC + r.range(0, SEC);
            steps.push((t - 500 * MS, Step::StopClients));
            steps.push((t, Step::Crash("n2".into())));
            let back = t + r.range(50 * MS, 1500 * MS);
            steps.push((
                back,
                Step::RestartBehind {
                    node: "n2".into(),
                    schema,
                },
            ));
            steps.push((
                back + 2 * SEC,
                Step::CreateAt {
                    node: "n2".into(),
                    count: 10,
                },
            ));
            steps.push((back + 3 * SEC, Step::Clients(3)));
            steps.push((back + 6 * SEC, Step::StopClients));
            steps.push((back + 7 * SEC, Step::Crash("n2".into())));
            end = back + 12 * SEC;
        }
        // Children whose states weigh a third of the message budget: a wave of 16, a
        // handover, a sync or a failover answer in one message would exceed it. A drain
        // moves them (and hands its replicas over), a join syncs them, a crash fails them
        // over; no message may exceed the budget (S5) and nothing answered is lost (S2).
        "large-states" => {
            config.max_message_bytes = 64 * 1024;
            config.state_padding = 20 * 1024;
            steps = base(&mut r, 4, 60, schema);
            let t = 6 * SEC + r.range(0, 2 * SEC);
            steps.push((
                t,
                Step::Drain {
                    node: "n1".into(),
                    exit: true,
                },
            ));
            steps.push((
                t + 2 * SEC,
                Step::Start {
                    node: "n5".into(),
                    schema,
                },
            ));
            let victim = format!("n{}", r.range(2, 5));
            steps.push((t + 6 * SEC + r.range(0, 2 * SEC), Step::Crash(victim)));
            end = t + 14 * SEC;
        }
        // Owners cut off from the others, again and again, with a failure timeout shorter
        // than the lease: the others suspect a cut-off node long before the lease it was
        // granted ends, and only the wait for that lease (the voters') and its end (the
        // owner's, which stops answering) keep two copies from answering, old ones through
        // the clients that still reach the cut-off node (the lease rules' planted bugs).
        "cut-off-owner" => {
            config.failure_timeout = 600 * MS;
            config.heartbeat = 150 * MS;
            // Leases of one to three seconds (`HordeConfig::lease`): the longer, the wider
            // the window in which only the lease rules keep the cut-off copy quiet.
            let lease_s = r.range(1, 4);
            config.lease = Duration::from_secs(lease_s);
            let nodes = r.range(3, 6) as usize;
            steps = base(&mut r, nodes, 40, 2);
            steps.push((4600 * MS, Step::Clients(6)));
            let mut t = 7 * SEC;
            for _ in 0..4 {
                let victim = format!("n{}", r.range(1, nodes as u64 + 1));
                steps.push((
                    t,
                    Step::Partition {
                        node: victim,
                        one_way: false,
                    },
                ));
                t += lease_s * SEC + r.range(1500 * MS, 3500 * MS);
                steps.push((t, Step::Heal));
                t += 8 * SEC;
            }
            end = t;
        }
        // Owners frozen (a suspended virtual machine: paused, clock stopped) for longer than
        // the failure timeout, again and again, while clients write: a frozen owner wakes
        // with inputs and replications of an epoch that was failed over meanwhile (the
        // fencing rules' planted bugs).
        "frozen-owner" => {
            timeout_either_side_of_the_lease(&mut config, &mut r);
            steps = base(&mut r, 3, 30, 2);
            steps.push((4600 * MS, Step::Clients(5)));
            let mut t = 7 * SEC;
            for _ in 0..4 {
                let victim = format!("n{}", r.range(1, 4));
                let dur = r.range(2 * SEC, 5 * SEC);
                let step = if r.chance(0.5) {
                    Step::Freeze { node: victim, dur }
                } else {
                    Step::Pause { node: victim, dur }
                };
                steps.push((t, step));
                t += dur + 8 * SEC;
            }
            end = t;
        }
        // An owner frozen (clock stopped) for a little less than the failure timeout, its
        // messages to all but one member stalled just before: those members suspect it and
        // vote it dead, and a failover asks every member for its replicas, while the one
        // spared still trusts the owner and is the backup of some of its children. The frozen
        // copy wakes believing in its lease (its clock stopped) and replicates on: what that
        // backup acknowledges after it gave its replica to the failover must be refused (the
        // fetch fence's planted bug).
        "frozen-half-seen" => {
            // Timed so the owner still holds its lease when it freezes (the lease ends 1 s
            // after its last round the stalled members granted), the stalled members suspect
            // it and a failover runs before it wakes, and the spared one does not.
            config.failure_timeout = 2 * SEC;
            config.heartbeat = 200 * MS;
            let nodes = 5;
            steps = base(&mut r, nodes, 40, 2);
            steps.push((4600 * MS, Step::Clients(10)));
            let mut t = 7 * SEC;
            for _ in 0..6 {
                let victim = r.range(1, nodes as u64 + 1);
                let mut spared = r.range(1, nodes as u64 + 1);
                if spared == victim {
                    spared = spared % nodes as u64 + 1;
                }
                let stall = r.range(550 * MS, 750 * MS);
                let dur = r.range(1650 * MS, 1780 * MS);
                for other in (1..=nodes as u64).filter(|o| *o != victim && *o != spared) {
                    steps.push((
                        t,
                        Step::Stall {
                            from: format!("n{victim}"),
                            to: format!("n{other}"),
                            dur: stall + dur + SEC,
                        },
                    ));
                }
                steps.push((
                    t + stall,
                    Step::Freeze {
                        node: format!("n{victim}"),
                        dur,
                    },
                ));
                t += stall + dur + 8 * SEC;
            }
            end = t;
        }
        // An owner cut off (both ways or only its outgoing side) just as it offers its
        // children in a drain: the offers go unanswered, and it thaws them at a higher epoch
        // where nobody hears it, while the majority fails them over. On heal the failover's
        // copies must win the merge (a failover's epoch starts a new term: its planted bug).
        "cut-off-mover" => {
            timeout_either_side_of_the_lease(&mut config, &mut r);
            let nodes = 4;
            steps = base(&mut r, nodes, 40, 2);
            steps.push((4600 * MS, Step::Clients(6)));
            let t = 7 * SEC + r.range(0, SEC);
            let victim = format!("n{}", r.range(1, nodes as u64 + 1));
            steps.push((
                t,
                Step::Drain {
                    node: victim.clone(),
                    exit: false,
                },
            ));
            steps.push((
                t + r.range(0, 20 * MS),
                Step::Partition {
                    node: victim,
                    one_way: r.chance(0.5),
                },
            ));
            let heal = t + r.range(4 * SEC, 7 * SEC);
            steps.push((heal, Step::Heal));
            end = heal + 10 * SEC;
        }
        // A member joins while its link to one old member stalls (that member does not know
        // it yet), becomes the backup of children of the others, and one of those owners is
        // cut off: the member that has not heard of the new one fails some of them over,
        // and must wait for the new member's replicas, which the others name in their
        // answers (the planted bug `failover-skips-unknown`).
        "join-behind-stall" => {
            timeout_either_side_of_the_lease(&mut config, &mut r);
            steps = base(&mut r, 3, 40, 2);
            steps.push((4600 * MS, Step::Clients(6)));
            let t = 7 * SEC;
            steps.push((
                t,
                Step::Start {
                    node: "n4".into(),
                    schema: 2,
                },
            ));
            let cut = t + r.range(500 * MS, 1000 * MS);
            steps.push((
                t,
                Step::Stall {
                    from: "n4".into(),
                    to: "n1".into(),
                    dur: cut - t + config.failure_timeout + 3 * SEC,
                },
            ));
            steps.push((
                cut,
                Step::Partition {
                    node: format!("n{}", r.range(2, 4)),
                    one_way: false,
                },
            ));
            let heal = cut + r.range(3 * SEC, 5 * SEC);
            steps.push((heal, Step::Heal));
            end = heal + 10 * SEC;
        }
        // Children stopped while a member is cut off for longer than the tombstone grace,
        // and their owner then leaves: the cut-off member still holds them live when it
        // comes back, and only the tombstones the others kept for it remove them there (the
        // collection rule's planted bug).
        "removals-cut-off" => {
            config.tombstone_grace = Duration::from_secs(2);
            steps = base(&mut r, 4, 30, 2);
            let t = 6 * SEC + r.range(0, SEC);
            steps.push((
                t,
                Step::Partition {
                    node: "n4".into(),
                    one_way: false,
                },
            ));
            steps.push((t + r.range(200 * MS, SEC), Step::Remove { count: 6 }));
            steps.push((t + 2 * SEC + r.range(0, SEC), Step::Remove { count: 6 }));
            let back = t + r.range(5 * SEC, 9 * SEC);
            steps.push((
                back - SEC,
                Step::Drain {
                    node: format!("n{}", r.range(1, 4)),
                    exit: true,
                },
            ));
            steps.push((back, Step::Heal));
            end = back + 10 * SEC;
        }
        // A drain while clients write (answers wait for backups at both ends of each move),
        // and one of the members receiving its children crashes within milliseconds: a
        // child it accepted must already be backed up elsewhere, and an input answered
        // anywhere along the move must survive (the move rules' planted bugs).
        // Quorum sets that differ by more than one member: two nodes join at once (one's
        // link to an old member stalled, so that member learns of it late) and a member is
        // cut off before every member has seen both joins; then two members drain at once
        // and another is cut off meanwhile. Leases, votes and failovers are decided on
        // the sets each member has at that moment.
        "membership-churn" => {
            timeout_either_side_of_the_lease(&mut config, &mut r);
            steps = base(&mut r, 3, 30, 2);
            steps.push((4600 * MS, Step::Clients(5)));
            let t = 7 * SEC;
            for new in ["n4", "n5"] {
                steps.push((
                    t + r.range(0, 50 * MS),
                    Step::Start {
                        node: new.into(),
                        schema: 2,
                    },
                ));
            }
            steps.push((
                t + r.range(0, 100 * MS),
                Step::Stall {
                    from: "n4".into(),
                    to: format!("n{}", r.range(1, 4)),
                    dur: r.range(300 * MS, 1500 * MS),
                },
            ));
            let cut = t + r.range(50 * MS, 900 * MS);
            steps.push((
                cut,
                Step::Partition {
                    node: format!("n{}", r.range(1, 6)),
                    one_way: r.chance(0.3),
                },
            ));
            steps.push((cut + r.range(2 * SEC, 5 * SEC), Step::Heal));
            let t2 = t + 12 * SEC;
            let drained = r.range(1, 4);
            for d in [drained, drained % 3 + 1] {
                steps.push((
                    t2 + r.range(0, 50 * MS),
                    Step::Drain {
                        node: format!("n{d}"),
                        exit: true,
                    },
                ));
            }
            let cut2 = t2 + r.range(0, 1500 * MS);
            steps.push((
                cut2,
                Step::Partition {
                    node: ["n4", "n5"][r.range(0, 2) as usize].into(),
                    one_way: false,
                },
            ));
            steps.push((cut2 + r.range(2 * SEC, 5 * SEC), Step::Heal));
            end = t2 + 15 * SEC;
        }
        "move-then-crash" => {
            steps = base(&mut r, 4, 40, schema);
            steps.push((4600 * MS, Step::Clients(3)));
            let t = 7 * SEC + r.range(0, SEC);
            steps.push((
                t,
                Step::Drain {
                    node: "n1".into(),
                    exit: r.chance(0.5),
                },
            ));
            if r.chance(0.7) {
                // The first member to accept one of its children, at once.
                steps.push((t, Step::CrashOnAccept));
            } else {
                let victim = format!("n{}", r.range(2, 5));
                steps.push((t + r.range(0, 40 * MS), Step::Crash(victim)));
            }
            end = t + 10 * SEC;
        }
        _ => return None,
    }
    steps.sort_by_key(|(t, _)| *t);
    Some(Schedule {
        name: name.into(),
        steps,
        end,
        quiet: quiet(&config),
        config,
    })
}

/// How long a schedule runs on after its faults stop: long enough for every tombstone to be
/// collected (a tombstone grace, then reminders) and everything to converge.
fn quiet(config: &Config) -> Time {
    config.tombstone_grace.as_micros() as Time + 20 * SEC
}
