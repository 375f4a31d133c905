//! The table driven by hand: integers as links, a clock that moves only when a test says so.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::*;
use crate::NodeName;
use crate::connector::beacon::MeshPeer;

const PORT: u16 = 9000;
const TICK: Duration = Duration::from_millis(50);

fn ip(i: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, i))
}

fn addr(i: u8) -> SocketAddr {
    SocketAddr::new(ip(i), PORT)
}

fn name(i: u8) -> String {
    format!("minotaur@10.0.0.{i}")
}

fn id(i: u8, incarnation: u64) -> NodeId {
    NodeId {
        name: name(i),
        incarnation,
    }
}

fn peer(i: u8) -> Peer {
    Peer {
        name: NodeName::parse(&name(i)).unwrap(),
        addr: addr(i),
    }
}

/// This node is `minotaur@10.0.0.1`, run 100, with the connector's defaults: peers `.2` and up
/// sort after it, so it waits the first-dial delay before dialling them.
fn config() -> LinkConfig {
    LinkConfig::new(&ConnectorConfig::new(id(1, 100), "c", ip(1), PORT))
}

/// A table, a virtual clock, and the sessions the "endpoint" reported.
struct Sim {
    table: LinkTable<u64>,
    start: Instant,
    now: Instant,
    sessions: BTreeMap<u64, SessionInfo>,
    next_link: u64,
}

impl Sim {
    fn new() -> Self {
        Self::with(config(), 7)
    }

    fn with(config: LinkConfig, seed: u64) -> Self {
        let start = Instant::now();
        Self {
            table: LinkTable::new(config, seed),
            start,
            now: start,
            sessions: BTreeMap::new(),
            next_link: 1,
        }
    }

