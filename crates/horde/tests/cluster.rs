//! In-process multi-node tests: several real nodes (ractor_cluster endpoints over real TCP on
//! 127.0.x.y) in one test process, each with its own horde member, driven through scenarios:
//! drain under load, rebalance on join, abrupt stop, partition and heal, schema upgrade.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use discovery::NodeId;
use harness::logs;
use harness::mesh::{HordeNode, connector_config, mesh};
use harness::ports::{free_port, loopbacks};
use harness::wait::{eventually, scaled};
use horde::{
    Candidate, Child, Ctx, Handoff, HandoffError, Horde, HordeConfig, MemberStatus, Placement,
    RebalanceConfig, Rendezvous, Replication,
};
use serde::{Deserialize, Serialize};

// === the test child: a counter with idempotent increments ===

/// A counter. Increments carry an id; a repeated id is not applied again (what a client
/// retry needs), and every application, repeated or not, is counted in `seen`, so a message
/// the horde applied twice shows up as `seen > sent`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Counter {
    value: u64,
    applied: BTreeSet<u64>,
    seen: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum CounterMsg {
    Inc {
        id: u64,
    },
    Get,
    /// Was increment `id` applied? (answered in `has`)
    Has {
        id: u64,
    },
    /// Panics in the callback (restart policy test).
    Crash,
    /// Stops itself (its name is removed).
    Stop,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct CounterState {
    value: u64,
    seen: u64,
    /// The answer to `Has`.
    has: bool,
    /// The node that answered.
    node: String,
}

impl Child for Counter {
    type Spec = u64;
    type Msg = CounterMsg;
    type Reply = CounterState;
    type Event = u64;

    fn start(_name: &str, initial: u64, _ctx: &mut Ctx<Self>) -> Self {
        Counter {
            value: initial,
            applied: BTreeSet::new(),
            seen: 0,
        }
    }

    fn handle(&mut self, msg: CounterMsg, ctx: &mut Ctx<Self>) -> CounterState {
        if let CounterMsg::Inc { id } = msg {
            self.seen += 1;
            if self.applied.insert(id) {
                self.value += 1;
                ctx.emit(self.value);
            }
        }
        if let CounterMsg::Crash = msg {
            panic!("counter told to crash");
        }
        if let CounterMsg::Stop = msg {
            ctx.stop();
        }
        let has = matches!(msg, CounterMsg::Has { id } if self.applied.contains(&id));
        if matches!(msg, CounterMsg::Get | CounterMsg::Has { .. }) {
            ctx.unchanged();
        }
        CounterState {
            value: self.value,
            seen: self.seen,
            has,
            node: ctx.node().to_string(),
        }
    }

    fn subscribed(&self, _ctx: &Ctx<Self>) -> Option<u64> {
        Some(self.value)
    }

    fn replication() -> Replication {
        Replication::BeforeReply
    }
}

impl Handoff for Counter {
    const SCHEMA: u16 = 1;
    fn dehydrate(&self, _ctx: &Ctx<Self>) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap()
    }
    fn rehydrate(
        _name: &str,
        schema: u16,
        state: &[u8],
        _ctx: &mut Ctx<Self>,
    ) -> Result<Self, HandoffError> {
        match schema {
            1 => postcard::from_bytes(state).map_err(|e| HandoffError::Corrupt(e.to_string())),
            got => Err(HandoffError::UnknownSchema {
                got,
                supported: "v1".into(),
            }),
        }
    }
}

// === the nodes ===

/// Longest wait of a scenario step (scaled by `MINOTAUR_TEST_TIME_SCALE`).
const DEADLINE: Duration = Duration::from_secs(20);

/// A node of these tests on `ip`: a connector with the tests' cookie and a horde member of
/// `C`, its logs in the test output.
async fn node<C: Handoff>(ip: IpAddr, port: u16, config: HordeConfig) -> HordeNode<C> {
    logs::capture();
    HordeNode::start(connector_config(ip, port, "horde-test"), config).await
}

fn config() -> HordeConfig {
    let mut c = HordeConfig::new("counters", "1.0.0");
    c.join_timeout = Duration::from_millis(300);
    c
}

fn live_registry<C: Handoff>(h: &Horde<C>) -> BTreeMap<String, (String, u64)> {
    h.registry_snapshot()
        .iter()
        .filter(|(_, e)| !e.removed)
        .map(|(n, e)| (n.to_string(), (e.owner.name.clone(), e.epoch)))
        .collect()
}

