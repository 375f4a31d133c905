//! horde benchmark (`cargo bench -p horde --bench horde`), in one process over real TCP on
//! 127.0.x.y (the nodes share the machine's two cores, as containers on one host would):
//! 1. drain of a node hosting 10,000 actors of 1 KiB state while clients keep calling them:
//!    total time, per-actor pause (freeze to release) p50/p99, the longest call a client saw,
//!    messages lost or applied twice;
//! 2. registry convergence when a node joins a cluster holding 100,000 names;
//! 3. a routed call (horde `call` to a child on another node) beside a raw ractor_cluster call
//!    to an actor on the same node, same link: a read of a child that replicates nothing, and
//!    a write to a child replicated before its answer (its backup is the calling node: the
//!    answer waits for one more round trip);
//! 4. memory per hosted child and per registry entry (RSS deltas).
//!
//! `HORDE_BENCH_ACTORS` and `HORDE_BENCH_NAMES` scale parts 1 and 2 down for a quick run;
//! `HORDE_BENCH_ONLY=drain|registry|routed` runs one part.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: failing loudly is the point

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use harness::echo::{self, EchoMsg};
use harness::latency::percentile;
use harness::mesh::{HordeNode, connector_config, mesh};
use harness::ports::free_port;
use harness::{process, wait};
use horde::{Child, Ctx, Handoff, HandoffError, Horde, HordeConfig, Replication};
use ractor::ActorRef;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// A child of `size` bytes counting `Inc`s; `REPLICATED`: every change reaches its backup
/// before the answer ([`Replication::BeforeReply`], what the game uses).
#[derive(Serialize, Deserialize)]
struct Blob<const REPLICATED: bool> {
    data: Vec<u8>,
    count: u64,
}

/// Not replicated (restarts from its spec after a crash); `Blob<true>` is replicated before
/// every answer.
type Plain = Blob<false>;

#[derive(Clone, Serialize, Deserialize)]
enum BlobMsg {
    Inc,
    Get,
}

impl<const R: bool> Child for Blob<R> {
    type Spec = u32;
    type Msg = BlobMsg;
    type Reply = u64;
    type Event = ();
    fn start(_: &str, size: u32, _: &mut Ctx<Self>) -> Self {
        Blob {
            data: vec![7; size as usize],
            count: 0,
        }
    }
    fn handle(&mut self, msg: BlobMsg, ctx: &mut Ctx<Self>) -> u64 {
        match msg {
            BlobMsg::Inc => self.count += 1,
            BlobMsg::Get => ctx.unchanged(),
        }
        self.count
    }
    fn replication() -> Replication {
        if R {
            Replication::BeforeReply
        } else {
            Replication::None
        }
    }
}

impl<const R: bool> Handoff for Blob<R> {
    const SCHEMA: u16 = 1;
    fn dehydrate(&self, _: &Ctx<Self>) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap()
    }
    fn rehydrate(_: &str, _: u16, state: &[u8], _: &mut Ctx<Self>) -> Result<Self, HandoffError> {
        postcard::from_bytes(state).map_err(|e| HandoffError::Corrupt(e.to_string()))
    }
}

/// A benchmark node: the echo baseline, a connector and a horde member of `Blob`s.
async fn start_node<C: Handoff>(ip: IpAddr, port: u16) -> HordeNode<C> {
    let mut cfg = connector_config(ip, port, "bench");
    echo::spawn(&cfg.node).await;
    // 2 cores shared by every node and client of the benchmark: do not mistake a busy
    // machine for a dead peer.
    cfg.failure_timeout = Duration::from_secs(10);
    let mut hc = HordeConfig::new("bench", "1.0.0");
    hc.join_timeout = Duration::from_millis(200);
    hc.moves.wave_size = env_usize("HORDE_BENCH_WAVE", hc.moves.wave_size);
    hc.moves.parallel_waves = env_usize("HORDE_BENCH_PARALLEL", hc.moves.parallel_waves);
    HordeNode::start(cfg, hc).await
}