    fn feed(&mut self, input: LinkInput<u64>) -> Vec<LinkEffect<u64>> {
        self.table.on(self.now, input)
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    fn step(&mut self, link: u64, step: SessionStep) -> Vec<LinkEffect<u64>> {
        let info = self.sessions[&link].clone();
        self.feed(LinkInput::Session { step, link, info })
    }

    /// A new connection: one the peer at `from` dialled (`inbound`), or one we dialled to it.
    fn open(&mut self, from: SocketAddr, inbound: bool) -> (u64, Vec<LinkEffect<u64>>) {
        let link = self.next_link;
        self.next_link += 1;
        // An inbound connection comes from an ephemeral port; an outbound one is the dialled
        // address.
        let peer_addr = if inbound {
            SocketAddr::new(from.ip(), 40_000 + link as u16)
        } else {
            from
        };
        self.sessions.insert(
            link,
            SessionInfo {
                peer_name: None,
                is_server: inbound,
                peer_addr: peer_addr.to_string(),
            },
        );
        (link, self.step(link, SessionStep::Opened))
    }

    fn authenticate(&mut self, link: u64, presented: &str) -> Vec<LinkEffect<u64>> {
        if let Some(s) = self.sessions.get_mut(&link) {
            s.peer_name = Some(presented.to_string());
        }
        self.step(link, SessionStep::Authenticated)
    }

    fn ready(&mut self, link: u64) -> Vec<LinkEffect<u64>> {
        self.step(link, SessionStep::Ready)
    }

    fn close(&mut self, link: u64) -> Vec<LinkEffect<u64>> {
        self.step(link, SessionStep::Closed)
    }

    /// A link from `node` through every step to ready.
    fn connect(&mut self, node: &NodeId, inbound: bool) -> (u64, Vec<LinkEffect<u64>>) {
        let at = format!("{}:{PORT}", node.name.split_once('@').unwrap().1);
        let (link, mut effects) = self.open(at.parse().unwrap(), inbound);
        effects.extend(self.authenticate(link, &node.ractor_name()));
        effects.extend(self.ready(link));
        (link, effects)
    }

    /// Ticks for `span`, answering effects with `respond`; returns every effect with when it
    /// happened (since the start).
    fn run(
        &mut self,
        span: Duration,
        mut respond: impl FnMut(&LinkEffect<u64>) -> Option<LinkInput<u64>>,
    ) -> Vec<(Duration, LinkEffect<u64>)> {
        let end = self.now + span;
        let mut seen = Vec::new();
        while self.now < end {
            self.advance(TICK);
            let mut pending = self.feed(LinkInput::Tick);
            while !pending.is_empty() {
                let mut next = Vec::new();
                for e in pending {
                    if let Some(input) = respond(&e) {
                        next.extend(self.feed(input));
                    }
                    seen.push((self.elapsed(), e));
                }
                pending = next;
            }
        }
        seen
    }
}

/// Every dial fails at once, every heartbeat goes unanswered.
fn dials_fail(e: &LinkEffect<u64>) -> Option<LinkInput<u64>> {
    match e {
        LinkEffect::Dial { addr } => Some(LinkInput::DialDone {
            addr: *addr,
            error: Some("connection refused".into()),
        }),
        _ => None,
    }
}

fn ups(effects: &[LinkEffect<u64>]) -> Vec<(NodeId, u64)> {
    effects
        .iter()
        .filter_map(|e| match e {
            LinkEffect::Up { id, link } => Some((id.clone(), *link)),
            _ => None,
        })
        .collect()
}

fn downs(effects: &[LinkEffect<u64>]) -> Vec<(NodeId, DownReason)> {
    effects
        .iter()
        .filter_map(|e| match e {
            LinkEffect::Down { id, reason } => Some((id.clone(), *reason)),
            _ => None,
        })
        .collect()
}

fn closes(effects: &[LinkEffect<u64>]) -> Vec<(u64, CloseReason)> {
    effects
        .iter()
        .filter_map(|e| match e {
            LinkEffect::Close { link, reason } => Some((*link, *reason)),
            _ => None,
        })
        .collect()
}

fn dial_times(seen: &[(Duration, LinkEffect<u64>)]) -> Vec<(Duration, SocketAddr)> {
    seen.iter()
        .filter_map(|(t, e)| match e {
            LinkEffect::Dial { addr } => Some((*t, *addr)),
            _ => None,
        })
        .collect()
}

fn effects_of(seen: Vec<(Duration, LinkEffect<u64>)>) -> Vec<LinkEffect<u64>> {
    seen.into_iter().map(|(_, e)| e).collect()
}

fn listed(sim: &Sim) -> Vec<(NodeId, u64)> {
    sim.table
        .nodes()
        .into_iter()
        .map(|n| (n.id, n.link))
        .collect()
}

#[test]
fn an_older_incarnation_is_refused_while_the_current_one_is_up() {
    let mut sim = Sim::new();
    let (current, effects) = sim.connect(&id(2, 6), true);
    assert_eq!(ups(&effects), [(id(2, 6), current)]);

    let (stale, effects) = sim.connect(&id(2, 5), true);
    assert_eq!(closes(&effects), [(stale, CloseReason::StaleIncarnation)]);
    assert!(ups(&effects).is_empty() && downs(&effects).is_empty());
    // Its link closing changes nothing either.
    assert!(sim.close(stale).is_empty());
    assert_eq!(listed(&sim), [(id(2, 6), current)]);
}

#[test]
fn a_newer_incarnation_replaces_the_old_one_down_then_up() {
    let mut sim = Sim::new();
    let (old, _) = sim.connect(&id(2, 5), true);
    let (new, effects) = sim.connect(&id(2, 6), true);
    let events: Vec<&LinkEffect<u64>> = effects
        .iter()
        .filter(|e| matches!(e, LinkEffect::Up { .. } | LinkEffect::Down { .. }))
        .collect();
    assert_eq!(
        events,
        [
            &LinkEffect::Down {
                id: id(2, 5),
                reason: DownReason::Replaced
            },
            &LinkEffect::Up {
                id: id(2, 6),
                link: new
            },
        ]
    );
    assert!(closes(&effects).contains(&(old, CloseReason::NodeDown(DownReason::Replaced))));
    // The old run's link closing later does not touch the new run.
    assert!(sim.close(old).is_empty());
    assert_eq!(listed(&sim), [(id(2, 6), new)]);
}

/// Both sides dialled at once: the ready link closes while the other, authenticated, is still
/// syncing.
fn relink_setup(sim: &mut Sim) -> (u64, u64) {
    let (first, _) = sim.connect(&id(2, 5), true);
    let (second, _) = sim.open(addr(2), false);
    sim.authenticate(second, &id(2, 5).ractor_name());
    sim.advance(Duration::from_millis(10));
    let effects = sim.close(first);
    assert!(effects.is_empty(), "{effects:?}");
    (first, second)
}

#[test]
fn relink_grace_waits_for_the_other_link_and_reports_up_again_without_down() {
    let mut sim = Sim::new();
    let (_, second) = relink_setup(&mut sim);
    let seen = effects_of(sim.run(config().relink_grace / 2, dials_fail));
    assert!(downs(&seen).is_empty(), "{seen:?}");
    // No heartbeat through the closed link while waiting.
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, LinkEffect::Heartbeat { .. }))
    );
    let effects = sim.ready(second);
    assert_eq!(ups(&effects), [(id(2, 5), second)]);
    assert!(downs(&effects).is_empty());
    let seen = effects_of(sim.run(config().relink_grace * 2, |e| match e {
        LinkEffect::Heartbeat { node, .. } => Some(LinkInput::Pong {
            node: node.clone(),
            rtt: Duration::from_millis(1),
            mesh: None,
        }),
        _ => None,
    }));
    assert!(downs(&seen).is_empty(), "{seen:?}");
    assert_eq!(listed(&sim), [(id(2, 5), second)]);
}