// === scenarios ===

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn draining_a_node_under_load_loses_and_doubles_nothing() {
    let ips = loopbacks(31, 3);
    let port = free_port(&ips).unwrap();
    let mut nodes = Vec::new();
    for ip in &ips {
        nodes.push(node::<Counter>(*ip, port, config()).await);
    }
    mesh(&nodes.iter().collect::<Vec<_>>()).await;

    const COUNTERS: usize = 1000;
    for i in 0..COUNTERS {
        nodes[i % 3]
            .horde
            .start_child(&format!("counter-{i}"), &0)
            .await
            .unwrap();
    }
    let on_drained = nodes[0].horde.local_names().len();
    assert!(
        on_drained > 200,
        "placement should give node 0 about a third, got {on_drained}"
    );
    for n in &nodes {
        assert_eq!(
            n.horde.registry_len(),
            COUNTERS,
            "every node knows every name at once"
        );
    }

    // Clients on the two staying nodes increment every counter, retrying on error with the
    // same id, while node 0 drains.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let next_id = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for c in 0..8 {
        let horde = nodes[1 + c % 2].horde.clone();
        let (stop, sent, next_id) = (stop.clone(), sent.clone(), next_id.clone());
        clients.push(tokio::spawn(async move {
            let mut acked: HashMap<String, u64> = HashMap::new();
            let mut errors = 0u64;
            let mut i = c;
            while !stop.load(Ordering::Relaxed) {
                let name = format!("counter-{}", i % COUNTERS);
                i += 7;
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                loop {
                    sent.fetch_add(1, Ordering::Relaxed);
                    match horde
                        .call(&name, CounterMsg::Inc { id }, Duration::from_secs(5))
                        .await
                    {
                        Ok(_) => break,
                        Err(_) => {
                            errors += 1;
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                }
                *acked.entry(name).or_default() += 1;
            }
            (acked, errors)
        }));
    }
    // Calls made, not time slept: the clients are busy before the drain and go on after it.
    let calls_past = |n: u64| {
        let sent = sent.clone();
        let want = sent.load(Ordering::Relaxed) + n;
        async move {
            eventually("more calls made", DEADLINE, || async {
                (sent.load(Ordering::Relaxed) >= want).then_some(())
            })
            .await
        }
    };
    calls_past(600).await;
    let report = nodes[0].horde.drain(Duration::from_secs(10)).await;
    calls_past(600).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked: HashMap<String, u64> = HashMap::new();
    let mut errors = 0;
    for c in clients {
        let (a, e) = c.await.unwrap();
        errors += e;
        for (k, v) in a {
            *acked.entry(k).or_default() += v;
        }
    }

    assert_eq!(report.moved, on_drained, "{report:?}");
    assert_eq!((report.fallback, report.stranded), (0, 0), "{report:?}");
    assert!(nodes[0].horde.local_names().is_empty());
    assert_eq!(nodes[0].horde.status(), MemberStatus::Draining);
    let mut total_seen = 0;
    for i in 0..COUNTERS {
        let name = format!("counter-{i}");
        let state = nodes[1]
            .horde
            .call(&name, CounterMsg::Get, Duration::from_secs(5))
            .await
            .unwrap();
        let want = acked.get(&name).copied().unwrap_or(0);
        assert_eq!(
            state.value, want,
            "{name}: value {} but {want} increments acknowledged",
            state.value
        );
        total_seen += state.seen;
        let owner = nodes[1].horde.whereis(&name).unwrap();
        assert_ne!(
            owner.name,
            nodes[0].connector.node().name,
            "{name} still on the drained node"
        );
    }
    let sent = sent.load(Ordering::Relaxed);
    assert!(
        total_seen <= sent,
        "applied {total_seen} increments but only {sent} were sent: some applied twice"
    );
    let total_acked: u64 = acked.values().sum();
    assert!(
        total_acked > 1000,
        "the load was too light to prove anything: {total_acked}"
    );
    if errors == 0 {
        assert_eq!(
            total_seen, total_acked,
            "no retries, so every increment is seen exactly once"
        );
    }
    let stats = nodes[0].horde.stats();
    assert_eq!(stats.handoffs_out as usize, on_drained);
    let received: u64 = nodes[1..].iter().map(|n| n.horde.stats().handoffs_in).sum();
    assert_eq!(received as usize, on_drained);
    // The registry is equal on every node.
    let reference = live_registry(&nodes[1].horde);
    for n in &nodes {
        eventually("registries equal", DEADLINE, || async {
            (live_registry(&n.horde) == reference).then_some(())
        })
        .await;
    }
    eprintln!(
        "drain: {report:?}, acked {total_acked}, sent {sent}, errors {errors}, pause p50 {:?} p99 {:?}",
        stats.pause_p50, stats.pause_p99
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_joining_node_takes_its_share_live_when_rebalancing_is_on() {
    let ips = loopbacks(32, 3);
    let port = free_port(&ips).unwrap();
    let mut cfg = config();
    cfg.rebalance = Some(RebalanceConfig { rate_per_sec: 1000 });
    let a = node::<Counter>(ips[0], port, cfg.clone()).await;
    let b = node::<Counter>(ips[1], port, cfg.clone()).await;
    mesh(&[&a, &b]).await;
    for i in 0..300 {
        let name = format!("c{i}");
        a.horde.start_child(&name, &(i as u64 * 10)).await.unwrap();
        a.horde
            .call(&name, CounterMsg::Inc { id: 1 }, Duration::from_secs(5))
            .await
            .unwrap();
    }
    let c = node::<Counter>(ips[2], port, cfg.clone()).await;
    mesh(&[&a, &b, &c]).await;
    let moved = eventually(
        "children rebalanced onto the new node",
        DEADLINE,
        || async {
            let n = c.horde.local_names().len();
            (n > 50).then_some(n)
        },
    )
    .await;
    // Settled: each child runs on exactly one node, the one placement picks among the three,
    // and the registry says so.
    let candidates: Vec<Candidate> = a
        .horde
        .members()
        .into_iter()
        .map(|m| Candidate {
            node: m.node,
            version: m.version,
            status: m.status,
            load: 0,
            reads: m.reads,
        })
        .collect();
    assert_eq!(candidates.len(), 3);
    let misplaced = || {
        let hosts = [&a, &b, &c];
        (0..300)
            .map(|i| format!("c{i}"))
            .filter(|name| {
                let on: Vec<&NodeId> = hosts
                    .iter()
                    .filter(|h| h.horde.local_names().contains(name))
                    .map(|h| h.connector.node())
                    .collect();
                let want = Rendezvous.place(name, &candidates);
                !(on.len() == 1
                    && Some(on[0]) == want.as_ref()
                    && a.horde.whereis(name).as_ref() == want.as_ref())
            })
            .collect::<Vec<_>>()
    };
    eventually("every child where placement puts it", DEADLINE, || async {
        misplaced().is_empty().then_some(())
    })
    .await;
    let on_c = c.horde.local_names().len();
    assert!(
        on_c >= moved,
        "{on_c} on the new node, {moved} seen moving there"
    );
    assert_eq!(c.horde.stats().handoffs_in as usize, on_c);
    for i in 0..300 {
        let s = b
            .horde
            .call(&format!("c{i}"), CounterMsg::Get, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(s.value, i as u64 * 10 + 1, "c{i} lost its state moving");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_children_of_a_node_that_stops_abruptly_restart_elsewhere_from_snapshots() {
    let ips = loopbacks(33, 3);
    let port = free_port(&ips).unwrap();
    let mut nodes = Vec::new();
    for ip in &ips {
        nodes.push(node::<Counter>(*ip, port, config()).await);
    }
    mesh(&nodes.iter().collect::<Vec<_>>()).await;
    for i in 0..300 {
        let name = format!("k{i}");
        nodes[0].horde.start_child(&name, &0).await.unwrap();
        for id in 0..3 {
            nodes[1]
                .horde
                .call(&name, CounterMsg::Inc { id }, Duration::from_secs(5))
                .await
                .unwrap();
        }
    }
    let victims = nodes[2].horde.local_names();
    assert!(!victims.is_empty());
    // Every answer above was on a backup before it left: kill the node at once (no wait for
    // anything to land), its children stop where they are and its links close.
    let dead = nodes.pop().unwrap();
    dead.horde.abort();
    dead.connector.stop().await;
    for name in &victims {
        let s = eventually("victim restarted", DEADLINE, || async {
            nodes[0]
                .horde
                .call(name, CounterMsg::Get, Duration::from_millis(500))
                .await
                .ok()
        })
        .await;
        assert_eq!(s.value, 3, "{name} restarted without its snapshot");
    }
    let restored: u64 = nodes
        .iter()
        .map(|n| n.horde.stats().restarts_from_snapshot)
        .sum();
    assert_eq!(restored as usize, victims.len());
    for name in &victims {
        assert_ne!(
            nodes[0].horde.whereis(name).unwrap().name,
            dead.connector.node().name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partition_that_heals_leaves_exactly_one_copy_of_each_name() {
    let ips = loopbacks(34, 3);
    let port = free_port(&ips).unwrap();
    let conflicts_seen = Arc::new(AtomicU64::new(0));
    let states_reported = Arc::new(AtomicU64::new(0));
    let mut cfg = config();
    let (seen, states) = (conflicts_seen.clone(), states_reported.clone());
    cfg.on_conflict = Some(Arc::new(move |report: horde::ConflictReport| {
        seen.fetch_add(1, Ordering::Relaxed);
        if report.loser_state.is_some() {
            states.fetch_add(1, Ordering::Relaxed);
        }
    }));
    let mut nodes = Vec::new();
    for ip in &ips {
        nodes.push(node::<Counter>(*ip, port, cfg.clone()).await);
    }
    mesh(&nodes.iter().collect::<Vec<_>>()).await;
    for i in 0..90 {
        nodes[0]
            .horde
            .start_child(&format!("p{i}"), &0)
            .await
            .unwrap();
    }
    // Cut node 0 off from nodes 1 and 2, both ways.
    let (n0, n1, n2) = (
        nodes[0].connector.node().name.clone(),
        nodes[1].connector.node().name.clone(),
        nodes[2].connector.node().name.clone(),
    );
    nodes[0]
        .connector
        .partition(&[n1.clone(), n2.clone()])
        .await
        .unwrap();
    nodes[1]
        .connector
        .partition(std::slice::from_ref(&n0))
        .await
        .unwrap();
    nodes[2]
        .connector
        .partition(std::slice::from_ref(&n0))
        .await
        .unwrap();
    // The majority side restarts what node 0 hosted; node 0, a minority alone, restarts
    // nothing (its own copies keep running but answer nothing: it holds no lease).
    let on_minority = nodes[0].horde.local_names().len();
    assert!(on_minority > 0);
    eventually("majority side runs everything", DEADLINE, || async {
        (nodes[1].horde.local_names().len() + nodes[2].horde.local_names().len() == 90)
            .then_some(())
    })
    .await;
    assert_eq!(nodes[0].horde.local_names().len(), on_minority);
    eventually("the minority side lost its lease", DEADLINE, || async {
        (!nodes[0].horde.has_quorum()).then_some(())
    })
    .await;
    assert!(nodes[1].horde.has_quorum() && nodes[2].horde.has_quorum());
    for n in &nodes {
        n.connector.heal().await.unwrap();
    }
    // After the heal: exactly one copy of each name, and every replica agrees.
    eventually("one copy of each name", DEADLINE, || async {
        let total: usize = nodes.iter().map(|n| n.horde.local_names().len()).sum();
        (total == 90).then_some(())
    })
    .await;
    let mut owners: HashMap<String, usize> = HashMap::new();
    for n in &nodes {
        for name in n.horde.local_names() {
            *owners.entry(name).or_default() += 1;
        }
    }
    assert_eq!(owners.len(), 90);
    assert!(owners.values().all(|c| *c == 1));
    let reference = live_registry(&nodes[0].horde);
    for n in &nodes {
        eventually("replicas agree", DEADLINE, || async {
            (live_registry(&n.horde) == reference).then_some(())
        })
        .await;
    }
    for (name, (owner, _)) in &reference {
        let host = nodes
            .iter()
            .find(|n| n.horde.local_names().contains(name))
            .unwrap();
        assert_eq!(&host.connector.node().name, owner);
    }
    let conflicts: u64 = nodes.iter().map(|n| n.horde.stats().conflicts).sum();
    assert_eq!(
        conflicts as usize, on_minority,
        "every copy of the minority side lost to the majority's"
    );
    // Every loser was reported to the callback, with its last state.
    eventually("every conflict reported", DEADLINE, || async {
        (conflicts_seen.load(Ordering::Relaxed) == conflicts).then_some(())
    })
    .await;
    assert_eq!(states_reported.load(Ordering::Relaxed), conflicts);
}

// === schema upgrade: v1 state reaches v2 code ===

#[derive(Debug, Serialize, Deserialize)]
struct CounterV2 {
    value: u64,
    applied: BTreeSet<u64>,
    seen: u64,
    /// New in v2.
    upgraded_from: Option<u16>,
}

impl Child for CounterV2 {
    type Spec = u64;
    type Msg = CounterMsg;
    type Reply = CounterState;
    type Event = u64;
    fn start(_: &str, initial: u64, _: &mut Ctx<Self>) -> Self {
        CounterV2 {
            value: initial,
            applied: BTreeSet::new(),
            seen: 0,
            upgraded_from: None,
        }
    }
    fn handle(&mut self, msg: CounterMsg, _: &mut Ctx<Self>) -> CounterState {
        if let CounterMsg::Crash = msg {
            panic!("counter told to crash");
        }
        if let CounterMsg::Inc { id } = msg {
            self.seen += 1;
            if self.applied.insert(id) {
                self.value += 1;
            }
        }
        // v2 reports upgraded children with a marker in `seen`'s high bit... no: keep the
        // reply shape; the test reads `upgraded_from` through the value of a Get below.
        CounterState {
            value: self.value,
            seen: self.upgraded_from.map(u64::from).unwrap_or(0),
            has: false,
            node: String::new(),
        }
    }
}

impl Handoff for CounterV2 {
    const SCHEMA: u16 = 2;
    fn dehydrate(&self, _: &Ctx<Self>) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap()
    }
    fn rehydrate(
        _: &str,
        schema: u16,
        state: &[u8],
        _: &mut Ctx<Self>,
    ) -> Result<Self, HandoffError> {
        match schema {
            1 => {
                let v1: Counter = postcard::from_bytes(state)
                    .map_err(|e| HandoffError::Corrupt(e.to_string()))?;
                Ok(CounterV2 {
                    value: v1.value,
                    applied: v1.applied,
                    seen: v1.seen,
                    upgraded_from: Some(1),
                })
            }
            2 => postcard::from_bytes(state).map_err(|e| HandoffError::Corrupt(e.to_string())),
            got => Err(HandoffError::UnknownSchema {
                got,
                supported: "v1, v2".into(),
            }),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_v2_node_takes_over_v1_state_when_the_v1_node_drains() {
    let ips = loopbacks(35, 2);
    let port = free_port(&ips).unwrap();
    let old = node::<Counter>(ips[0], port, config()).await;
    old.horde.no_peers_expected();
    eventually("old node alive", DEADLINE, || async {
        old.horde.is_ready().then_some(())
    })
    .await;
    // Children started before the new node exists all live on the old one.
    for i in 0..50 {
        let name = format!("v{i}");
        old.horde
            .start_child(&name, &100)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        old.horde
            .call(&name, CounterMsg::Inc { id: 9 }, Duration::from_secs(5))
            .await
            .unwrap();
    }
    let mut cfg2 = config();
    cfg2.version = "2.0.0".into();
    let new = node::<CounterV2>(ips[1], port, cfg2).await;
    old.discover([old.peer(), new.peer()]);
    new.discover([old.peer(), new.peer()]);
    eventually("both alive", DEADLINE, || async {
        (old.horde
            .members()
            .iter()
            .filter(|m| m.status == MemberStatus::Alive)
            .count()
            == 2)
            .then_some(())
    })
    .await;
    // While versions differ, new children go to the newest version.
    old.horde.start_child("fresh", &0).await.unwrap();
    assert_eq!(
        old.horde.whereis("fresh").unwrap().name,
        new.connector.node().name
    );

    let report = old.horde.drain(Duration::from_secs(10)).await;
    assert_eq!(report.fallback + report.stranded, 0, "{report:?}");
    for i in 0..50 {
        let s = new
            .horde
            .call(&format!("v{i}"), CounterMsg::Get, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(s.value, 101, "v{i}: v1 state did not reach v2 code");
        assert_eq!(s.seen, 1, "v{i} was not rehydrated from schema v1");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_child_that_panics_restarts_in_place_until_it_crashes_too_often() {
    let ips = loopbacks(36, 2);
    let port = free_port(&ips).unwrap();
    let a = node::<Counter>(ips[0], port, config()).await;
    let b = node::<Counter>(ips[1], port, config()).await;
    mesh(&[&a, &b]).await;
    a.horde.start_child("fragile", &5).await.unwrap();
    b.horde
        .call("fragile", CounterMsg::Inc { id: 1 }, Duration::from_secs(5))
        .await
        .unwrap();
    let owner = a.horde.whereis("fragile").unwrap();
    let host = if owner == *a.connector.node() { &a } else { &b };
    // The call that crashes it gets no answer.
    assert!(
        b.horde
            .call("fragile", CounterMsg::Crash, Duration::from_secs(2))
            .await
            .is_err()
    );
    // Restarted from its spec (5), on the same node, reachable from anywhere.
    let s = eventually("restarted", DEADLINE, || async {
        b.horde
            .call("fragile", CounterMsg::Get, Duration::from_millis(300))
            .await
            .ok()
    })
    .await;
    assert_eq!(s.value, 5);
    assert_eq!(a.horde.whereis("fragile").unwrap().name, owner.name);
    assert_eq!(host.horde.stats().crashes, 1);
    // Three more crashes within the restart window: removed.
    for _ in 0..3 {
        let _ = b
            .horde
            .call("fragile", CounterMsg::Crash, Duration::from_millis(500))
            .await;
        eventually("back or gone", DEADLINE, || async {
            match b
                .horde
                .call("fragile", CounterMsg::Get, Duration::from_millis(300))
                .await
            {
                Ok(_) | Err(horde::CallError::NotFound(_)) => Some(()),
                Err(_) => None,
            }
        })
        .await;
    }
    eventually("removed from every registry", DEADLINE, || async {
        (a.horde.whereis("fragile").is_none() && b.horde.whereis("fragile").is_none()).then_some(())
    })
    .await;
}

// === faults: every answered input survives (ISSUE 10 makes these pass) ===

/// One answered increment: the counter, the id, the node that answered, when.
#[derive(Debug, Clone)]
struct Ack {
    name: String,
    id: u64,
    node: String,
    at: tokio::time::Instant,
}

/// Clients that increment `names` through the given handles until stopped, each retrying an
/// increment with the same id (through its own node) until it is answered.
struct Writers {
    stop: Arc<AtomicBool>,
    /// Increments answered so far.
    answered: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Ack>>>,
}

impl Writers {
    fn start(hordes: Vec<Horde<Counter>>, names: Vec<String>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let next_id = Arc::new(AtomicU64::new(1));
        let names = Arc::new(names);
        let tasks = hordes
            .into_iter()
            .enumerate()
            .map(|(c, horde)| {
                let (stop, next_id, names, answered) = (
                    stop.clone(),
                    next_id.clone(),
                    names.clone(),
                    answered.clone(),
                );
                tokio::spawn(async move {
                    let mut acks = Vec::new();
                    let mut i = c;
                    while !stop.load(Ordering::Relaxed) {
                        let name = names[i % names.len()].clone();
                        i += 7;
                        let id = next_id.fetch_add(1, Ordering::Relaxed);
                        // Once sent, an increment is retried until answered, even after stop:
                        // an unanswered one would be neither lost nor kept.
                        loop {
                            match horde
                                .call(&name, CounterMsg::Inc { id }, Duration::from_secs(2))
                                .await
                            {
                                Ok(s) => {
                                    acks.push(Ack {
                                        name: name.clone(),
                                        id,
                                        node: s.node,
                                        at: tokio::time::Instant::now(),
                                    });
                                    answered.fetch_add(1, Ordering::Relaxed);
                                    break;
                                }
                                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                            }
                        }
                    }
                    acks
                })
            })
            .collect();
        Writers {
            stop,
            answered,
            tasks,
        }
    }

    /// Waits until `more` increments beyond those answered now are answered: the load runs
    /// (before a fault), or runs again (after one).
    async fn expect(&self, more: u64) {
        let want = self.answered.load(Ordering::Relaxed) + more;
        eventually("more increments answered", DEADLINE, || async {
            (self.answered.load(Ordering::Relaxed) >= want).then_some(())
        })
        .await;
    }

    async fn stop(self) -> Vec<Ack> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for t in self.tasks {
            all.extend(t.await.unwrap());
        }
        all
    }
}

/// Every answered increment is applied, once, in the counter's final state.
async fn assert_every_ack_kept(horde: &Horde<Counter>, acks: &[Ack]) {
    let mut by_name: BTreeMap<&str, BTreeSet<u64>> = BTreeMap::new();
    for a in acks {
        by_name.entry(&a.name).or_default().insert(a.id);
    }
    for (name, ids) in by_name {
        for id in &ids {
            let s = eventually("the counter answers", DEADLINE, || async {
                horde
                    .call(
                        name,
                        CounterMsg::Has { id: *id },
                        Duration::from_millis(500),
                    )
                    .await
                    .ok()
            })
            .await;
            assert!(s.has, "{name}: answered increment {id} is lost");
        }
        let s = horde
            .call(name, CounterMsg::Get, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(
            s.value,
            ids.len() as u64,
            "{name}: {} increments answered, value {}",
            ids.len(),
            s.value
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_killed_right_after_answering_loses_no_answered_input() {
    let ips = loopbacks(37, 3);
    let port = free_port(&ips).unwrap();
    let mut nodes = Vec::new();
    for ip in &ips {
        nodes.push(node::<Counter>(*ip, port, config()).await);
    }
    mesh(&nodes.iter().collect::<Vec<_>>()).await;
    let names: Vec<String> = (0..60).map(|i| format!("w{i}")).collect();
    for n in &names {
        nodes[0].horde.start_child(n, &0).await.unwrap();
    }
    assert!(!nodes[2].horde.local_names().is_empty());
    let writers = Writers::start(
        vec![nodes[0].horde.clone(), nodes[1].horde.clone()],
        names.clone(),
    );
    // Kill node 2 in the middle of the load, with no pause before: whatever it answered
    // must survive.
    eventually("load is running", DEADLINE, || async {
        (nodes[2].horde.stats().forwarded > 0 || nodes[0].horde.stats().routed > 50).then_some(())
    })
    .await;
    writers.expect(100).await;
    let dead = nodes.pop().unwrap();
    dead.horde.abort();
    dead.connector.stop().await;
    writers.expect(200).await;
    let acks = writers.stop().await;
    let on_dead = acks
        .iter()
        .filter(|a| a.node == dead.connector.node().name)
        .count();
    assert!(
        on_dead > 20,
        "too few answers from the killed node to prove anything: {on_dead}"
    );
    assert_every_ack_kept(&nodes[0].horde, &acks).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partition_loses_no_answered_input_and_never_has_two_answering_copies() {
    let ips = loopbacks(38, 3);
    let port = free_port(&ips).unwrap();
    let mut nodes = Vec::new();
    for ip in &ips {
        nodes.push(node::<Counter>(*ip, port, config()).await);
    }
    mesh(&nodes.iter().collect::<Vec<_>>()).await;
    let names: Vec<String> = (0..30).map(|i| format!("s{i}")).collect();
    for n in &names {
        nodes[0].horde.start_child(n, &0).await.unwrap();
    }
    // Clients write through every node, the one cut off included.
    let writers = Writers::start(
        nodes.iter().map(|n| n.horde.clone()).collect(),
        names.clone(),
    );
    writers.expect(100).await;
    let (n0, others) = (
        nodes[0].connector.node().name.clone(),
        vec![
            nodes[1].connector.node().name.clone(),
            nodes[2].connector.node().name.clone(),
        ],
    );
    nodes[0].connector.partition(&others).await.unwrap();
    for n in &nodes[1..] {
        n.connector
            .partition(std::slice::from_ref(&n0))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    for n in &nodes {
        n.connector.heal().await.unwrap();
    }
    writers.expect(200).await;
    let mut acks = writers.stop().await;
    // One answering copy at a time: per counter, once another node answered, the earlier
    // one never answers again.
    acks.sort_by_key(|a| a.at);
    let mut seq: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for a in &acks {
        let s = seq.entry(&a.name).or_default();
        if s.last() != Some(&a.node.as_str()) {
            assert!(
                !s.contains(&a.node.as_str()),
                "{}: answered by {:?} then {} again",
                a.name,
                s,
                a.node
            );
            s.push(&a.node);
        }
    }
    assert_every_ack_kept(&nodes[1].horde, &acks).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_ready_waits_for_the_members_asked_for_and_says_what_is_missing() {
    let ips = loopbacks(39, 2);
    let port = free_port(&ips).unwrap();
    let a = node::<Counter>(ips[0], port, config()).await;
    a.horde.no_peers_expected();
    a.horde.wait_ready(1, scaled(DEADLINE)).await.unwrap();

    // A second member was asked for and none is started: the error says what was missing.
    let err = a
        .horde
        .wait_ready(2, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "minotaur@{} is not ready after 300ms: 1 of 2 members alive, this member alive, \
             quorum lease held: true (are the other nodes started and discovered, with the same \
             cookie?)",
            ips[0]
        )
    );

    // Once it is started and discovered, the same wait returns on both.
    let b = node::<Counter>(ips[1], port, config()).await;
    mesh(&[&a, &b]).await;
    a.horde.wait_ready(2, scaled(DEADLINE)).await.unwrap();
    b.horde.wait_ready(2, scaled(DEADLINE)).await.unwrap();
}

/// Every node's live registry lacks `name`, no node hosts it, and (once the grace is over)
/// no node keeps a tombstone or a replica of anything.
async fn assert_all_gone(nodes: &[&HordeNode<Counter>], names: &[String]) {
    for n in nodes {
        eventually("names removed everywhere", DEADLINE, || async {
            let live = live_registry(&n.horde);
            let local = n.horde.local_names();
            names
                .iter()
                .all(|name| !live.contains_key(name) && !local.contains(name))
                .then_some(())
        })
        .await;
    }
    for n in nodes {
        eventually(
            "tombstones collected and backups dropped",
            DEADLINE,
            || async {
                let s = n.horde.stats();
                (n.horde.registry_snapshot().is_empty()
                    && s.tombstones == 0
                    && s.replicas_held == 0)
                    .then_some(())
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_child_stopped_from_any_node_or_by_itself_is_removed_everywhere_then_forgotten() {
    let ips = loopbacks(46, 3);
    let port = free_port(&ips).unwrap();
    let mut c = config();
    c.tombstone_grace = Duration::from_millis(500);
    let mut nodes = Vec::new();
    for ip in &ips {
        nodes.push(node::<Counter>(*ip, port, c.clone()).await);
    }
    mesh(&nodes.iter().collect::<Vec<_>>()).await;
    let names: Vec<String> = (0..30).map(|i| format!("s{i}")).collect();
    for name in &names {
        nodes[0].horde.start_child(name, &0).await.unwrap();
        nodes[1]
            .horde
            .call(name, CounterMsg::Inc { id: 1 }, Duration::from_secs(5))
            .await
            .unwrap();
    }
    // Every node hosts some, and backups hold their state.
    for n in &nodes {
        assert!(!n.horde.local_names().is_empty());
    }
    eventually("backups hold replicas", DEADLINE, || async {
        let held: u64 = nodes.iter().map(|n| n.horde.stats().replicas_held).sum();
        (held >= names.len() as u64).then_some(())
    })
    .await;
    // The first 20 stopped from a node that does not host them, the rest stop themselves.
    for name in &names[..20] {
        let owner = nodes[0].horde.whereis(name).unwrap().name;
        let other = nodes
            .iter()
            .find(|n| n.connector.node().name != owner)
            .unwrap();
        assert!(
            other.horde.stop_child(name).await,
            "{name} not stopped from another node"
        );
        // Every member knows once it returns; stopping it again finds nothing.
        assert!(other.horde.whereis(name).is_none());
        assert!(!other.horde.stop_child(name).await);
    }
    for name in &names[20..] {
        nodes[2]
            .horde
            .call(name, CounterMsg::Stop, Duration::from_secs(5))
            .await
            .unwrap();
    }
    assert!(!nodes[1].horde.stop_child("never-started").await);
    assert_all_gone(&nodes.iter().collect::<Vec<_>>(), &names).await;
    for n in &nodes {
        for name in &names {
            assert!(matches!(
                n.horde
                    .call(name, CounterMsg::Get, Duration::from_millis(200))
                    .await,
                Err(horde::CallError::NotFound(_))
            ));
        }
    }
    // A name can be started again once collected, and lives.
    nodes[2].horde.start_child(&names[0], &5).await.unwrap();
    let s = nodes[1]
        .horde
        .call(&names[0], CounterMsg::Get, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(s.value, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn start_child_says_full_once_every_member_hosts_its_limit() {
    let ips = loopbacks(47, 2);
    let port = free_port(&ips).unwrap();
    let mut c = config();
    c.max_children = Some(3);
    let mut nodes = Vec::new();
    for ip in &ips {
        nodes.push(node::<Counter>(*ip, port, c.clone()).await);
    }
    mesh(&nodes.iter().collect::<Vec<_>>()).await;
    for i in 0..6 {
        nodes[i % 2]
            .horde
            .start_child(&format!("f{i}"), &0)
            .await
            .unwrap();
    }
    for n in &nodes {
        assert_eq!(n.horde.local_names().len(), 3);
    }
    let err = nodes[0].horde.start_child("f6", &0).await.unwrap_err();
    assert_eq!(err, horde::StartError::Full { limit: 3 });
    // Room again once one is stopped.
    assert!(nodes[1].horde.stop_child("f0").await);
    eventually("room for one more", DEADLINE, || async {
        nodes[1].horde.start_child("f6", &0).await.ok()
    })
    .await;
    let err = nodes[1].horde.start_child("f7", &0).await.unwrap_err();
    assert_eq!(err, horde::StartError::Full { limit: 3 });
    // A drain is not refused for it: the other member takes all six.
    let report = nodes[1].horde.drain(Duration::from_secs(10)).await;
    assert_eq!(
        (report.moved, report.fallback, report.stranded),
        (3, 0, 0),
        "{report:?}"
    );
    assert_eq!(nodes[0].horde.local_names().len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_left_alone_does_not_count_on_a_gone_members_backups() {
    let ips = loopbacks(49, 2);
    let port = free_port(&ips).unwrap();
    let mut nodes = Vec::new();
    for ip in &ips {
        nodes.push(node::<Counter>(*ip, port, config()).await);
    }
    mesh(&nodes.iter().collect::<Vec<_>>()).await;
    let names: Vec<String> = (0..8).map(|i| format!("l{i}")).collect();
    for name in &names {
        nodes[0].horde.start_child(name, &0).await.unwrap();
    }
    eventually("backups hold replicas", DEADLINE, || async {
        let held: u64 = nodes.iter().map(|n| n.horde.stats().replicas_held).sum();
        (held >= names.len() as u64).then_some(())
    })
    .await;
    assert!(!nodes[0].horde.local_names().is_empty());
    // Node 1, which holds node 0's backups, dies: node 0 is alone with its children (and,
    // the lower name of two, restarts node 1's).
    let dead = nodes.pop().unwrap();
    dead.horde.abort();
    dead.connector.stop().await;
    eventually("node 0 sees it gone", DEADLINE, || async {
        nodes[0]
            .connector
            .nodes()
            .await
            .ok()?
            .is_empty()
            .then_some(())
    })
    .await;
    // Its drain cannot move them, and must not report them as backed up (the log would tell
    // the operator they restart elsewhere): they stop with this node.
    let report = nodes[0].horde.drain(Duration::from_millis(500)).await;
    assert_eq!((report.moved, report.fallback), (0, 0), "{report:?}");
    assert!(report.stranded > 0, "{report:?}");
}