/// This process's resident memory in KiB.
fn rss_kib() -> u64 {
    process::rss_bytes(std::process::id()) / 1024
}

/// The `q` quantile of `sorted`, NaN when empty (the JSON shows `null`).
fn pct(sorted: &[f64], q: f64) -> f64 {
    percentile(sorted, q).unwrap_or(f64::NAN)
}

/// Waits, checking every millisecond (these waits are measured), until `done` holds.
async fn until(what: &str, done: impl Fn() -> bool) {
    wait::poll(MEASURED_WAIT, Duration::from_millis(1), || {
        let ok = done();
        async move { ok.then_some(()) }
    })
    .await
    .unwrap_or_else(|| panic!("{what} not within {MEASURED_WAIT:?}"));
}

/// Longest measured wait before the benchmark gives up.
const MEASURED_WAIT: Duration = Duration::from_secs(300);

fn env_usize(k: &str, default: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Starts `count` children named `prefix-i` through `horde`, 512 at a time.
async fn start_many(horde: &Horde<Plain>, prefix: &str, count: usize, size: u32) {
    use futures::StreamExt;
    futures::stream::iter(0..count)
        .map(|i| {
            let h = horde.clone();
            let name = format!("{prefix}-{i}");
            async move { h.start_child(&name, &size).await.unwrap() }
        })
        .buffer_unordered(512)
        .collect::<Vec<_>>()
        .await;
}

async fn drain_under_load(actors: usize) -> serde_json::Value {
    let ips: Vec<IpAddr> = (2..5).map(|i| IpAddr::from([127, 0, 71, i])).collect();
    let port = free_port(&ips).unwrap();
    let mut nodes = Vec::new();
    for ip in &ips {
        nodes.push(start_node::<Plain>(*ip, port).await);
    }
    mesh(&nodes.iter().collect::<Vec<_>>()).await;
    // Placement spreads children over the three nodes: start three times as many so that
    // node 0, the one drained, hosts about `actors`.
    let t = Instant::now();
    start_many(&nodes[0].horde, "blob", actors * 3, 1024).await;
    let on_drained = nodes[0].horde.local_names();
    println!(
        "started {} children in {:?}; node 0 hosts {}",
        actors * 3,
        t.elapsed(),
        on_drained.len()
    );

    // Clients on the staying nodes call node 0's children in a loop, counting every ack.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    let targets = Arc::new(on_drained.clone());
    const CLIENTS: usize = 32;
    let rate = env_usize("HORDE_BENCH_RATE", 5000);
    let pace = Duration::from_secs_f64(CLIENTS as f64 / rate as f64);
    for c in 0..CLIENTS {
        let (h, stop, acked, targets) = (
            nodes[1 + c % 2].horde.clone(),
            stop.clone(),
            acked.clone(),
            targets.clone(),
        );
        clients.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(pace);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut worst = Duration::ZERO;
            let mut i = c * 97;
            let mut per_child: std::collections::HashMap<String, u64> =
                std::collections::HashMap::new();
            let mut errors = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let name = &targets[i % targets.len()];
                i += 31;
                let t = Instant::now();
                match h.call(name, BlobMsg::Inc, Duration::from_secs(10)).await {
                    Ok(_) => {
                        worst = worst.max(t.elapsed());
                        acked.fetch_add(1, Ordering::Relaxed);
                        *per_child.entry(name.clone()).or_default() += 1;
                    }
                    Err(_) => errors += 1,
                }
            }
            (worst, per_child, errors)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = acked.load(Ordering::Relaxed);
    let drain_started = Instant::now();
    let report = nodes[0].horde.drain(Duration::from_secs(30)).await;
    let during = acked.load(Ordering::Relaxed) - before;
    let achieved = during as f64 / drain_started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut worst = Duration::ZERO;
    let mut per_child: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    let mut errors = 0;
    for c in clients {
        let (w, p, e) = c.await.unwrap();
        worst = worst.max(w);
        errors += e;
        for (k, v) in p {
            *per_child.entry(k).or_default() += v;
        }
    }
    // Every acknowledged increment is in the moved state, none twice.
    let mut lost = 0i64;
    let mut doubled = 0i64;
    for name in &on_drained {
        let count = nodes[1]
            .horde
            .call(name, BlobMsg::Get, Duration::from_secs(10))
            .await
            .unwrap();
        let want = per_child.get(name).copied().unwrap_or(0);
        if count < want {
            lost += (want - count) as i64;
        } else if count > want {
            doubled += (count - want) as i64;
        }
    }
    let stats = nodes[0].horde.stats();
    let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0).unwrap_or(f64::NAN);
    println!(
        "drain of {} children (1 KiB each) under {achieved:.0} calls/s: {:?} (moved {}, fallback {}); pause p50 {:.2} ms p99 {:.2} ms max {:.2} ms; longest client call {:.1} ms; calls during run {} (errors {}); lost {lost}, applied twice {doubled}",
        on_drained.len(),
        report.duration,
        report.moved,
        report.fallback,
        ms(stats.pause_p50),
        ms(stats.pause_p99),
        ms(stats.pause_max),
        worst.as_secs_f64() * 1000.0,
        acked.load(Ordering::Relaxed) - before,
        errors
    );
    for n in nodes {
        n.connector.stop().await;
        n.horde.shutdown().await;
    }
    serde_json::json!({
        "children": on_drained.len(), "drain_ms": report.duration.as_secs_f64() * 1000.0,
        "moved": report.moved, "fallback": report.fallback,
        "pause_p50_ms": ms(stats.pause_p50), "pause_p99_ms": ms(stats.pause_p99), "pause_max_ms": ms(stats.pause_max),
        "load_calls_per_sec": achieved, "longest_client_call_ms": worst.as_secs_f64() * 1000.0, "client_errors": errors, "lost": lost, "applied_twice": doubled,
    })
}