#[test]
fn relink_grace_passes_and_the_node_is_reported_down() {
    let mut sim = Sim::new();
    relink_setup(&mut sim);
    let seen = sim.run(config().relink_grace + 2 * TICK, dials_fail);
    let downs_at: Vec<Duration> = seen
        .iter()
        .filter(|(_, e)| matches!(e, LinkEffect::Down { .. }))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(
        downs(&effects_of(seen)),
        [(id(2, 5), DownReason::Disconnected)]
    );
    assert!(downs_at[0] >= config().relink_grace, "{downs_at:?}");
    assert!(listed(&sim).is_empty());
}

#[test]
fn relink_grace_ends_at_once_when_the_other_link_closes_too() {
    let mut sim = Sim::new();
    let (_, second) = relink_setup(&mut sim);
    let effects = sim.close(second);
    assert_eq!(downs(&effects), [(id(2, 5), DownReason::Disconnected)]);
}

#[test]
fn flaps_report_events_in_order_and_a_success_resets_the_backoff() {
    let mut sim = Sim::new();
    sim.feed(LinkInput::Peers([peer(2)].into()));
    // Peer 2 refuses for a while: the backoff grows towards its cap.
    let failing = dial_times(&sim.run(Duration::from_secs(20), dials_fail));
    let gaps: Vec<Duration> = failing.windows(2).map(|w| w[1].0 - w[0].0).collect();
    assert!(
        gaps.last().unwrap() > &Duration::from_secs(2),
        "backoff did not grow: {gaps:?}"
    );

    let mut events = Vec::new();
    let mut down_at = Duration::ZERO;
    for round in 0..3 {
        let (link, effects) = if round == 0 {
            // It comes up by dialling us.
            sim.connect(&id(2, 5), true)
        } else {
            // Later it is our redial that gets through, soon: the backoff starts afresh.
            let dials = dial_times(&sim.run(Duration::from_secs(1), |_| None));
            let (t, to) = *dials.first().expect("no redial within a second");
            assert_eq!(to, addr(2));
            // backoff_min (jittered) plus at most twice the first-dial delay, plus a tick.
            assert!(
                t - down_at <= Duration::from_millis(100 + 300 + 50),
                "redial waited {:?}: backoff not reset",
                t - down_at
            );
            // That one fails, and the next still waits only about backoff_min * 2.
            sim.feed(LinkInput::DialDone {
                addr: addr(2),
                error: Some("connection refused".into()),
            });
            let failed_at = sim.elapsed();
            let dials = dial_times(&sim.run(Duration::from_secs(1), |_| None));
            let (t, _) = *dials.first().expect("no second redial within a second");
            assert!(
                t - failed_at <= Duration::from_millis(200 + 50),
                "{dials:?}"
            );
            sim.feed(LinkInput::DialDone {
                addr: addr(2),
                error: None,
            });
            sim.connect(&id(2, 5), false)
        };
        events.extend(
            ups(&effects)
                .into_iter()
                .map(|(id, l)| format!("up {id} {l}")),
        );
        sim.advance(Duration::from_millis(100));
        let effects = sim.close(link);
        events.extend(
            downs(&effects)
                .into_iter()
                .map(|(id, r)| format!("down {id} {r:?}")),
        );
        down_at = sim.elapsed();
    }
    let run = id(2, 5);
    assert_eq!(
        events,
        [
            format!("up {run} 1"),
            format!("down {run} Disconnected"),
            format!("up {run} 2"),
            format!("down {run} Disconnected"),
            format!("up {run} 3"),
            format!("down {run} Disconnected"),
        ]
    );
}