async fn registry_convergence(names: usize) -> serde_json::Value {
    let ips: Vec<IpAddr> = (2..4).map(|i| IpAddr::from([127, 0, 72, i])).collect();
    let port = free_port(&ips).unwrap();
    let rss0 = rss_kib();
    let a = start_node::<Plain>(ips[0], port).await;
    a.horde.no_peers_expected();
    until("a lone node ready", || a.horde.is_ready()).await;
    let rss1 = rss_kib();
    let t = Instant::now();
    start_many(&a.horde, "n", names, 16).await;
    println!("started {names} children in {:?}", t.elapsed());
    let rss2 = rss_kib();
    let b = start_node::<Plain>(ips[1], port).await;
    let rss3 = rss_kib();
    let t0 = Instant::now();
    mesh(&[&a, &b]).await;
    until("the registry complete on the new node", || {
        b.horde.registry_len() >= names
    })
    .await;
    let converged = t0.elapsed();
    until("the new node ready", || b.horde.is_ready()).await;
    let ready = t0.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss4 = rss_kib();
    let per_child = (rss2.saturating_sub(rss1)) as f64 * 1024.0 / names as f64;
    let per_entry = (rss4.saturating_sub(rss3)) as f64 * 1024.0 / names as f64;
    println!(
        "join with {names} names: registry complete on the new node after {:.1} ms, ready after {:.1} ms; memory {:.0} B per hosted child (incl. registry entry), {:.0} B per replicated registry entry (base {} MiB)",
        converged.as_secs_f64() * 1000.0,
        ready.as_secs_f64() * 1000.0,
        per_child,
        per_entry,
        rss0 / 1024
    );
    a.connector.stop().await;
    b.connector.stop().await;
    serde_json::json!({
        "names": names, "converged_ms": converged.as_secs_f64() * 1000.0, "ready_ms": ready.as_secs_f64() * 1000.0,
        "bytes_per_hosted_child": per_child, "bytes_per_registry_entry": per_entry,
    })
}