/// Answers every heartbeat as `who`.
fn pong_as(who: NodeId) -> impl FnMut(&LinkEffect<u64>) -> Option<LinkInput<u64>> {
    move |e| match e {
        LinkEffect::Heartbeat { .. } => Some(LinkInput::Pong {
            node: who.clone(),
            rtt: Duration::from_millis(1),
            mesh: None,
        }),
        _ => None,
    }
}

#[test]
fn a_silent_node_is_reported_unresponsive_at_the_deadline_and_its_link_closed() {
    let mut sim = Sim::new();
    let (link, _) = sim.connect(&id(2, 5), true);
    let up_at = sim.elapsed();
    let seen = sim.run(Duration::from_secs(3), |_| None);
    let heartbeats: Vec<&LinkEffect<u64>> = seen
        .iter()
        .map(|(_, e)| e)
        .filter(|e| matches!(e, LinkEffect::Heartbeat { .. }))
        .collect();
    // One outstanding heartbeat at a time, through the node's link, with the deadline as
    // its timeout.
    assert_eq!(
        heartbeats,
        [&LinkEffect::Heartbeat {
            node: id(2, 5),
            link,
            mesh_known: 0,
            timeout: config().failure_timeout,
        }]
    );
    let (down_at, _) = seen
        .iter()
        .find(|(_, e)| matches!(e, LinkEffect::Down { .. }))
        .unwrap();
    let silent = *down_at - up_at;
    assert!(
        silent > config().failure_timeout && silent <= config().failure_timeout + TICK,
        "{silent:?}"
    );
    let effects = effects_of(seen);
    assert_eq!(downs(&effects), [(id(2, 5), DownReason::Unresponsive)]);
    assert_eq!(
        closes(&effects),
        [(link, CloseReason::NodeDown(DownReason::Unresponsive))]
    );
}

#[test]
fn answers_keep_a_node_up_but_not_answers_from_an_older_incarnation() {
    let mut sim = Sim::new();
    sim.connect(&id(2, 6), true);
    let seen = effects_of(sim.run(Duration::from_secs(5), pong_as(id(2, 6))));
    assert!(downs(&seen).is_empty(), "{seen:?}");
    // Heartbeats follow the interval: about 5 s / 500 ms of them.
    let sent = seen
        .iter()
        .filter(|e| matches!(e, LinkEffect::Heartbeat { .. }))
        .count();
    assert!((9..=11).contains(&sent), "{sent}");
    assert!(sim.table.get(&name(2)).unwrap().rtt.is_some());

    // The previous run of the same name still answers (through some stale proxy): that does
    // not count.
    let seen = effects_of(sim.run(Duration::from_secs(3), pong_as(id(2, 5))));
    assert_eq!(downs(&seen), [(id(2, 6), DownReason::Unresponsive)]);
}

#[test]
fn a_heartbeat_whose_beacon_is_not_synced_yet_is_tried_again_on_the_next_tick() {
    let mut sim = Sim::new();
    sim.connect(&id(2, 5), true);
    let mut missing = 3;
    let seen = sim.run(Duration::from_millis(500), |e| match e {
        LinkEffect::Heartbeat { node, .. } if missing > 0 => {
            missing -= 1;
            Some(LinkInput::BeaconMissing { node: node.clone() })
        }
        _ => None,
    });
    let times: Vec<Duration> = seen
        .iter()
        .filter(|(_, e)| matches!(e, LinkEffect::Heartbeat { .. }))
        .map(|(t, _)| *t)
        .collect();
    // Three ticks in a row find no beacon; the fourth sends, then none until it is answered.
    assert_eq!(times.len(), 4, "{times:?}");
    assert!(times.windows(2).all(|w| w[1] - w[0] == TICK), "{times:?}");
}

#[test]
fn over_the_half_open_cap_the_oldest_pending_link_is_closed() {
    let mut capped = config();
    capped.max_pending_handshakes = 2;
    let mut sim = Sim::with(capped, 7);
    let (oldest, effects) = sim.open(addr(7), true);
    assert!(effects.is_empty());
    sim.advance(Duration::from_millis(1));
    let (console, _) = sim.open(addr(8), true);
    sim.advance(Duration::from_millis(1));
    let (third, effects) = sim.open(addr(9), true);
    assert_eq!(closes(&effects), [(oldest, CloseReason::TooManyHandshakes)]);
    sim.close(oldest);

    // An authenticated link no longer counts as half-open.
    sim.authenticate(console, "c-1@10.0.0.8#console");
    let (fourth, effects) = sim.open(addr(10), true);
    assert!(effects.is_empty(), "{effects:?}");
    sim.advance(Duration::from_millis(1));
    let (_, effects) = sim.open(addr(11), true);
    assert_eq!(closes(&effects), [(third, CloseReason::TooManyHandshakes)]);
    sim.close(third);

    // Past the handshake deadline, what is still pending is closed; a console stays.
    sim.advance(config().handshake_timeout);
    let effects = effects_of(sim.run(TICK, |_| None));
    let closed: Vec<u64> = closes(&effects).into_iter().map(|(l, _)| l).collect();
    assert!(
        closed.contains(&fourth) && !closed.contains(&console),
        "{closed:?}"
    );
    assert!(
        closes(&effects)
            .iter()
            .all(|(_, r)| *r == CloseReason::HandshakeTimeout)
    );
    // Until the shell reports it gone, an expired link is not asked to close again (a paused
    // process wakes to many ticks at once).
    let again = effects_of(sim.run(TICK * 20, |_| None));
    assert!(closes(&again).is_empty(), "{again:?}");
}

#[test]
fn a_partition_refuses_the_node_and_heal_dials_it_again() {
    let mut sim = Sim::new();
    sim.feed(LinkInput::Peers([peer(2)].into()));
    let seen = dial_times(&sim.run(Duration::from_millis(400), |_| None));
    assert_eq!(seen.len(), 1);
    sim.feed(LinkInput::DialDone {
        addr: addr(2),
        error: None,
    });
    let (link, _) = sim.connect(&id(2, 5), false);

    let effects = sim.feed(LinkInput::Partition {
        nodes: vec![name(2)],
    });
    assert_eq!(downs(&effects), [(id(2, 5), DownReason::Disconnected)]);
    assert!(closes(&effects).iter().any(|(l, _)| *l == link));
    sim.close(link);

    // Not dialled while partitioned, and refused when it dials us.
    let seen = sim.run(Duration::from_secs(3), dials_fail);
    assert!(dial_times(&seen).is_empty(), "{seen:?}");
    let (inbound, _) = sim.open(addr(2), true);
    let effects = sim.authenticate(inbound, &id(2, 5).ractor_name());
    assert_eq!(closes(&effects), [(inbound, CloseReason::Partitioned)]);
    let effects = sim.ready(inbound);
    assert_eq!(closes(&effects), [(inbound, CloseReason::Partitioned)]);
    assert!(ups(&effects).is_empty());
    sim.close(inbound);
    assert!(listed(&sim).is_empty());

    let healed_at = sim.elapsed();
    assert!(sim.feed(LinkInput::Heal).is_empty());
    let dials = dial_times(&sim.run(Duration::from_secs(1), |_| None));
    let (t, to) = *dials.first().expect("no dial after heal");
    assert_eq!(to, addr(2));
    assert!(
        t - healed_at <= Duration::from_millis(100 + 300 + 50),
        "{t:?}"
    );
    sim.feed(LinkInput::DialDone {
        addr: addr(2),
        error: None,
    });
    let (_, effects) = sim.connect(&id(2, 5), false);
    assert_eq!(ups(&effects).len(), 1);
}