/// `calls` horde calls of `msg` from one node to a child on the other, each beside a raw
/// ractor_cluster call over the same link.
async fn routed_vs_raw<const R: bool>(calls: usize, net: u8, msg: BlobMsg) -> serde_json::Value {
    let ips: Vec<IpAddr> = (2..4).map(|i| IpAddr::from([127, 0, net, i])).collect();
    let port = free_port(&ips).unwrap();
    let a = start_node::<Blob<R>>(ips[0], port).await;
    let b = start_node::<Blob<R>>(ips[1], port).await;
    mesh(&[&a, &b]).await;
    // A child on a.
    let mut name = String::new();
    for i in 0.. {
        let n = format!("r{i}");
        if a.horde.start_child(&n, &16).await.is_ok()
            && a.horde.whereis(&n).unwrap() == *a.connector.node()
        {
            name = n;
            break;
        }
    }
    let peer = {
        let mut ev = b.connector.subscribe().await.unwrap();
        ev.current.pop().unwrap_or_else(|| panic!("b sees no peer"))
    };
    let echo: ActorRef<EchoMsg> = peer.remote_actor(echo::SERVICE).unwrap();
    for i in 0..1000 {
        b.horde
            .call(&name, msg.clone(), Duration::from_secs(5))
            .await
            .unwrap();
        ractor::call_t!(echo, EchoMsg::Echo, 1000, i).unwrap();
    }
    let (mut routed, mut raw) = (Vec::new(), Vec::new());
    for i in 0..calls as u64 {
        let t = Instant::now();
        ractor::call_t!(echo, EchoMsg::Echo, 1000, i).unwrap();
        raw.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        b.horde
            .call(&name, msg.clone(), Duration::from_secs(5))
            .await
            .unwrap();
        routed.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    routed.sort_by(f64::total_cmp);
    raw.sort_by(f64::total_cmp);
    let (r50, r99, w50, w99) = (
        pct(&routed, 0.5),
        pct(&routed, 0.99),
        pct(&raw, 0.5),
        pct(&raw, 0.99),
    );
    let what = if R { "replicated write" } else { "routed read" };
    println!(
        "{what}: horde call p50 {r50:.3} ms p99 {r99:.3} ms; raw ractor_cluster call p50 {w50:.3} ms p99 {w99:.3} ms; ratio p50 {:.2} p99 {:.2}",
        r50 / w50,
        r99 / w99
    );
    for n in [a, b] {
        n.connector.stop().await;
        n.horde.shutdown().await;
    }
    serde_json::json!({"routed_p50_ms": r50, "routed_p99_ms": r99, "raw_p50_ms": w50, "raw_p99_ms": w99, "ratio_p50": r50 / w50, "ratio_p99": r99 / w99})
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if std::env::var_os("RUST_LOG").is_some() {
        harness::logs::capture();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // `HORDE_BENCH_ONLY=drain` (or `routed`, `registry`) runs one part (profiling).
        let only = std::env::var("HORDE_BENCH_ONLY").ok();
        let run = |part: &str| only.as_deref().is_none_or(|o| o == part);
        let (mut routed, mut replicated, mut drain, mut registry) = Default::default();
        if run("routed") {
            routed = routed_vs_raw::<false>(10_000, 73, BlobMsg::Get).await;
            replicated = routed_vs_raw::<true>(10_000, 74, BlobMsg::Inc).await;
        }
        if run("drain") {
            drain = drain_under_load(env_usize("HORDE_BENCH_ACTORS", 10_000)).await;
        }
        if run("registry") {
            registry = registry_convergence(env_usize("HORDE_BENCH_NAMES", 100_000)).await;
        }
        println!(
            "{}",
            serde_json::json!({"routed": routed, "replicated": replicated, "drain": drain, "registry": registry})
        );
    });
}