#[test]
fn mesh_reports_make_the_node_dial_peers_only_others_know_and_never_itself() {
    // Bound to every interface, as in a container: its address comes from its name.
    let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let config = LinkConfig::new(&ConnectorConfig::new(id(1, 100), "c", any, PORT));
    assert_eq!(config.advertised, Some(addr(1)));
    let mut sim = Sim::with(config, 7);
    sim.feed(LinkInput::Peers([peer(2)].into()));
    sim.run(Duration::from_millis(400), |_| None);
    sim.feed(LinkInput::DialDone {
        addr: addr(2),
        error: None,
    });
    let (_, effects) = sim.connect(&id(2, 5), false);
    // This node now tells others about itself and node 2 (at the address it dialled).
    let mesh: Vec<&Mesh> = effects
        .iter()
        .filter_map(|e| match e {
            LinkEffect::PublishMesh(m) => Some(m),
            _ => None,
        })
        .collect();
    let entry = |n: String, a: SocketAddr| MeshPeer { name: n, addr: a };
    assert_eq!(mesh.len(), 1);
    assert_eq!(
        mesh[0].peers,
        [entry(name(1), addr(1)), entry(name(2), addr(2))]
    );

    // Node 2 reports itself, node 3, this node, this node's address under another name, this
    // node's name at another address, and garbage.
    let ours_elsewhere = SocketAddr::new(ip(1), PORT + 1);
    let report = vec![
        entry(name(2), addr(2)),
        entry(name(3), addr(3)),
        entry(name(1), addr(1)),
        entry("minotaur@node-one.example".into(), addr(1)),
        entry(name(1), ours_elsewhere),
        entry("not a name".into(), addr(4)),
    ];
    let mut answered = false;
    let seen = sim.run(Duration::from_secs(2), |e| match e {
        LinkEffect::Heartbeat { node, .. } => {
            let mesh = (!answered).then(|| MeshReport {
                digest: 77,
                peers: Some(report.clone()),
            });
            answered = true;
            Some(LinkInput::Pong {
                node: node.clone(),
                rtt: Duration::from_millis(1),
                mesh,
            })
        }
        LinkEffect::Dial { addr } => Some(LinkInput::DialDone {
            addr: *addr,
            error: Some("refused".into()),
        }),
        _ => None,
    });
    let dialled: BTreeSet<SocketAddr> = dial_times(&seen).into_iter().map(|(_, a)| a).collect();
    assert_eq!(dialled, [addr(3)].into());
    // Later heartbeats say which mesh this node has, so node 2 need not send it again.
    let known: Vec<u64> = seen
        .iter()
        .filter_map(|(_, e)| match e {
            LinkEffect::Heartbeat { mesh_known, .. } => Some(*mesh_known),
            _ => None,
        })
        .collect();
    assert_eq!(known.first(), Some(&0));
    assert!(known[1..].iter().all(|k| *k == 77), "{known:?}");
}

#[test]
fn a_link_to_itself_is_closed_and_its_address_never_dialled_again() {
    let mut sim = Sim::new();
    // DNS lists this node's address under another name.
    let alias = Peer {
        name: NodeName::parse("minotaur@10.0.0.99").unwrap(),
        addr: addr(99),
    };
    sim.feed(LinkInput::Peers([alias].into()));
    let first = dial_times(&sim.run(Duration::from_millis(400), |_| None));
    assert_eq!(first.len(), 1);
    sim.feed(LinkInput::DialDone {
        addr: addr(99),
        error: None,
    });
    let (link, _) = sim.open(addr(99), false);
    let effects = sim.authenticate(link, &id(1, 100).ractor_name());
    assert_eq!(closes(&effects), [(link, CloseReason::SameName)]);
    sim.close(link);
    assert!(dial_times(&sim.run(Duration::from_secs(10), dials_fail)).is_empty());
}

#[test]
fn the_same_seed_gives_the_same_dial_times() {
    let times = |seed: u64| {
        let mut sim = Sim::with(config(), seed);
        sim.feed(LinkInput::Peers([peer(0), peer(2), peer(3)].into()));
        dial_times(&sim.run(Duration::from_secs(30), dials_fail))
    };
    let a = times(42);
    assert!(a.len() > 20, "{a:?}");
    assert_eq!(a, times(42));
    assert_ne!(a, times(43));
    // Peer 0's name sorts before this node's: it is dialled at the first tick, while the
    // others wait the first-dial delay.
    assert_eq!(a[0], (TICK, addr(0)));
    assert!(a[1].0 >= config().first_dial_delay, "{a:?}");
}

/// Log output captured for one closure (a thread-local subscriber writing into a buffer).
fn logs_of(f: impl FnOnce()) -> String {
    #[derive(Clone, Default)]
    struct Buf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let out = buf.0.lock().unwrap().clone();
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn a_name_claimed_before_the_cookie_check_is_logged_escaped() {
    let mut sim = Sim::new();
    let (link, _) = sim.open(addr(7), true);
    // What a peer without the cookie presented in its handshake, then the link closed.
    let forged = "evil\n2026-01-01T00:00:00Z  INFO node up node=minotaur@10.0.0.9\u{1b}[2J";
    sim.sessions.get_mut(&link).unwrap().peer_name = Some(forged.to_string());
    let out = logs_of(|| {
        sim.close(link);
    });
    assert!(out.contains("failed to authenticate"), "{out}");
    assert_eq!(
        out.trim_end().lines().count(),
        1,
        "a forged log line: {out}"
    );
    assert!(out.contains(r"evil\n2026"), "{out}");
    assert!(!out.contains('\u{1b}'), "a raw escape sequence: {out}");
}
